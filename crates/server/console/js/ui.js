// Small DOM helpers shared by the pages. Everything is built with createElement and
// textContent (never innerHTML), so API data cannot inject markup, and no inline
// style or script is ever needed (the Content-Security-Policy forbids both).

/** `h("a", {href: "#/x", class: "btn"}, "text", child)`: an element. `on*` attrs add listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/** A labelled input: `<div class=field><label for=id>…</label><input id name …></div>`. */
export function field(label, attrs, hint) {
  const id = attrs.id || "f-" + attrs.name.replace(/[^a-z0-9]/gi, "-");
  const { tag = "input", options = [], ...rest } = attrs;
  const input = h(tag, { ...rest, id, "data-field": attrs["data-field"] || attrs.name }, ...options);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", {}, hint) : null);
}

export function option(value, label, selected) { return h("option", { value, selected: selected || undefined }, label ?? value); }

/** A table from column heads and rows of cells; on a phone each row becomes a labelled card
 * (the CSS reads the head from each cell's `data-label`). */
export function table(heads, rows, caption) {
  return h("div", { class: "scroll" }, h("table", {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, heads.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { "data-label": heads[i] || undefined }, c ?? "")))) :
      h("tr", {}, h("td", { colspan: heads.length, class: "muted" }, "Nothing here yet.")))));
}

export function badge(status) { return h("span", { class: "badge s-" + String(status).toLowerCase() }, status); }

export function when(ts) {
  if (!ts) return "—";
  const d = new Date(typeof ts === "number" ? ts : Date.parse(ts));
  return isNaN(d) ? String(ts) : d.toLocaleString();
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  const s = Math.round(ms / 1000);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

/** USD with enough decimals to show small run charges (the API keeps micro-dollars). */
export function usd(n) {
  if (n === null || n === undefined) return "—";
  const a = Math.abs(Number(n));
  return (n < 0 ? "−" : "") + "$" + a.toFixed(a === 0 || a >= 1 ? 2 : a < 0.01 ? 6 : 4);
}

/** A button that copies `text` to the clipboard and says so. */
export function copyButton(text, label = "Copy") {
  const btn = h("button", { type: "button", class: "small" }, label);
  btn.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(text); btn.textContent = "Copied"; }
    catch { btn.textContent = "Select and copy by hand"; }
    setTimeout(() => (btn.textContent = label), 2000);
  });
  return btn;
}

/** A message area: `status(el, "text", "error")` replaces its content. */
export function say(el, text, kind = "info") {
  el.textContent = text || "";
  el.className = "msg " + kind;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
}

/**
 * Shows the API's field errors next to their inputs (`data-field` = the error's field, or
 * its prefix before `[`); returns the messages no input claimed, for a summary line.
 */
export function showFieldErrors(form, err) {
  clearFieldErrors(form);
  const rest = [];
  for (const d of err.details || []) {
    const names = [d.field, d.field.replace(/\[.*$/, ""), d.field.split(".").pop()];
    const input = names.map((n) => form.querySelector(`[data-field="${CSS.escape(n)}"]`)).find(Boolean);
    if (!input) { rest.push(`${d.field}: ${d.message}`); continue; }
    const id = input.id + "-error";
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", id);
    input.closest(".field").append(h("p", { class: "field-error", id }, `${d.field} ${d.message}`));
  }
  return rest;
}

export function clearFieldErrors(form) {
  form.querySelectorAll(".field-error").forEach((e) => e.remove());
  form.querySelectorAll("[aria-invalid]").forEach((e) => { e.removeAttribute("aria-invalid"); e.removeAttribute("aria-describedby"); });
}

/** Prev/next paging for a list envelope (`page`, `limit`, `total`). */
export function pager(env, go) {
  const pages = Math.max(1, Math.ceil(env.total / env.limit));
  return h("nav", { class: "pager", "aria-label": "Pages" },
    h("button", { type: "button", disabled: env.page <= 1 || undefined, onclick: () => go(env.page - 1) }, "‹ Previous"),
    h("span", {}, `Page ${env.page} of ${pages} (${env.total} in all)`),
    h("button", { type: "button", disabled: env.page >= pages || undefined, onclick: () => go(env.page + 1) }, "Next ›"));
}

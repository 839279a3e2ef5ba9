// Recipes: list (official or mine), view one (its template and inputs), and cook it from the
// New job page's recipe form.
import { api } from "./api.js";
import { h, table, field, option, say, when } from "./ui.js";

function view(main, id) {
  const msg = h("p", { class: "msg" });
  main.append(h("p", {}, h("a", { href: "#/recipes" }, "‹ Recipes")), msg);
  api("GET", `/v1/job-recipes/${id}`).then((r) => main.append(...[
    h("div", { class: "head" }, h("h1", {}, r.name), h("a", { class: "btn primary", href: `#/jobs/new?recipe=${r.uuid}` }, "Cook")),
    r.description ? h("p", {}, r.description) : null,
    h("h2", {}, "Inputs"), table(["Key", "Type", "Required", "Default", "Description"], r.input_schema.map((i) => [
      h("code", {}, i.key), i.type, i.required ? "yes" : "no", i.default_value === undefined ? "" : JSON.stringify(i.default_value), i.description || ""])),
    h("h2", {}, "Template"), h("pre", { class: "json", tabindex: "0" }, JSON.stringify(r.payload, null, 2)),
    r.quickstart_md ? h("section", {}, h("h2", {}, "Quick start"), h("pre", { class: "md" }, r.quickstart_md)) : null].filter(Boolean)),
  (e) => say(msg, e.status === 404 ? "No such recipe." : e.message, "error"));
}

export function render(main, params) {
  if (params.id) return view(main, params.id);
  const msg = h("p", { class: "msg" });
  const list = h("div", { id: "recipes-list" });
  const which = field("Show", { tag: "select", name: "which", options: [option("", "All I can see"), option("official", "Official"), option("mine", "Mine")] });
  main.append(h("h1", {}, "Recipes"), h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, which), msg, list);
  const select = which.querySelector("select");
  async function load() {
    const query = { limit: 50, "filter[is_official]": select.value === "official" ? "true" : "", "filter[is_owner]": select.value === "mine" ? "true" : "" };
    try {
      const env = await api("GET", "/v1/job-recipes", { query });
      list.replaceChildren(table(["Name", "Official", "Visibility", "Updated", ""], env.data.map((r) => [
        h("a", { href: "#/recipes/" + r.uuid }, r.name), r.is_official ? "yes" : "no", r.visibility, when(r.updated_at),
        h("a", { href: `#/jobs/new?recipe=${r.uuid}` }, "Cook")])));
      say(msg, "");
    } catch (e) { say(msg, "Could not list recipes: " + e.message, "error"); }
  }
  select.addEventListener("change", load);
  load();
}

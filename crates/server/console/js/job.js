// Job detail: status and why (the scheduler's pending reason arrives in `status_reason`),
// every run with node, attempt, rank, exit code, duration and cost, published ports as links
// and an ssh line, the access token behind a click, followed logs, and Cancel with a reason.
import { api, signedFetch } from "./api.js";
import { h, table, badge, when, duration, usd, copyButton, say } from "./ui.js";

const ALIVE = new Set(["PENDING", "ASSIGNED", "PREPARING", "RUNNING", "CANCELLING", "STOPPING"]);

export function render(main, { id }, ctx) {
  const msg = h("p", { class: "msg" });
  const head = h("div", { id: "job-head" });
  const runs = h("section", { "aria-labelledby": "runs-title" }, h("h2", { id: "runs-title" }, "Runs"));
  const runsBody = h("div");
  runs.append(runsBody);
  const logs = h("pre", { id: "logs", class: "logs", tabindex: "0", "aria-label": "Logs", "aria-live": "polite" });
  const logHead = h("h2", { id: "logs-title" }, "Logs");
  main.append(h("p", {}, h("a", { href: "#/jobs" }, "‹ Jobs")), msg, head, runs,
    h("section", { "aria-labelledby": "logs-title" }, logHead, logs));

  let following = null; // run uuid whose logs are streamed now
  let stream = null;
  let stuck = true; // follow the bottom until the user scrolls up
  logs.addEventListener("scroll", () => { stuck = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 8; });

  function append(text) {
    logs.append(text);
    if (stuck) logs.scrollTop = logs.scrollHeight;
  }

  async function followLogs(run) {
    if (following === run.uuid && (stream || !ALIVE.has(run.status))) return;
    if (stream) stream.abort();
    following = run.uuid;
    logs.textContent = "";
    logHead.textContent = `Logs of attempt ${run.attempt}, rank ${run.rank}`;
    const alive = ALIVE.has(run.status);
    const mine = new AbortController();
    stream = mine;
    try {
      const resp = await signedFetch("GET", `/v1/job-runs/${run.uuid}/logs`, { query: alive ? { follow: "true" } : {}, signal: mine.signal, accept: "text/plain" });
      if (!resp.ok) { append(`(logs unavailable: HTTP ${resp.status})\n`); return; }
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        append(value);
      }
    } catch (e) { if (e.name !== "AbortError") append(`(log stream ended: ${e.message})\n`); }
    finally { if (stream === mine) stream = null; }
  }

  // Built once and only shown or hidden, so a live update never wipes a reason being typed.
  const reason = h("input", { id: "cancel-reason", name: "reason", placeholder: "Cancelled by user" });
  const cancel = h("form", { class: "inline", id: "cancel-form", hidden: true },
    h("label", { for: "cancel-reason" }, "Reason"), reason, h("button", { type: "submit", class: "danger" }, "Cancel job"));
  cancel.addEventListener("submit", async (e) => {
    e.preventDefault();
    try { render1(await api("PUT", `/v1/jobs/${id}/cancel`, { body: { reason: reason.value || "Cancelled by user" } })); }
    catch (err) { say(msg, "Cancel failed: " + err.message, "error"); }
  });
  main.insertBefore(cancel, runs);
  let revealed = false;

  function tokens(job) {
    if (!job.container_access_tokens.length) return null;
    const box = h("div", { class: "field" }, h("span", { class: "label" }, "Container access token"));
    const shown = () => job.container_access_tokens.map((t) => h("span", {}, h("code", { class: "token" }, t.token), " ", copyButton(t.token)));
    if (revealed) { box.append(...shown()); return box; }
    const btn = h("button", { type: "button", id: "reveal-token", class: "small" }, "Reveal");
    btn.addEventListener("click", () => { revealed = true; btn.replaceWith(...shown()); });
    box.append(btn);
    return box;
  }

  function render1(job) {
    head.replaceChildren(...[
      h("div", { class: "head" }, h("h1", {}, job.title), badge(job.status)),
      job.status_reason ? h("p", { id: "status-reason" }, h("strong", {}, job.status === "PENDING" ? "Why pending: " : "Reason: "), job.status_reason) : null,
      h("dl", { class: "facts" },
        ...[["Task", job.task], ["Image", `${job.parameters.parameters.image}:${job.parameters.parameters.tag || "latest"}`],
          ["GPUs", `${job.gpu_count}× ${job.gpu_name || "any"} (≥ ${job.min_vram_gb} GB VRAM)`], ["CPUs / RAM / disk", `${job.cpu_count} / ${job.min_ram_gb} GB / ${job.min_storage_gb} GB`],
          ["Nodes", job.max_node_count], ["Retries", job.max_retry_count], ["Created", when(job.created_at)], ["Started", when(job.started_at)], ["Ended", when(job.completed_at)], ["ID", job.uuid]]
          .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
      tokens(job)].filter(Boolean));
    cancel.hidden = !["PENDING", "ASSIGNED", "RUNNING"].includes(job.status);
  }

  function renderRuns(list) {
    const urls = (r) => h("span", {}, r.node_urls.map((u) => u.description === "ssh"
      ? h("span", { class: "ssh" }, h("code", {}, `ssh -p ${u.port} root@${u.hostname}`), " ", copyButton(`ssh -p ${u.port} root@${u.hostname}`))
      : h("a", { href: `http://${u.hostname}:${u.port}/`, target: "_blank", rel: "noopener" }, `${u.description} → ${u.hostname}:${u.port}`)));
    const cost = (r) => (r.hourly_rate_usd && r.duration_ms ? usd((r.hourly_rate_usd * r.duration_ms) / 3600000) : "—");
    runsBody.replaceChildren(table(["Attempt", "Rank", "Status", "Node", "Exit code", "Duration", "Cost", "Ports", ""],
      list.map((r) => [r.attempt, r.rank, badge(r.status), h("code", { title: r.node_uuid }, r.node_uuid.slice(-8)), r.exit_code ?? "—",
        duration(r.duration_ms ?? (r.started_at_ms ? Date.now() - r.started_at_ms : null)), cost(r), urls(r),
        h("button", { type: "button", class: "small", onclick: () => { following = null; followLogs(r); } }, "Logs")])));
    if (list.length) followLogs(list[list.length - 1]);
  }

  async function load() {
    try {
      const [job, runs] = await Promise.all([api("GET", `/v1/jobs/${id}`),
        api("GET", "/v1/job-runs", { query: { "filter[job_uuid]": id, limit: 50 } })]);
      render1(job);
      // Why a job waits is worked out by each scheduler pass and changes no state, so no
      // event announces it: a pending job is re-read every few seconds.
      clearTimeout(pendingTimer);
      if (job.status === "PENDING") pendingTimer = setTimeout(load, 3000);
      renderRuns(runs.data.sort((a, b) => a.attempt - b.attempt || a.rank - b.rank));
      say(msg, "");
    } catch (e) { say(msg, e.status === 404 ? "No such job." : "Could not load the job: " + e.message, "error"); }
  }
  let pendingTimer = null;
  load();
  let timer = null;
  const off = ctx.onEvent((ev) => {
    const d = ev.data || {};
    if (d.uuid === id || d.job_uuid === id) { clearTimeout(timer); timer = setTimeout(load, 150); }
  });
  return () => { off(); clearTimeout(timer); clearTimeout(pendingTimer); if (stream) stream.abort(); };
}

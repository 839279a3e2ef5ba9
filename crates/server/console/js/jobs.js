// Jobs: one server page at a time (`page`, `limit`, `filter[status]`), never the whole
// account, so an account with 10,000 jobs loads as fast as one with ten. Job events from the
// stream re-read the page shown (debounced), which keeps it live without polling.
import { api } from "./api.js";
import { h, table, badge, when, pager, say, field, option } from "./ui.js";

const STATUSES = ["", "PENDING", "ASSIGNED", "RUNNING", "CANCELLING", "COMPLETED", "CANCELLED", "FAILED"];
const LIMIT = 25;

export function render(main, params, ctx) {
  let page = Number(params.page || 1);
  let status = params.status || "";
  const msg = h("p", { class: "msg" });
  const list = h("div", { id: "jobs-list" });
  const filter = field("Status", { tag: "select", name: "status", options: STATUSES.map((s) => option(s, s || "Any", s === status)) });
  filter.querySelector("select").addEventListener("change", (e) => { status = e.target.value; page = 1; load(); });
  main.append(h("div", { class: "head" }, h("h1", {}, "Jobs"), h("a", { href: "#/jobs/new", class: "btn primary" }, "New job")),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, filter), msg, list);

  let seq = 0;
  async function load() {
    const mine = ++seq;
    try {
      const env = await api("GET", "/v1/jobs", { query: { page, limit: LIMIT, "filter[status]": status } });
      if (mine !== seq) return;
      const rows = env.data.map((j) => [
        h("a", { href: "#/jobs/" + j.uuid }, j.title || j.uuid), badge(j.status), j.task,
        `${j.gpu_count}× ${j.gpu_name || "any GPU"}`, when(j.created_at), j.status_reason || ""]);
      list.replaceChildren(table(["Title", "Status", "Task", "GPUs", "Created", "Reason"], rows),
        pager(env, (p) => { page = p; load(); }));
      say(msg, "");
    } catch (e) { say(msg, "Could not list jobs: " + e.message, "error"); }
  }
  load();
  let timer = null;
  const off = ctx.onEvent((ev) => {
    if (!ev.type.startsWith("job.")) return;
    clearTimeout(timer);
    timer = setTimeout(load, 250);
  });
  return () => { off(); clearTimeout(timer); };
}

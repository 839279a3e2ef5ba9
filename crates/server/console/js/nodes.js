// Nodes (operator keys): inventory, status, last seen, the latest hardware sample as small
// bars (<meter>, so no inline styles), the runs on each node, and drain/undrain.
import { api } from "./api.js";
import { h, table, badge, when, say, pager } from "./ui.js";

function bars(node) {
  const sample = node.latest_hardware_event && node.latest_hardware_event.metadata;
  const gpus = (sample && sample.gpu && sample.gpu.gpus) || [];
  if (!gpus.length) return h("span", { class: "muted" }, "no sample yet");
  return h("div", { class: "bars" }, gpus.map((g, i) => {
    const inv = node.gpus[i] || {};
    const load = Number(g.load ?? g.utilization ?? 0);
    const max = inv.vram_gb_max || 0;
    const used = max && g.vram_free_gb !== undefined ? max - g.vram_free_gb : 0;
    return h("div", { class: "bar" },
      h("label", {}, `GPU ${i} load ${Math.round(load)}%`, h("meter", { min: 0, max: 100, value: load })),
      h("label", {}, `memory ${used.toFixed(1)}/${max} GB`, h("meter", { min: 0, max: max || 1, value: used })));
  }));
}

export function render(main, _params, ctx) {
  const msg = h("p", { class: "msg" });
  const list = h("div", { id: "nodes-list" });
  main.append(h("h1", {}, "Nodes"), msg, list);
  let page = 1;

  async function action(node, verb) {
    try { await api("PUT", `/v1/nodes/${node.uuid}/${verb}`); load(); }
    catch (e) { say(msg, `${verb} failed: ${e.message}`, "error"); }
  }

  async function load() {
    try {
      const env = await api("GET", "/v1/nodes", { query: { page, limit: 20 } });
      const cards = await Promise.all(env.data.map(async (n) => {
        const runs = await api("GET", "/v1/job-runs", { query: { "filter[node_uuid]": n.uuid, limit: 10 } }).catch(() => ({ data: [] }));
        return h("article", { class: "card node" },
          h("div", { class: "head" }, h("h2", {}, n.name), badge(n.status), n.is_draining ? badge("DRAINING") : null,
            h("button", { type: "button", onclick: () => action(n, n.is_draining ? "undrain" : "drain") }, n.is_draining ? "Undrain" : "Drain")),
          h("p", { class: "muted" }, `${n.region_code || "no region"} · last seen ${when(n.last_seen_at)} · ${n.hostname || ""}`),
          table(["CPUs", "RAM", "Disks", "GPUs"], [[
            n.cpus.map((c) => `${c.num_cores}× ${c.name}`).join(", "),
            `${n.ramTotal} GB`,
            n.hard_drives.map((d) => `${d.name}: ${d.available_capacity_gb}/${d.max_capacity_gb} GB free`).join(", "),
            n.gpus.map((g) => `${g.name} (${g.vram_gb_max} GB)${g.in_use ? " in use" : ""}`).join(", ") || "none"]]),
          h("h3", {}, "Latest sample"), bars(n),
          h("h3", {}, "Your runs on this node"),
          h("p", { class: "muted" }, `${n.gpus.filter((g) => g.in_use).length} of ${n.gpus.length} GPUs in use. A run of another account's job belongs to that account, so the API lists only your own here.`),
          table(["Run", "Status", "Job", "Started"], runs.data.map((r) => [
            h("code", {}, r.uuid.slice(-8)), badge(r.status), h("code", {}, r.job_uuid.slice(-8)), when(r.started_at_ms)])));
      }));
      list.replaceChildren(...cards, pager(env, (p) => { page = p; load(); }));
      if (!env.data.length) list.prepend(h("p", { class: "muted" }, "No nodes: this key's account operates none (start one with gantry agent)."));
      say(msg, "");
    } catch (e) {
      say(msg, e.status === 403 ? "This key cannot read nodes: nodes need an operator (node preset) key." : "Could not list nodes: " + e.message, "error");
    }
  }
  load();
  let timer = null;
  const off = ctx.onEvent((ev) => { if (ev.type.startsWith("node.") || ev.type.startsWith("job_run.")) { clearTimeout(timer); timer = setTimeout(load, 500); } });
  return () => { off(); clearTimeout(timer); };
}

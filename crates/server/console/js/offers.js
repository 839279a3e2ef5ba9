// Offers: what free capacity is for sale and its hourly price, filtered by the server.
import { api } from "./api.js";
import { h, table, field, say, usd, pager } from "./ui.js";

export function render(main) {
  const msg = h("p", { class: "msg" });
  const list = h("div", { id: "offers-list" });
  const form = h("form", { class: "filters", id: "offers-filter" },
    field("GPU model", { name: "gpu_name", "data-field": "filter[gpu_name]", placeholder: "RTX 4090" }),
    field("GPU count", { name: "gpu_count", "data-field": "filter[gpu_count]", type: "number", min: 0 }),
    field("Min VRAM (GB)", { name: "min_vram_gb", "data-field": "filter[min_vram_gb]", type: "number", min: 0 }),
    field("Region", { name: "region", "data-field": "filter[allowed_region_codes]", placeholder: "us-east-1" }),
    h("button", { type: "submit" }, "Filter"));
  main.append(h("h1", {}, "Offers"), form, msg, list);
  let page = 1;
  async function load() {
    const f = form.elements;
    try {
      const env = await api("GET", "/v1/compute/offers", { query: { page, limit: 25, "filter[gpu_name]": f.gpu_name.value,
        "filter[gpu_count]": f.gpu_count.value, "filter[min_vram_gb]": f.min_vram_gb.value, "filter[allowed_region_codes]": f.region.value } });
      list.replaceChildren(table(["GPUs", "Count", "VRAM (GiB)", "CPU cores", "RAM (GiB)", "Region", "Nodes", "Per hour"],
        env.data.map((o) => [o.hardware_summary.gpu_model_label, o.hardware_summary.gpu_count, o.hardware_summary.min_gpu_vram_gib,
          o.hardware_summary.cpu_cores, o.hardware_summary.ram_gib, o.region_code || "—", o.availability.node_count, usd(o.pricing.hourly_rate_usd)])),
        pager(env, (p) => { page = p; load(); }));
      say(msg, "");
    } catch (e) { say(msg, "Could not list offers: " + e.message, "error"); }
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); page = 1; load(); });
  load();
}

// New job: a form for the create-job fields people use, a raw JSON editor for the whole body
// (seeded from the form), and "from recipe" (pick one, fill its inputs, cook). Field errors
// from the API are shown next to the input whose `data-field` names them.
import { api } from "./api.js";
import { h, field, option, say, showFieldErrors, clearFieldErrors } from "./ui.js";

const lines = (text) => text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
const num = (v) => (v === "" ? undefined : Number(v));

function jobFields(gpus) {
  const P = "parameters.parameters.";
  return [
    field("Title", { name: "title", required: true, value: "my job" }),
    field("Task", { tag: "select", name: "task", options: [option("BATCH"), option("PERSISTENT")] }, "BATCH runs to completion; PERSISTENT runs until cancelled."),
    field("Image", { name: "image", "data-field": P + "image", required: true, value: "ubuntu" }),
    field("Tag", { name: "tag", "data-field": P + "tag", value: "latest" }),
    field("CPU cores", { name: "cpu_count", type: "number", min: 0, value: 1 }),
    field("RAM (GB)", { name: "min_ram_gb", type: "number", min: 0, step: "any", value: 1 }),
    field("Storage (GB)", { name: "min_storage_gb", type: "number", min: 0, step: "any", value: 10 }),
    field("GPU count", { name: "gpu_count", type: "number", min: 0, value: 0 }),
    field("GPU model", { tag: "select", name: "gpu_name", options: [option("", "Any"), ...gpus.map((g) => option(g.name, `${g.name} (${g.vram_gb} GB)`))] }),
    field("Min VRAM per GPU (GB)", { name: "min_vram_gb", type: "number", min: 0, step: "any", value: 0 }),
    field("Regions", { name: "allowed_region_codes", placeholder: "us-east-1, eu-west-1" }, "Comma-separated; empty means anywhere."),
    field("Ports", { name: "ports", "data-field": P + "ports", placeholder: "22, 8080" }),
    field("Allowed IPs", { name: "allowed_ips", "data-field": P + "allowed_ips", placeholder: "203.0.113.0/24" }),
    field("Environment", { tag: "textarea", name: "env", "data-field": P + "env", rows: 3, placeholder: "KEY=value, one a line" }),
    field("SSH public key", { tag: "textarea", name: "sshkey", "data-field": P + "sshkey", rows: 2 }),
    field("Run timeout (ms)", { name: "max_timeout_run_ms", type: "number", value: 3600000 }, "BATCH only, ≥ 60000; ignored for PERSISTENT."),
    field("Assign timeout (ms)", { name: "max_timeout_assign_ms", type: "number" }),
    field("Start timeout (ms)", { name: "max_timeout_start_ms", type: "number" }),
    field("Retries", { name: "max_retry_count", type: "number", min: 0, value: 0 }),
    field("Node count", { name: "max_node_count", type: "number", min: 1, value: 1 }),
  ];
}

/** The create-job body the form describes. */
function bodyOf(f) {
  const env = {};
  for (const line of f.env.value.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf("=");
    env[at < 0 ? line : line.slice(0, at)] = at < 0 ? "" : line.slice(at + 1);
  }
  const batch = f.task.value === "BATCH";
  return {
    title: f.title.value, task: f.task.value,
    cpu_count: num(f.cpu_count.value), min_ram_gb: num(f.min_ram_gb.value), min_storage_gb: num(f.min_storage_gb.value),
    gpu_count: num(f.gpu_count.value), gpu_name: f.gpu_name.value || undefined, min_vram_gb: num(f.min_vram_gb.value),
    allowed_region_codes: lines(f.allowed_region_codes.value),
    max_timeout_run_ms: batch ? num(f.max_timeout_run_ms.value) : undefined,
    max_timeout_assign_ms: num(f.max_timeout_assign_ms.value), max_timeout_start_ms: num(f.max_timeout_start_ms.value),
    max_retry_count: num(f.max_retry_count.value), max_node_count: num(f.max_node_count.value),
    parameters: { type: "docker", parameters: {
      image: f.image.value, tag: f.tag.value || undefined, env,
      ports: lines(f.ports.value).map(Number), allowed_ips: lines(f.allowed_ips.value), sshkey: f.sshkey.value || undefined } },
  };
}

async function submit(form, msg, send) {
  clearFieldErrors(form);
  say(msg, "Submitting…");
  try {
    const job = await send();
    location.hash = "#/jobs/" + job.uuid;
  } catch (e) {
    const rest = showFieldErrors(form, e);
    say(msg, `${e.message}${rest.length ? " — " + rest.join("; ") : ""}`, "error");
  }
}

function formTab(gpus) {
  const msg = h("p", { class: "msg", id: "new-job-msg" });
  const form = h("form", { id: "new-job", class: "card grid", novalidate: true }, jobFields(gpus),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Submit job"),
      h("button", { type: "button", id: "to-json", onclick: () => { json.value = JSON.stringify(bodyOf(form), null, 2); json.focus(); } }, "Copy into the JSON editor")), msg);
  form.addEventListener("submit", (e) => { e.preventDefault(); submit(form, msg, () => api("POST", "/v1/jobs", { body: bodyOf(form) })); });
  const jmsg = h("p", { class: "msg" });
  const jform = h("form", { id: "raw-job", class: "card" }, h("h2", {}, "Raw JSON"),
    field("Create-job body", { tag: "textarea", name: "body", "data-field": "body", rows: 14, spellcheck: "false", class: "mono" }, "The full POST /v1/jobs body; every field the API knows."),
    h("button", { type: "submit" }, "Submit JSON"), jmsg);
  const json = jform.querySelector("textarea");
  jform.addEventListener("submit", (e) => {
    e.preventDefault();
    let body;
    try { body = JSON.parse(json.value); } catch (err) { say(jmsg, "Not valid JSON: " + err.message, "error"); return; }
    submit(jform, jmsg, () => api("POST", "/v1/jobs", { body }));
  });
  return [form, jform];
}

/** One recipe input: a select when it lists options (or is boolean), else a text or number box. */
function inputField(i) {
  const attrs = { name: "in-" + i.key, "data-field": "inputs." + i.key, required: i.required || undefined };
  const def = i.default_value === undefined || i.default_value === null ? "" : String(i.default_value);
  const choices = i.options && i.options.length ? i.options.map((o) => [String(o.value), o.label || String(o.value)])
    : i.type === "boolean" ? [["true", "yes"], ["false", "no"]] : null;
  if (choices) {
    const blank = i.required ? [] : [option("", def ? `default (${def})` : "—")];
    return field(i.label || i.key, { ...attrs, tag: "select", options: [...blank, ...choices.map(([v, l]) => option(v, l))] }, i.description);
  }
  const numeric = i.type === "number" || i.type === "integer";
  return field(i.label || i.key, { ...attrs, type: numeric ? "number" : "text", step: numeric ? "any" : undefined,
    placeholder: i.placeholder || (def ? `default: ${def}` : undefined) }, i.description);
}

function recipeTab(recipes, chosen) {
  const msg = h("p", { class: "msg" });
  const inputs = h("div", { class: "grid" });
  const pick = field("Recipe", { tag: "select", name: "recipe", options: [option("", "Choose a recipe…"), ...recipes.map((r) => option(r.uuid, r.name, r.uuid === chosen))] });
  const form = h("form", { id: "cook-form", class: "card" }, h("h2", { id: "from-recipe" }, "From a recipe"), pick, inputs,
    h("button", { type: "submit", class: "primary" }, "Cook"), msg);
  const select = pick.querySelector("select");
  const show = () => {
    const r = recipes.find((x) => x.uuid === select.value);
    inputs.replaceChildren(...(r ? r.input_schema.map(inputField) : []));
  };
  select.addEventListener("change", show);
  show();
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const r = recipes.find((x) => x.uuid === select.value);
    if (!r) { say(msg, "Choose a recipe first.", "error"); return; }
    const values = {};
    for (const i of r.input_schema) {
      const v = form.elements["in-" + i.key].value;
      if (v === "") continue;
      values[i.key] = i.type === "number" || i.type === "integer" ? Number(v) : i.type === "boolean" ? v === "true" : v;
    }
    submit(form, msg, () => api("POST", `/v1/job-recipes/${r.uuid}/cook`, { body: { inputs: values } }));
  });
  return form;
}

export function render(main, params) {
  const msg = h("p", { class: "msg" });
  main.append(h("h1", {}, "New job"), msg);
  Promise.all([api("GET", "/v1/gpu-registry", { query: { limit: 50 } }).catch(() => ({ data: [] })),
    api("GET", "/v1/job-recipes", { query: { limit: 50 } }).catch(() => ({ data: [] }))])
    .then(([gpus, recipes]) => main.append(...formTab(gpus.data), recipeTab(recipes.data, params.recipe)))
    .catch((e) => say(msg, e.message, "error"));
}

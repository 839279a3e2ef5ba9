// API keys: create (the secret is shown once, with a copy button and a warning), list, revoke.
import { api } from "./api.js";
import { h, table, when, field, option, say, badge, copyButton, showFieldErrors, clearFieldErrors } from "./ui.js";

export function render(main) {
  const msg = h("p", { class: "msg", id: "keys-msg" });
  const created = h("div", { id: "created-key" });
  const list = h("div", { id: "keys-list" });
  const form = h("form", { id: "new-key", class: "card grid" }, h("h2", {}, "Create a key"),
    field("Name", { name: "name", required: true }),
    field("Preset", { tag: "select", name: "preset", options: [option("consumer", "consumer (jobs, recipes, billing)"), option("node", "node (run an agent)")] }),
    field("Allowed IPs", { name: "allowed_ips", placeholder: "203.0.113.0/24, 198.51.100.7" }, "Empty: any address."),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create key")));
  main.append(h("h1", {}, "API keys"), form, created, msg, list);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    const ips = form.allowed_ips.value.split(",").map((s) => s.trim()).filter(Boolean);
    try {
      const key = await api("POST", "/v1/api-keys", { body: { name: form.name.value, preset: form.preset.value, allowed_ips: ips } });
      created.replaceChildren(h("div", { class: "card warn", role: "alert" },
        h("h2", {}, "Copy the secret now"),
        h("p", {}, "This is the only time the secret is shown: Gantry stores only what verifies it."),
        h("p", {}, "Public key: ", h("code", { id: "new-public-key" }, key.public_key)),
        h("p", {}, "Secret key: ", h("code", { id: "new-secret-key" }, key.secret_key), " ", copyButton(key.secret_key, "Copy secret"))));
      form.reset();
      load();
    } catch (err) {
      const rest = showFieldErrors(form, err);
      say(msg, err.message + (rest.length ? " — " + rest.join("; ") : ""), "error");
    }
  });

  async function load() {
    try {
      const env = await api("GET", "/v1/api-keys", { query: { limit: 50 } });
      list.replaceChildren(table(["Name", "Public key", "Permissions", "Created", "Last used", "State", ""], env.data.map((k) => [
        k.name, h("code", {}, k.public_key), k.permissions.length + " permissions", when(k.created_at), when(k.last_used_at),
        k.is_revoked ? badge("REVOKED") : badge("ACTIVE"),
        k.is_revoked ? "" : h("button", { type: "button", class: "danger small", "data-revoke": k.public_key, onclick: () => revoke(k) }, "Revoke")])));
    } catch (e) { say(msg, "Could not list keys: " + e.message, "error"); }
  }
  async function revoke(k) {
    if (!confirm(`Revoke ${k.name} (${k.public_key})? Clients using it stop working at once.`)) return;
    try { await api("DELETE", `/v1/api-keys/${k.uuid}`); say(msg, `Revoked ${k.public_key}.`); load(); }
    catch (e) { say(msg, "Revoke failed: " + e.message, "error"); }
  }
  load();
}

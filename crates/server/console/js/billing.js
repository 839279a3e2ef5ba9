// Billing: the account's balance, its ledger lines and its credit purchases; a balance
// event from the stream refreshes the page.
import { api } from "./api.js";
import { h, table, when, say, usd, badge } from "./ui.js";

export function render(main, _params, ctx) {
  const msg = h("p", { class: "msg" });
  const body = h("div", { id: "billing" });
  main.append(h("h1", {}, "Billing"), msg, body);
  async function load() {
    try {
      const account = ctx.me && ctx.me.account_uuid;
      const [balance, ledger, purchases] = await Promise.all([
        account ? api("GET", `/v1/accounts/${account}/balance`).catch(() => null) : null,
        api("GET", "/v1/compute/ledger/transactions", { query: { limit: 50 } }),
        api("GET", "/v1/compute/ledger/credit-purchases", { query: { limit: 50 } }).catch(() => ({ data: [] }))]);
      body.replaceChildren(
        h("section", { class: "card" }, h("h2", {}, "Balance"),
          balance ? h("p", { class: "big", id: "balance" }, usd(balance.available_balance), " ", h("span", { class: "muted" }, balance.currency)) : h("p", { class: "muted" }, "This key cannot read the balance.")),
        h("section", {}, h("h2", {}, "Ledger"), table(["When", "Kind", "Amount", "Memo", "Run"], ledger.data.map((t) => [
          when(t.created_at), t.kind, usd(t.amount), t.memo || "", t.job_run_uuid ? h("code", {}, String(t.job_run_uuid).slice(-8)) : ""]))),
        h("section", {}, h("h2", {}, "Credit purchases"), table(["When", "Amount", "Status", "Memo"], purchases.data.map((p) => [
          when(p.created_at), usd(p.amount), badge(p.status), p.memo || ""]))));
      say(msg, "");
    } catch (e) { say(msg, "Could not load billing: " + e.message, "error"); }
  }
  load();
  const off = ctx.onEvent((ev) => { if (ev.type === "balance.changed") load(); });
  return off;
}

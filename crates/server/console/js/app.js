// The console's shell: sign-in, navigation, the hash router (#/jobs, #/jobs/UUID, ...) and one
// event stream shared by the pages. Each page is a module exporting `render(main, params, ctx)`,
// which may return a cleanup function run when the page is left.
import { api, ApiError, credentials, saveCredentials, clearCredentials, followEvents } from "./api.js";
import { h, field, say } from "./ui.js";
import * as jobs from "./jobs.js";
import * as job from "./job.js";
import * as newJob from "./newjob.js";
import * as nodes from "./nodes.js";
import * as offers from "./offers.js";
import * as billing from "./billing.js";
import * as keys from "./keys.js";
import * as recipes from "./recipes.js";

const ROUTES = [
  [/^#\/jobs\/new$/, newJob], [/^#\/jobs\/([0-9a-f-]{36})$/, job], [/^#\/jobs$/, jobs],
  [/^#\/nodes$/, nodes], [/^#\/offers$/, offers], [/^#\/billing$/, billing], [/^#\/keys$/, keys],
  [/^#\/recipes$/, recipes], [/^#\/recipes\/([0-9a-f-]{36})$/, recipes],
];
const NAV = [["#/jobs", "Jobs"], ["#/jobs/new", "New job"], ["#/nodes", "Nodes"], ["#/offers", "Offers"],
  ["#/billing", "Billing"], ["#/keys", "API keys"], ["#/recipes", "Recipes"]];

const root = document.getElementById("app");
let cleanup = null;
let ctx = null;

function signInPage(message) {
  const msg = h("p", { class: "msg", id: "signin-msg" });
  const form = h("form", { class: "card signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to Gantry"),
    h("p", { class: "muted" }, "Use an API key pair (gantry keys create, or gantry dev prints one). The secret stays in this tab's session storage and is never sent: requests are signed here."),
    field("Public key", { name: "public_key", required: true, autocomplete: "username", placeholder: "pk_…" }),
    field("Secret key", { name: "secret_key", type: "password", required: true, autocomplete: "current-password", placeholder: "sk_…" }),
    h("button", { type: "submit", class: "primary" }, "Sign in"), msg);
  if (message) say(msg, message, "error");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const creds = { public_key: form.public_key.value.trim(), secret_key: form.secret_key.value.trim() };
    say(msg, "Checking the key pair…");
    try {
      const me = await api("GET", "/v1/users/me", { creds });
      saveCredentials(creds);
      start(me);
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) { saveCredentials(creds); start(null); return; }
      const why = err instanceof ApiError && err.status === 401
        ? "That key pair was not accepted: check the public and secret keys (the key may also be revoked or expired). Server said: " + err.message
        : "Could not reach the server: " + err.message;
      say(msg, why, "error");
    }
  });
  root.replaceChildren(h("main", { id: "main", class: "narrow" }, form));
  form.public_key.focus();
}

function signOut() {
  clearCredentials();
  if (cleanup) cleanup();
  if (ctx) ctx.stopEvents();
  cleanup = ctx = null;
  location.hash = "";
  signInPage();
}

function start(me) {
  const listeners = new Set();
  const stopEvents = followEvents((ev) => listeners.forEach((fn) => fn(ev)));
  ctx = { me, stopEvents, onEvent(fn) { listeners.add(fn); return () => listeners.delete(fn); } };
  const who = me ? `${me.name}` : credentials().public_key;
  root.replaceChildren(
    h("a", { href: "#main", class: "skip" }, "Skip to content"),
    h("header", { class: "top" },
      h("a", { href: "#/jobs", class: "brand" }, "Gantry"),
      h("nav", { "aria-label": "Main" }, h("ul", {}, NAV.map(([href, label]) => h("li", {}, h("a", { href }, label))))),
      h("span", { class: "who muted" }, who),
      h("button", { type: "button", id: "sign-out", onclick: signOut }, "Sign out")),
    h("main", { id: "main", tabindex: "-1" }));
  if (!location.hash || location.hash === "#") location.hash = "#/jobs";
  route();
}

function route() {
  if (!ctx) return;
  const main = document.getElementById("main");
  if (cleanup) cleanup();
  cleanup = null;
  const hash = location.hash.split("?")[0];
  document.querySelectorAll("header nav a").forEach((a) => a.setAttribute("aria-current", a.getAttribute("href") === hash ? "page" : "false"));
  for (const [re, page] of ROUTES) {
    const m = hash.match(re);
    if (m) {
      main.replaceChildren();
      const params = Object.fromEntries(new URLSearchParams(location.hash.split("?")[1] || ""));
      cleanup = page.render(main, { id: m[1], ...params }, ctx) || null;
      return;
    }
  }
  main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/jobs" }, "Back to jobs")));
}

window.addEventListener("hashchange", route);
if (credentials()) {
  api("GET", "/v1/users/me").then(start, (err) => (err.status === 403 ? start(null) : (clearCredentials(), signInPage(err.status === 401 ? "Your key pair is no longer accepted; sign in again." : undefined))));
} else signInPage();

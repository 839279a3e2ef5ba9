// Signed requests to the public API, exactly as the Rust client signs them
// (crates/auth/src/signing.rs): canonical string `pk|ms|nonce|METHOD|path|query|sha256(body)`,
// HMAC-SHA256 keyed with the whole secret string, lower-case hex. The query is sent in its
// canonical RFC 3986 form (pairs sorted by bytes) and the body as canonical JSON (keys sorted
// by UTF-8 bytes, non-ASCII escaped as \uXXXX, JavaScript number rendering), so the bytes on
// the wire are the bytes signed. The secret lives in sessionStorage only: never a cookie,
// never sent to the server.

const STORE = "gantry.console.credentials";
const enc = new TextEncoder();

export function credentials() {
  const raw = sessionStorage.getItem(STORE);
  return raw ? JSON.parse(raw) : null;
}
export function saveCredentials(creds) { sessionStorage.setItem(STORE, JSON.stringify(creds)); }
export function clearCredentials() { sessionStorage.removeItem(STORE); }

const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");

function byteCompare(a, b) {
  const x = enc.encode(a), y = enc.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

function jsonString(text) {
  let out = '"';
  for (const ch of text) {
    const c = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (c < 0x20 || c > 0x7e) {
      for (let i = 0; i < ch.length; i++) out += "\\u" + ch.charCodeAt(i).toString(16).padStart(4, "0");
    } else out += ch;
  }
  return out + '"';
}

/** Canonical JSON: what `canonical_json(value, {ascii: true, js_numbers: true})` renders. */
export function canonicalJson(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return JSON.stringify(value);
  if (typeof value === "string") return jsonString(value);
  if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]";
  const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort(byteCompare);
  return "{" + keys.map((k) => jsonString(k) + ":" + canonicalJson(value[k])).join(",") + "}";
}

function rfc3986(text) {
  let out = "";
  for (const b of enc.encode(text)) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** Canonical query: pairs sorted by bytes, RFC 3986 percent-encoding, `k=v` joined by `&`. */
export function canonicalQuery(params) {
  const pairs = Object.entries(params || {}).filter(([, v]) => v !== undefined && v !== null && v !== "");
  pairs.sort((a, b) => byteCompare(a[0], b[0]) || byteCompare(String(a[1]), String(b[1])));
  return pairs.map(([k, v]) => rfc3986(k) + "=" + rfc3986(String(v))).join("&");
}

async function sha256Hex(text) { return hex(await crypto.subtle.digest("SHA-256", enc.encode(text))); }

async function hmacHex(secret, message) {
  const key = await crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return hex(await crypto.subtle.sign("HMAC", key, enc.encode(message)));
}

function nonce() { return hex(crypto.getRandomValues(new Uint8Array(16))); }

/** An error answered by the API: HTTP status, `error.code`, message and field details. */
export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || "http_" + status;
    this.details = err.details || [];
  }
}

/** Signs and sends one request; `creds` defaults to the signed-in pair. Returns the fetch Response. */
export async function signedFetch(method, path, { query, body, creds, signal, accept } = {}) {
  const c = creds || credentials();
  if (!c) throw new ApiError(401, { error: { code: "unauthorized", message: "not signed in" } });
  const q = canonicalQuery(query);
  const text = body === undefined ? null : canonicalJson(body);
  const bodyHash = await sha256Hex(text === null ? "" : text);
  const time = String(Date.now());
  const n = nonce();
  const canonical = [c.public_key, time, n, method.toUpperCase(), path, q, bodyHash].join("|");
  const headers = {
    "X-API-Key": c.public_key, "X-Time": time, "X-Nonce": n,
    "X-Signature": await hmacHex(c.secret_key, canonical), Accept: accept || "application/json",
  };
  if (text !== null) headers["Content-Type"] = "application/json";
  return fetch(path + (q ? "?" + q : ""), { method, headers, body: text, signal, cache: "no-store" });
}

/** Signs, sends and decodes JSON; a non-2xx answer throws an ApiError. */
export async function api(method, path, opts = {}) {
  const resp = await signedFetch(method, path, opts);
  let data = null;
  try { data = await resp.json(); } catch { data = null; }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

/**
 * Follows `GET /v1/events` (SSE read through fetch, since EventSource cannot send the
 * signature headers) and calls `onEvent(event)` for each; reconnects with `after=<last id>`
 * so nothing is lost between connections. Returns a function that stops it.
 */
export function followEvents(onEvent) {
  const ctl = new AbortController();
  let after = null;
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const query = after === null ? {} : { after };
        const resp = await signedFetch("GET", "/v1/events", { query, signal: ctl.signal, accept: "text/event-stream" });
        // 410: our position fell out of retention; start again from now (pages re-read on events).
        if (resp.status === 410) { after = null; continue; }
        // 401/403: the key no longer may read events; pages still work by their own requests.
        if (resp.status === 401 || resp.status === 403) return;
        if (!resp.ok) throw new ApiError(resp.status, null);
        const start = resp.headers.get("X-Gantry-Events-After");
        if (after === null && start) after = Number(start);
        await readSse(resp.body, (ev) => { after = ev.id; onEvent(ev); });
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();
  return () => ctl.abort();
}

async function readSse(stream, onEvent) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (data) onEvent(JSON.parse(data));
    }
  }
}

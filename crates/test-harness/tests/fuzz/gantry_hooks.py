"""Schemathesis hooks for Gantry: sign every generated request with a consumer key.

The key comes from GANTRY_PUBLIC_KEY / GANTRY_SECRET_KEY. The signature follows
API.md §5.2 as Python clients compute it: canonical string
`pk|time|nonce|METHOD|path|query|sha256(body)`, the query as sorted pairs in RFC 3986
encoding, the body as `json.dumps(sort_keys=True, separators=(",", ":"))`, HMAC-SHA256
keyed with the whole secret. Schemathesis then sends exactly that body.
"""

import hashlib
import hmac
import json
import os
import secrets
import time
from urllib.parse import quote

import schemathesis
from schemathesis.core import NotSet

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _pairs(query):
    out = []
    for key, value in (query or {}).items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is None:
                continue
            if isinstance(v, bool):
                v = "true" if v else "false"
            out.append((str(key), str(v)))
    return out


def _encode(text):
    return quote(text.encode("utf-8"), safe="-._~")


def canonical_query(pairs):
    ordered = sorted(pairs, key=lambda kv: (kv[0].encode("utf-8"), kv[1].encode("utf-8")))
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in ordered)


@schemathesis.auth()
class GantrySignature:
    """Signs each request; `get` has nothing to fetch (keys are static)."""

    def get(self, case, ctx):
        return (os.environ["GANTRY_PUBLIC_KEY"], os.environ["GANTRY_SECRET_KEY"])

    def set(self, case, data, ctx):
        public_key, secret_key = data
        if case.path == "/v1/events":
            # The event stream is SSE by default and never ends, and a long-poll may
            # wait a minute: fuzz the JSON form with short waits so runs finish.
            query = dict(case.query or {})
            query["format"] = "json"
            query["wait_ms"] = "0"
            case.query = query
        pairs = _pairs(case.query)
        # Send exactly the strings that are signed (booleans as true/false).
        grouped = {}
        for key, value in pairs:
            grouped.setdefault(key, []).append(value)
        case.query = grouped
        query = canonical_query(pairs)
        body = case.body
        if isinstance(body, (bytes, bytearray)):
            body_hash = hashlib.sha256(bytes(body)).hexdigest()
        elif body is not None and not isinstance(body, NotSet):
            try:
                text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
                body_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
            except (TypeError, ValueError):
                # Not JSON (e.g. raw bytes inside): left unsigned, answered 400/401.
                body_hash = EMPTY_SHA256
        else:
            body_hash = EMPTY_SHA256
        now = str(int(time.time() * 1000))
        nonce = secrets.token_hex(16)
        canonical = "|".join([public_key, now, nonce, case.method.upper(), case.formatted_path, query, body_hash])
        signature = hmac.new(secret_key.encode("utf-8"), canonical.encode("utf-8"), hashlib.sha256).hexdigest()
        case.headers = case.headers or {}
        case.headers.update({"X-API-Key": public_key, "X-Time": now, "X-Nonce": nonce, "X-Signature": signature})

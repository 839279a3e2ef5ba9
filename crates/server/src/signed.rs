//! Authentication of signed requests (API.md §5), as one axum extractor.
//!
//! [`Signed<T>`] reads the headers and the whole body, checks in this order: headers
//! present (401), timestamp inside ±5 min (401), key known, not revoked, not expired
//! (401), signature (401), nonce unused (401, checked only after the signature so
//! nobody can burn another client's nonces), source IP allowed (403). Only then is the
//! body deserialized into `T` (400 naming the field). Each 401 says which check failed.
//!
//! The signature is accepted if it matches any rendering a real client may have
//! signed: RFC 3986 or form-encoded query, ASCII-escaped or raw UTF-8 canonical JSON
//! (see `gantry_auth::query_candidates` / `body_hash_candidates`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::{HeaderMap, header};
use gantry_auth::{
    TimestampError, body_hash_candidates, canonical_string, check_timestamp, nonce_is_well_formed, query_candidates,
    sha256_hex, verify_any,
};
use serde::de::DeserializeOwned;

use crate::app::caller::Caller;
use crate::app::error::AppError;
use crate::error::ApiError;
use crate::key_cache::CachedKey;
use crate::state::{AppState, now_ms};

/// A verified request: the caller, the decoded query pairs and the body as `T`.
/// Use `T = serde::de::IgnoredAny` for requests without a body (a body, if sent, is
/// still verified).
pub struct Signed<T> {
    /// Who signed.
    pub caller: Caller,
    /// Decoded query pairs, in received order.
    pub query: Vec<(String, String)>,
    /// The body.
    pub body: T,
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Unauthorized { code, message: message.into() }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, ApiError> {
    let value = headers.get(name).ok_or_else(|| {
        unauthorized(
            "missing_signature",
            format!("missing {name} header: sign every request with X-API-Key, X-Time, X-Nonce and X-Signature"),
        )
    })?;
    value.to_str().map_err(|_| unauthorized("missing_signature", format!("{name} header is not ASCII")))
}

impl<T: DeserializeOwned + Send> FromRequest<Arc<AppState>> for Signed<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let headers = &parts.headers;
        let public_key = header(headers, "x-api-key")?;
        let time = header(headers, "x-time")?;
        let nonce = header(headers, "x-nonce")?;
        let signature = header(headers, "x-signature")?;

        let now = now_ms();
        let ts = check_timestamp(time, now).map_err(|e| match e {
            TimestampError::Malformed => unauthorized("malformed_timestamp", e.to_string()),
            _ => unauthorized("expired_signature", e.to_string()),
        })?;
        if !nonce_is_well_formed(nonce) {
            return Err(unauthorized(
                "malformed_nonce",
                "X-Nonce must be 8-64 characters of [A-Za-z0-9_-] (upstream sends 32 hex chars)",
            ));
        }

        let bytes = axum::body::to_bytes(body, state.auth.max_body_bytes)
            .await
            .map_err(|_| ApiError::PayloadTooLarge { limit: state.auth.max_body_bytes })?;
        if !bytes.is_empty() {
            let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let essence = content_type.split(';').next().unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case("application/json") {
                return Err(ApiError::UnsupportedMediaType { got: content_type.to_string() });
            }
        }

        let key = state
            .auth
            .keys
            .get(public_key, || load_key(state, public_key))
            .await?
            .ok_or_else(|| unauthorized("unknown_api_key", "unknown API key: check X-API-Key"))?;
        if key.record.is_revoked {
            return Err(unauthorized("revoked_api_key", "this API key has been revoked; create a new one"));
        }
        if key.record.expires_at_ms.is_some_and(|at| at <= now) {
            return Err(unauthorized("expired_api_key", "this API key has expired; create a new one"));
        }

        let raw_query = parts.uri.query().unwrap_or("");
        let queries = query_candidates(raw_query);
        // The path as routed, and as received when routing trimmed it (`api::lenient`).
        let received = parts.extensions.get::<crate::api::lenient::ReceivedPath>();
        let paths: Vec<&str> = std::iter::once(parts.uri.path()).chain(received.map(|p| p.0.as_str())).collect();
        let verify = |body_hashes: &[String]| {
            let canonicals: Vec<String> = paths
                .iter()
                .flat_map(|p| queries.iter().map(move |q| (p, q)))
                .flat_map(|(p, q)| body_hashes.iter().map(move |b| (p, q, b)))
                .map(|(p, q, b)| canonical_string(public_key, time, nonce, parts.method.as_str(), p, q, b))
                .collect();
            verify_any(&key.secret, canonicals.iter().map(String::as_str), signature)
        };
        // Fast path: clients that send exactly the bytes they hashed (ours, and the
        // official Python example) verify against the received bytes, with no
        // re-serialization. Otherwise rebuild every canonical rendering from the parsed
        // body. Either way the signature covers the body we act on.
        let exact = [if bytes.is_empty() { gantry_auth::EMPTY_BODY_SHA256.to_string() } else { sha256_hex(&bytes) }];
        if !verify(&exact) {
            let value = if bytes.is_empty() { None } else { Some(parse_json::<serde_json::Value>(&bytes)?) };
            if !verify(&body_hash_candidates(value.as_ref())) {
                return Err(unauthorized(
                    "invalid_signature",
                    "signature does not match: X-Signature must be hex HMAC-SHA256(secret key, \
                     \"publicKey|X-Time|X-Nonce|METHOD|path|sortedQuery|sha256(canonical JSON body)\")",
                ));
            }
        }
        match state.auth.nonces.check_and_insert(public_key, nonce, ts, now) {
            Ok(()) => {}
            Err(e @ gantry_auth::NonceError::Replayed) => return Err(unauthorized("replayed_nonce", e.to_string())),
            Err(e) => return Err(unauthorized("stale_timestamp", e.to_string())),
        }
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        if let Some(ip) = peer
            && !gantry_auth::ip_allowed(&key.allowed_ips, ip)
        {
            return Err(AppError::Forbidden {
                code: "ip_not_allowed",
                message: format!("this API key may not be used from {ip} (see its allowed_ips)"),
            }
            .into());
        }
        if !crate::rate_limit::exempt(&key.record.permissions) {
            // The consumer's profile may set its own rate (cached; see app::profiles).
            let account = key.record.account_uuid;
            let profile_rps = crate::app::profiles::rate_limit_rps(state, account).await?;
            let limits = crate::rate_limit::limits_for(state.auth.rate_limiter.limits(), profile_rps);
            if let Err(wait) = state.auth.rate_limiter.check_with(account, limits, std::time::Instant::now()) {
                return Err(ApiError::TooManyRequests { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 });
            }
        }
        state.auth.usage.record(key.record.uuid, now);

        let query: Vec<(String, String)> = serde_urlencoded::from_str(raw_query).map_err(|e| ApiError::BadRequest {
            code: "malformed_query",
            message: format!("query string is malformed: {e}"),
        })?;
        let body = if bytes.is_empty() { parse_json(b"null") } else { parse_json(&bytes) }.map_err(|e| match e {
            ApiError::App(AppError::Validation(mut details))
                if details[0].message.starts_with("invalid type: null") =>
            {
                details[0].message = "a JSON body is required".into();
                AppError::Validation(details).into()
            }
            other => other,
        })?;
        Ok(Signed { caller: Caller { key }, query, body })
    }
}

/// Parses a JSON body into `T`: syntax errors are `malformed_json`, shape errors name
/// the offending field (`parameters.parameters.ports[1]`).
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: serde_json::Error| ApiError::BadRequest {
        code: "malformed_json",
        message: format!("request body is not valid JSON: {e}"),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => de.end().map(|()| v).map_err(malformed),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(malformed(inner));
            }
            let field = if path == "." { "body".to_string() } else { path };
            Err(ApiError::field(field, inner.to_string()))
        }
    }
}

async fn load_key(state: &AppState, public_key: &str) -> gantry_store::StoreResult<Option<CachedKey>> {
    let Some(record) = state.store.api_key_fetch_by_public_key(public_key).await? else {
        return Ok(None);
    };
    let secret = state.secrets.decrypt(&record.secret_encrypted).map_err(|e| gantry_store::StoreError::Corrupt {
        table: "api_keys",
        detail: format!("secret cannot be decrypted: {e}"),
    })?;
    // Fail closed: an unparsable stored allow-list must not turn into "anyone".
    let allowed_ips = gantry_auth::parse_allow_list(&record.allowed_ips).map_err(|(i, e)| {
        gantry_store::StoreError::Corrupt { table: "api_keys", detail: format!("allowed_ips[{i}]: {e}") }
    })?;
    Ok(Some(CachedKey { record, secret, allowed_ips }))
}

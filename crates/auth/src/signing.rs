//! HMAC-SHA256 request signatures (API.md §5.2): building the canonical string, signing it, and
//! checking a received signature against the candidate canonical strings.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::canonical::{JsonStyle, canonical_json, canonical_query};
use crate::{EMPTY_BODY_SHA256, keys::new_nonce};

type HmacSha256 = Hmac<Sha256>;

/// The string that is signed: `pk|ts|nonce|METHOD|path|query|bodySha256`, method upper-cased,
/// every other part verbatim (an empty query leaves `||`).
pub fn canonical_string(
    public_key: &str,
    timestamp: &str,
    nonce: &str,
    method: &str,
    path: &str,
    query: &str,
    body_sha256: &str,
) -> String {
    let method = method.to_ascii_uppercase();
    format!("{public_key}|{timestamp}|{nonce}|{method}|{path}|{query}|{body_sha256}")
}

fn keyed_mac(secret: &str) -> HmacSha256 {
    // The whole "sk_…" string is the key, as every upstream client does (`sk.encode()`).
    HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length")
}

/// Lower-case hex of HMAC-SHA256 with `secret`'s UTF-8 bytes as key and `canonical` as message.
pub fn sign(secret: &str, canonical: &str) -> String {
    let mut mac = keyed_mac(secret);
    mac.update(canonical.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// [`sign`] over raw bytes (a webhook body need not be UTF-8 text to be signed).
pub fn sign_bytes(secret: &str, message: &[u8]) -> String {
    let mut mac = keyed_mac(secret);
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// True when `signature_hex` is the signature of any of `canonicals` under `secret`.
///
/// Each comparison is constant time (`verify_slice`), so timing does not reveal how much of a
/// forged signature was right; which candidate matched may leak, but candidates are derived
/// from the public request anyway. A signature that is not 64 hex digits is simply `false`.
pub fn verify_any<'a>(secret: &str, canonicals: impl IntoIterator<Item = &'a str>, signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else {
        return false;
    };
    if signature.len() != 32 {
        return false;
    }
    let keyed = keyed_mac(secret);
    canonicals.into_iter().any(|canonical| {
        let mut mac = keyed.clone();
        mac.update(canonical.as_bytes());
        mac.verify_slice(&signature).is_ok()
    })
}

/// What a client puts on the wire for one request: the four auth headers plus the exact query
/// and body bytes that were signed.
#[derive(Clone, Debug)]
pub struct SignedRequest {
    /// `X-API-Key`: the public key.
    pub api_key: String,
    /// `X-Time`: milliseconds since the Unix epoch, decimal.
    pub time: String,
    /// `X-Nonce`: 32 lower-case hex chars, fresh per request (retries must re-sign).
    pub nonce: String,
    /// `X-Signature`: 64 lower-case hex chars.
    pub signature: String,
    /// Exact query string to send (no `?`), `""` when none.
    pub query: String,
    /// Exact body bytes to send (canonical JSON, ASCII + JavaScript style), `None` when no body.
    pub body: Option<String>,
}

/// Signs one request at `now_ms` with a fresh nonce.
///
/// The query is sent in its canonical RFC 3986 form and the body as canonical JSON
/// (`JsonStyle { ascii: true, js_numbers: true }`), so the bytes on the wire are exactly the
/// signed ones and the server's first candidate matches.
pub fn sign_request(
    public_key: &str,
    secret: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: Option<&Value>,
    now_ms: i64,
) -> SignedRequest {
    let time = now_ms.to_string();
    let nonce = new_nonce();
    let query = canonical_query(query);
    let body = body.map(|value| canonical_json(value, JsonStyle { ascii: true, js_numbers: true }));
    let body_sha256 = match &body {
        Some(text) => crate::canonical::sha256_hex(text.as_bytes()),
        None => EMPTY_BODY_SHA256.to_owned(),
    };
    let canonical = canonical_string(public_key, &time, &nonce, method, path, &query, &body_sha256);
    let signature = sign(secret, &canonical);
    SignedRequest { api_key: public_key.to_owned(), time, nonce, signature, query, body }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{body_hash_candidates, query_candidates};

    #[test]
    fn spec_vector_get_jobs() {
        let canonical = canonical_string(
            "pk_abc123",
            "1706918400000",
            "a1b2c3d4e5f6a7b8",
            "get",
            "/v1/jobs",
            "limit=10&page=1",
            EMPTY_BODY_SHA256,
        );
        assert_eq!(
            canonical,
            "pk_abc123|1706918400000|a1b2c3d4e5f6a7b8|GET|/v1/jobs|limit=10&page=1|\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let signature = sign("sk_test", &canonical);
        assert_eq!(signature, "a5f1457a75de7b75e3d28d8346d8b836c363381bb5ac75f4b97b48d7c1241d77");
        assert!(verify_any("sk_test", [canonical.as_str()], &signature));
    }

    #[test]
    fn spec_vector_put_cancel() {
        let body = json!({"reason": "Cancelled by user"});
        let body_sha256 = &body_hash_candidates(Some(&body))[0];
        assert_eq!(body_sha256, "ecc0c0858bd030cd8f4501e8ffc5d1f68d0fe540e50c737cb54c3384a15eab08");
        let canonical = canonical_string(
            "pk_test",
            "1706918400000",
            &"0".repeat(32),
            "PUT",
            "/v1/jobs/0198ac1c-7063-4be8-bb94-57a5bd83548e/cancel",
            "",
            body_sha256,
        );
        assert!(canonical.contains("/cancel||ecc0"));
        assert_eq!(sign("sk_test", &canonical), "dfdbb562859c3c4b444aa9d54b121d01fc744b45e1f44a00db913b19e54c2453");
    }

    #[test]
    fn verify_rejects_wrong_secret_and_malformed_signatures() {
        let canonical = "pk|1|n|GET|/|| ";
        let signature = sign("sk_a", canonical);
        assert!(verify_any("sk_a", ["other", canonical], &signature));
        assert!(!verify_any("sk_b", [canonical], &signature));
        assert!(!verify_any("sk_a", [canonical], "zz"));
        assert!(!verify_any("sk_a", [canonical], &signature[..62]));
        assert!(!verify_any("sk_a", [canonical], ""));
        assert!(!verify_any("sk_a", std::iter::empty(), &signature));
    }

    /// Verifies a signed request the way the server will: from the received query and the
    /// parsed body.
    fn server_accepts(secret: &str, method: &str, path: &str, signed: &SignedRequest) -> bool {
        let body: Option<Value> = signed.body.as_deref().map(|text| serde_json::from_str(text).unwrap());
        let mut canonicals = Vec::new();
        for query in query_candidates(&signed.query) {
            for body_sha256 in body_hash_candidates(body.as_ref()) {
                canonicals.push(canonical_string(
                    &signed.api_key,
                    &signed.time,
                    &signed.nonce,
                    method,
                    path,
                    &query,
                    &body_sha256,
                ));
            }
        }
        verify_any(secret, canonicals.iter().map(String::as_str), &signed.signature)
    }

    #[test]
    fn sign_request_round_trips_through_the_server_side() {
        let query = vec![("tag".to_owned(), "b c".to_owned()), ("filter[x]".to_owned(), "1,2".to_owned())];
        let body = json!({"name": "é", "n": 1.0});
        let signed = sign_request("pk_x", "sk_x", "post", "/v1/jobs", &query, Some(&body), 1_706_918_400_000);
        assert_eq!(signed.time, "1706918400000");
        assert_eq!(signed.query, "filter%5Bx%5D=1%2C2&tag=b%20c");
        assert_eq!(signed.body.as_deref(), Some(r#"{"n":1,"name":"\u00e9"}"#));
        assert_eq!(signed.nonce.len(), 32);
        assert!(server_accepts("sk_x", "POST", "/v1/jobs", &signed));
        assert!(!server_accepts("sk_x", "POST", "/v1/jobs/other", &signed));
        assert!(!server_accepts("sk_y", "POST", "/v1/jobs", &signed));
    }

    #[test]
    fn form_and_rfc_clients_both_verify() {
        let secret = "sk_test";
        let received = "filter%5Bstatus%5D=PENDING%2CRUNNING&q=a+b";
        let candidates = query_candidates(received);
        for signed_query in
            ["filter%5Bstatus%5D=PENDING%2CRUNNING&q=a+b", "filter%5Bstatus%5D=PENDING%2CRUNNING&q=a%20b"]
        {
            let signed = canonical_string("pk", "1", "n", "GET", "/v1/jobs", signed_query, EMPTY_BODY_SHA256);
            let signature = sign(secret, &signed);
            let canonicals: Vec<String> = candidates
                .iter()
                .map(|query| canonical_string("pk", "1", "n", "GET", "/v1/jobs", query, EMPTY_BODY_SHA256))
                .collect();
            assert!(verify_any(secret, canonicals.iter().map(String::as_str), &signature), "{signed_query}");
        }
        // An RFC 3986 client that sent its query as signed.
        assert_eq!(query_candidates("q=a%20b")[0], "q=a%20b");
    }

    #[test]
    fn raw_utf8_client_body_verifies() {
        // A C-pp style client: ensure_ascii=False, Python numbers.
        let body = json!({"note": "日本 😀", "ratio": 2.0});
        let raw = canonical_json(&body, JsonStyle { ascii: false, js_numbers: false });
        assert_eq!(raw, r#"{"note":"日本 😀","ratio":2.0}"#);
        let signed = canonical_string("pk", "1", "n", "POST", "/p", "", &crate::canonical::sha256_hex(raw.as_bytes()));
        let signature = sign("sk", &signed);
        let parsed: Value = serde_json::from_str(&raw).unwrap();
        let canonicals: Vec<String> = body_hash_candidates(Some(&parsed))
            .iter()
            .map(|hash| canonical_string("pk", "1", "n", "POST", "/p", "", hash))
            .collect();
        assert!(verify_any("sk", canonicals.iter().map(String::as_str), &signature));
    }
}

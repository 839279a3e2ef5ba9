//! The `bodySha256` part of the canonical string, for every body rendering a legitimate client
//! may have hashed (API.md §5.3: the server must accept `\uXXXX` and raw UTF-8, and JavaScript
//! and Python number spellings).

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::json::{JsonStyle, canonical_json, style_sensitivity};
use crate::EMPTY_BODY_SHA256;

/// Lower-case hex SHA-256 of every distinct canonical rendering of `body` a legitimate client
/// may have signed: the four [`JsonStyle`] combinations, deduplicated, and only those that can
/// differ (no ASCII variant without non-ASCII text, no number variant without floats).
///
/// `None` (no body) gives `vec![EMPTY_BODY_SHA256]`. The first element is always the rendering
/// `JsonStyle { ascii: true, js_numbers: true }`, which is what our own client sends, so a
/// verifier trying candidates in order usually succeeds on the first.
pub fn body_hash_candidates(body: Option<&Value>) -> Vec<String> {
    let Some(body) = body else {
        return vec![EMPTY_BODY_SHA256.to_owned()];
    };
    let (has_non_ascii, has_float) = style_sensitivity(body);
    let mut styles = vec![JsonStyle { ascii: true, js_numbers: true }];
    if has_non_ascii {
        styles.push(JsonStyle { ascii: false, js_numbers: true });
    }
    if has_float {
        styles.push(JsonStyle { ascii: true, js_numbers: false });
        if has_non_ascii {
            styles.push(JsonStyle { ascii: false, js_numbers: false });
        }
    }
    let mut hashes: Vec<String> = Vec::with_capacity(styles.len());
    for style in styles {
        let hash = sha256_hex(canonical_json(body, style).as_bytes());
        if !hashes.contains(&hash) {
            hashes.push(hash);
        }
    }
    hashes
}

/// Lower-case hex SHA-256, the digest format used throughout the canonical string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn empty_body_hash_is_sha256_of_nothing() {
        assert_eq!(sha256_hex(b""), EMPTY_BODY_SHA256);
        assert_eq!(body_hash_candidates(None), vec![EMPTY_BODY_SHA256.to_owned()]);
    }

    #[test]
    fn spec_cancel_body_hash() {
        let body = json!({"reason": "Cancelled by user"});
        assert_eq!(
            body_hash_candidates(Some(&body)),
            vec!["ecc0c0858bd030cd8f4501e8ffc5d1f68d0fe540e50c737cb54c3384a15eab08".to_owned()]
        );
    }

    #[test]
    fn non_ascii_body_yields_escaped_and_raw_hashes() {
        let body = json!({"name": "é", "city": "日本", "mood": "😀"});
        let escaped = r#"{"city":"\u65e5\u672c","mood":"\ud83d\ude00","name":"\u00e9"}"#;
        let raw = r#"{"city":"日本","mood":"😀","name":"é"}"#;
        assert_eq!(body_hash_candidates(Some(&body)), vec![sha256_hex(escaped.as_bytes()), sha256_hex(raw.as_bytes())]);
    }

    #[test]
    fn float_body_yields_js_and_python_hashes() {
        let body = json!({"x": 1.0});
        assert_eq!(body_hash_candidates(Some(&body)), vec![sha256_hex(br#"{"x":1}"#), sha256_hex(br#"{"x":1.0}"#)]);
        // Same spelling in both families: one candidate.
        assert_eq!(body_hash_candidates(Some(&json!({"x": 1.5}))).len(), 1);
    }

    #[test]
    fn non_ascii_and_float_yield_four_hashes() {
        let body = json!({"é": 2.0});
        let hashes = body_hash_candidates(Some(&body));
        let expected: Vec<String> = [r#"{"\u00e9":2}"#, r#"{"é":2}"#, r#"{"\u00e9":2.0}"#, r#"{"é":2.0}"#]
            .iter()
            .map(|text| sha256_hex(text.as_bytes()))
            .collect();
        assert_eq!(hashes, expected);
    }
}

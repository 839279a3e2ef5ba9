//! Property tests across the public API: whatever our client signs, the server-side candidate
//! computation must accept, and canonical JSON must stay valid JSON with the same content.

use gantry_auth::{
    JsonStyle, body_hash_candidates, canonical_json, canonical_string, query_candidates, sign_request, verify_any,
};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Strings mixing ASCII, the characters the encoders treat specially, and any Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,12}",
        "[a-z +%&=\\[\\],~\"\\\\/\u{0}-\u{1f}\u{7f}]{0,12}",
        any::<String>(),
        "[é日本😀\u{2028}\u{ffff}]{0,6}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        (-1_000_000i64..1_000_000, 0u32..8).prop_map(|(m, k)| Value::from(m as f64 / 10f64.powi(k as i32))),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf =
        prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::Bool), number(), text().prop_map(Value::String),];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Value equality where every number is compared as the f64 a JavaScript client would see,
/// since the JavaScript style deliberately prints integral floats as integers.
fn same_numbers_as_f64(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_numbers_as_f64(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_numbers_as_f64(v, w)))
        }
        _ => a == b,
    }
}

const STYLES: [JsonStyle; 4] = [
    JsonStyle { ascii: true, js_numbers: true },
    JsonStyle { ascii: false, js_numbers: true },
    JsonStyle { ascii: true, js_numbers: false },
    JsonStyle { ascii: false, js_numbers: false },
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn signed_requests_verify_on_the_server_side(
        query in prop::collection::vec((text(), text()), 0..5),
        body in prop::option::of(json()),
        method in prop::sample::select(vec!["GET", "post", "Put", "PATCH", "delete"]),
        now_ms in 0i64..4_000_000_000_000,
    ) {
        let signed = sign_request("pk_prop", "sk_prop", method, "/v1/jobs", &query, body.as_ref(), now_ms);
        // The server sees only the wire: the query string and the body bytes, re-parsed.
        let received: Option<Value> = signed.body.as_deref().map(|text| serde_json::from_str(text).unwrap());
        let candidates: Vec<String> = query_candidates(&signed.query)
            .iter()
            .flat_map(|query| {
                body_hash_candidates(received.as_ref()).into_iter().map(|hash| {
                    canonical_string(&signed.api_key, &signed.time, &signed.nonce, method, "/v1/jobs", query, &hash)
                }).collect::<Vec<_>>()
            })
            .collect();
        // Our client's rendering must be the first candidate, so verification is one HMAC.
        prop_assert!(verify_any("sk_prop", candidates.iter().take(1).map(String::as_str), &signed.signature));
        prop_assert!(!verify_any("sk_other", candidates.iter().map(String::as_str), &signed.signature));
    }

    #[test]
    fn canonical_json_reparses_to_the_same_value(value in json()) {
        for style in STYLES {
            let rendered = canonical_json(&value, style);
            let reparsed: Value = serde_json::from_str(&rendered).unwrap();
            if style.js_numbers {
                prop_assert!(same_numbers_as_f64(&reparsed, &value), "{rendered}");
            } else {
                prop_assert_eq!(&reparsed, &value, "{}", rendered);
            }
            // Canonical means a fixed point.
            prop_assert_eq!(&canonical_json(&reparsed, style), &rendered);
            if style.ascii {
                prop_assert!(rendered.bytes().all(|b| (b' '..=b'~').contains(&b)));
            }
        }
    }

    #[test]
    fn every_style_hash_is_a_candidate(value in json()) {
        let candidates = body_hash_candidates(Some(&value));
        for style in STYLES {
            let rendered = canonical_json(&value, style);
            let reparsed: Value = serde_json::from_str(&rendered).unwrap();
            // What a client of this style signed, as the server recomputes it from the bytes.
            let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(rendered.as_bytes()));
            prop_assert!(body_hash_candidates(Some(&reparsed)).contains(&hash));
        }
        prop_assert!((1..=4).contains(&candidates.len()));
    }

    #[test]
    fn query_candidates_never_panic_and_are_stable(raw in "[a-zA-Z0-9%+=&\\[\\] ,é]{0,40}") {
        let candidates = query_candidates(&raw);
        prop_assert!(!candidates.is_empty() && candidates.len() <= 2);
        // Re-canonicalising a canonical query changes nothing.
        prop_assert_eq!(query_candidates(&candidates[0]), candidates.clone());
    }
}

//! The canonicaliser's and the signature checks' parsers fed arbitrary bytes (issue 15,
//! fuzzing): raw query strings, bodies, allow-lists, nonces, server keys. None panics.

use gantry_auth::{
    JsonStyle, body_hash_candidates, canonical_json, nonce_is_well_formed, parse_allow_list, parse_server_key,
    query_candidates,
};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "[a-z%=&+0-9A-F\\[\\]]{0,64}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn raw_queries_never_panic(raw in text()) {
        let candidates = query_candidates(&raw);
        prop_assert!(!candidates.is_empty());
    }

    #[test]
    fn bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            let _ = body_hash_candidates(Some(&value));
            for (ascii, js_numbers) in [(false, false), (true, true)] {
                let _ = canonical_json(&value, JsonStyle { ascii, js_numbers });
            }
        }
    }

    #[test]
    fn key_material_and_lists_never_panic(a in text(), b in text()) {
        let _ = nonce_is_well_formed(&a);
        let _ = parse_server_key(&a);
        let _ = parse_allow_list(&[a, b]);
    }
}

//! The canonical query string (part 6 of the canonical string, API.md §5.2-5.3).
//!
//! The signature covers the decoded parameters, not the bytes on the wire: some clients let
//! their HTTP library re-encode the query after signing. So the verifier decodes what it
//! received, sorts, and re-encodes in the two styles clients are known to sign with.

use percent_encoding::percent_decode;

/// Which bytes stay literal and how a space is spelled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// RFC 3986: unreserved `A-Za-z0-9-._~` kept, everything else `%XX` (space `%20`).
    Rfc3986,
    /// Python `urlencode` / `quote_plus`: same safe set, but space `+`.
    Form,
}

/// Canonical query strings a client may have signed for `raw_query` as received (without `?`).
///
/// Splits on `&` (skipping empty pieces) and each piece on its first `=`, percent-decodes key
/// and value (`+` decodes to a space), sorts by (key, value) on the decoded bytes, re-encodes and
/// joins `k=v` with `&`. Returns the RFC 3986 rendering first (space `%20`), then the form
/// rendering (space `+`) when it differs. Brackets are always `%5B`/`%5D`, a comma `%2C`.
/// An empty query gives `vec![String::new()]`. Invalid percent-escapes are kept literally (and
/// so re-encoded as `%25…`); this never panics.
pub fn query_candidates(raw_query: &str) -> Vec<String> {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = raw_query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
            (form_decode(key), form_decode(value))
        })
        .collect();
    pairs.sort_unstable();
    let rfc = encode_pairs(&pairs, Encoding::Rfc3986);
    let form = encode_pairs(&pairs, Encoding::Form);
    if form == rfc { vec![rfc] } else { vec![rfc, form] }
}

/// The RFC 3986 canonical query for decoded `pairs`: sorted by (key, value), encoded, joined.
/// This is what our client signs and also sends on the wire, so the server's first candidate
/// from [`query_candidates`] reproduces it.
pub fn canonical_query(pairs: &[(String, String)]) -> String {
    let mut pairs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(key, value)| (key.as_bytes(), value.as_bytes())).collect();
    pairs.sort_unstable();
    encode_pairs(&pairs, Encoding::Rfc3986)
}

/// Decoding to bytes, not `String`, keeps invalid UTF-8 escapes lossless so they re-encode to
/// what the client had.
fn form_decode(text: &str) -> Vec<u8> {
    // '+' must become a space before percent-decoding, or an encoded "%2B" would turn into one.
    let spaced = text.replace('+', " ");
    percent_decode(spaced.as_bytes()).collect()
}

fn encode_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)], encoding: Encoding) -> String {
    let mut out = String::new();
    for (index, (key, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        encode_into(&mut out, key.as_ref(), encoding);
        out.push('=');
        encode_into(&mut out, value.as_ref(), encoding);
    }
    out
}

fn encode_into(out: &mut String, bytes: &[u8], encoding: Encoding) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in bytes {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' if encoding == Encoding::Form => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn spec_examples_sort_keys_then_values() {
        assert_eq!(query_candidates("z=3&a=1&b=2"), vec!["a=1&b=2&z=3"]);
        assert_eq!(query_candidates("tag=zebra&tag=apple"), vec!["tag=apple&tag=zebra"]);
        assert_eq!(canonical_query(&pairs(&[("z", "3"), ("a", "1"), ("b", "2")])), "a=1&b=2&z=3");
        assert_eq!(canonical_query(&pairs(&[("tag", "zebra"), ("tag", "apple")])), "tag=apple&tag=zebra");
    }

    #[test]
    fn empty_query_is_one_empty_candidate() {
        assert_eq!(query_candidates(""), vec![String::new()]);
        assert_eq!(query_candidates("&&"), vec![String::new()]);
        assert_eq!(canonical_query(&[]), "");
    }

    #[test]
    fn form_and_rfc_renderings_of_a_space() {
        let expected = vec![
            "filter%5Bstatus%5D=PENDING%2CRUNNING&q=a%20b".to_owned(),
            "filter%5Bstatus%5D=PENDING%2CRUNNING&q=a+b".to_owned(),
        ];
        assert_eq!(query_candidates("q=a+b&filter%5Bstatus%5D=PENDING%2CRUNNING"), expected);
        assert_eq!(query_candidates("filter[status]=PENDING,RUNNING&q=a%20b"), expected);
    }

    #[test]
    fn matches_python_quote_and_urlencode() {
        // Python 3.11, pairs sorted:
        //   urlencode(p)                                          -> form rendering
        //   "&".join(quote(k, safe="") + "=" + quote(v, safe="")) -> RFC 3986 rendering
        let raw = canonical_query(&pairs(&[("q", "a b"), ("k~_.-", "é/+&=*!"), ("filter[status]", "PENDING,RUNNING")]));
        assert_eq!(
            query_candidates(&raw),
            vec![
                "filter%5Bstatus%5D=PENDING%2CRUNNING&k~_.-=%C3%A9%2F%2B%26%3D%2A%21&q=a%20b",
                "filter%5Bstatus%5D=PENDING%2CRUNNING&k~_.-=%C3%A9%2F%2B%26%3D%2A%21&q=a+b",
            ]
        );
    }

    #[test]
    fn encoded_plus_stays_a_plus() {
        assert_eq!(query_candidates("q=1%2B1"), vec!["q=1%2B1"]);
    }

    #[test]
    fn pieces_without_equals_and_bad_escapes_do_not_panic() {
        assert_eq!(query_candidates("flag&a=%zz&b=%4"), vec!["a=%25zz&b=%254&flag="]);
        // A lone invalid UTF-8 byte survives decoding and re-encodes the same.
        assert_eq!(query_candidates("x=%FF"), vec!["x=%FF"]);
    }
}

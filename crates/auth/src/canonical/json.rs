//! Canonical JSON: recursively key-sorted, compact, with the string and number spelling of a
//! chosen client family.
//!
//! We serialise by hand instead of through `serde_json::to_string` for two reasons: key order
//! must not depend on whether some crate in the build graph turns on `serde_json/preserve_order`
//! (feature unification would silently change every body hash), and serde_json can spell neither
//! Python's `ensure_ascii` escapes nor Python's or JavaScript's float formats.

use std::fmt::Write as _;

use serde_json::Value;

use super::number::write_number;

/// How a client rendered its canonical JSON.
///
/// Clients in the wild differ: Python
/// `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True)` escapes non-ASCII as
/// `\uXXXX` (surrogate pairs for astral chars, lowercase hex), others send raw UTF-8; JavaScript
/// renders integral floats without `.0` (`1.0` -> `1`), Python keeps `1.0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonStyle {
    /// Escape every character outside printable ASCII as `\uXXXX`, like Python's
    /// `ensure_ascii=True` (which also escapes DEL, U+007F).
    pub ascii: bool,
    /// Spell floats like JavaScript's `Number.prototype.toString` (`1.0` -> `1`, `1e21` ->
    /// `1e+21`); otherwise like Python's `repr` (`1.0`, `1e+16`).
    pub js_numbers: bool,
}

/// Renders `value` canonically: keys sorted recursively by their UTF-8 bytes, compact
/// separators, array order kept.
///
/// Strings are escaped like serde_json and Python for quotes, backslashes and control
/// characters (`\" \\ \n \r \t \b \f`, other controls `\u00XX`); with `style.ascii` every
/// non-ASCII character (and DEL) becomes `\uXXXX`, astral characters as a surrogate pair, hex in
/// lower case. Integers print as integers. Floats: with `style.js_numbers` like JavaScript
/// (an integral float below 1e21 in magnitude prints as an integer, otherwise the shortest
/// round-trip digits in JavaScript's notation), else like Python's `repr` (`1.0`, shortest
/// round-trip digits, exponent from 1e16 and below 1e-4).
pub fn canonical_json(value: &Value, style: JsonStyle) -> String {
    let mut out = String::new();
    write_value(&mut out, value, style);
    out
}

fn write_value(out: &mut String, value: &Value, style: JsonStyle) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(out, number, style.js_numbers),
        Value::String(text) => write_string(out, text, style.ascii),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(out, item, style);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorting here, not trusting the map's iteration order: see the module doc.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(out, key, style.ascii);
                out.push(':');
                write_value(out, item, style);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, text: &str, ascii: bool) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => push_unicode_escape(out, c),
            // Python's ensure_ascii keeps only ' '..='~' literal, so DEL is escaped as well.
            c if ascii && c > '~' => push_unicode_escape(out, c),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_unicode_escape(out: &mut String, c: char) {
    let mut units = [0u16; 2];
    for unit in c.encode_utf16(&mut units) {
        // Writing to a String cannot fail.
        let _ = write!(out, "\\u{unit:04x}");
    }
}

/// Whether a rendering of `value` can depend on [`JsonStyle::ascii`] (some string or key holds a
/// character the ASCII style escapes) and on [`JsonStyle::js_numbers`] (some number is a float).
pub(super) fn style_sensitivity(value: &Value) -> (bool, bool) {
    fn visit(value: &Value, acc: &mut (bool, bool)) {
        match value {
            Value::Null | Value::Bool(_) => {}
            Value::Number(number) => acc.1 |= number.is_f64(),
            Value::String(text) => acc.0 |= text.chars().any(|c| c > '~'),
            Value::Array(items) => items.iter().for_each(|item| visit(item, acc)),
            Value::Object(map) => {
                for (key, item) in map {
                    acc.0 |= key.chars().any(|c| c > '~');
                    visit(item, acc);
                }
            }
        }
    }
    let mut acc = (false, false);
    visit(value, &mut acc);
    acc
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const OURS: JsonStyle = JsonStyle { ascii: true, js_numbers: true };
    const RAW_PY: JsonStyle = JsonStyle { ascii: false, js_numbers: false };

    #[test]
    fn spec_vector_sorts_recursively_and_keeps_array_order() {
        let value = json!({"z": 1, "a": {"d": 4, "b": 2}, "list": [{"y": true, "x": false}]});
        assert_eq!(canonical_json(&value, OURS), r#"{"a":{"b":2,"d":4},"list":[{"x":false,"y":true}],"z":1}"#);
    }

    /// Builds an object whose map iterates in insertion order when serde_json's
    /// `preserve_order` is on; the output must be sorted either way.
    #[test]
    fn key_order_does_not_depend_on_map_iteration_order() {
        let mut map = serde_json::Map::new();
        for key in ["zeta", "alpha", "Mid", "_x", "alpha2", "é"] {
            map.insert(key.to_owned(), json!(null));
        }
        let rendered = canonical_json(&Value::Object(map), RAW_PY);
        assert_eq!(rendered, r#"{"Mid":null,"_x":null,"alpha":null,"alpha2":null,"zeta":null,"é":null}"#);
    }

    #[test]
    fn escapes_match_python_and_serde_json() {
        let value = json!("q\" b\\ n\n r\r t\t b\u{8} f\u{c} nul\u{0} us\u{1f} del\u{7f}");
        let expected_raw = r#""q\" b\\ n\n r\r t\t b\b f\f nul\u0000 us\u001f del"#.to_owned() + "\u{7f}\"";
        assert_eq!(canonical_json(&value, RAW_PY), expected_raw);
        assert_eq!(serde_json::to_string(&value).unwrap(), expected_raw);
        assert_eq!(canonical_json(&value, OURS), r#""q\" b\\ n\n r\r t\t b\b f\f nul\u0000 us\u001f del\u007f""#);
    }

    #[test]
    fn ascii_style_matches_python_ensure_ascii() {
        // Expected strings produced by Python 3.11:
        // json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        let value = json!({"name": "é 日本 😀", "日": "x"});
        assert_eq!(canonical_json(&value, OURS), r#"{"name":"\u00e9 \u65e5\u672c \ud83d\ude00","\u65e5":"x"}"#);
        assert_eq!(canonical_json(&value, RAW_PY), r#"{"name":"é 日本 😀","日":"x"}"#);
    }

    #[test]
    fn style_sensitivity_detects_non_ascii_and_floats() {
        assert_eq!(style_sensitivity(&json!({"a": [1, "x", null, true]})), (false, false));
        assert_eq!(style_sensitivity(&json!({"é": 1})), (true, false));
        assert_eq!(style_sensitivity(&json!(["\u{7f}"])), (true, false));
        assert_eq!(style_sensitivity(&json!({"a": [1.5]})), (false, true));
    }
}

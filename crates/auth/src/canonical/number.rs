//! Float spelling of the two client families that sign JSON bodies: JavaScript
//! (`JSON.stringify`, i.e. `Number.prototype.toString`) and Python (`json.dumps`, i.e.
//! `float.__repr__`).
//!
//! Both print the same shortest round-trip digits (ties to even) and differ only in notation
//! (where the exponent form starts, whether `.0` is kept), so we take the digits once and lay
//! them out per family.

use std::fmt::Write as _;

use serde_json::Number;

pub(super) fn write_number(out: &mut String, number: &Number, js: bool) {
    // Integers first: `as_f64` would also accept them and lose precision above 2^53.
    if let Some(int) = number.as_i64() {
        let _ = write!(out, "{int}");
    } else if let Some(int) = number.as_u64() {
        let _ = write!(out, "{int}");
    } else if let Some(float) = number.as_f64() {
        if js {
            write_js_float(out, float);
        } else {
            write_python_float(out, float);
        }
    } else {
        // Unreachable without serde_json's arbitrary_precision; its own text is the best guess.
        out.push_str(&number.to_string());
    }
}

/// Shortest round-trip decimal digits of `|value|` (no leading or trailing zeros, `"0"` for
/// zero) and the exponent of the first digit: `|value| = d.ddd × 10^exponent`.
fn shortest_digits(value: f64) -> (String, i32) {
    // Digits come from serde_json's float printer, not Rust's `{:e}`: when two shortest
    // candidates are equally close (268858551554018.125), JavaScript, Python and serde_json
    // pick the even one (…018.12) while Rust's formatter rounds up (…018.13).
    let text = match Number::from_f64(value.abs()) {
        Some(number) => number.to_string(),
        None => format!("{:e}", value.abs()),
    };
    // Parsed generically so any notation the printer picks ("1e16", "1e+16", "0.001") works.
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().unwrap_or(0)),
        None => (text.as_str(), 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    let significant = all.trim_start_matches('0');
    let leading_zeros = (all.len() - significant.len()) as i32;
    let digits = significant.trim_end_matches('0');
    if digits.is_empty() {
        return ("0".to_owned(), 0);
    }
    (digits.to_owned(), exponent + int.len() as i32 - 1 - leading_zeros)
}

/// ECMAScript `Number::toString(x)` for finite `x` (ECMA-262 §6.1.6.1.20).
fn write_js_float(out: &mut String, value: f64) {
    if value == 0.0 {
        // Both zeros print as "0" in JavaScript.
        out.push('0');
        return;
    }
    if value < 0.0 {
        out.push('-');
    }
    let (digits, exponent) = shortest_digits(value);
    let k = digits.len() as i64;
    // n is the position of the decimal point relative to the first digit, as in the spec.
    let n = i64::from(exponent) + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        push_zeros(out, n - k);
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        push_zeros(out, -n);
        out.push_str(&digits);
    } else {
        push_scientific_mantissa(out, &digits);
        let sign = if exponent >= 0 { '+' } else { '-' };
        let _ = write!(out, "e{sign}{}", exponent.unsigned_abs());
    }
}

/// CPython `float.__repr__` ('r' format with `Py_DTSF_ADD_DOT_0`).
fn write_python_float(out: &mut String, value: f64) {
    if value.is_sign_negative() {
        out.push('-');
    }
    let (digits, exponent) = shortest_digits(value);
    let k = digits.len() as i64;
    if (-4..16).contains(&exponent) {
        // Number of digits before the decimal point.
        let point = i64::from(exponent) + 1;
        if point <= 0 {
            out.push_str("0.");
            push_zeros(out, -point);
            out.push_str(&digits);
        } else if point >= k {
            out.push_str(&digits);
            push_zeros(out, point - k);
            out.push_str(".0");
        } else {
            let (int, frac) = digits.split_at(point as usize);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    } else {
        push_scientific_mantissa(out, &digits);
        let sign = if exponent >= 0 { '+' } else { '-' };
        let _ = write!(out, "e{sign}{:02}", exponent.abs());
    }
}

fn push_scientific_mantissa(out: &mut String, digits: &str) {
    let (first, rest) = digits.split_at(1);
    out.push_str(first);
    if !rest.is_empty() {
        out.push('.');
        out.push_str(rest);
    }
}

fn push_zeros(out: &mut String, count: i64) {
    for _ in 0..count {
        out.push('0');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, Python 3.11 `json.dumps`, Node `JSON.stringify`), both produced by running the
    /// real interpreters on these inputs.
    const VECTORS: &[(f64, &str, &str)] = &[
        (0.0, "0.0", "0"),
        (-0.0, "-0.0", "0"),
        (1.0, "1.0", "1"),
        (-1.0, "-1.0", "-1"),
        (1.5, "1.5", "1.5"),
        (0.1, "0.1", "0.1"),
        (100.0, "100.0", "100"),
        (1e15, "1000000000000000.0", "1000000000000000"),
        (1e16, "1e+16", "10000000000000000"),
        (1.5e16, "1.5e+16", "15000000000000000"),
        (1e20, "1e+20", "100000000000000000000"),
        (1e21, "1e+21", "1e+21"),
        (1.5e21, "1.5e+21", "1.5e+21"),
        (123456789012345680000.0, "1.2345678901234568e+20", "123456789012345680000"),
        (0.0001, "0.0001", "0.0001"),
        (0.00001, "1e-05", "0.00001"),
        (0.000001, "1e-06", "0.000001"),
        (0.0000001, "1e-07", "1e-7"),
        (1.2345e-7, "1.2345e-07", "1.2345e-7"),
        (5e-324, "5e-324", "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308", "1.7976931348623157e+308"),
        (-2.5e-5, "-2.5e-05", "-0.000025"),
        (12345.678, "12345.678", "12345.678"),
        (9007199254740992.0, "9007199254740992.0", "9007199254740992"),
        (1e22, "1e+22", "1e+22"),
        (0.3, "0.3", "0.3"),
        (2.220446049250313e-16, "2.220446049250313e-16", "2.220446049250313e-16"),
    ];

    fn render(number: &Number, js: bool) -> String {
        let mut out = String::new();
        write_number(&mut out, number, js);
        out
    }

    #[test]
    fn floats_match_python_and_javascript() {
        for &(value, python, js) in VECTORS {
            let number = Number::from_f64(value).unwrap();
            assert_eq!(render(&number, false), python, "python repr of {value:e}");
            assert_eq!(render(&number, true), js, "js toString of {value:e}");
        }
    }

    #[test]
    fn integers_print_exactly_in_both_styles() {
        for number in [Number::from(0), Number::from(-42), Number::from(u64::MAX), Number::from(i64::MIN)] {
            let expected = number.to_string();
            assert_eq!(render(&number, false), expected);
            assert_eq!(render(&number, true), expected);
        }
    }
}

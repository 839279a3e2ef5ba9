//! Numbers as upstream clients send them. Counts and millisecond durations are
//! integers, but Python and JS clients sometimes compute them as floats (`1.8e6`),
//! so an integral float is accepted as an integer; GB sizes are any non-negative
//! number and are echoed as integers when integral, as a JS client would print them.

use serde::{Deserialize, Deserializer, Serializer};

/// The largest integer every client language represents exactly (2^53 - 1).
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// Deserializes an optional integer, accepting integral floats (`4.0`).
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<serde_json::Number>::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(n) => {
            number_to_i64(&n).map(Some).ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {n}")))
        }
    }
}

/// Deserializes an optional list of integers, accepting integral floats.
pub fn opt_int_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
    let v = Option::<Vec<serde_json::Number>>::deserialize(d)?;
    v.map(|list| {
        list.iter()
            .map(|n| number_to_i64(n).ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {n}"))))
            .collect()
    })
    .transpose()
}

fn number_to_i64(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64).then_some(f as i64)
}

/// Serializes a size in GB: integral values as integers (`8`), others as floats.
pub fn gb<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() <= MAX_SAFE_INTEGER as f64 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, serde::Serialize)]
    struct T {
        #[serde(default, deserialize_with = "super::opt_int")]
        n: Option<i64>,
        #[serde(serialize_with = "super::gb")]
        g: f64,
    }

    #[test]
    fn integral_floats_are_integers() {
        let t: T = serde_json::from_str(r#"{"n": 1800000.0, "g": 8}"#).unwrap();
        assert_eq!(t.n, Some(1_800_000));
        assert!(serde_json::from_str::<T>(r#"{"n": 1.5, "g": 1}"#).is_err());
        assert_eq!(serde_json::to_string(&T { n: None, g: 8.0 }).unwrap(), r#"{"n":null,"g":8}"#);
        assert_eq!(serde_json::to_string(&T { n: None, g: 0.5 }).unwrap(), r#"{"n":null,"g":0.5}"#);
    }
}

//! Money as exact integers: every amount the ledger holds is a whole number of
//! **micro-USD** (1 USD = 1,000,000). Floating point appears only on the wire, where
//! upstream clients expect `hourly_rate_usd` and `available_balance` as JSON numbers;
//! those are derived from the integers, never the other way round (except
//! [`usd_to_micros`], which recovers a rate that was itself written from micros).

/// Micro-units per USD.
pub const MICROS_PER_USD: i64 = 1_000_000;

/// The ledger's one currency.
pub const CURRENCY: &str = "USD";

/// Milliseconds per hour: hourly rates are pro-rated by the millisecond.
pub const MS_PER_HOUR: i64 = 3_600_000;

/// Parses a decimal amount of USD (`25`, `0.35`, `1.000001`) into micro-USD, exactly:
/// no float is involved, so `0.1` is 100,000 micros and not one off. At most six
/// decimals (a finer amount cannot be held); negative amounts are refused unless
/// `allow_negative` (adjustments). The error says what was wrong, for a 400.
pub fn parse_usd(text: &str, allow_negative: bool) -> Result<i64, String> {
    let t = text.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if negative && !allow_negative {
        return Err(format!("must not be negative, got {text:?}"));
    }
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !is_digits(whole) || !is_digits(frac) {
        return Err(format!("must be a decimal number of USD such as 25 or 0.35, got {text:?}"));
    }
    if frac.len() > 6 {
        return Err(format!("has more than 6 decimals (the ledger counts micro-USD), got {text:?}"));
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| format!("is too large: {text:?}"))? };
    let frac_micros: i64 = format!("{frac:0<6}").parse().unwrap_or(0);
    let micros = whole
        .checked_mul(MICROS_PER_USD)
        .and_then(|w| w.checked_add(frac_micros))
        .filter(|m| *m <= crate::num::MAX_SAFE_INTEGER)
        .ok_or_else(|| format!("is too large: {text:?}"))?;
    Ok(if negative { -micros } else { micros })
}

/// Micro-USD as a JSON number of USD (for the wire only).
pub fn micros_to_usd(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_USD as f64
}

/// The micro-USD a wire rate was written from. Exact for any value [`micros_to_usd`]
/// produced below 2^51 micros (about 2 billion USD): the float's relative error is at
/// most 2^-53, so the product is within far less than half a micro of the integer.
pub fn usd_to_micros(usd: f64) -> i64 {
    (usd * MICROS_PER_USD as f64).round() as i64
}

/// Micro-USD as text with six decimals, for people (`12.500000`).
pub fn format_usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}{}.{:06}", m / MICROS_PER_USD as u64, m % MICROS_PER_USD as u64)
}

/// What `duration_ms` of use costs at `rate_micros_per_hour`, rounded down to the
/// micro-USD (the consumer never pays for a fraction of a micro). Integer arithmetic
/// in 128 bits, so no product overflows.
pub fn charge_for(rate_micros_per_hour: i64, duration_ms: i64) -> i64 {
    let product = i128::from(rate_micros_per_hour.max(0)) * i128::from(duration_ms.max(0));
    i64::try_from(product / i128::from(MS_PER_HOUR)).unwrap_or(i64::MAX)
}

/// `amount * parts_per_million / 1e6`, rounded down: the operator's share of a charge.
pub fn share_of(amount: i64, parts_per_million: i64) -> i64 {
    let product = i128::from(amount) * i128::from(parts_per_million);
    i64::try_from(product / 1_000_000).unwrap_or(i64::MAX)
}

/// Parses a fraction (`0.8`, `1`, `0.125`) into parts per million, exactly; 0 to 1.
pub fn parse_share(text: &str) -> Result<i64, String> {
    let ppm =
        parse_usd(text, false).map_err(|_| format!("must be a fraction from 0 to 1 such as 0.8, got {text:?}"))?;
    if ppm > MICROS_PER_USD {
        return Err(format!("must be at most 1, got {text:?}"));
    }
    Ok(ppm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_amounts_parse_exactly() {
        assert_eq!(parse_usd("25", false), Ok(25_000_000));
        assert_eq!(parse_usd("0.1", false), Ok(100_000));
        assert_eq!(parse_usd(".35", false), Ok(350_000));
        assert_eq!(parse_usd("1.000001", false), Ok(1_000_001));
        assert_eq!(parse_usd("-2.5", true), Ok(-2_500_000));
        for bad in ["", "-", ".", "abc", "1e3", "1.0000001", "-1", "1,5", "99999999999999999999"] {
            assert!(parse_usd(bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn charges_are_pro_rated_by_the_millisecond_and_rounded_down() {
        // 0.35 USD/h for 90 minutes.
        assert_eq!(charge_for(350_000, 5_400_000), 525_000);
        // 1 USD/h for 1 ms = 0.2777.. micros -> 0.
        assert_eq!(charge_for(1_000_000, 1), 0);
        assert_eq!(charge_for(3_600_000, 1), 1);
        assert_eq!(share_of(1_000_001, 800_000), 800_000);
    }

    #[test]
    fn rates_round_trip_through_the_wire_number() {
        for m in [0, 1, 350_000, 690_000, 4_140_000, 123_456_789_012, (1 << 51) - 1] {
            assert_eq!(usd_to_micros(micros_to_usd(m)), m);
        }
        assert_eq!(format_usd(-1_500_000), "-1.500000");
        assert_eq!(parse_share("0.8"), Ok(800_000));
        assert!(parse_share("1.5").is_err());
    }
}

//! The `X-Time` freshness rule (API.md §5.4): a signature is only good within
//! [`MAX_CLOCK_SKEW_MS`] of the server clock, which also bounds how long nonces must be kept.

use crate::MAX_CLOCK_SKEW_MS;

/// Why an `X-Time` header was refused. Skews are magnitudes in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// `X-Time` was not a decimal count of milliseconds.
    #[error("X-Time must be Unix time in milliseconds as a decimal string")]
    Malformed,
    /// `X-Time` lies further in the past than the allowed skew.
    #[error(
        "X-Time is {skew_ms} ms behind the server clock (at most {MAX_CLOCK_SKEW_MS} ms allowed); check the client's clock and sign each request when sending it"
    )]
    TooOld {
        /// How far behind the server clock the timestamp is.
        skew_ms: i64,
    },
    /// `X-Time` lies further in the future than the allowed skew.
    #[error(
        "X-Time is {skew_ms} ms ahead of the server clock (at most {MAX_CLOCK_SKEW_MS} ms allowed); check the client's clock"
    )]
    InFuture {
        /// How far ahead of the server clock the timestamp is.
        skew_ms: i64,
    },
}

/// Parses `x_time` and checks it is within [`MAX_CLOCK_SKEW_MS`] of `now_ms`, returning the
/// timestamp in milliseconds. Only ASCII digits are accepted (no sign, no spaces, no fraction).
pub fn check_timestamp(x_time: &str, now_ms: i64) -> Result<i64, TimestampError> {
    if x_time.is_empty() || !x_time.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TimestampError::Malformed);
    }
    let ts_ms: i64 = x_time.parse().map_err(|_| TimestampError::Malformed)?;
    let skew_ms = now_ms.saturating_sub(ts_ms);
    if skew_ms > MAX_CLOCK_SKEW_MS {
        Err(TimestampError::TooOld { skew_ms })
    } else if skew_ms < -MAX_CLOCK_SKEW_MS {
        Err(TimestampError::InFuture { skew_ms: skew_ms.saturating_neg() })
    } else {
        Ok(ts_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_706_918_400_000;

    #[test]
    fn accepts_within_skew_inclusive() {
        assert_eq!(check_timestamp("1706918400000", NOW), Ok(NOW));
        let edge_old = (NOW - MAX_CLOCK_SKEW_MS).to_string();
        let edge_new = (NOW + MAX_CLOCK_SKEW_MS).to_string();
        assert!(check_timestamp(&edge_old, NOW).is_ok());
        assert!(check_timestamp(&edge_new, NOW).is_ok());
    }

    #[test]
    fn refuses_outside_skew() {
        let old = (NOW - MAX_CLOCK_SKEW_MS - 1).to_string();
        let new = (NOW + MAX_CLOCK_SKEW_MS + 1).to_string();
        assert_eq!(check_timestamp(&old, NOW), Err(TimestampError::TooOld { skew_ms: MAX_CLOCK_SKEW_MS + 1 }));
        assert_eq!(check_timestamp(&new, NOW), Err(TimestampError::InFuture { skew_ms: MAX_CLOCK_SKEW_MS + 1 }));
        assert!(check_timestamp("0", NOW).unwrap_err().to_string().contains("check the client's clock"));
    }

    #[test]
    fn refuses_malformed() {
        for text in ["", "-1", "+1706918400000", "1706918400.5", " 1", "1706918400000 ", "1e12", "99999999999999999999"]
        {
            assert_eq!(check_timestamp(text, NOW), Err(TimestampError::Malformed), "{text:?}");
        }
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        assert!(matches!(check_timestamp("9223372036854775807", i64::MIN), Err(TimestampError::InFuture { .. })));
        assert!(matches!(check_timestamp("0", i64::MAX), Err(TimestampError::TooOld { .. })));
    }
}

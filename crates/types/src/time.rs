//! Time on the wire. Upstream uses two forms: RFC 3339 strings (`created_at`) and
//! epoch-millisecond integers ending in `_ms` (`timeout_assign_at_ms`). Internally
//! every instant is an `i64` of epoch milliseconds; this module is the one place that
//! converts.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, epoch milliseconds, serialized as an RFC 3339 string in UTC with
/// millisecond precision (`2026-11-28T12:00:00.123Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The RFC 3339 rendering.
    pub fn to_rfc3339(self) -> String {
        DateTime::<Utc>::from_timestamp_millis(self.0).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Parses RFC 3339 (`2024-01-01T00:00:00Z`, any offset) or a bare date
    /// (`2024-01-01`, meaning midnight UTC), the two forms upstream documents use.
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Some(Self(t.timestamp_millis()));
        }
        let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        Some(Self(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 date-time"))
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime)))
            .into()
    }
}
impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_accepts_bare_dates() {
        let t = Timestamp(1_706_918_400_123);
        assert_eq!(t.to_rfc3339(), "2024-02-03T00:00:00.123Z");
        assert_eq!(Timestamp::parse(&t.to_rfc3339()), Some(t));
        assert_eq!(Timestamp::parse("2024-02-03"), Some(Timestamp(1_706_918_400_000)));
        assert_eq!(Timestamp::parse("2024-02-03T01:00:00+01:00"), Some(Timestamp(1_706_918_400_000)));
        assert_eq!(Timestamp::parse("yesterday"), None);
    }
}

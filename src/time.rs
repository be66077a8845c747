//! Time as unix milliseconds (`i64`) everywhere inside payhook; RFC 3339
//! strings at the edges (API, webhook bodies). One clock source.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::AppError;

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `2026-11-22T10:00:00Z` (milliseconds only when present).
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Accepts RFC 3339 with any offset (`2026-11-22T10:00:00Z`, `…+02:00`).
pub fn parse_rfc3339(field: &str, raw: &str) -> Result<i64, AppError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            AppError::bad_input(format!(
                "{field}: expected an RFC 3339 time such as \"2026-11-22T10:00:00Z\", got {raw:?}"
            ))
        })
}

/// An optional RFC 3339 field (query strings, filters) as unix ms.
pub fn parse_optional_rfc3339(field: &str, raw: Option<&str>) -> Result<Option<i64>, AppError> {
    raw.map(|v| parse_rfc3339(field, v)).transpose()
}

/// Serializers that show stored milliseconds as RFC 3339 in JSON output:
/// `#[serde(serialize_with = "crate::time::ser::ms")]`.
pub mod ser {
    use serde::Serializer;

    pub fn ms<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*v))
    }

    pub fn opt_ms<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&super::rfc3339(*v)),
            None => s.serialize_none(),
        }
    }
}

//! Fresh ids, secrets and timestamps, in the formats the spec's patterns demand.

use crate::sandbox::error::ApiError;
use chrono::{DateTime, Datelike, SecondsFormat, Utc};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` random base62 characters from the OS's CSPRNG (secrets are derived from it too).
pub fn random_base62(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    // 248 = 4 × 62: rejecting bytes above it keeps every character equally likely.
    let mut out = String::with_capacity(len);
    let mut pool = bytes;
    while out.len() < len {
        for byte in &pool {
            if *byte < 248 && out.len() < len {
                out.push(BASE62[(*byte % 62) as usize] as char);
            }
        }
        pool = vec![0u8; len];
        getrandom::fill(&mut pool).expect("the OS random source is available");
    }
    out
}

/// A new id: `prefix` (e.g. `tsk_`) and 16 random base62 characters.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", random_base62(16))
}

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// RFC 3339, UTC, millisecond precision: the one timestamp format the sandbox writes.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn now_string() -> String {
    timestamp(now())
}

pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A timestamp a client sent in `field`, as an instant. Refused (400 naming the field) unless it
/// is RFC 3339 and its UTC year is 1 to 9999: the sandbox compares and answers timestamps in UTC
/// with four-digit years, so e.g. `9999-12-31T23:00:00-05:00` (year 10000 in UTC) cannot be kept.
pub fn parse_client_timestamp(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    let at = parse_timestamp(text)
        .ok_or_else(|| ApiError::invalid_field(field, "is not an RFC 3339 date-time"))?;
    if !(1..=9999).contains(&at.year()) {
        return Err(ApiError::invalid_field(
            field,
            "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in UTC",
        ));
    }
    Ok(at)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

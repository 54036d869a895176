//! `Idempotency-Key` on POST operations, as payment APIs do: the first request with a key runs,
//! and its answer is kept with a digest of the request; the same key with the same request gets
//! that answer again without running twice (a client that lost the reply can retry); the same key
//! with a different request is refused with 400 (as payment APIs do). Keys are per tenant and kept for 24 hours.
//!
//! Runs inside the write transaction of the request, so a replay and the original cannot both run.

use crate::generated::api::Operation;
use crate::sandbox::error::ApiError;
use crate::sandbox::ids;
use crate::sandbox::request::{RawRequest, Reply};
use axum::http::StatusCode;
use rusqlite::{OptionalExtension, Transaction, params};
use sha2::Digest;

/// How long an answer is kept for its key.
const KEPT_FOR_HOURS: i64 = 24;

/// The longest key accepted (as the spec declares).
const MAX_KEY_LEN: usize = 255;

/// The key a request carries, checked: 1 to 255 visible ASCII characters.
pub fn key_from(header: Option<&axum::http::HeaderValue>) -> Result<Option<String>, ApiError> {
    let Some(value) = header else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key)
            if !key.is_empty()
                && key.len() <= MAX_KEY_LEN
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key.to_string()))
        }
        _ => Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// What identifies "the same request": the operation, its path and query, and its body.
fn digest(operation: Operation, raw: &RawRequest) -> String {
    let mut path: Vec<_> = raw.path.iter().collect();
    path.sort();
    let mut hasher = sha2::Sha256::new();
    hasher.update(operation.name().as_bytes());
    for (name, value) in path {
        hasher.update(format!("\n{name}={value}").as_bytes());
    }
    hasher.update(format!("\n?{}\n", raw.query.as_deref().unwrap_or_default()).as_bytes());
    hasher.update(&raw.body);
    format!("{:x}", hasher.finalize())
}

/// The kept answer for `key`, if this tenant used it within 24 hours for the same request;
/// 400 if for another.
pub fn replay(
    tx: &Transaction,
    tenant_id: &str,
    key: &str,
    operation: Operation,
    raw: &RawRequest,
) -> Result<Option<Reply>, ApiError> {
    let kept: Option<(String, u16, String, String)> = tx
        .query_row(
            "SELECT request_sha256, status, body, created_at FROM idempotency \
             WHERE tenant_id = ?1 AND key = ?2",
            params![tenant_id, key],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    let Some((request, status, body, created_at)) = kept else {
        return Ok(None);
    };
    let expired = chrono::DateTime::parse_from_rfc3339(&created_at)
        .map(|at| {
            chrono::Utc::now() - at.with_timezone(&chrono::Utc)
                > chrono::Duration::hours(KEPT_FOR_HOURS)
        })
        .unwrap_or(true);
    if expired {
        tx.execute(
            "DELETE FROM idempotency WHERE tenant_id = ?1 AND key = ?2",
            params![tenant_id, key],
        )?;
        return Ok(None);
    }
    if request != digest(operation, raw) {
        return Err(ApiError::bad_request(
            "this Idempotency-Key was already used for a different request; use a new key for a new request",
        ));
    }
    let status = StatusCode::from_u16(status).map_err(ApiError::internal)?;
    let body = serde_json::from_str(&body).map_err(ApiError::internal)?;
    Ok(Some((status, body)))
}

/// Keeps a successful answer for `key` (a failed request may be retried with the same key).
pub fn remember(
    tx: &Transaction,
    tenant_id: &str,
    key: &str,
    operation: Operation,
    raw: &RawRequest,
    reply: &Reply,
) -> Result<(), ApiError> {
    if !reply.0.is_success() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO idempotency (tenant_id, key, request_sha256, status, body, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            tenant_id,
            key,
            digest(operation, raw),
            reply.0.as_u16(),
            reply.1.to_string(),
            ids::now_string()
        ],
    )?;
    Ok(())
}

//! The minute ledger: every grant, top-up and use of training minutes is a `minute_transaction`,
//! and the balance is their sum. Sessions and skill executions draw from it; billing reads it.
//!
//! Invariant: the balance is never stored, only derived, so it cannot disagree with the ledger.

use crate::sandbox::db::Store;
use crate::sandbox::error::ApiError;
use crate::sandbox::ids;
use serde_json::{Value, json};

pub const KIND: &str = "minute_transaction";

/// The tenant's current balance in minutes: the sum of the ledger.
pub fn balance(store: &Store) -> Result<i64, ApiError> {
    let sum: i64 = store.tx().query_row(
        "SELECT COALESCE(SUM(json_extract(body, '$.minutes')), 0) FROM objects WHERE tenant_id = ?1 AND kind = ?2",
        rusqlite::params![store.tenant_id(), KIND],
        |row| row.get(0),
    )?;
    Ok(sum)
}

/// What a ledger entry points at.
#[derive(Default)]
pub struct Reference<'a> {
    pub session_id: Option<&'a str>,
    pub skill_execution_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
}

/// The spec's bounds on one entry's `minutes` (MinuteTransaction.minutes).
pub const MAX_ENTRY_MINUTES: i64 = 1_000_000;

/// Appends an entry of `minutes` (positive credits, negative debits), clamped to the spec's
/// bounds, and returns it.
pub fn record(
    store: &Store,
    kind: &str,
    minutes: i64,
    reference: Reference,
    description: &str,
    at: &str,
) -> Result<Value, ApiError> {
    let minutes = minutes.clamp(-MAX_ENTRY_MINUTES, MAX_ENTRY_MINUTES);
    let balance_after = balance(store)? + minutes;
    let entry = json!({
        "id": ids::new_id("mtx_"),
        "kind": kind,
        "minutes": minutes,
        "balance_after_minutes": balance_after,
        "session_id": reference.session_id,
        "skill_execution_id": reference.skill_execution_id,
        "user_id": reference.user_id,
        "description": description,
        "created_at": at,
    });
    store.insert(KIND, &entry)?;
    Ok(entry)
}

/// Debits `minutes` for usage, refusing (409) when the balance cannot cover it.
pub fn charge(
    store: &Store,
    kind: &str,
    minutes: i64,
    reference: Reference,
    description: &str,
) -> Result<Value, ApiError> {
    let available = balance(store)?;
    if minutes > available {
        return Err(ApiError::conflict(format!(
            "the minute balance is exhausted: {minutes} minute(s) needed, {available} left; top up or upgrade the plan"
        )));
    }
    record(
        store,
        kind,
        -minutes,
        reference,
        description,
        &ids::now_string(),
    )
}

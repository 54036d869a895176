//! Who is calling the API: `Authorization: Bearer` with a `tak_` key of some tenant, or an OAuth
//! access token issued for this API (`oauth::identify_token`), resolved to a `Principal`.
//!
//! Apart from `request` (which `oauth` builds on) so that the two never import each other.

use crate::sandbox::db::Store;
use crate::sandbox::error::ApiError;
use crate::sandbox::ids;
use crate::sandbox::oauth::{ACCESS_PREFIX, REFRESH_PREFIX, identify_token};
use crate::sandbox::request::Principal;
use crate::scopes::ScopeSet;
use rusqlite::{OptionalExtension, Transaction, params};

/// Resolves `Authorization: Bearer tak_…` to a live key of some tenant, or an OAuth access token
/// issued for this API to its grant (`oauth::identify_token`); anything else is 401.
/// Also says whether the key's `last_used_at` is due an update (`touch`), which this read-only
/// step leaves to a write.
pub fn identify(
    tx: &Transaction,
    authorization: Option<&str>,
) -> Result<(Principal, bool), ApiError> {
    let header = authorization
        .ok_or_else(|| ApiError::unauthorized("send `Authorization: Bearer tak_…`"))?;
    let secret = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|s| {
            s.starts_with("tak_") || s.starts_with(ACCESS_PREFIX) || s.starts_with(REFRESH_PREFIX)
        })
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer tak_…`"))?;
    if !secret.starts_with("tak_") {
        // An OAuth token (`tat_`, `tar_`); the API accepts only one issued for itself.
        return Ok((identify_token(tx, secret)?, false));
    }
    let found: Option<(String, String)> = tx
        .query_row(
            "SELECT id, tenant_id FROM api_keys WHERE secret_sha256 = ?1",
            params![ids::sha256_hex(secret.as_bytes())],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let (key_id, tenant_id) = found.ok_or_else(|| ApiError::unauthorized("unknown API key"))?;
    let store = Store::new(tx, &tenant_id);
    let key = store.require("api_key", &key_id)?;
    if !key["revoked_at"].is_null() {
        return Err(ApiError::unauthorized("this API key was revoked"));
    }
    let now = ids::now();
    if let Some(expires) = key["expires_at"].as_str().and_then(ids::parse_timestamp)
        && expires <= now
    {
        return Err(ApiError::unauthorized("this API key has expired"));
    }
    // last_used_at at one-second resolution: enough to be true, without a write per request.
    let stale = key["last_used_at"]
        .as_str()
        .and_then(ids::parse_timestamp)
        .is_none_or(|last| (now - last).num_milliseconds() >= 1000);
    let scope_names: Vec<String> = key["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    let scopes = ScopeSet::from_names(scope_names.iter().map(String::as_str));
    let principal = Principal {
        tenant_id,
        key_id,
        scope_names,
        scopes,
    };
    Ok((principal, stale))
}

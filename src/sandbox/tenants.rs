//! Tenants and their API keys: creation, the `api_keys` operations and key introspection.
//!
//! A key's secret exists in clear only in the response that creates it; the database keeps its
//! SHA-256 (`api_keys.secret_sha256`) and the API shows its 12-character `prefix`.
//!
//! Rules between a key and the keys it mints (the spec says them too):
//! - A key grants only scopes it holds (403).
//! - A child never outlives its parent: its `expires_at` is capped at the parent's (a child asked
//!   for without expiry, or for later, gets the parent's expiry; the response shows it).
//! - Revoking a key revokes every key minted from it, down the chain, in the same transaction.
//! - A key may revoke only keys whose scopes it holds all of (403 naming the ones it lacks), as
//!   it may mint only those.

use crate::generated::api::{Operation, Scope};
use crate::sandbox::db::{Filter, Store};
use crate::sandbox::error::ApiError;
use crate::sandbox::request::{Input, Reply, created, ok, page};
use crate::sandbox::{Ctx, ids, not_served};
use crate::scopes::ScopeSet;
use rusqlite::{Transaction, params};
use serde_json::{Value, json};

const KIND: &str = "api_key";

pub fn call(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    match ctx.operation {
        Operation::ListApiKeys => {
            let filters = if input.bool("include_revoked").unwrap_or(false) {
                vec![]
            } else {
                vec![Filter::field("revoked_at", Value::Null)]
            };
            page(
                ctx.store
                    .list(KIND, &filters, input.limit(), input.cursor())?,
            )
        }
        Operation::CreateApiKey => create_api_key(ctx, input),
        Operation::RevokeApiKey => revoke_api_key(ctx, input),
        Operation::GetCurrentApiKey => {
            if is_grant(ctx) {
                return Err(ApiError::bad_request(
                    "this introspects the calling API key; an OAuth access token is introspected \
                     with introspect_oauth_token",
                ));
            }
            let key = ctx.store.require(KIND, &ctx.principal.key_id)?;
            let tenant_name: String = ctx.store.tx().query_row(
                "SELECT name FROM tenants WHERE id = ?1",
                params![ctx.store.tenant_id()],
                |row| row.get(0),
            )?;
            ok(json!({
                "id": key["id"], "tenant_id": ctx.store.tenant_id(), "tenant_name": tenant_name,
                "name": key["name"], "scopes": key["scopes"], "prefix": key["prefix"],
                "expires_at": key["expires_at"],
            }))
        }
        Operation::IntrospectOauthToken => crate::sandbox::oauth::introspect(ctx, input),
        _ => Err(not_served(ctx)),
    }
}

/// Whether the caller is an OAuth grant (an access token) rather than an API key.
fn is_grant(ctx: &Ctx) -> bool {
    ctx.principal.key_id.starts_with("grt_")
}

fn create_api_key(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    let requested: Vec<&str> = input
        .get("scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let beyond: Vec<&str> = requested
        .iter()
        .copied()
        .filter(|name| Scope::parse(name).is_none_or(|scope| !ctx.principal.scopes.contains(scope)))
        .collect();
    if !beyond.is_empty() {
        return Err(ApiError::insufficient_scope(
            beyond.iter().map(|s| s.to_string()).collect(),
            format!(
                "a key cannot grant scopes it does not hold itself: {}",
                beyond.join(", ")
            ),
        ));
    }
    let asked = match input.str("expires_at") {
        Some(text) => {
            let at = ids::parse_client_timestamp("expires_at", text)?;
            if at <= ids::now() {
                return Err(ApiError::unprocessable(format!(
                    "expires_at ({text}) must be in the future"
                )));
            }
            Some(at)
        }
        None => None,
    };
    if is_grant(ctx) {
        // A key minted under a grant would outlive the grant's revocation, which is how a user
        // takes back what a connector was given.
        return Err(ApiError::unprocessable(
            "API keys are minted with an API key, not with an OAuth access token: a key would \
             outlive the revocation of the grant",
        ));
    }
    // A child never outlives its parent: the earlier of the two expiries.
    let parent = ctx.store.require(KIND, &ctx.principal.key_id)?;
    let parent_expiry = parent["expires_at"].as_str().and_then(ids::parse_timestamp);
    let expires_at = match (asked, parent_expiry) {
        (Some(asked), Some(parent)) => Some(asked.min(parent)),
        (asked, parent) => asked.or(parent),
    }
    .map(ids::timestamp);
    let (mut key, secret) = insert_key(
        &ctx.store,
        input.required_str("name")?,
        &requested,
        Some(&ctx.principal.key_id),
        expires_at.as_deref(),
        None,
    )?;
    key["key"] = json!(secret);
    created(key)
}

/// Sets `revoked_at` on the key and on every live key minted from it, down the chain; who
/// revoked each, when and why go to its private audit log. Only a key holding every scope of
/// the target may revoke it.
fn revoke_api_key(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    let id = input.required_str("key_id")?;
    let mut key = ctx.store.require(KIND, id)?;
    let lacking: Vec<String> = key["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|name| Scope::parse(name).is_some_and(|s| !ctx.principal.scopes.contains(s)))
        .map(String::from)
        .collect();
    if !lacking.is_empty() {
        return Err(ApiError::insufficient_scope(
            lacking.clone(),
            format!(
                "a key cannot revoke a key holding scopes it does not hold itself: {}",
                lacking.join(", ")
            ),
        ));
    }
    if !key["revoked_at"].is_null() {
        return Err(ApiError::conflict("this API key is already revoked"));
    }
    let at = ids::now_string();
    let reason = input.str("reason");
    key["revoked_at"] = json!(at);
    ctx.store.update(KIND, &key)?;
    audit(
        ctx,
        id,
        json!({"at": at, "action": "revoked", "actor": ctx.principal.key_id, "reason": reason}),
    )?;
    // Then its descendants, breadth first (ids are unique, so the walk ends).
    let mut parents = vec![id.to_string()];
    while let Some(parent) = parents.pop() {
        let children = ctx.store.all_matching(
            KIND,
            &[
                Filter::field("created_by_key_id", json!(parent)),
                Filter::field("revoked_at", Value::Null),
            ],
        )?;
        for mut child in children {
            let child_id = child["id"].as_str().unwrap_or_default().to_string();
            child["revoked_at"] = json!(at);
            ctx.store.update(KIND, &child)?;
            audit(
                ctx,
                &child_id,
                json!({
                    "at": at, "action": "revoked_with_parent", "parent": parent,
                    "actor": ctx.principal.key_id, "reason": reason,
                }),
            )?;
            parents.push(child_id);
        }
    }
    ok(key)
}

/// Appends `entry` to key `id`'s private audit log.
fn audit(ctx: &Ctx, id: &str, entry: Value) -> Result<(), ApiError> {
    let mut private = ctx.store.private(KIND, id)?;
    match private["audit"].as_array_mut() {
        Some(log) => log.push(entry),
        None => private["audit"] = json!([entry]),
    }
    ctx.store.set_private(KIND, id, &private)
}

/// Stores a new key and returns its API representation and its secret (shown once).
pub fn insert_key(
    store: &Store,
    name: &str,
    scopes: &[&str],
    created_by: Option<&str>,
    expires_at: Option<&str>,
    fixed_secret: Option<&str>,
) -> Result<(Value, String), ApiError> {
    let secret = fixed_secret
        .map(String::from)
        .unwrap_or_else(|| format!("tak_{}", ids::random_base62(40)));
    let id = ids::new_id("key_");
    let mut ordered: Vec<&str> = Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .filter(|s| scopes.contains(s))
        .collect();
    ordered.dedup();
    let key = json!({
        "id": id, "name": name, "scopes": ordered, "prefix": &secret[..12],
        "created_at": ids::now_string(), "created_by_key_id": created_by,
        "last_used_at": null, "expires_at": expires_at, "revoked_at": null,
    });
    store.insert(KIND, &key)?;
    store.tx().execute(
        "INSERT INTO api_keys (id, tenant_id, secret_sha256) VALUES (?1, ?2, ?3)",
        params![id, store.tenant_id(), ids::sha256_hex(secret.as_bytes())],
    )?;
    Ok((key, secret))
}

/// Brings keys minted before the lineage rules under them, at every start (idempotent; keys
/// are few): a key whose expiry is later than an ancestor's (or absent while an ancestor's is
/// set) gets the earliest, and a live key with a revoked ancestor is revoked (at that
/// ancestor's time, noted in its audit log). Returns how many keys changed.
pub fn enforce_lineage(tx: &Transaction) -> Result<usize, ApiError> {
    let mut statement =
        tx.prepare("SELECT tenant_id, body FROM objects WHERE kind = ?1 ORDER BY seq")?;
    let rows = statement.query_map(params![KIND], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut keys = std::collections::HashMap::new();
    for row in rows {
        let (tenant_id, body) = row?;
        let key: Value = serde_json::from_str(&body).map_err(ApiError::internal)?;
        let id = key["id"].as_str().unwrap_or_default().to_string();
        keys.insert((tenant_id, id), key);
    }
    let mut changed = 0;
    for ((tenant_id, id), key) in &keys {
        let mut expiry = key["expires_at"].as_str().and_then(ids::parse_timestamp);
        let mut revoked_by: Option<(String, Value)> = None;
        let mut parent = key["created_by_key_id"].as_str();
        // Ids are unique and a key is minted after its parent, so the walk ends; the bound
        // only guards against a hand-edited database.
        for _ in 0..keys.len() {
            let Some(ancestor) = parent.and_then(|p| keys.get(&(tenant_id.clone(), p.to_string())))
            else {
                break;
            };
            if let Some(at) = ancestor["expires_at"]
                .as_str()
                .and_then(ids::parse_timestamp)
            {
                expiry = Some(expiry.map_or(at, |own| own.min(at)));
            }
            if revoked_by.is_none() && !ancestor["revoked_at"].is_null() {
                revoked_by = Some((
                    ancestor["id"].as_str().unwrap_or_default().to_string(),
                    ancestor["revoked_at"].clone(),
                ));
            }
            parent = ancestor["created_by_key_id"].as_str();
        }
        let mut fixed = key.clone();
        let capped = expiry.map(ids::timestamp);
        if fixed["expires_at"].as_str().and_then(ids::parse_timestamp) != expiry {
            fixed["expires_at"] = json!(capped);
        }
        let revoke = fixed["revoked_at"].is_null() && revoked_by.is_some();
        if let (true, Some((_, at))) = (revoke, &revoked_by) {
            fixed["revoked_at"] = at.clone();
        }
        if &fixed == key {
            continue;
        }
        let store = Store::new(tx, tenant_id);
        store.update(KIND, &fixed)?;
        if let (true, Some((ancestor, at))) = (revoke, revoked_by) {
            let mut private = store.private(KIND, id)?;
            let entry = json!({"at": at, "action": "revoked_with_parent", "parent": ancestor, "actor": null, "reason": "an ancestor key was revoked"});
            match private["audit"].as_array_mut() {
                Some(log) => log.push(entry),
                None => private["audit"] = json!([entry]),
            }
            store.set_private(KIND, id, &private)?;
        }
        changed += 1;
    }
    Ok(changed)
}

/// A new tenant with an admin key holding every scope. Returns (tenant id, admin secret).
pub fn create_tenant(
    tx: &Transaction,
    name: &str,
    admin_secret: Option<&str>,
) -> Result<(String, String), ApiError> {
    let tenant_id = ids::new_id("ten_");
    tx.execute(
        "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
        params![tenant_id, name, ids::now_string()],
    )?;
    let store = Store::new(tx, &tenant_id);
    let all: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let (_, secret) = insert_key(&store, "Admin key", &all, None, None, admin_secret)?;
    debug_assert!(ScopeSet::from_names(all.iter().copied()) == ScopeSet::all());
    Ok((tenant_id, secret))
}

/// Whether a secret already belongs to some key (so a fixed admin key is not inserted twice).
pub fn secret_exists(tx: &Transaction, secret: &str) -> Result<bool, ApiError> {
    let count: i64 = tx.query_row(
        "SELECT COUNT(*) FROM api_keys WHERE secret_sha256 = ?1",
        params![ids::sha256_hex(secret.as_bytes())],
        |row| row.get(0),
    )?;
    Ok(count > 0)
}

/// A fixed secret must look like one the API would mint: `tak_` and 40 letters or digits.
pub fn check_secret_format(secret: &str) -> Result<(), ApiError> {
    let rest = secret.strip_prefix("tak_").unwrap_or("");
    if rest.len() == 40 && rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "an admin key must be `tak_` followed by 40 letters or digits",
        ))
    }
}

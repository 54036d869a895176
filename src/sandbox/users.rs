//! Users: invitations, roles, deactivation and reactivation, with `user.invited` and
//! `user.deactivated` events; also `page_matching`, the list helper for filters that are not
//! plain equality (substring search, array membership), shared with webhooks.
//!
//! Invariant: a tenant never loses its last active admin to a role change or a deactivation
//! (422), so someone can always manage users and billing. `sessions_count` and `minutes_used` are
//! derived from the tenant's sessions at read time.

use crate::generated::api::Operation;
use crate::sandbox::db::{Page, Store, decode_cursor, encode_cursor};
use crate::sandbox::error::ApiError;
use crate::sandbox::request::{Input, Reply, created, ok};
use crate::sandbox::{Ctx, account, ids, not_served, oauth};
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};
use std::collections::HashMap;

const KIND: &str = "user";

pub fn call(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    match ctx.operation {
        Operation::ListUsers => list_users(&ctx.store, input),
        Operation::GetUser => {
            let user = ctx.store.require(KIND, input.required_str("user_id")?)?;
            ok(with_usage(&ctx.store, vec![user])?.remove(0))
        }
        Operation::InviteUser => invite_user(&ctx.store, input),
        Operation::UpdateUserRole => update_role(&ctx.store, input),
        Operation::DeactivateUser => deactivate(&ctx.store, input),
        Operation::ReactivateUser => reactivate(&ctx.store, input),
        _ => Err(not_served(ctx)),
    }
}

fn list_users(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let role = input.str("role");
    let status = input.str("status");
    let q = input.str("q").map(str::to_lowercase);
    let page = page_matching(store, KIND, input.limit(), input.cursor(), |user| {
        let contains = |field: &str, q: &str| {
            user[field]
                .as_str()
                .is_some_and(|s| s.to_lowercase().contains(q))
        };
        role.is_none_or(|r| user["role"] == r)
            && status.is_none_or(|s| user["status"] == s)
            && q.as_deref()
                .is_none_or(|q| contains("name", q) || contains("email", q))
    })?;
    let data = with_usage(store, page.data)?;
    ok(Page {
        data,
        next_cursor: page.next_cursor,
    }
    .into_json())
}

fn invite_user(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let email = input.required_str("email")?.trim();
    let settings = account::settings(store)?;
    let domain = email.rsplit('@').next().unwrap_or("").to_lowercase();
    let allowed = settings["allowed_email_domains"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !allowed.is_empty() && !allowed.iter().any(|d| d.as_str() == Some(domain.as_str())) {
        return Err(ApiError::invalid_field(
            "email",
            format!("the account only allows invitations to {}", join(&allowed)),
        ));
    }
    if let Some(existing) = find_by_email(store, email)? {
        let hint = if existing["status"] == "deactivated" {
            "; use reactivate_user to restore them"
        } else {
            ""
        };
        return Err(ApiError::conflict(format!(
            "{email} already belongs to user {}{hint}",
            existing["id"].as_str().unwrap_or("")
        )));
    }
    let role = input
        .str("role")
        .or(settings["default_user_role"].as_str())
        .unwrap_or("trainee");
    let now = ids::now_string();
    let user = json!({
        "id": ids::new_id("usr_"), "email": email, "name": input.str("name").unwrap_or(""),
        "role": role, "status": "invited", "invited_at": now, "activated_at": null,
        "deactivated_at": null, "last_active_at": null, "sessions_count": 0, "minutes_used": 0,
        "created_at": now, "updated_at": now,
    });
    store.insert(KIND, &user)?;
    store.emit("user.invited", &user)?;
    created(user)
}

fn update_role(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let mut user = store.require(KIND, input.required_str("user_id")?)?;
    let role = input.required_str("role")?;
    if role != "admin" && is_last_active_admin(store, &user)? {
        return Err(ApiError::unprocessable(
            "this is the tenant's last active admin; promote another user to admin first",
        ));
    }
    if user["role"] != role {
        user["role"] = json!(role);
        user["updated_at"] = json!(ids::now_string());
        store.update(KIND, &user)?;
        let id = user["id"].as_str().unwrap_or_default();
        oauth::revoke_grants_beyond(store.tx(), store.tenant_id(), id, Some(role))?;
    }
    ok(with_usage(store, vec![user])?.remove(0))
}

fn deactivate(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let id = input.required_str("user_id")?;
    let mut user = store.require(KIND, id)?;
    if user["status"] == "deactivated" {
        return Err(ApiError::conflict(format!(
            "user {id} is already deactivated"
        )));
    }
    if is_last_active_admin(store, &user)? {
        return Err(ApiError::unprocessable(
            "this is the tenant's last active admin; promote another user to admin first",
        ));
    }
    let now = ids::now_string();
    user["status"] = json!("deactivated");
    user["deactivated_at"] = json!(now);
    user["updated_at"] = json!(now);
    store.update(KIND, &user)?;
    oauth::revoke_grants_beyond(store.tx(), store.tenant_id(), id, None)?;
    audit(store, id, "deactivated", input.str("reason"), &now)?;
    let user = with_usage(store, vec![user])?.remove(0);
    store.emit("user.deactivated", &user)?;
    ok(user)
}

fn reactivate(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    let id = input.required_str("user_id")?;
    let mut user = store.require(KIND, id)?;
    if user["status"] != "deactivated" {
        return Err(ApiError::conflict(format!(
            "user {id} is not deactivated (status {})",
            user["status"].as_str().unwrap_or("unknown")
        )));
    }
    let now = ids::now_string();
    // Someone who never accepted the invitation gets a fresh one instead of an account.
    if user["activated_at"].is_null() {
        user["status"] = json!("invited");
        user["invited_at"] = json!(now);
    } else {
        user["status"] = json!("active");
    }
    user["deactivated_at"] = Value::Null;
    user["updated_at"] = json!(now);
    store.update(KIND, &user)?;
    audit(store, id, "reactivated", input.str("note"), &now)?;
    ok(with_usage(store, vec![user])?.remove(0))
}

/// Whether `user` is an active admin and no other active admin exists.
fn is_last_active_admin(store: &Store, user: &Value) -> Result<bool, ApiError> {
    if user["role"] != "admin" || user["status"] != "active" {
        return Ok(false);
    }
    let others: i64 = store.tx().query_row(
        "SELECT COUNT(*) FROM objects WHERE tenant_id = ?1 AND kind = ?2 AND id != ?3
           AND json_extract(body, '$.role') = 'admin' AND json_extract(body, '$.status') = 'active'",
        params![store.tenant_id(), KIND, user["id"].as_str().unwrap_or("")],
        |row| row.get(0),
    )?;
    Ok(others == 0)
}

fn find_by_email(store: &Store, email: &str) -> Result<Option<Value>, ApiError> {
    let text: Option<String> = store
        .tx()
        .query_row(
            "SELECT body FROM objects WHERE tenant_id = ?1 AND kind = ?2
               AND lower(json_extract(body, '$.email')) = lower(?3) LIMIT 1",
            params![store.tenant_id(), KIND, email],
            |row| row.get(0),
        )
        .optional()?;
    text.map(|t| serde_json::from_str(&t).map_err(ApiError::internal))
        .transpose()
}

/// Keeps the reason or note of a lifecycle change in the user's private audit trail.
fn audit(
    store: &Store,
    id: &str,
    action: &str,
    text: Option<&str>,
    at: &str,
) -> Result<(), ApiError> {
    let mut private = store.private(KIND, id)?;
    let entry = json!({"action": action, "text": text, "at": at});
    match private["audit"].as_array_mut() {
        Some(trail) => trail.push(entry),
        None => private["audit"] = json!([entry]),
    }
    store.set_private(KIND, id, &private)
}

/// Fills `sessions_count` (completed sessions) and `minutes_used` (minutes billed for all of the
/// user's sessions) from the tenant's sessions.
fn with_usage(store: &Store, mut users: Vec<Value>) -> Result<Vec<Value>, ApiError> {
    let mut statement = store.tx().prepare_cached(
        "SELECT json_extract(body, '$.user_id'),
                SUM(json_extract(body, '$.status') = 'completed'),
                COALESCE(SUM(json_extract(body, '$.minutes_used')), 0)
           FROM objects WHERE tenant_id = ?1 AND kind = 'session' GROUP BY 1",
    )?;
    let rows = statement.query_map(params![store.tenant_id()], |row| {
        Ok((
            row.get::<_, Option<String>>(0)?,
            row.get::<_, Option<i64>>(1)?,
            row.get::<_, Option<i64>>(2)?,
        ))
    })?;
    let mut usage = HashMap::new();
    for row in rows {
        let (user, completed, minutes) = row?;
        if let Some(user) = user {
            usage.insert(user, (completed.unwrap_or(0), minutes.unwrap_or(0)));
        }
    }
    for user in &mut users {
        let (completed, minutes) = user["id"]
            .as_str()
            .and_then(|id| usage.get(id))
            .copied()
            .unwrap_or((0, 0));
        user["sessions_count"] = json!(completed.max(0));
        user["minutes_used"] = json!(minutes.max(0));
    }
    Ok(users)
}

fn join(values: &[Value]) -> String {
    values
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One page of `kind`, newest first, keeping only objects for which `keep` holds: for filters
/// that `Filter`'s equality cannot express. Same cursors as `Store::list`.
pub(super) fn page_matching(
    store: &Store,
    kind: &str,
    limit: usize,
    cursor: Option<&str>,
    keep: impl Fn(&Value) -> bool,
) -> Result<Page, ApiError> {
    let before = cursor.map(decode_cursor).transpose()?.unwrap_or(i64::MAX);
    let mut statement = store.tx().prepare_cached(
        "SELECT seq, body FROM objects WHERE tenant_id = ?1 AND kind = ?2 AND seq < ?3 ORDER BY seq DESC",
    )?;
    let rows = statement.query_map(params![store.tenant_id(), kind, before], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut kept: Vec<(i64, Value)> = Vec::new();
    for row in rows {
        let (seq, body) = row?;
        let body: Value = serde_json::from_str(&body).map_err(ApiError::internal)?;
        if keep(&body) {
            kept.push((seq, body));
            if kept.len() > limit {
                break;
            }
        }
    }
    let next_cursor = if kept.len() > limit {
        kept.truncate(limit);
        kept.last().map(|(seq, _)| encode_cursor(*seq))
    } else {
        None
    };
    Ok(Page {
        data: kept.into_iter().map(|(_, body)| body).collect(),
        next_cursor,
    })
}

/// Demo people of every role: mostly active, one still invited, one deactivated.
pub fn seed_demo(store: &Store) -> Result<(), ApiError> {
    // The people work at the tenant's own (example.com) domain, as its contact address does.
    let contact = store
        .get("account", store.tenant_id())?
        .and_then(|a| a["contact_email"].as_str().map(String::from))
        .unwrap_or_default();
    let domain = contact
        .rsplit_once('@')
        .map_or("example.com", |(_, domain)| domain);
    // (name, local part, role, status, days since created, days since last active)
    let mut people = [
        (
            "Maria Keller",
            "maria.keller",
            "admin",
            "active",
            180,
            Some(0),
        ),
        (
            "David Okafor",
            "david.okafor",
            "admin",
            "active",
            170,
            Some(2),
        ),
        (
            "Priya Raman",
            "priya.raman",
            "manager",
            "active",
            150,
            Some(1),
        ),
        (
            "Tomás García",
            "tomas.garcia",
            "trainer",
            "active",
            120,
            Some(0),
        ),
        (
            "Hannah Schmidt",
            "hannah.schmidt",
            "trainer",
            "active",
            90,
            Some(5),
        ),
        (
            "Kenji Watanabe",
            "kenji.watanabe",
            "trainee",
            "active",
            60,
            Some(1),
        ),
        (
            "Olivia Brown",
            "olivia.brown",
            "trainee",
            "active",
            45,
            Some(3),
        ),
        ("Lukas Novak", "lukas.novak", "trainee", "invited", 4, None),
        (
            "Sarah Mitchell",
            "sarah.mitchell",
            "trainee",
            "deactivated",
            200,
            Some(40),
        ),
    ];
    // Inserted oldest first, so that list order (insertion) agrees with `created_at`.
    people.sort_by_key(|person| std::cmp::Reverse(person.4));
    let now = ids::now();
    for (name, local, role, status, created_days, active_days) in people {
        let created = now - chrono::Duration::days(created_days);
        let at = |days: i64| json!(ids::timestamp(now - chrono::Duration::days(days)));
        let activated =
            (status != "invited").then(|| ids::timestamp(created + chrono::Duration::days(1)));
        let deactivated =
            (status == "deactivated").then(|| ids::timestamp(now - chrono::Duration::days(30)));
        let updated = deactivated
            .clone()
            .or(activated.clone())
            .unwrap_or(ids::timestamp(created));
        store.insert(
            KIND,
            &json!({
                "id": ids::new_id("usr_"), "email": format!("{local}@{domain}"), "name": name,
                "role": role, "status": status, "invited_at": ids::timestamp(created),
                "activated_at": activated, "deactivated_at": deactivated,
                "last_active_at": active_days.map(at), "sessions_count": 0, "minutes_used": 0,
                "created_at": ids::timestamp(created), "updated_at": updated,
            }),
        )?;
    }
    Ok(())
}

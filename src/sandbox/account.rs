//! The tenant account and its settings: `get_account`, `update_account`, `get_account_settings`,
//! and `init_tenant`, which gives every new tenant (demo or not) its `account` and
//! `account_settings` objects.
//!
//! The plan summary and the user/device counts are derived at read time from the subscription,
//! users and devices, so the account can never disagree with them; the stored copy holds the
//! values as of its last write only so that the stored object is a complete Account.

use crate::generated::api::Operation;
use crate::sandbox::db::Store;
use crate::sandbox::error::ApiError;
use crate::sandbox::request::{Input, Reply, ok};
use crate::sandbox::{Ctx, billing, ids, not_served};
use rusqlite::params;
use serde_json::{Value, json};

const KIND: &str = "account";
const SETTINGS: &str = "account_settings";

/// The default languages TrainAR's apps and emails are translated into.
const LOCALES: &[&str] = &[
    "en", "en-US", "en-GB", "en-AU", "en-CA", "en-IE", "en-IN", "en-NZ", "en-ZA", "de", "de-DE",
    "de-AT", "de-CH", "fr", "fr-FR", "fr-BE", "fr-CA", "fr-CH", "es", "es-ES", "es-MX", "it",
    "it-IT", "nl", "nl-NL", "nl-BE", "pl", "pl-PL", "pt", "pt-BR", "pt-PT", "cs", "cs-CZ", "sv",
    "sv-SE", "da", "da-DK", "fi", "fi-FI", "nb", "nb-NO", "ja", "ja-JP", "ko", "ko-KR", "zh",
    "zh-CN", "zh-TW", "tr", "tr-TR",
];

/// The IANA time zones the dashboard offers (the pattern alone would accept invented ones).
const TIMEZONES: &[&str] = &[
    "UTC",
    "Africa/Cairo",
    "Africa/Johannesburg",
    "Africa/Lagos",
    "Africa/Nairobi",
    "America/Anchorage",
    "America/Argentina/Buenos_Aires",
    "America/Bogota",
    "America/Chicago",
    "America/Denver",
    "America/Halifax",
    "America/Lima",
    "America/Los_Angeles",
    "America/Mexico_City",
    "America/New_York",
    "America/Phoenix",
    "America/Santiago",
    "America/Sao_Paulo",
    "America/Toronto",
    "America/Vancouver",
    "Asia/Bangkok",
    "Asia/Dhaka",
    "Asia/Dubai",
    "Asia/Hong_Kong",
    "Asia/Jakarta",
    "Asia/Jerusalem",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Manila",
    "Asia/Riyadh",
    "Asia/Seoul",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Asia/Taipei",
    "Asia/Tokyo",
    "Atlantic/Reykjavik",
    "Australia/Adelaide",
    "Australia/Brisbane",
    "Australia/Melbourne",
    "Australia/Perth",
    "Australia/Sydney",
    "Europe/Amsterdam",
    "Europe/Athens",
    "Europe/Berlin",
    "Europe/Brussels",
    "Europe/Bucharest",
    "Europe/Budapest",
    "Europe/Copenhagen",
    "Europe/Dublin",
    "Europe/Helsinki",
    "Europe/Istanbul",
    "Europe/Lisbon",
    "Europe/London",
    "Europe/Madrid",
    "Europe/Oslo",
    "Europe/Paris",
    "Europe/Prague",
    "Europe/Rome",
    "Europe/Stockholm",
    "Europe/Vienna",
    "Europe/Warsaw",
    "Europe/Zurich",
    "Pacific/Auckland",
    "Pacific/Honolulu",
];

pub fn call(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    match ctx.operation {
        Operation::GetAccount => ok(current(&ctx.store)?),
        Operation::UpdateAccount => update_account(&ctx.store, input),
        Operation::GetAccountSettings => {
            let mut settings = ctx.store.require(SETTINGS, ctx.store.tenant_id())?;
            // The id only addresses the stored object; AccountSettings has none.
            if let Some(fields) = settings.as_object_mut() {
                fields.remove("id");
            }
            ok(settings)
        }
        _ => Err(not_served(ctx)),
    }
}

/// The account with its derived fields recomputed from the data they summarise.
fn current(store: &Store) -> Result<Value, ApiError> {
    let mut account = store.require(KIND, store.tenant_id())?;
    account["plan"] = plan_summary(store)?;
    account["user_count"] = json!(count(store, "user", "status", &["invited", "active"])?);
    // An offline device is still paired to the tenant, only not seen lately.
    account["device_count"] = json!(count(store, "device", "status", &["paired", "offline"])?);
    Ok(account)
}

const UPDATABLE: [&str; 4] = ["name", "locale", "timezone", "contact_email"];

fn update_account(store: &Store, input: &Input) -> Result<Reply, ApiError> {
    // The flat request schema cannot carry AccountUpdate's `minProperties: 1`.
    if input.given(&UPDATABLE).next().is_none() {
        return Err(ApiError::bad_request(format!(
            "give at least one of {}",
            UPDATABLE.join(", ")
        )));
    }
    if let Some(locale) = input.str("locale")
        && !LOCALES.contains(&locale)
    {
        return Err(ApiError::unprocessable(format!(
            "TrainAR does not support the locale {locale}; supported: {}",
            LOCALES.join(", ")
        )));
    }
    if let Some(timezone) = input.str("timezone")
        && !TIMEZONES.contains(&timezone)
    {
        return Err(ApiError::unprocessable(format!(
            "TrainAR does not support the time zone {timezone}; use a major IANA zone such as Europe/Berlin, America/New_York or UTC"
        )));
    }
    let mut account = current(store)?;
    for (field, value) in input.given(&UPDATABLE) {
        account[field] = value.clone();
    }
    account["updated_at"] = json!(ids::now_string());
    store.update(KIND, &account)?;
    if let Some(name) = input.str("name") {
        // Key introspection reports the tenant's name from the tenants table.
        store.tx().execute(
            "UPDATE tenants SET name = ?2 WHERE id = ?1",
            params![store.tenant_id(), name],
        )?;
    }
    ok(account)
}

/// The current subscription's plan, status and seats (rolled forward exactly as
/// `get_subscription` sees it); zeros and nulls without one.
fn plan_summary(store: &Store) -> Result<Value, ApiError> {
    let summary = match billing::current(store)? {
        Some(subscription) => json!({
            "plan_id": subscription["plan"]["id"],
            "status": subscription["status"],
            "seats": subscription["seats"].as_i64().unwrap_or(0).max(0),
            "included_minutes": subscription["plan"]["included_minutes"].as_i64().unwrap_or(0).max(0),
        }),
        None => json!({"plan_id": null, "status": null, "seats": 0, "included_minutes": 0}),
    };
    Ok(summary)
}

/// How many objects of `kind` have `field` equal to one of `values`.
fn count(store: &Store, kind: &str, field: &str, values: &[&str]) -> Result<i64, ApiError> {
    let path = format!("$.{field}");
    let mut total = 0;
    for value in values {
        let n: i64 = store.tx().query_row(
            "SELECT COUNT(*) FROM objects WHERE tenant_id = ?1 AND kind = ?2 AND json_extract(body, ?3) = ?4",
            params![store.tenant_id(), kind, path, value],
            |row| row.get(0),
        )?;
        total += n;
    }
    Ok(total)
}

/// Creates a new tenant's account (id = the tenant id, a slug unique across tenants) and its
/// default settings.
pub fn init_tenant(store: &Store, name: &str) -> Result<(), ApiError> {
    let now = ids::now_string();
    let slug = unique_slug(store, &slugify(name, store.tenant_id()))?;
    let name: String = name.trim().chars().take(100).collect();
    let account = json!({
        "id": store.tenant_id(),
        "name": name,
        "slug": slug,
        "locale": "en",
        "timezone": "UTC",
        // A tenant created without a contact gets its admin mailbox at its own domain.
        "contact_email": format!("admin@{slug}.example.com"),
        "plan": {"plan_id": null, "status": null, "seats": 0, "included_minutes": 0},
        "user_count": 0,
        "device_count": 0,
        "created_at": now,
        "updated_at": now,
    });
    store.insert(KIND, &account)?;
    let settings = json!({
        "id": store.tenant_id(),
        "sso": {"enabled": false, "provider": null},
        "session_defaults": {"max_session_minutes": 60, "record_video": false},
        "data_retention_days": 365,
        "allowed_email_domains": [],
        "default_user_role": "trainee",
        "mfa_required": false,
        "webhook_signing_algorithm": "hmac_sha256",
        "ip_allowlist": [],
        "updated_at": now,
    });
    store.insert(SETTINGS, &settings)
}

/// The account's settings (for rules elsewhere, e.g. the default role of an invitation).
pub fn settings(store: &Store) -> Result<Value, ApiError> {
    store.require(SETTINGS, store.tenant_id())
}

/// `Acme Field Services` → `acme-field-services`; a name with too few ASCII letters or digits
/// falls back to one derived from the tenant id.
fn slugify(name: &str, tenant_id: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.chars().take(50).collect();
    let slug = slug.trim_end_matches('-');
    if slug.len() >= 2 {
        slug.to_string()
    } else {
        let suffix: String = tenant_id.trim_start_matches("ten_").to_ascii_lowercase();
        format!("tenant-{}", &suffix[..suffix.len().min(8)])
    }
}

/// Slugs appear in dashboard URLs, so they are unique across tenants: `-2`, `-3`, … on clashes.
fn unique_slug(store: &Store, base: &str) -> Result<String, ApiError> {
    let taken = |slug: &str| -> Result<bool, ApiError> {
        let n: i64 = store.tx().query_row(
            "SELECT COUNT(*) FROM objects WHERE kind = ?1 AND json_extract(body, '$.slug') = ?2",
            params![KIND, slug],
            |row| row.get(0),
        )?;
        Ok(n > 0)
    };
    let mut candidate = base.to_string();
    let mut n = 2;
    while taken(&candidate)? {
        candidate = format!("{base}-{n}");
        n += 1;
    }
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use super::slugify;

    #[test]
    fn slugs_are_url_safe_and_never_too_short() {
        assert_eq!(
            slugify("Acme Field Services", "ten_X"),
            "acme-field-services"
        );
        assert_eq!(slugify("  Über--Tech GmbH! ", "ten_X"), "ber-tech-gmbh");
        assert_eq!(slugify("Ω", "ten_AbCdEfGh12"), "tenant-abcdefgh");
    }
}

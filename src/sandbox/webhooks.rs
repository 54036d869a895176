//! Webhook endpoints (`list_webhooks`, `create_webhook`, `update_webhook`, `delete_webhook`) and
//! the delivery worker that POSTs signed events to them.
//!
//! The signing secret (`whsec_` + 32 base62) is returned once, by `create_webhook`; afterwards it
//! lives only in the endpoint's private side and the API shows `secret_prefix`.
//!
//! Delivery, in `deliver_forever`:
//! 1. Fan-out: every endpoint keeps, in its private side, `event_seq`, the last `events.seq` it
//!    has considered; it starts at the newest event when the endpoint is created, so an endpoint
//!    sees only later events. Each poll turns the endpoint's newer events of its subscribed types
//!    into `webhook_deliveries` rows and advances the cursor in the same transaction, so every
//!    event is fanned out exactly once, across restarts too. Events that occur while an endpoint
//!    is disabled are skipped, not queued.
//! 2. Sending: due deliveries of enabled endpoints are leased (their next attempt is pushed
//!    `LEASE_SECONDS` ahead) in one short transaction, POSTed without holding the database, and
//!    their outcome written in another. A crash mid-send only means a retry when the lease ends.
//!    A non-2xx answer or a transport error is retried after 1, 2, 4, 8 and 16 s; the sixth failed
//!    attempt gives up (`failed`). The endpoint's `delivery_stats` count failed attempts.
//!
//! Where deliveries may go is `egress`'s rule: checked on the URL's text when an endpoint is
//! created or its URL changed (422), and on the resolved addresses at every attempt (a refused
//! address is a failed attempt that sends nothing). Redirects are not followed.

use crate::generated::api::Operation;
use crate::sandbox::db::{Db, Store};
use crate::sandbox::error::{ApiError, FieldError};
use crate::sandbox::request::{Input, Reply, created, deleted, ok, page};
use crate::sandbox::{Ctx, egress, ids, not_served, users};
use rusqlite::{Transaction, params};
use serde_json::{Value, json};
use std::time::Duration;

const KIND: &str = "webhook";
/// The spec's limit of endpoints per tenant.
const MAX_ENDPOINTS: i64 = 20;
const MAX_ATTEMPTS: i64 = 6;
const POLL: Duration = Duration::from_millis(200);
/// How long a claimed delivery is reserved for its sender; far above the HTTP timeout.
const LEASE_SECONDS: i64 = 30;
const BATCH: usize = 50;
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

pub fn call(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    match ctx.operation {
        Operation::ListWebhooks => {
            let enabled = input.bool("enabled");
            let event = input.str("event");
            page(users::page_matching(
                &ctx.store,
                KIND,
                input.limit(),
                input.cursor(),
                |webhook| {
                    enabled.is_none_or(|e| webhook["enabled"] == e)
                        && event.is_none_or(|event| subscribes(webhook, event))
                },
            )?)
        }
        Operation::CreateWebhook => create_webhook(ctx, input),
        Operation::UpdateWebhook => {
            if let Some(url) = input.str("url") {
                check_url(ctx, url)?;
            }
            let mut webhook = ctx.store.require(KIND, input.required_str("webhook_id")?)?;
            for (field, value) in input.given(&["url", "events", "description", "enabled"]) {
                webhook[field] = value.clone();
            }
            if input.bool("enabled") == Some(true) {
                webhook["delivery_stats"]["consecutive_failures"] = json!(0);
            }
            webhook["updated_at"] = json!(ids::now_string());
            ctx.store.update(KIND, &webhook)?;
            ok(webhook)
        }
        Operation::DeleteWebhook => {
            let id = input.required_str("webhook_id")?;
            ctx.store.delete(KIND, id)?;
            ctx.store.tx().execute(
                "DELETE FROM webhook_deliveries WHERE tenant_id = ?1 AND webhook_id = ?2",
                params![ctx.store.tenant_id(), id],
            )?;
            deleted(id)
        }
        _ => Err(not_served(ctx)),
    }
}

fn subscribes(webhook: &Value, event: &str) -> bool {
    webhook["events"]
        .as_array()
        .is_some_and(|events| events.iter().any(|e| e == event))
}

/// 422 naming why, unless deliveries may go to `url` (`egress::check_url`).
fn check_url(ctx: &Ctx, url: &str) -> Result<(), ApiError> {
    egress::check_url(url, ctx.config.allow_private_webhooks)
        .map(|_| ())
        .map_err(|reason| {
            let mut error = ApiError::unprocessable(format!("url: {reason}"));
            error.details = vec![FieldError {
                field: "url".into(),
                message: reason,
            }];
            error
        })
}

fn create_webhook(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    let store = &ctx.store;
    check_url(ctx, input.required_str("url")?)?;
    let existing: i64 = store.tx().query_row(
        "SELECT COUNT(*) FROM objects WHERE tenant_id = ?1 AND kind = ?2",
        params![store.tenant_id(), KIND],
        |row| row.get(0),
    )?;
    if existing >= MAX_ENDPOINTS {
        return Err(ApiError::unprocessable(format!(
            "the tenant already has {MAX_ENDPOINTS} webhook endpoints; delete one first"
        )));
    }
    let (mut webhook, secret) = insert_webhook(
        store,
        input.required_str("url")?,
        input.get("events").cloned().unwrap_or_else(|| json!([])),
        input.str("description").unwrap_or(""),
        input.bool("enabled").unwrap_or(true),
    )?;
    webhook["secret"] = json!(secret);
    created(webhook)
}

/// Stores a new endpoint whose cursor starts at the newest event; returns it and its secret.
fn insert_webhook(
    store: &Store,
    url: &str,
    events: Value,
    description: &str,
    enabled: bool,
) -> Result<(Value, String), ApiError> {
    let secret = format!("whsec_{}", ids::random_base62(32));
    let now = ids::now_string();
    let webhook = json!({
        "id": ids::new_id("whk_"), "url": url, "events": events, "description": description,
        "enabled": enabled, "secret_prefix": &secret[..10],
        "delivery_stats": {"last_delivery_at": null, "last_status_code": null, "consecutive_failures": 0},
        "created_at": now, "updated_at": now,
    });
    let private = json!({"secret": secret, "event_seq": newest_event_seq(store.tx())?});
    store.insert_with_private(KIND, &webhook, &private)?;
    Ok((webhook, secret))
}

fn newest_event_seq(tx: &Transaction) -> Result<i64, ApiError> {
    Ok(
        tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
            row.get(0)
        })?,
    )
}

/// Demo endpoints, both paused: an enabled demo endpoint would send every demo event to whatever
/// happens to listen on a developer's machine. `update_webhook {enabled: true}` turns one on.
pub fn seed_demo(store: &Store) -> Result<(), ApiError> {
    insert_webhook(
        store,
        "http://localhost:8787/trainar/webhooks",
        json!([
            "task.created",
            "task.updated",
            "session.completed",
            "skill.executed"
        ]),
        "Local development receiver (enable it once something listens on :8787)",
        false,
    )?;
    insert_webhook(
        store,
        "https://ops.example.com/hooks/trainar/onboarding",
        json!([
            "user.invited",
            "user.deactivated",
            "device.paired",
            "device.unpaired"
        ]),
        "IT onboarding automation (paused during the helpdesk migration)",
        false,
    )?;
    Ok(())
}

/// One leased delivery, with everything needed to send it without the database.
struct Job {
    delivery_id: String,
    tenant_id: String,
    webhook_id: String,
    attempts: i64,
    url: String,
    secret: String,
    event_type: String,
    body: String,
}

/// The delivery worker: fans out new events and sends due deliveries, forever. Deliveries go
/// only where `egress` allows (`allow_private`: the operator's `--allow-private-webhooks`).
pub async fn deliver_forever(db: Db, allow_private: bool) {
    crate::install_tls_provider();
    let client = match reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(HTTP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        // The address checked is the address connected to: no proxy in between, and names
        // resolve through the egress rule.
        .no_proxy()
        .dns_resolver(std::sync::Arc::new(egress::Resolver { allow_private }))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "webhook delivery disabled: no HTTP client");
            return;
        }
    };
    // Owned here so that stopping the worker also stops its in-flight sends.
    let mut sending = tokio::task::JoinSet::new();
    // The newest event already fanned out; fan-out runs only when a newer one exists.
    let mut fanned_out = -1;
    // Fan-out and claiming are separate transactions, so that a failing fan-out (retried on the
    // next poll) does not hold back the deliveries already queued; each failure is logged once.
    let mut fan_out_failing = Failing::default();
    let mut claim_failing = Failing::default();
    loop {
        let fanned = db
            .transaction(move |tx| {
                let newest = newest_event_seq(tx)?;
                if newest > fanned_out {
                    fan_out(tx, newest)?;
                }
                Ok(newest)
            })
            .await;
        if let Some(newest) = fan_out_failing.check("webhook fan-out", fanned) {
            fanned_out = newest;
        }
        let claimed = db.transaction(claim_due).await;
        for job in claim_failing
            .check("claiming webhook deliveries", claimed)
            .unwrap_or_default()
        {
            sending.spawn(send(db.clone(), client.clone(), job, allow_private));
        }
        while sending.try_join_next().is_some() {}
        tokio::time::sleep(POLL).await;
    }
}

/// The last error of a step the worker repeats every poll, to log it once rather than every
/// poll while it persists.
#[derive(Default)]
struct Failing(Option<String>);

impl Failing {
    fn check<T>(&mut self, step: &str, result: Result<T, ApiError>) -> Option<T> {
        match result {
            Ok(value) => {
                if self.0.take().is_some() {
                    tracing::info!("{step} works again");
                }
                Some(value)
            }
            Err(error) => {
                if self.0.as_deref() != Some(error.message.as_str()) {
                    tracing::warn!(error = %error.message, "{step} failed; retrying");
                    self.0 = Some(error.message);
                }
                None
            }
        }
    }
}

/// Turns every endpoint's events up to `newest` into deliveries and advances its cursor.
fn fan_out(tx: &Transaction, newest: i64) -> Result<(), ApiError> {
    let mut statement = tx.prepare_cached(
        "SELECT o.tenant_id, o.id, o.body, o.private
           FROM tenants t JOIN objects o ON o.tenant_id = t.id AND o.kind = ?1
          WHERE COALESCE(json_extract(o.private, '$.event_seq'), -1) < ?2",
    )?;
    let rows = statement.query_map(params![KIND, newest], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
        ))
    })?;
    let mut behind = Vec::new();
    for row in rows {
        behind.push(row?);
    }
    for (tenant_id, id, body, private) in behind {
        let body: Value = serde_json::from_str(&body).map_err(ApiError::internal)?;
        let mut private: Value = serde_json::from_str(&private).map_err(ApiError::internal)?;
        // An endpoint without a cursor starts from now rather than replaying history.
        if let Some(cursor) = private["event_seq"].as_i64() {
            enqueue(tx, &tenant_id, &id, &body, cursor, newest)?;
        }
        private["event_seq"] = json!(newest);
        Store::new(tx, &tenant_id).set_private(KIND, &id, &private)?;
    }
    Ok(())
}

/// Queues a delivery of each subscribed event of the tenant in `(after, upto]`.
fn enqueue(
    tx: &Transaction,
    tenant_id: &str,
    webhook_id: &str,
    webhook: &Value,
    after: i64,
    upto: i64,
) -> Result<(), ApiError> {
    if webhook["enabled"] != true {
        return Ok(());
    }
    let mut statement = tx.prepare_cached(
        "SELECT id, type FROM events WHERE tenant_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
    )?;
    let rows = statement.query_map(params![tenant_id, after, upto], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let now = ids::now_string();
    for row in rows {
        let (event_id, event_type) = row?;
        if subscribes(webhook, &event_type) {
            tx.execute(
                "INSERT INTO webhook_deliveries (id, tenant_id, webhook_id, event_id, attempts, next_attempt_at, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, 'pending', ?5)",
                params![ids::new_id("whd_"), tenant_id, webhook_id, event_id, now],
            )?;
        }
    }
    Ok(())
}

/// Leases the due deliveries of enabled endpoints and returns them ready to send.
fn claim_due(tx: &Transaction) -> Result<Vec<Job>, ApiError> {
    let now = ids::now();
    let mut statement = tx.prepare_cached(
        "SELECT d.id, d.tenant_id, d.webhook_id, d.attempts, e.id, e.type, e.data, e.created_at,
                json_extract(o.body, '$.url'), json_extract(o.private, '$.secret')
           FROM webhook_deliveries d
           JOIN events e ON e.id = d.event_id AND e.tenant_id = d.tenant_id
           JOIN objects o ON o.tenant_id = d.tenant_id AND o.kind = 'webhook' AND o.id = d.webhook_id
          WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 AND json_extract(o.body, '$.enabled') = 1
          ORDER BY d.next_attempt_at LIMIT ?2",
    )?;
    let rows = statement.query_map(params![ids::timestamp(now), BATCH as i64], |row| {
        let data: String = row.get(6)?;
        let body = json!({
            "id": row.get::<_, String>(4)?,
            "type": row.get::<_, String>(5)?,
            "created_at": row.get::<_, String>(7)?,
            "data": serde_json::from_str::<Value>(&data).unwrap_or(Value::Null),
        });
        Ok(Job {
            delivery_id: row.get(0)?,
            tenant_id: row.get(1)?,
            webhook_id: row.get(2)?,
            attempts: row.get(3)?,
            event_type: row.get(5)?,
            body: body.to_string(),
            url: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
            secret: row.get::<_, Option<String>>(9)?.unwrap_or_default(),
        })
    })?;
    let mut jobs = Vec::new();
    for row in rows {
        jobs.push(row?);
    }
    let lease = ids::timestamp(now + chrono::Duration::seconds(LEASE_SECONDS));
    for job in &jobs {
        tx.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = ?2 WHERE id = ?1",
            params![job.delivery_id, lease],
        )?;
    }
    Ok(jobs)
}

/// `<hex HMAC-SHA256(secret, "<t>.<body>")>`, the `v1` of `TrainAR-Signature`.
fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes keys of any length: the error arm is unreachable, and signs nothing.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("{timestamp}.{body}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// POSTs one delivery and records its outcome. An IP literal is checked here (names are checked
/// by the client's resolver); a refused address is a failed attempt that sends nothing.
async fn send(db: Db, client: reqwest::Client, job: Job, allow_private: bool) {
    let refused = match egress::check_url(&job.url, allow_private) {
        Ok(_) => None,
        Err(reason) => Some(format!("not sent: the URL {reason}")),
    };
    let (status, error) = match refused {
        Some(reason) => (None, Some(reason)),
        None => post(&client, &job).await,
    };
    let delivery_id = job.delivery_id.clone();
    if let Err(error) = db
        .transaction(move |tx| record(tx, &job, status, error))
        .await
    {
        // The lease runs out and the delivery is sent again.
        tracing::warn!(delivery = %delivery_id, error = %error.message, "cannot record a webhook attempt");
    }
}

/// The attempt itself: the status the endpoint answered, and what went wrong if anything did.
async fn post(client: &reqwest::Client, job: &Job) -> (Option<u16>, Option<String>) {
    let t = chrono::Utc::now().timestamp();
    let outcome = client
        .post(&job.url)
        .header("Content-Type", "application/json")
        .header(
            "TrainAR-Signature",
            format!("t={t},v1={}", signature(&job.secret, t, &job.body)),
        )
        .header("TrainAR-Event", &job.event_type)
        .header("TrainAR-Delivery", &job.delivery_id)
        .body(job.body.clone())
        .send()
        .await;
    // Nothing of the answer is read: its status is all an attempt records.
    match outcome {
        Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
        Ok(response) if response.status().is_redirection() => (
            Some(response.status().as_u16()),
            Some(format!(
                "the endpoint answered HTTP {} (a redirect); redirects are not followed: give the webhook its final URL",
                response.status()
            )),
        ),
        Ok(response) => (
            Some(response.status().as_u16()),
            Some(format!("the endpoint answered HTTP {}", response.status())),
        ),
        // Without the URL: it may carry credentials. With the source: the resolver's refusal.
        Err(error) => (None, Some(error_chain(&error.without_url()))),
    }
}

/// An error and its sources, `: `-joined (reqwest's own text hides a resolver's reason).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Writes one attempt's outcome to the delivery and to its endpoint's `delivery_stats`.
fn record(
    tx: &Transaction,
    job: &Job,
    status: Option<u16>,
    error: Option<String>,
) -> Result<(), ApiError> {
    let now = ids::now();
    let at = ids::timestamp(now);
    let attempts = job.attempts + 1;
    let code = status.map(i64::from);
    if error.is_none() {
        tx.execute(
            "UPDATE webhook_deliveries SET attempts = ?2, status = 'delivered', last_status_code = ?3, last_error = NULL, delivered_at = ?4 WHERE id = ?1",
            params![job.delivery_id, attempts, code, at],
        )?;
    } else {
        let (state, next) = if attempts >= MAX_ATTEMPTS {
            ("failed", at.clone())
        } else {
            (
                "pending",
                ids::timestamp(now + chrono::Duration::seconds(1 << (attempts - 1))),
            )
        };
        tx.execute(
            "UPDATE webhook_deliveries SET attempts = ?2, status = ?3, last_status_code = ?4, last_error = ?5, next_attempt_at = ?6 WHERE id = ?1",
            params![job.delivery_id, attempts, state, code, error, next],
        )?;
    }
    let store = Store::new(tx, &job.tenant_id);
    // The endpoint may have been deleted while the request was in flight.
    let Some(mut webhook) = store.get(KIND, &job.webhook_id)? else {
        return Ok(());
    };
    let failures = webhook["delivery_stats"]["consecutive_failures"]
        .as_i64()
        .unwrap_or(0);
    webhook["delivery_stats"] = json!({
        "last_delivery_at": at,
        "last_status_code": code.filter(|c| (100..=599).contains(c)),
        "consecutive_failures": if error.is_none() { 0 } else { failures + 1 },
    });
    store.update(KIND, &webhook)
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn signatures_are_hex_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(b"whsec_test", b'1700000000.{"a":1}', sha256).
        assert_eq!(
            signature("whsec_test", 1_700_000_000, r#"{"a":1}"#),
            "38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
        assert_ne!(
            signature("whsec_test", 1, "x"),
            signature("whsec_test", 2, "x")
        );
    }
}

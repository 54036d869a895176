//! Integrations: the provider catalogue, the tenant's connections (kind `integration`, id = the
//! provider slug), connection flows with signed `state`, disconnection, and sync runs (kind
//! `sync_run`), plus the OAuth callback that completes a flow.
//!
//! Completing a flow offline: `get_integration_connect_url` answers what production would, a URL
//! on `https://connect.trainar.ai/oauth/<provider>/authorize?state=…&redirect_uri=…`. That host is
//! not reachable from the sandbox, so whoever plays the provider (a test, a developer with curl)
//! completes the flow by calling `GET {sandbox}/oauth/callback/<provider>?state=<state>&code=<any>`
//! themselves, as the provider's redirect would. Only the `state` matters: it names the tenant and
//! the flow, is signed with HMAC-SHA256 under a random per-connection secret kept on the private
//! side of the record, expires after 15 minutes and is single-use. A tampered, expired, reused or
//! superseded state is a 400 and changes nothing.
//!
//! Syncs run synchronously: `trigger_sync` returns the run already finished (`succeeded`), with
//! `records_synced` counted from the tenant's stored data in the provider's category (users for an
//! HRIS, tasks for ticketing, completed sessions for an LMS, knowledge items for storage,
//! notifications for chat), since the last sync unless `full` is true.

use crate::generated::api::Operation;
use crate::sandbox::db::{Store, decode_cursor, encode_cursor};
use crate::sandbox::error::ApiError;
use crate::sandbox::reports::time;
use crate::sandbox::request::{Input, Reply, accepted, created, ok};
use crate::sandbox::{Ctx, Sandbox, ids, not_served};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const KIND: &str = "integration";
const SYNC_KIND: &str = "sync_run";

/// Where a provider's redirect lands: not part of the Tenant API (see the module doc).
pub const OAUTH_CALLBACK_PATH: &str = "/oauth/callback/{integration_id}";

/// How long a connection URL and its state stay valid.
const FLOW_MINUTES: i64 = 15;
const DEFAULT_REDIRECT: &str = "https://app.trainar.ai/settings/integrations";

/// One provider of the catalogue.
struct Provider {
    id: &'static str,
    name: &'static str,
    category: &'static str,
    auth_type: &'static str,
    description: &'static str,
    capabilities: &'static [&'static str],
    /// The provider-side account, `{}` standing for the tenant's slug.
    account: &'static str,
}

/// The catalogue, ordered by name.
const PROVIDERS: &[Provider] = &[
    Provider {
        id: "cornerstone",
        name: "Cornerstone OnDemand",
        category: "lms",
        auth_type: "oauth2",
        description: "Imports learners from Cornerstone and records completed AR training sessions as transcript completions.",
        capabilities: &[
            "import_users",
            "export_completions",
            "export_session_results",
        ],
        account: "{}.csod.com",
    },
    Provider {
        id: "docebo",
        name: "Docebo",
        category: "lms",
        auth_type: "api_key",
        description: "Exports session results and course completions to Docebo so training records stay in one place.",
        capabilities: &[
            "import_users",
            "export_completions",
            "export_session_results",
        ],
        account: "{}.docebosaas.com",
    },
    Provider {
        id: "jira_service_management",
        name: "Jira Service Management",
        category: "ticketing",
        auth_type: "api_key",
        description: "Turns Jira service requests into TrainAR tasks and reports their completion back to the ticket.",
        capabilities: &["import_tasks", "export_tasks"],
        account: "{}.atlassian.net",
    },
    Provider {
        id: "microsoft_teams",
        name: "Microsoft Teams",
        category: "chat",
        auth_type: "oauth2",
        description: "Posts session completions and task assignments to a Teams channel.",
        capabilities: &["send_notifications"],
        account: "{}.onmicrosoft.com",
    },
    Provider {
        id: "sap_successfactors",
        name: "SAP SuccessFactors",
        category: "hris",
        auth_type: "oauth2",
        description: "Keeps TrainAR users and org units in step with SuccessFactors Employee Central and exports completions to its learning module.",
        capabilities: &["import_users", "import_org_units", "export_completions"],
        account: "{}.successfactors.com",
    },
    Provider {
        id: "servicenow",
        name: "ServiceNow",
        category: "ticketing",
        auth_type: "oauth2",
        description: "Creates TrainAR tasks from ServiceNow work orders and attaches session results when the work is done.",
        capabilities: &["import_tasks", "export_tasks", "export_session_results"],
        account: "{}.service-now.com",
    },
    Provider {
        id: "sharepoint",
        name: "SharePoint",
        category: "storage",
        auth_type: "oauth2",
        description: "Imports SOPs and manuals from SharePoint document libraries into the knowledge base.",
        capabilities: &["import_documents"],
        account: "{}.sharepoint.com",
    },
    Provider {
        id: "slack",
        name: "Slack",
        category: "chat",
        auth_type: "oauth2",
        description: "Notifies a Slack channel when sessions are completed or tasks are assigned.",
        capabilities: &["send_notifications"],
        account: "{}.slack.com",
    },
    Provider {
        id: "workday",
        name: "Workday",
        category: "hris",
        auth_type: "oauth2",
        description: "Provisions and deactivates TrainAR users from Workday workers and their supervisory organizations.",
        capabilities: &["import_users", "import_org_units"],
        account: "wd3.myworkday.com/{}",
    },
];

impl Provider {
    fn find(id: &str) -> Result<&'static Provider, ApiError> {
        PROVIDERS.iter().find(|p| p.id == id).ok_or_else(|| {
            ApiError::not_found(format!(
                "no integration provider {id}; see list_integrations"
            ))
        })
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "category": self.category,
            "description": self.description, "auth_type": self.auth_type,
            "logo_url": format!("https://cdn.trainar.ai/integrations/{}.svg", self.id),
            "capabilities": self.capabilities,
            "docs_url": format!("https://docs.trainar.ai/integrations/{}", self.id),
        })
    }

    /// The tenant's connection as a never-connected record (stored ones start from it too).
    fn not_connected(&self) -> Value {
        json!({
            "id": self.id, "integration_id": self.id, "provider_name": self.name,
            "category": self.category, "status": "not_connected", "connected_at": null,
            "connected_by": null, "last_sync_at": null, "last_sync_status": null, "error": null,
            "external_account": null,
        })
    }
}

pub fn call(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    match ctx.operation {
        Operation::ListIntegrations => {
            let category = input.str("category");
            let providers: Vec<Value> = PROVIDERS
                .iter()
                .filter(|p| category.is_none_or(|c| p.category == c))
                .map(Provider::json)
                .collect();
            offset_page(providers, input)
        }
        Operation::ListTenantIntegrations => {
            let status = input.str("status");
            let mut records: Vec<Value> = ctx
                .store
                .all(KIND)?
                .into_iter()
                .filter(|r| status.is_none_or(|s| r["status"] == s))
                .map(present)
                .collect();
            records.sort_by(|a, b| {
                a["provider_name"]
                    .as_str()
                    .cmp(&b["provider_name"].as_str())
            });
            offset_page(records, input)
        }
        Operation::GetIntegrationConnectUrl => connect_url(ctx, input),
        Operation::GetIntegrationStatus => {
            let provider = Provider::find(input.required_str("integration_id")?)?;
            let record = ctx.store.get(KIND, provider.id)?;
            ok(present(record.unwrap_or_else(|| provider.not_connected())))
        }
        Operation::DisconnectIntegration => disconnect(ctx, input),
        Operation::TriggerSync => trigger_sync(ctx, input),
        _ => Err(not_served(ctx)),
    }
}

/// The API representation of a stored record: the store's `id` is the API's `integration_id`.
fn present(mut record: Value) -> Value {
    if let Some(fields) = record.as_object_mut() {
        fields.remove("id");
    }
    record
}

/// A page of a small list kept in memory in its documented order; the cursor is an offset.
fn offset_page(items: Vec<Value>, input: &Input) -> Result<Reply, ApiError> {
    let offset = match input.cursor() {
        Some(cursor) => usize::try_from(decode_cursor(cursor)?)
            .map_err(|_| crate::sandbox::db::invalid_cursor())?,
        None => 0,
    };
    let limit = input.limit();
    let data: Vec<Value> = items.iter().skip(offset).take(limit).cloned().collect();
    let next = offset + limit;
    let next_cursor = (next < items.len()).then(|| encode_cursor(next as i64));
    ok(json!({"data": data, "next_cursor": next_cursor}))
}

/// The record of a known provider, or 409 unless it is `connected`.
fn require_connected(store: &Store, provider: &Provider, action: &str) -> Result<Value, ApiError> {
    let record = store.get(KIND, provider.id)?;
    let status = record
        .as_ref()
        .and_then(|r| r["status"].as_str())
        .unwrap_or("not_connected");
    match record {
        Some(record) if status == "connected" => Ok(record),
        _ => Err(ApiError::conflict(format!(
            "{} is {status}, not connected; cannot {action}",
            provider.name
        ))),
    }
}

fn connect_url(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    let provider = Provider::find(input.required_str("integration_id")?)?;
    let store = &ctx.store;
    let existing = store.get(KIND, provider.id)?;
    if existing
        .as_ref()
        .is_some_and(|r| r["status"] == "connected")
    {
        return Err(ApiError::conflict(format!(
            "{} is already connected; disconnect it first to reconnect",
            provider.name
        )));
    }
    let mut record = existing.clone().unwrap_or_else(|| provider.not_connected());
    record["status"] = json!("pending");
    record["external_account"] = Value::Null;
    record["error"] = Value::Null;
    let mut private = match existing {
        Some(_) => {
            store.update(KIND, &record)?;
            store.private(KIND, provider.id)?
        }
        None => {
            store.insert(KIND, &record)?;
            json!({})
        }
    };
    if private["secret"].as_str().is_none() {
        private["secret"] = json!(ids::random_base62(43));
    }
    let nonce = ids::random_base62(16);
    let expires = ids::now() + Duration::minutes(FLOW_MINUTES);
    let redirect_uri = input.str("redirect_uri").unwrap_or(DEFAULT_REDIRECT);
    let state = sign_state(
        private["secret"].as_str().unwrap_or_default(),
        &StateClaims {
            tenant: store.tenant_id().to_string(),
            integration: provider.id.to_string(),
            nonce: nonce.clone(),
            expires: expires.timestamp(),
        },
    )?;
    private["nonce"] = json!(nonce);
    private["redirect_uri"] = json!(redirect_uri);
    audit(&mut private, "connect_started", &ctx.principal.key_id, None);
    store.set_private(KIND, provider.id, &private)?;
    let url = authorize_url(provider, &state, redirect_uri)?;
    created(json!({
        "integration_id": provider.id,
        "url": url,
        "state": state,
        "expires_at": ids::timestamp(expires),
    }))
}

/// The provider authorisation URL. `redirect_uri` rides along when it fits the spec's 4096
/// characters (a 2048-character URI can triple when percent-encoded); it need not, since the
/// flow keeps it on the record and the callback reads it from there.
fn authorize_url(provider: &Provider, state: &str, redirect_uri: &str) -> Result<String, ApiError> {
    let base = format!("https://connect.trainar.ai/oauth/{}/authorize", provider.id);
    let with_redirect =
        serde_urlencoded::to_string([("state", state), ("redirect_uri", redirect_uri)])
            .map_err(ApiError::internal)?;
    let url = format!("{base}?{with_redirect}");
    if url.len() <= 4096 {
        return Ok(url);
    }
    let state_only = serde_urlencoded::to_string([("state", state)]).map_err(ApiError::internal)?;
    Ok(format!("{base}?{state_only}"))
}

/// Appends to the record's audit log, kept on its private side.
fn audit(private: &mut Value, action: &str, actor: &str, reason: Option<&str>) {
    let entry =
        json!({"at": ids::now_string(), "action": action, "actor": actor, "reason": reason});
    match private["audit"].as_array_mut() {
        Some(log) => log.push(entry),
        None => private["audit"] = json!([entry]),
    }
}

fn disconnect(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    let provider = Provider::find(input.required_str("integration_id")?)?;
    let mut record = require_connected(&ctx.store, provider, "disconnect it")?;
    record["status"] = json!("disconnected");
    record["external_account"] = Value::Null;
    record["error"] = Value::Null;
    ctx.store.update(KIND, &record)?;
    let mut private = ctx.store.private(KIND, provider.id)?;
    private["nonce"] = Value::Null;
    audit(
        &mut private,
        "disconnected",
        &ctx.principal.key_id,
        input.str("reason"),
    );
    ctx.store.set_private(KIND, provider.id, &private)?;
    ok(present(record))
}

fn trigger_sync(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    let provider = Provider::find(input.required_str("integration_id")?)?;
    let mut record = require_connected(&ctx.store, provider, "sync it")?;
    let busy = ctx.store.all(SYNC_KIND)?.into_iter().any(|run| {
        run["integration_id"] == provider.id
            && matches!(run["status"].as_str(), Some("queued") | Some("running"))
    });
    if busy {
        return Err(ApiError::conflict(format!(
            "a sync of {} is already queued or running",
            provider.name
        )));
    }
    let full = input.bool("full").unwrap_or(false);
    let since = if full {
        None
    } else {
        time(&record, "last_sync_at")
    };
    let run = sync_run(&ctx.store, provider, since, ids::now())?;
    record["last_sync_at"] = run["finished_at"].clone();
    record["last_sync_status"] = run["status"].clone();
    record["error"] = Value::Null;
    ctx.store.update(KIND, &record)?;
    ctx.store.emit("integration.sync_completed", &run)?;
    accepted(run)
}

/// Records a finished, successful sync run at `at`, covering the changes since `since` (all
/// records when None).
fn sync_run(
    store: &Store,
    provider: &Provider,
    since: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> Result<Value, ApiError> {
    let run = json!({
        "id": ids::new_id("syn_"),
        "integration_id": provider.id,
        "kind": if since.is_some() { "incremental" } else { "full" },
        "status": "succeeded",
        "records_synced": records_synced(store, provider, since, at)?,
        "error": null,
        "started_at": ids::timestamp(at),
        "finished_at": ids::timestamp(at),
        "created_at": ids::timestamp(at),
    });
    store.insert(SYNC_KIND, &run)?;
    Ok(run)
}

/// How many of the tenant's records a sync of this provider reads or writes: those of the kind its
/// category deals in whose stamp is in the sync's window (`in_sync_window`).
fn records_synced(
    store: &Store,
    provider: &Provider,
    since: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
) -> Result<i64, ApiError> {
    let changed = |object: &Value, field: &str| {
        time(object, field).is_some_and(|at| in_sync_window(at, since, until))
    };
    let count =
        |kind: &str, field: &str, wanted: &dyn Fn(&Value) -> bool| -> Result<i64, ApiError> {
            Ok(store
                .all(kind)?
                .iter()
                .filter(|o| wanted(o) && changed(o, field))
                .count() as i64)
        };
    let completed = |s: &Value| s["status"] == "completed";
    let any = |_: &Value| true;
    match provider.category {
        "hris" => count("user", "updated_at", &any),
        "ticketing" => count("task", "updated_at", &any),
        "lms" => count("session", "ended_at", &completed),
        "storage" => count("knowledge", "updated_at", &any),
        // Chat providers are sent a notification per completed session and per new task.
        _ => Ok(count("session", "ended_at", &completed)? + count("task", "created_at", &any)?),
    }
}

/// Whether a record stamped `at` is read by a sync at `until` that follows one at `since` (None:
/// a full sync, which reads everything up to `until`).
///
/// The window includes its start: stamps are to the millisecond, so a record written just after
/// the previous sync, in the same millisecond, carries that sync's stamp. Excluding the start
/// missed such a record for good; including it reads again a record written in that millisecond
/// just before the previous sync. A sync engine re-reads rather than misses a change.
fn in_sync_window(at: DateTime<Utc>, since: Option<DateTime<Utc>>, until: DateTime<Utc>) -> bool {
    at <= until && since.is_none_or(|since| at >= since)
}

/// What a state token asserts: the tenant, the flow (integration + nonce) and its expiry.
#[derive(serde::Serialize, serde::Deserialize)]
struct StateClaims {
    #[serde(rename = "t")]
    tenant: String,
    #[serde(rename = "i")]
    integration: String,
    #[serde(rename = "n")]
    nonce: String,
    #[serde(rename = "e")]
    expires: i64,
}

type HmacSha256 = Hmac<sha2::Sha256>;

fn mac(secret: &str, payload: &str) -> Result<HmacSha256, ApiError> {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).map_err(ApiError::internal)?;
    mac.update(payload.as_bytes());
    Ok(mac)
}

/// `base64url(claims JSON).base64url(HMAC-SHA256(secret, first part))`.
fn sign_state(secret: &str, claims: &StateClaims) -> Result<String, ApiError> {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(ApiError::internal)?);
    let signature = URL_SAFE_NO_PAD.encode(mac(secret, &payload)?.finalize().into_bytes());
    Ok(format!("{payload}.{signature}"))
}

/// The claims of a state, unverified: they say which secret verifies it.
fn read_state(state: &str) -> Option<(StateClaims, &str, Vec<u8>)> {
    let (payload, signature) = state.split_once('.')?;
    let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    Some((claims, payload, URL_SAFE_NO_PAD.decode(signature).ok()?))
}

/// Completes a connection flow: the provider's redirect (see the module doc).
pub async fn oauth_callback(
    State(sandbox): State<Sandbox>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(Path(integration_id)) = path else {
        return ApiError::bad_request("the callback path names no integration").into_response();
    };
    let params: Vec<(String, String)> =
        match serde_urlencoded::from_str(query.as_deref().unwrap_or("")) {
            Ok(params) => params,
            Err(_) => {
                return ApiError::bad_request("the query string is malformed").into_response();
            }
        };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (Some(state), Some(_code)) = (param("state"), param("code")) else {
        return ApiError::bad_request("the callback needs `state` and `code`").into_response();
    };
    let result = sandbox
        .db()
        .transaction(move |tx| complete_flow(tx, &integration_id, &state))
        .await;
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

fn complete_flow(
    tx: &rusqlite::Transaction,
    integration_id: &str,
    state: &str,
) -> Result<Value, ApiError> {
    let invalid = |why: &str| ApiError::bad_request(format!("the state is not valid: {why}"));
    let (claims, payload, signature) =
        read_state(state).ok_or_else(|| invalid("it is malformed"))?;
    if claims.integration != integration_id {
        return Err(invalid("it was issued for another integration"));
    }
    let store = Store::new(tx, &claims.tenant);
    let provider = Provider::find(integration_id).map_err(|_| invalid("unknown integration"))?;
    // One answer whether the claimed tenant has no flow here or the signature is wrong: a
    // forged state must not learn which tenants have a flow with which provider.
    let unverified = || invalid("its signature does not verify");
    let mut private = store.private(KIND, provider.id).map_err(|_| unverified())?;
    let secret = private["secret"].as_str().ok_or_else(unverified)?;
    mac(secret, payload)?
        .verify_slice(&signature)
        .map_err(|_| unverified())?;
    if claims.expires <= ids::now().timestamp() {
        return Err(invalid(
            "it has expired; start a new flow with get_integration_connect_url",
        ));
    }
    let mut record = store.require(KIND, provider.id)?;
    if record["status"] != "pending" || private["nonce"].as_str() != Some(claims.nonce.as_str()) {
        return Err(invalid("it was already used or a newer flow replaced it"));
    }
    let now = ids::now_string();
    record["status"] = json!("connected");
    record["connected_at"] = json!(now);
    record["connected_by"] = authorising_user(&store)?;
    record["external_account"] = json!(external_account(tx, &claims.tenant, provider)?);
    record["error"] = Value::Null;
    store.update(KIND, &record)?;
    private["nonce"] = Value::Null;
    audit(&mut private, "connected", "oauth_callback", None);
    store.set_private(KIND, provider.id, &private)?;
    Ok(json!({
        "integration_id": provider.id,
        "status": "connected",
        "connected_at": now,
        "redirect_uri": private["redirect_uri"],
        "message": format!("{} is connected; you can close this window.", provider.name),
    }))
}

/// Who authorised the connection: the sandbox has no signed-in human at the callback, so the
/// tenant's first active admin stands in (null when it has none).
fn authorising_user(store: &Store) -> Result<Value, ApiError> {
    Ok(store
        .all("user")?
        .into_iter()
        .find(|u| u["role"] == "admin" && u["status"] == "active")
        .map(|u| u["id"].clone())
        .unwrap_or(Value::Null))
}

/// The provider-side account, named after the tenant as a provider would name it.
fn external_account(
    tx: &rusqlite::Transaction,
    tenant_id: &str,
    provider: &Provider,
) -> Result<String, ApiError> {
    let name: String = tx.query_row(
        "SELECT name FROM tenants WHERE id = ?1",
        [tenant_id],
        |row| row.get(0),
    )?;
    let slug: String = name
        .to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let slug = if slug.is_empty() {
        "tenant".to_string()
    } else {
        slug.chars().take(40).collect()
    };
    Ok(provider.account.replace("{}", &slug))
}

/// A demo connection: `status` with its history, `days_ago` when it was authorised, and past
/// syncs `sync_days_ago` (oldest first; the first is full).
struct DemoConnection {
    provider: &'static str,
    status: &'static str,
    days_ago: i64,
    sync_days_ago: &'static [i64],
    error: Option<&'static str>,
}

const DEMO_CONNECTIONS: &[DemoConnection] = &[
    DemoConnection {
        provider: "servicenow",
        status: "connected",
        days_ago: 25,
        sync_days_ago: &[25, 12, 2],
        error: None,
    },
    DemoConnection {
        provider: "workday",
        status: "connected",
        days_ago: 20,
        sync_days_ago: &[20, 1],
        error: None,
    },
    DemoConnection {
        provider: "slack",
        status: "connected",
        days_ago: 10,
        sync_days_ago: &[3],
        error: None,
    },
    DemoConnection {
        provider: "docebo",
        status: "error",
        days_ago: 28,
        sync_days_ago: &[27],
        error: Some("Docebo rejected the stored API key (HTTP 401); reconnect with a valid key."),
    },
    DemoConnection {
        provider: "sharepoint",
        status: "disconnected",
        days_ago: 40,
        sync_days_ago: &[39],
        error: None,
    },
    DemoConnection {
        provider: "microsoft_teams",
        status: "pending",
        days_ago: 0,
        sync_days_ago: &[],
        error: None,
    },
];

/// Demo connections in every status, with sync runs counted from the data seeded before them.
pub fn seed_demo(store: &Store) -> Result<(), ApiError> {
    let now = ids::now();
    let admin = authorising_user(store)?;
    for demo in DEMO_CONNECTIONS {
        let provider = Provider::find(demo.provider)?;
        let mut record = provider.not_connected();
        record["status"] = json!(demo.status);
        let mut last: Option<DateTime<Utc>> = None;
        for days in demo.sync_days_ago {
            let at = now - Duration::days(*days) + Duration::hours(1);
            let run = sync_run(store, provider, last, at)?;
            record["last_sync_at"] = run["finished_at"].clone();
            record["last_sync_status"] = run["status"].clone();
            last = Some(at);
        }
        if demo.status != "pending" {
            record["connected_at"] = json!(ids::timestamp(now - Duration::days(demo.days_ago)));
            record["connected_by"] = admin.clone();
        }
        if demo.status == "connected" || demo.status == "error" {
            record["external_account"] =
                json!(external_account(store.tx(), store.tenant_id(), provider)?);
        }
        if let Some(error) = demo.error {
            record_failed_sync(store, provider, now - Duration::days(5), error)?;
            record["last_sync_at"] = json!(ids::timestamp(now - Duration::days(5)));
            record["last_sync_status"] = json!("failed");
            record["error"] = json!(error);
        }
        let private = json!({"secret": ids::random_base62(43), "nonce": null, "audit": []});
        store.insert_with_private(KIND, &record, &private)?;
    }
    Ok(())
}

fn record_failed_sync(
    store: &Store,
    provider: &Provider,
    at: DateTime<Utc>,
    error: &str,
) -> Result<(), ApiError> {
    let started = ids::timestamp(at);
    store.insert(
        SYNC_KIND,
        &json!({
            "id": ids::new_id("syn_"), "integration_id": provider.id, "kind": "incremental",
            "status": "failed", "records_synced": 0, "error": error,
            "started_at": started, "finished_at": ids::timestamp(at + Duration::seconds(4)), "created_at": started,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_written_in_the_millisecond_of_the_last_sync_is_read_by_the_next() {
        let last_sync = ids::now();
        let written_after_it = last_sync;
        let next_sync = last_sync + Duration::milliseconds(5);
        assert!(in_sync_window(written_after_it, Some(last_sync), next_sync));
        assert!(!in_sync_window(
            last_sync - Duration::milliseconds(1),
            Some(last_sync),
            next_sync
        ));
        assert!(!in_sync_window(
            next_sync + Duration::milliseconds(1),
            Some(last_sync),
            next_sync
        ));
        assert!(in_sync_window(
            last_sync - Duration::days(400),
            None,
            next_sync
        ));
    }
}

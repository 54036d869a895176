//! The embedded sandbox: a stateful TrainAR Tenant REST API over SQLite that implements every
//! operation of spec/trainar.yaml, for offline development and for every test.
//!
//! It is a second implementation of the spec, not a mode of the gateway. Invariant: nothing here
//! imports the gateway (`upstream`, the MCP runtime); it shares only what is derived from the spec
//! (`generated`, `scopes`, `validation`) and two leaves (`sync`, `trace_context`).
//!
//! Layout:
//! - `db`: SQLite, migrations, the tenant-scoped document `Store`, cursors.
//! - `caller`: authentication (a key or an API access token → `Principal`).
//! - `request`: the scope rule, request validation, `Input`, reply helpers.
//! - `error`: `ApiError`, the spec's Error body.
//! - `egress`: which addresses webhook deliveries may reach (checked on the URL and at delivery).
//! - `ids`: ids, secrets, timestamps.
//! - `limits`: the per-tenant budget (requests, server time) and the tenant's lane for CPU work
//!   it shapes.
//! - `tenants`: tenants and API keys (the `api_keys` category, introspection included).
//! - `oauth`, `oauth_clients`, `oauth_consent`: the OAuth 2.1 authorization server that MCP
//!   clients without a static key sign in with (outside the spec's routes, like the
//!   integrations' callback), and the API's side of its tokens.
//! - one module per remaining category, each with `call` (its operations) and its seed data.
//! - `seed`: the first-start demo tenant.

pub mod caller;
pub mod db;
pub mod egress;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod ledger;
pub mod limits;
pub mod oauth;
pub mod oauth_clients;
pub mod oauth_consent;
pub mod request;
pub mod seed;
pub mod tenants;

mod account;
mod billing;
mod devices;
mod integrations;
mod knowledge;
mod reports;
mod sessions;
mod skills;
mod tasks;
mod users;
mod webhooks;

use crate::generated::api::Operation;
use crate::trace_context::TraceContext;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use db::{Db, Store};
use error::ApiError;
use request::{Input, Principal, RawRequest, Reply};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;

/// How a sandbox runs.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The largest request body accepted; larger is 413.
    pub max_body_bytes: usize,
    /// Seed the demo tenant on first start (`--seed demo`) or only a bare tenant (`--seed none`).
    pub demo_seed: bool,
    /// Fixes the first tenant's admin key secret (`TRAINAR_SANDBOX_ADMIN_KEY`), for scripts/tests.
    pub admin_key: Option<String>,
    /// Whether webhooks may target loopback and private addresses (127.0.0.0/8, ::1, 10/8,
    /// 172.16/12, 192.168/16, fc00::/7, `localhost`): for local testing only, by the operator's
    /// choice (`--allow-private-webhooks`). Link-local and metadata addresses are refused always.
    pub allow_private_webhooks: bool,
    /// Every tenant's budget of requests and server time.
    pub limits: limits::Limits,
}

/// Shown in logs and panics, so the admin key is only said to be set.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("demo_seed", &self.demo_seed)
            .field("admin_key", &self.admin_key.as_ref().map(|_| REDACTED))
            .field("allow_private_webhooks", &self.allow_private_webhooks)
            .field("limits", &self.limits)
            .finish()
    }
}

const REDACTED: &str = "<redacted>";

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            max_body_bytes: 50 * 1024 * 1024,
            demo_seed: true,
            admin_key: None,
            allow_private_webhooks: false,
            limits: limits::Limits::default(),
        }
    }
}

/// What one handler sees: the tenant's store (inside the request's transaction), the caller,
/// the operation being served, what was checked before the transaction, and the configuration.
pub struct Ctx<'a> {
    pub store: Store<'a>,
    pub principal: &'a Principal,
    pub operation: Operation,
    pub(crate) prepared: &'a Prepared,
    pub config: &'a Config,
}

/// Work done for a request before its transaction, outside the database's lock: the checks
/// whose cost the tenant controls.
#[derive(Default)]
pub(crate) enum Prepared {
    #[default]
    Nothing,
    /// `execute_skill`'s arguments satisfy this version of the skill's `input_schema`, and
    /// render its steps to `steps`.
    SkillArguments {
        skill_id: String,
        version: i64,
        steps: Vec<serde_json::Value>,
    },
    /// The request's files, decoded from base64; the handler takes them.
    Uploads(std::sync::Mutex<Option<Vec<knowledge::Upload>>>),
}

/// An opened, migrated and seeded sandbox, ready to serve.
#[derive(Clone)]
pub struct Sandbox {
    db: Db,
    config: Config,
    /// Shared by every request: each tenant's budget and lane.
    budgets: std::sync::Arc<limits::Budgets>,
}

/// What the first start created: printed once by the CLI.
#[derive(Clone)]
pub struct FirstStart {
    pub tenant_id: String,
    pub tenant_name: String,
    pub admin_key: String,
}

/// The key is printed once, on purpose, by the CLI; never by `{:?}`.
impl std::fmt::Debug for FirstStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstStart")
            .field("tenant_id", &self.tenant_id)
            .field("tenant_name", &self.tenant_name)
            .field("admin_key", &REDACTED)
            .finish()
    }
}

impl Sandbox {
    /// Opens the database under `config.data_dir`; on first start creates the first tenant (and
    /// the demo data unless `demo_seed` is false). Returns what was created, if anything.
    pub fn open(config: Config) -> Result<(Sandbox, Option<FirstStart>), String> {
        let db = Db::open(&config.data_dir)?;
        let first = seed::first_start(&db, &config).map_err(|e| e.message)?;
        db.transaction_blocking(tenants::enforce_lineage)
            .map_err(|e| e.message)?;
        request::warm_up();
        // A tenant may hold all read connections but one, so another tenant's read always has one.
        let budgets = std::sync::Arc::new(limits::Budgets::new(
            config.limits,
            db::READERS.saturating_sub(1).max(1),
        ));
        Ok((
            Sandbox {
                db,
                config,
                budgets,
            },
            first,
        ))
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The REST API as an axum router: one route per operation of the spec.
    pub fn router(&self) -> Router {
        let mut routes: BTreeMap<&'static str, MethodRouter<Sandbox>> = BTreeMap::new();
        for &operation in Operation::ALL {
            let filter = match operation.method() {
                "GET" => MethodFilter::GET,
                "POST" => MethodFilter::POST,
                "PUT" => MethodFilter::PUT,
                "PATCH" => MethodFilter::PATCH,
                _ => MethodFilter::DELETE,
            };
            let handler = move |State(sandbox): State<Sandbox>,
                                path: Result<Path<HashMap<String, String>>, PathRejection>,
                                RawQuery(query): RawQuery,
                                headers: HeaderMap,
                                body: Result<Bytes, BytesRejection>| async move {
                sandbox
                    .serve_operation(operation, path, query, headers, body)
                    .await
            };
            let entry = routes.remove(operation.path()).unwrap_or_default();
            routes.insert(operation.path(), entry.on(filter, handler));
        }
        // Not part of the Tenant API: where a provider sends the user back after authorising an
        // integration (the URL that `get_integration_connect_url` hands out leads here).
        let mut router = Router::new()
            .route(
                integrations::OAUTH_CALLBACK_PATH,
                axum::routing::get(integrations::oauth_callback),
            )
            // TrainAR's authorization server, for MCP clients that sign in (see `oauth`).
            .route(oauth::METADATA_PATH, axum::routing::get(oauth::metadata))
            .route(
                oauth::AUTHORIZE_PATH,
                axum::routing::get(oauth_consent::authorize).post(oauth_consent::decide),
            )
            .route(
                oauth::TOKEN_PATH,
                axum::routing::post(oauth::token_endpoint),
            )
            .route(oauth::REVOKE_PATH, axum::routing::post(oauth::revoke))
            .route(
                oauth::REGISTER_PATH,
                axum::routing::post(oauth_clients::register),
            );
        for (path, method_router) in routes {
            router = router.route(path, method_router.fallback(method_not_allowed));
        }
        router
            .fallback(|| async {
                ApiError::not_found("no such route in the TrainAR API; see spec/trainar.yaml")
            })
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes))
            .with_state(self.clone())
    }

    async fn serve_operation(
        &self,
        operation: Operation,
        path: Result<Path<HashMap<String, String>>, PathRejection>,
        query: Option<String>,
        headers: HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Response {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = match body {
            Ok(body) => body,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                let limit = self.config.max_body_bytes;
                return ApiError::payload_too_large(format!(
                    "the request body is over {limit} bytes"
                ))
                .into_response();
            }
            Err(rejection) => return ApiError::bad_request(rejection.body_text()).into_response(),
        };
        let path = match path {
            Ok(Path(path)) => path,
            Err(rejection) => return ApiError::bad_request(rejection.body_text()).into_response(),
        };
        let idempotency_key = match idempotency::key_from(headers.get("idempotency-key")) {
            Ok(key) => key,
            Err(error) => return error.into_response(),
        };
        let raw = RawRequest {
            path,
            query,
            body,
            idempotency_key,
        };
        let trace = headers
            .get(&crate::trace_context::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| TraceContext::parse(v, None));
        let started = std::time::Instant::now();
        let response = match self.run(operation, authorization, raw).await {
            Ok((status, body)) => (status, axum::Json(body)).into_response(),
            Err(error) => error.into_response(),
        };
        // A request that is part of a trace (every call through the gateway) is logged with its
        // trace id, so that one agent request can be followed from the client into the API.
        if let Some(trace) = trace {
            tracing::info!(
                trace_id = %trace.trace_id(),
                operation = operation.name(),
                status = response.status().as_u16(),
                duration_ms = started.elapsed().as_millis() as u64,
                "sandbox request"
            );
        }
        response
    }

    /// One request, so that the database's one writer is held only for a write's handler.
    ///
    /// A GET runs in one step on a read connection (`read_in_one_step`): authenticate (401), the
    /// tenant's budget (429), the scope rule (403), validation (400), the handler. Only a GET
    /// that turns out to write goes on to the steps of a write.
    ///
    /// Anything else, in steps: authenticate on a read connection (401), then the tenant's
    /// budget (429); the scope rule (403) and validation (400) in the tenant's lane on the
    /// blocking pool; checks whose cost the tenant controls (`prepare`), in its lane too; then
    /// the handler in the writer's transaction.
    ///
    /// The time of everything after the budget is charged to the tenant.
    async fn run(
        &self,
        operation: Operation,
        authorization: Option<String>,
        raw: RawRequest,
    ) -> Result<Reply, ApiError> {
        let raw = std::sync::Arc::new(raw);
        let mut admitted = false;
        if operation.method() == "GET" {
            let attempt = self
                .read_in_one_step(operation, authorization.clone(), raw.clone(), None)
                .await;
            let attempt = match attempt {
                Err(error) => match error.redo.as_deref() {
                    Some(error::Redo::WhenReadFree(tenant_id)) => {
                        let reading = self.budgets.reading(tenant_id).await;
                        self.read_in_one_step(
                            operation,
                            authorization.clone(),
                            raw.clone(),
                            Some(reading),
                        )
                        .await
                    }
                    _ => Err(error),
                },
                done => done,
            };
            match attempt {
                Err(error) if error.redo.as_deref() == Some(&error::Redo::OnWriter) => {
                    admitted = true
                }
                done => return done,
            }
        }
        let (principal, stale) = self
            .db
            .read(move |tx| caller::identify(tx, authorization.as_deref()))
            .await?;
        if !admitted {
            self.budgets.admit(&principal.tenant_id)?;
        }
        let tenant_id = principal.tenant_id.clone();
        let spent = Stopwatch::default();
        let result = self
            .run_in_steps(operation, principal, stale, raw, &spent)
            .await;
        self.budgets.charge(&tenant_id, spent.total());
        result
    }

    /// A GET, start to end in one read transaction (one hop to the blocking pool: under load,
    /// each hop is a wait for a thread to be scheduled). A tenant holding all the read
    /// connections it may stops with `Redo::WhenReadFree` (it has been admitted: `reading` is
    /// then the read slot it waited for, and it is not admitted again).
    async fn read_in_one_step(
        &self,
        operation: Operation,
        authorization: Option<String>,
        raw: std::sync::Arc<RawRequest>,
        reading: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Reply, ApiError> {
        let budgets = self.budgets.clone();
        let config = self.config.clone();
        let (reply, touch) = self
            .db
            .read(move |tx| {
                let (principal, stale) = caller::identify(tx, authorization.as_deref())?;
                let _reading = match reading {
                    Some(reading) => reading,
                    None => {
                        budgets.admit(&principal.tenant_id)?;
                        budgets.try_reading(&principal.tenant_id).ok_or_else(|| {
                            ApiError::redo(error::Redo::WhenReadFree(principal.tenant_id.clone()))
                        })?
                    }
                };
                let started = std::time::Instant::now();
                let reply = (|| {
                    request::authorize(&principal, operation)?;
                    let input = request::validate(operation, &raw)?;
                    let ctx = Ctx {
                        store: Store::new(tx, &principal.tenant_id),
                        principal: &principal,
                        operation,
                        prepared: &Prepared::Nothing,
                        config: &config,
                    };
                    handle(&ctx, &input)
                })();
                budgets.charge(&principal.tenant_id, started.elapsed());
                Ok((reply?, stale.then_some(principal)))
            })
            .await?;
        if let Some(principal) = touch {
            // A read leaves last_used_at to a write of its own, off the response's path.
            let db = self.db.clone();
            tokio::spawn(async move {
                let touched = db
                    .transaction(move |tx| request::touch(tx, &principal))
                    .await;
                if let Err(error) = touched {
                    tracing::warn!(error = %error.message, "cannot record a key's last use");
                }
            });
        }
        Ok(reply)
    }

    async fn run_in_steps(
        &self,
        operation: Operation,
        principal: Principal,
        stale: bool,
        raw: std::sync::Arc<RawRequest>,
        spent: &Stopwatch,
    ) -> Result<Reply, ApiError> {
        let watch = spent.clone();
        let lane = self.budgets.lane(&principal.tenant_id).await;
        let kept_raw = raw.clone();
        let (principal, input) = tokio::task::spawn_blocking(move || {
            let _timing = watch.time();
            request::authorize(&principal, operation)?;
            Ok::<_, ApiError>((principal, request::validate(operation, &raw)?))
        })
        .await
        .map_err(ApiError::internal)??;
        drop(lane);
        let prepared = self.prepare(operation, &principal, &input, spent).await?;
        let config = self.config.clone();
        let watch = spent.clone();
        self.db
            .transaction(move |tx| {
                let _timing = watch.time();
                let ctx = Ctx {
                    store: Store::new(tx, &principal.tenant_id),
                    principal: &principal,
                    operation,
                    prepared: &prepared,
                    config: &config,
                };
                // A POST with an Idempotency-Key runs once; a retry gets the kept answer.
                let raw = kept_raw;
                let idempotent = raw
                    .idempotency_key
                    .as_deref()
                    .filter(|_| operation.method() == "POST");
                if let Some(key) = idempotent
                    && let Some(kept) =
                        idempotency::replay(tx, &principal.tenant_id, key, operation, &raw)?
                {
                    return Ok(kept);
                }
                let reply = handle(&ctx, &input)?;
                if let Some(key) = idempotent {
                    idempotency::remember(tx, &principal.tenant_id, key, operation, &raw, &reply)?;
                }
                if stale {
                    request::touch(tx, &principal)?;
                }
                Ok(reply)
            })
            .await
    }

    /// Before a write's transaction: the work whose cost the tenant shapes (`skills::prepare`,
    /// `knowledge::prepare`).
    async fn prepare(
        &self,
        operation: Operation,
        principal: &Principal,
        input: &Input,
        spent: &Stopwatch,
    ) -> Result<Prepared, ApiError> {
        match operation {
            Operation::CreateSkill | Operation::UpdateSkill | Operation::ExecuteSkill => {
                skills::prepare(&self.db, &self.budgets, operation, principal, input, spent).await
            }
            Operation::UploadKnowledge
            | Operation::UploadKnowledgeFile
            | Operation::BulkUploadKnowledgeFiles => {
                knowledge::prepare(&self.budgets, operation, principal, input, spent).await
            }
            _ => Ok(Prepared::Nothing),
        }
    }

    /// Serves on `listener` until `shutdown` resolves, with the background workers (webhook
    /// delivery, knowledge processing) running alongside.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let workers = [
            tokio::spawn(webhooks::deliver_forever(
                self.db.clone(),
                self.config.allow_private_webhooks,
            )),
            tokio::spawn(knowledge::process_forever(self.db.clone())),
        ];
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        for worker in workers {
            worker.abort();
        }
        result
    }
}

/// Opens the sandbox and serves it on an ephemeral loopback port, in this process: `serve`'s
/// embedded default. The gateway then reaches it over HTTP, exactly as it reaches production.
/// Returns its base URL, what a first start created, and the serving task.
pub async fn spawn_embedded(
    config: Config,
) -> Result<(String, Option<FirstStart>, tokio::task::JoinHandle<()>), String> {
    let (sandbox, first) = Sandbox::open(config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot start the embedded sandbox: {e}"))?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let task = tokio::spawn(async move {
        if let Err(e) = sandbox.serve(listener, std::future::pending()).await {
            tracing::error!(error = %e, "the embedded sandbox stopped");
        }
    });
    Ok((url, first, task))
}

/// Adds a tenant with only its admin key (`sandbox tenant create`): returns (id, admin secret).
pub fn create_tenant(config: &Config, name: &str) -> Result<(String, String), String> {
    let name = name.trim();
    // Key introspection serves the name as `tenant_name`, at most 100 characters.
    if name.is_empty() || name.chars().count() > 100 {
        return Err("a tenant name is 1 to 100 characters".into());
    }
    let db = Db::open(&config.data_dir)?;
    db.transaction_blocking(|tx| seed::new_tenant(tx, name, None, false))
        .map_err(|e| e.message)
}

/// A new key for a tenant of the sandbox at `config.data_dir` (its first, the demo tenant, when
/// `tenant` is None), with `scopes` (every scope when empty). Returns the tenant's id and name,
/// and the secret, which is shown only this once. For the operator: it needs no other key.
pub fn create_key(
    config: &Config,
    tenant: Option<&str>,
    name: &str,
    scopes: &[String],
) -> Result<(String, String, String), String> {
    let scopes: Vec<&str> = if scopes.is_empty() {
        crate::generated::api::Scope::ALL
            .iter()
            .map(|s| s.as_str())
            .collect()
    } else {
        scopes.iter().map(String::as_str).collect()
    };
    if let Some(unknown) = scopes
        .iter()
        .find(|s| crate::generated::api::Scope::parse(s).is_none())
    {
        return Err(format!(
            "unknown scope `{unknown}`; `trainar-mcp tools list` shows them"
        ));
    }
    let db = Db::open(&config.data_dir)?;
    db.transaction_blocking(|tx| {
        let found = tx.query_row(
            "SELECT id, name FROM tenants WHERE ?1 IS NULL OR id = ?1 ORDER BY rowid LIMIT 1",
            rusqlite::params![tenant],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
        );
        let (tenant_id, tenant_name) = match found {
            Ok(found) => found,
            Err(rusqlite::Error::QueryReturnedNoRows) => {
                return Err(ApiError::not_found(match tenant {
                    Some(id) => format!("no tenant {id} in this data directory"),
                    None => "this data directory has no tenant yet: start the sandbox once".into(),
                }));
            }
            Err(e) => return Err(e.into()),
        };
        let store = db::Store::new(tx, &tenant_id);
        let (_, secret) = tenants::insert_key(&store, name, &scopes, None, None, None)?;
        Ok((tenant_id, tenant_name, secret))
    })
    .map_err(|e| e.message)
}

async fn method_not_allowed() -> Response {
    let error = ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "bad_request",
        message: "this path does not take that method".into(),
        details: Vec::new(),
        required_scopes: Vec::new(),
        retry_after: None,
        redo: None,
    };
    error.into_response()
}

/// Routes an operation to the module of its category.
fn handle(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    match ctx.operation.category() {
        "api_keys" => tenants::call(ctx, input),
        "account" => account::call(ctx, input),
        "billing" => billing::call(ctx, input),
        "devices" => devices::call(ctx, input),
        "integrations" => integrations::call(ctx, input),
        "knowledge" => knowledge::call(ctx, input),
        "reports" => reports::call(ctx, input),
        "sessions" => sessions::call(ctx, input),
        "skills" => skills::call(ctx, input),
        "tasks" => tasks::call(ctx, input),
        "users" => users::call(ctx, input),
        "webhooks" => webhooks::call(ctx, input),
        other => Err(ApiError::internal(format!(
            "no module serves category {other}"
        ))),
    }
}

/// Time spent on one request's work, summed across threads, for the tenant's time budget.
#[derive(Clone, Default)]
pub struct Stopwatch(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Stopwatch {
    /// Adds the time until the returned guard drops.
    pub fn time(&self) -> impl Drop + use<> {
        Timing(self.clone(), std::time::Instant::now())
    }

    pub fn total(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

struct Timing(Stopwatch, std::time::Instant);

impl Drop for Timing {
    fn drop(&mut self) {
        let nanos = u64::try_from(self.1.elapsed().as_nanos()).unwrap_or(u64::MAX);
        (self.0)
            .0
            .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The error for an operation that reached a module that does not serve it (a routing bug).
fn not_served(ctx: &Ctx) -> ApiError {
    ApiError::internal(format!("{} reached the wrong module", ctx.operation.name()))
}

//! The gateway handle that every HTTP handler shares: `Gateway` (the core, the authenticator, the
//! replicas' sessions and limits, the upstream), how one is built (`GatewayConfig`,
//! `ServerOptions`), and what a request asks of it before the core sees it: the caller
//! (`principal`, refusing credentials in the URL), the rate limit, admission to a session, the
//! connection's tool selection.
//!
//! It sits below both the router (`server`) and the transports, which take it as `SharedGateway`;
//! it knows no route. Its refusals are HTTP responses built by `http`.

use crate::audit::AuditLog;
use crate::auth::{AuthFailure, Authenticator, Principal};
use crate::http::{Peer, Refused, http_error, refused, unauthorized};
use crate::mcp::core::Core;
use crate::mcp::jsonrpc::Demand;
use crate::mcp::presentation::Presentation;
use crate::mcp::selection::Selection;
use crate::mcp::session::Session;
use crate::replicas::{Admitted, Limits, RedisOptions, Refusal, Replicas};
use crate::sync::lock;
use crate::upstream::{Upstream, UpstreamOptions};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// Limits and policies of one gateway.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Origins allowed besides localhost ones (exact `scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// Concurrent sessions one key may hold.
    pub sessions_per_key: usize,
    /// Requests per minute one key may make (POSTs to /mcp and /messages).
    pub requests_per_minute: u32,
    /// Sessions without activity for this long are ended.
    pub idle_timeout: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// The public base URL (e.g. `https://mcp.trainar.ai/prefix`), for the SSE endpoint event;
    /// without it the endpoint is relative to /sse, which works behind path prefixes.
    pub public_url: Option<String>,
    /// Share sessions and limits with other replicas through Redis (None: in this process).
    pub redis: Option<RedisOptions>,
    /// Most messages one 2025-03-26 batch may hold (each counts against the rate limit).
    pub max_batch: usize,
    /// A request's headers must arrive within this (also bounds idle keep-alive and bare connects).
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this.
    pub body_read_timeout: Duration,
    /// Open connections from one client address; past it new ones are refused with 503.
    pub max_connections_per_ip: usize,
    /// Open connections in all.
    pub max_connections: usize,
    /// Behind a proxy: the header it appends the client's address to (`X-Forwarded-For`), for
    /// per-client limits. Without it, the connection's peer address is the client.
    pub client_ip_header: Option<String>,
    /// The OAuth authorization server the protected-resource metadata names, where access
    /// tokens are exchanged (`oauth`); without it only `tak_` keys are accepted.
    pub authorization_server: Option<String>,
    /// Threads that serve connections, a single-threaded runtime each (`lanes`); the upstream
    /// pool is split among them.
    pub lanes: usize,
}

/// One lane per core the process may use.
pub fn default_lanes() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            allowed_origins: Vec::new(),
            sessions_per_key: 16,
            requests_per_minute: 600,
            idle_timeout: Duration::from_secs(30 * 60),
            max_body_bytes: 4 * 1024 * 1024,
            public_url: None,
            redis: None,
            max_batch: 50,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections_per_ip: 512,
            max_connections: 10_000,
            client_ip_header: None,
            authorization_server: None,
            lanes: default_lanes(),
        }
    }
}

/// Everything the handlers share.
pub struct Gateway {
    pub core: Core,
    pub auth: Authenticator,
    /// Sessions and per-key limits, in process or shared with the other replicas.
    pub replicas: Arc<Replicas>,
    pub options: ServerOptions,
    pub upstream: Upstream,
    /// Spawned work (SSE message handling) that graceful shutdown waits for.
    pub tasks: TaskTracker,
    /// The audit trail, when `--audit-log` is set (reopened on SIGHUP by `serve` and `stdio`).
    pub audit: Option<AuditLog>,
    /// Set when the drain before shutdown begins: a new session that would hold a stream here or
    /// end with this process is refused (`open_session`), and `/readyz` says 503.
    draining: std::sync::atomic::AtomicBool,
    /// Keys the API refused during calls, taken by `serve` (see `end_refused_keys`).
    refused_keys: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
}

pub type SharedGateway = Arc<Gateway>;

/// Everything needed to build a gateway in front of one upstream API.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub core: crate::mcp::core::CoreOptions,
    pub server: ServerOptions,
    /// How the gateway talks to the API: timeout, pool, body limit.
    pub upstream: UpstreamOptions,
    /// How long a resolved key is trusted before introspection is asked again.
    pub auth_cache_ttl: Duration,
    /// `--audit-log`: where one JSON line per tool call is appended.
    pub audit_log: Option<std::path::PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            core: crate::mcp::core::CoreOptions::default(),
            server: ServerOptions::default(),
            upstream: UpstreamOptions::default(),
            auth_cache_ttl: Duration::from_secs(30),
            audit_log: None,
        }
    }
}

impl Gateway {
    /// A gateway to the API at `upstream_url` (production, or a sandbox): sessions in process,
    /// or in Redis when `config.server.redis` says so.
    pub fn build(upstream_url: &str, config: GatewayConfig) -> Result<SharedGateway, String> {
        let upstream = Upstream::new(upstream_url, config.upstream.clone(), config.server.lanes)?;
        let limits = Limits {
            sessions_per_key: config.server.sessions_per_key,
            requests_per_minute: config.server.requests_per_minute,
            idle_timeout: config.server.idle_timeout,
            call_timeout: config.upstream.timeout,
        };
        let replicas = Replicas::new(limits, config.server.redis.as_ref())?;
        let mut core = Core::new(upstream.clone(), config.core);
        let (refused_keys, refused) = tokio::sync::mpsc::unbounded_channel();
        core.report_refused_keys(refused_keys);
        let audit = config
            .audit_log
            .as_deref()
            .map(AuditLog::open)
            .transpose()?;
        if let Some(audit) = &audit {
            core.record_calls_in(audit.clone());
        }
        Ok(Arc::new(Gateway {
            core,
            refused_keys: std::sync::Mutex::new(Some(refused)),
            audit,
            auth: match &config.server.authorization_server {
                Some(url) => Authenticator::new(upstream.clone(), config.auth_cache_ttl)
                    .with_authorization_server(crate::oauth::AuthorizationServer::new(url)?),
                None => Authenticator::new(upstream.clone(), config.auth_cache_ttl),
            },
            replicas: Arc::new(replicas),
            options: config.server,
            upstream,
            tasks: TaskTracker::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// The caller, or the response that refuses them: 401 for credentials in the URL or a bad
    /// key, 400 for two `Authorization` headers, 503 when the API is unreachable.
    pub async fn principal(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        peer: Option<&Peer>,
    ) -> Result<Arc<Principal>, Refused> {
        let principal = self.principal_or_refusal(headers, uri, peer).await;
        if principal.is_err() {
            crate::telemetry::record_refused(crate::telemetry::Refusal::Auth);
        }
        principal
    }

    async fn principal_or_refusal(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        peer: Option<&Peer>,
    ) -> Result<Arc<Principal>, Refused> {
        // Formatted only when needed (a refusal, a token's audience), not for every key.
        let base = || crate::oauth::base_url(self.options.public_url.as_deref(), headers);
        let challenge =
            |error: Option<&str>| crate::oauth::challenge(&base(), uri.path(), error, None);
        if let Some(problem) = credentials_in_url(uri) {
            // A key in a URL ends up in proxy and server logs: refuse it, whatever else is sent,
            // and never repeat it.
            return Err(Box::new(unauthorized(
                &format!(
                    "{problem}: credentials are never accepted in the URL; send `Authorization: \
                     Bearer tak_…` (and revoke a key that was sent in a URL)"
                ),
                &challenge(Some("invalid_request")),
            )));
        }
        let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
        let authorization = authorizations.next().and_then(|v| v.to_str().ok());
        if authorizations.next().is_some() {
            return Err(Box::new(http_error(
                StatusCode::BAD_REQUEST,
                "duplicate_authorization",
                "send exactly one Authorization header",
            )));
        }
        let principal = self
            .auth
            .authenticate(authorization, self.client_address(headers, peer))
            .await
            .map_err(|failure| {
                Box::new(match &failure {
                    AuthFailure::Unavailable(message) => {
                        let base = self.upstream.base_url();
                        tracing::warn!(%message, upstream = base, "key introspection failed");
                        http_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "upstream_unavailable",
                            &format!(
                                "the TrainAR API at {base} could not check the key ({message}); \
                                 try again shortly"
                            ),
                        )
                    }
                    AuthFailure::Throttled(retry_after) => {
                        let mut response = http_error(
                            StatusCode::TOO_MANY_REQUESTS,
                            "too_many_unknown_keys",
                            &failure.message(),
                        );
                        response
                            .headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
                        response
                    }
                    AuthFailure::Missing(message) if authorization.is_none() => {
                        unauthorized(message, &challenge(None))
                    }
                    other => unauthorized(&other.message(), &challenge(Some("invalid_token"))),
                })
            })?;
        // RFC 8707: a token issued for another resource is refused, even a live one.
        if let Some(audience) = &principal.audience
            && let base = base()
            && !crate::oauth::accepts_audience(&base, audience)
        {
            return Err(Box::new(unauthorized(
                &format!("this access token was issued for {audience}, not for {base}"),
                &challenge(Some("invalid_token")),
            )));
        }
        Ok(principal)
    }

    /// The client's address: the connection's peer, or behind a trusted proxy the last address
    /// that proxy appended to `--client-ip-header` (earlier entries are the client's to forge).
    pub fn client_address(&self, headers: &HeaderMap, peer: Option<&Peer>) -> Option<IpAddr> {
        if let Some(name) = &self.options.client_ip_header {
            let forwarded = headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .last()
                .and_then(|address| address.trim().parse().ok());
            if forwarded.is_some() {
                return forwarded;
            }
        }
        peer.map(|peer| peer.0)
    }

    /// 429 with Retry-After when `principal` is over its request rate (a request that needs no
    /// session).
    pub async fn check_rate(&self, principal: &Principal) -> Result<(), Refused> {
        self.replicas
            .rate(&principal.fingerprint)
            .await
            .map_err(|refusal| Box::new(refused(refusal)))
    }

    /// The per-key rate, then `principal`'s session `id`, for a POST that asks `demand`.
    pub async fn admit(
        &self,
        principal: &Principal,
        id: &str,
        demand: Demand,
    ) -> Result<Admitted, Refusal> {
        let cost = u32::try_from(demand.messages).unwrap_or(u32::MAX);
        self.replicas
            .admit(&principal.fingerprint, id, demand.calls_a_tool, cost)
            .await
    }

    /// Why a batch is refused, when it holds more messages than `--max-batch` allows.
    pub fn batch_too_large(&self, demand: Demand) -> Option<String> {
        (demand.messages > self.options.max_batch).then(|| {
            format!(
                "a batch of {} messages is over this server's limit of {}; send fewer at once",
                demand.messages, self.options.max_batch
            )
        })
    }

    /// Stores a new session within the per-key cap (see `Replicas::open`); `rate`: the request
    /// that opens it counts against the rate limit.
    pub async fn open_session(
        &self,
        session: Session,
        rate: bool,
    ) -> Result<Arc<Session>, Refused> {
        if self.refuses_while_draining(&session) {
            return Err(Box::new(refused(Refusal::ShuttingDown)));
        }
        let transport = session.transport();
        let opened = self
            .replicas
            .open(session, rate)
            .await
            .map_err(|refusal| Box::new(refused(refusal)))?;
        if self.refuses_while_draining(&opened) {
            // The drain began while the store was opening it, perhaps after it ended this
            // replica's sessions: end it here.
            let _ = self.replicas.end(&opened.id, &opened.key_fingerprint).await;
            return Err(Box::new(refused(Refusal::ShuttingDown)));
        }
        if let Some(transport) = transport {
            crate::telemetry::record_session_opened(transport);
        }
        Ok(opened)
    }

    /// The server's selection narrowed by a connection's `?toolsets=&tools=&read_only=`, and its
    /// presentation overridden by `?schema=&lean=`.
    pub fn selection_for(&self, query: &HashMap<String, String>) -> Result<Selection, Refused> {
        let read_only = matches!(
            query.get("read_only").map(String::as_str),
            Some("true" | "1")
        );
        let connection = Selection::parse(
            query.get("toolsets").map(String::as_str),
            query.get("tools").map(String::as_str),
            read_only,
        )
        .and_then(|mut selection| {
            selection.presentation =
                Presentation::parse(|name| query.get(name).map(String::as_str))?;
            Ok(selection)
        })
        .map_err(|message| {
            Box::new(http_error(
                StatusCode::BAD_REQUEST,
                "invalid_selection",
                &message,
            ))
        })?;
        Ok(self.core.options().selection.intersect(&connection))
    }

    /// The keys the API refused during calls, for `server::serve` to end their sessions: the
    /// first call takes them, later ones get None.
    pub(crate) fn take_refused_keys(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        lock(&self.refused_keys).take()
    }

    /// Step-up (MCP authorization 2025-11-25): a sessionless `tools/call` that an access
    /// token's scopes do not allow is refused as HTTP 403 `insufficient_scope`, its challenge
    /// naming the scopes to ask for (those held and those needed). A key cannot be stepped up:
    /// its calls, like every call in a session, get the core's `isError` result instead.
    pub fn step_up(
        &self,
        principal: &Principal,
        request: &crate::mcp::jsonrpc::Request,
        headers: &HeaderMap,
        path: &str,
    ) -> Option<Refused> {
        principal.audience.as_ref()?;
        if request.method != "tools/call" {
            return None;
        }
        let name = request.params.get("name")?.as_str()?;
        let tool = crate::catalogue::Catalogue::get().find(name)?;
        let missing = principal.scopes.missing_for(tool.operation);
        if missing.is_empty() {
            return None;
        }
        let mut wanted = principal.scope_names.clone();
        for scope in tool.operation.required_scopes() {
            if !wanted.iter().any(|held| held == scope.as_str()) {
                wanted.push(scope.as_str().to_string());
            }
        }
        let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        let base = crate::oauth::base_url(self.options.public_url.as_deref(), headers);
        let challenge = crate::oauth::challenge(
            &base,
            path,
            Some("insufficient_scope"),
            Some(&wanted.join(" ")),
        );
        Some(Box::new(crate::http::insufficient_scope(
            &format!(
                "{name} requires the scope {}, which this access token was not granted; \
                 authorize again with it",
                missing.join(" and ")
            ),
            &challenge,
        )))
    }

    /// Whether `session` may not open because this gateway is draining: a stream it holds
    /// here (legacy SSE) would keep the server waiting for its client after the drain, and a
    /// session this process alone keeps would end with it. A Streamable HTTP session shared
    /// through Redis opens: the other replicas go on serving it.
    fn refuses_while_draining(&self, session: &Session) -> bool {
        self.is_draining() && (session.has_stream() || !self.replicas.shared())
    }

    /// Whether the drain before shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Refuses new sessions from now on, ends this replica's sessions (their streams close) and
    /// waits for spawned work, bounded by `grace`.
    pub async fn drain(&self, grace: Duration) {
        // First, so that no session opens after the replica's sessions are ended below: its
        // stream would keep the server waiting for its client after the drain.
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.replicas.drain().await;
        self.tasks.close();
        let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
    }
}

/// Query parameter names that carry credentials, compared without case, `-` or `_`.
const CREDENTIAL_PARAMETERS: [&str; 9] = [
    "apikey",
    "key",
    "token",
    "accesstoken",
    "authorization",
    "auth",
    "bearer",
    "secret",
    "password",
];

/// What in `uri` looks like a credential (never the credential itself), if anything: a `tak_`
/// key anywhere in the path or query once percent-decoded (`tak%5F…` too), or a query parameter
/// named like one.
fn credentials_in_url(uri: &Uri) -> Option<&'static str> {
    // Runs on every request: text without escapes is searched as it is, without allocating.
    // Keys, and OAuth access and refresh tokens (`tat_`, `tar_`).
    let secret = |w: &[u8]| {
        w.eq_ignore_ascii_case(b"tak_")
            || w.eq_ignore_ascii_case(b"tat_")
            || w.eq_ignore_ascii_case(b"tar_")
    };
    let holds_key = |text: &str| {
        if text.contains(['%', '+']) {
            percent_encoding::percent_decode_str(&text.replace('+', " "))
                .decode_utf8_lossy()
                .as_bytes()
                .windows(4)
                .any(secret)
        } else {
            text.as_bytes().windows(4).any(secret)
        }
    };
    if holds_key(uri.path()) {
        return Some("the path holds an API key");
    }
    let query = uri.query()?;
    if holds_key(query) {
        return Some("the query string holds an API key");
    }
    let named_like_a_credential = query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or_default();
        let name: String = percent_encoding::percent_decode_str(name)
            .decode_utf8_lossy()
            .chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .flat_map(char::to_lowercase)
            .collect();
        CREDENTIAL_PARAMETERS.contains(&name.as_str())
    });
    named_like_a_credential.then_some("the query string has a credential parameter")
}

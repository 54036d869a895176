//! The gateway's HTTP face: shared state, the router, and what every endpoint shares: the Origin
//! allow-list and CORS, authentication, per-key limits, health checks, graceful shutdown.
//!
//! The transports (`transport::streamable`, `transport::sse`) only turn HTTP into JSON-RPC
//! messages for the core (`mcp::core`) and back.

use crate::auth::{AuthFailure, Authenticator, Principal};
use crate::mcp::core::Core;
use crate::mcp::jsonrpc::{Demand, ErrorCode, failure};
use crate::mcp::presentation::Presentation;
use crate::mcp::selection::Selection;
use crate::mcp::session::Session;
use crate::replicas::{Admitted, Limits, RedisOptions, Refusal, Replicas};
use crate::transport::{sse, streamable};
use crate::upstream::{Upstream, UpstreamOptions};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::body::Incoming;
use serde_json::{Value, json};
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
}

/// The address of the connection a request came on (a request extension set by `serve`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub IpAddr);

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
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            core: crate::mcp::core::CoreOptions::default(),
            server: ServerOptions::default(),
            upstream: UpstreamOptions::default(),
            auth_cache_ttl: Duration::from_secs(30),
        }
    }
}

impl Gateway {
    /// A gateway to the API at `upstream_url` (production, or a sandbox): sessions in process,
    /// or in Redis when `config.server.redis` says so.
    pub fn build(upstream_url: &str, config: GatewayConfig) -> Result<SharedGateway, String> {
        let upstream = Upstream::new(upstream_url, config.upstream.clone())?;
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
        Ok(Arc::new(Gateway {
            core,
            refused_keys: std::sync::Mutex::new(Some(refused)),
            auth: Authenticator::new(upstream.clone(), config.auth_cache_ttl),
            replicas: Arc::new(replicas),
            options: config.server,
            upstream,
            tasks: TaskTracker::new(),
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
        if let Some(problem) = credentials_in_url(uri) {
            // A key in a URL ends up in proxy and server logs: refuse it, whatever else is sent,
            // and never repeat it.
            return Err(Box::new(unauthorized(&format!(
                "{problem}: credentials are never accepted in the URL; send `Authorization: \
                 Bearer tak_…` (and revoke a key that was sent in a URL)"
            ))));
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
        self.auth
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
                    other => unauthorized(&other.message()),
                })
            })
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
        self.replicas
            .open(session, rate)
            .await
            .map_err(|refusal| Box::new(refused(refusal)))
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

    /// Ends this replica's sessions (their streams close) and waits for spawned work, bounded by
    /// `grace`.
    pub async fn drain(&self, grace: Duration) {
        self.replicas.drain().await;
        self.tasks.close();
        let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
    }
}

/// A refusal of the whole HTTP request (boxed: a `Response` is large, and refusals are rare).
pub type Refused = Box<Response>;

/// A JSON error body for HTTP-level refusals.
pub fn http_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// 405 with the `Allow` header a client needs to correct itself.
pub fn method_not_allowed(allow: &'static str, message: &str) -> Response {
    let mut response = http_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        message,
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// A JSON-RPC error as an HTTP response (for transport-level faults with a JSON-RPC body).
pub fn rpc_error(status: StatusCode, id: &Value, code: ErrorCode, message: &str) -> Response {
    (status, axum::Json(failure(id, code, message))).into_response()
}

fn unauthorized(message: &str) -> Response {
    let mut response = http_error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"trainar-mcp\", error=\"invalid_token\""),
    );
    response
}

/// The response to a refused admission. An unknown session is worded by each transport (its
/// client reconnects differently); this is the general form.
pub fn refused(refusal: Refusal) -> Response {
    let (status, code, message, retry_after) = match refusal {
        Refusal::RateLimited { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests for this key; retry in {retry_after} s"),
            retry_after,
        ),
        Refusal::SessionCap { held } => (
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sessions",
            format!(
                "this key already holds {held} sessions, all streaming or busy; close one first"
            ),
            30,
        ),
        Refusal::UnknownSession => (
            StatusCode::NOT_FOUND,
            "unknown_session",
            "unknown or expired session; start a new one".to_string(),
            0,
        ),
        Refusal::Unavailable { reason } => {
            tracing::warn!(%reason, "a session request was refused: the shared store is unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "sessions_unavailable",
                "sessions are briefly unavailable (the gateway cannot reach its session store); \
                 retry in a second, or use protocol 2026-07-28, which needs no session"
                    .to_string(),
                1,
            )
        }
    };
    let mut response = http_error(status, code, &message);
    if retry_after > 0 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    }
    response
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
    let decoded = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " "))
            .decode_utf8_lossy()
            .to_ascii_lowercase()
    };
    if decoded(uri.path()).contains("tak_") {
        return Some("the path holds an API key");
    }
    let query = uri.query()?;
    if decoded(query).contains("tak_") {
        return Some("the query string holds an API key");
    }
    let named_like_a_credential = query.split('&').any(|pair| {
        let name: String = decoded(pair.split('=').next().unwrap_or_default())
            .chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .collect();
        CREDENTIAL_PARAMETERS.contains(&name.as_str())
    });
    named_like_a_credential.then_some("the query string has a credential parameter")
}

/// Whether a browser origin may talk to us: localhost by default, plus the configured list.
fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']')
            .next()
            .map(|h| format!("[{h}]"))
            .unwrap_or_default()
    } else {
        rest.split(':').next().unwrap_or_default().to_string()
    };
    matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
}

const ALLOWED_HEADERS: &str = "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name";

/// Origin validation (403, against DNS rebinding) and CORS for allowed browser origins.
async fn origin_and_cors(
    State(gateway): State<SharedGateway>,
    request: Request,
    next: Next,
) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let Some(origin) = origin else {
        return next.run(request).await;
    };
    if !origin_allowed(&origin, &gateway.options.allowed_origins) {
        return http_error(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            &format!("origin {origin} is not allowed"),
        );
    }
    let mut response = if request.method() == Method::OPTIONS {
        let mut preflight = StatusCode::NO_CONTENT.into_response();
        let headers = preflight.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        preflight
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Mcp-Session-Id, MCP-Protocol-Version"),
    );
    response
}

/// `GET /`: a page for people (how to connect, the catalogue with a scope filter).
async fn front_page(State(gateway): State<SharedGateway>, headers: HeaderMap) -> Response {
    let base = match &gateway.options.public_url {
        Some(public) => public.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("127.0.0.1:8080");
            format!("http://{host}")
        }
    };
    axum::response::Html(crate::page::index(&base)).into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Ready when the API answers. With Redis, its state is reported too, but an unreachable Redis
/// does not make the replica unready: the stateless era still works, and a load balancer that
/// took every replica out at once would turn a Redis outage into a full one.
async fn readyz(State(gateway): State<SharedGateway>) -> Response {
    let redis = gateway
        .replicas
        .redis_reachable()
        .map(|up| if up { "reachable" } else { "unreachable" });
    match gateway.upstream.probe().await {
        Ok(()) => {
            let mut body = json!({"status": "ready", "upstream": "reachable"});
            if let Some(redis) = redis {
                body["redis"] = json!(redis);
                if redis != "reachable" {
                    body["status"] = json!("degraded");
                }
            }
            axum::Json(body).into_response()
        }
        Err(message) => http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unreachable",
            &message,
        ),
    }
}

/// The gateway's routes.
pub fn router(gateway: SharedGateway) -> Router {
    Router::new()
        .route("/", get(front_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(streamable::routes())
        .merge(sse::routes())
        .fallback(|| async {
            http_error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; MCP is at /mcp and /sse (GET / describes them)",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(
            gateway.options.max_body_bytes,
        ))
        .layer(middleware::from_fn_with_state(
            gateway.clone(),
            origin_and_cors,
        ))
        .with_state(gateway)
}

/// Serves on `listener` until `shutdown` resolves; then stops accepting, ends sessions (closing
/// SSE streams), lets in-flight calls finish (bounded by 10 s), and waits for every connection to
/// finish its last response.
///
/// HTTP/1.1 only, driven through hyper's own connection builder rather than `axum::serve`: axum's
/// HTTP/1-or-2 detection reads the first bytes of each connection on their own, after which hyper
/// grows that connection's read buffer from 8 to 16 KiB for the rest of the request, and an idle
/// SSE connection keeps it for as long as it is open.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: SharedGateway,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut background = gateway.replicas.start();
    let refused = gateway
        .refused_keys
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(refused) = refused {
        background.push(tokio::spawn(end_refused_keys(gateway.clone(), refused)));
    }
    let draining = gateway.clone();
    let mut shutdown = std::pin::pin!(async move {
        shutdown.await;
        tracing::info!("shutting down: closing sessions and draining in-flight calls");
        draining.drain(Duration::from_secs(10)).await;
    });
    // The route table is built once and shared by every connection (cloning it is an Arc).
    let limits = ConnectionLimits::new(&gateway.options);
    let header_timeout = gateway.options.header_read_timeout;
    let app = router(gateway);
    let mut http = hyper::server::conn::http1::Builder::new();
    // Headers (and the wait for the next request on a kept-alive connection, and a bare connect)
    // are bounded; a response that streams (SSE) is not, since no headers are being read then.
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Connections finish their current response and close once this says so.
    let (stop, stopped) = tokio::sync::watch::channel(());
    let connections = TaskTracker::new();
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = limits.admit(peer.ip()) else {
            refuse_connection(socket);
            continue;
        };
        // The router is shared (a clone is an Arc); each request learns its connection's peer.
        let router = app.clone();
        let peer = Peer(peer.ip());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(peer);
            tower_service::Service::call(&mut router.clone(), request.map(axum::body::Body::new))
        });
        let mut connection = http.serve_connection(hyper_util::rt::TokioIo::new(socket), service);
        let mut stopped = stopped.clone();
        // hyper's connection is Unpin: the task drives it where it lies instead of moving it into
        // a pinned local (which can leave the task holding room for two).
        connections.spawn(async move {
            let _slot = slot;
            tokio::select! {
                _ = &mut connection => return,
                _ = stopped.changed() => std::pin::Pin::new(&mut connection).graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    drop(listener);
    drop(stop);
    connections.close();
    connections.wait().await;
    for task in background {
        task.abort();
    }
    Ok(())
}

/// Open connections, in all and per client address.
struct ConnectionLimits {
    open: Arc<std::sync::Mutex<(usize, HashMap<std::net::IpAddr, usize>)>>,
    per_ip: usize,
    total: usize,
}

/// A connection's place under the limits, given back when it closes.
struct ConnectionSlot {
    open: Arc<std::sync::Mutex<(usize, HashMap<std::net::IpAddr, usize>)>>,
    ip: std::net::IpAddr,
}

impl ConnectionLimits {
    fn new(options: &ServerOptions) -> ConnectionLimits {
        ConnectionLimits {
            open: Arc::default(),
            per_ip: options.max_connections_per_ip,
            total: options.max_connections,
        }
    }

    fn admit(&self, ip: std::net::IpAddr) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_ip) = &mut *open;
        let from_ip = by_ip.entry(ip).or_default();
        if *total >= self.total || *from_ip >= self.per_ip {
            if *from_ip == 0 {
                by_ip.remove(&ip);
            }
            return None;
        }
        *from_ip += 1;
        *total += 1;
        Some(ConnectionSlot {
            open: self.open.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_ip) = &mut *open;
        *total -= 1;
        if let Some(from_ip) = by_ip.get_mut(&self.ip) {
            *from_ip -= 1;
            if *from_ip == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// At the connection limit: one short 503 (when the socket takes it at once), then close.
fn refuse_connection(socket: tokio::net::TcpStream) {
    tracing::warn!("connection refused: at the connection limit");
    let _ = socket.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n\
          Connection: close\r\nContent-Length: 94\r\n\r\n\
          {\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many open connections; retry shortly\"}}",
    );
}

/// A key the API refused mid-call (revoked, expired): forgotten by the auth cache at once, and its
/// sessions end on every replica, streams included, rather than living on until they idle out.
async fn end_refused_keys(
    gateway: SharedGateway,
    mut refused: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    while let Some(fingerprint) = refused.recv().await {
        gateway.auth.forget(&fingerprint);
        match gateway.replicas.end_key(&fingerprint).await {
            Ok(ended) => tracing::info!(
                sessions = ended,
                "the API refused a key: its sessions ended"
            ),
            Err(refusal) => tracing::warn!(
                ?refusal,
                "the API refused a key, and its sessions could not be ended"
            ),
        }
    }
}

/// As axum::serve and hyper 0.14 did: a failed connection is the client's business; anything
/// else (out of file descriptors, typically) is logged and waited out for a second.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_origins_are_allowed_by_default_and_others_only_when_listed() {
        for ok in [
            "http://localhost:6274",
            "http://127.0.0.1",
            "https://[::1]:8080",
        ] {
            assert!(origin_allowed(ok, &[]), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "http://localhost.evil.example",
            "null",
            "file://",
        ] {
            assert!(!origin_allowed(bad, &[]), "{bad}");
        }
        assert!(origin_allowed(
            "https://app.trainar.ai",
            &["https://app.trainar.ai".into()]
        ));
    }
}

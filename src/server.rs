//! The gateway's HTTP face: shared state, the router, and what every endpoint shares: the Origin
//! allow-list and CORS, authentication, per-key limits, health checks, graceful shutdown.
//!
//! The transports (`transport::streamable`, `transport::sse`) only turn HTTP into JSON-RPC
//! messages for the core (`mcp::core`) and back.

use crate::auth::{AuthFailure, Authenticator, Principal};
use crate::mcp::core::Core;
use crate::mcp::jsonrpc::{ErrorCode, failure};
use crate::mcp::presentation::Presentation;
use crate::mcp::selection::Selection;
use crate::mcp::session::SessionStore;
use crate::transport::{sse, streamable};
use crate::upstream::Upstream;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
        }
    }
}

/// Everything the handlers share.
pub struct Gateway {
    pub core: Core,
    pub auth: Authenticator,
    pub sessions: Arc<dyn SessionStore>,
    pub options: ServerOptions,
    pub upstream: Upstream,
    limiter: RateLimiter,
    /// Spawned work (SSE message handling) that graceful shutdown waits for.
    pub tasks: TaskTracker,
}

pub type SharedGateway = Arc<Gateway>;

/// Everything needed to build a gateway in front of one upstream API.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub core: crate::mcp::core::CoreOptions,
    pub server: ServerOptions,
    /// How long one upstream request may take.
    pub call_timeout: Duration,
    /// How long a resolved key is trusted before introspection is asked again.
    pub auth_cache_ttl: Duration,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            core: crate::mcp::core::CoreOptions::default(),
            server: ServerOptions::default(),
            call_timeout: Duration::from_secs(30),
            auth_cache_ttl: Duration::from_secs(30),
        }
    }
}

impl Gateway {
    /// A gateway to the API at `upstream_url` (production, or a sandbox), with in-memory sessions.
    pub fn build(upstream_url: &str, config: GatewayConfig) -> Result<SharedGateway, String> {
        let upstream = Upstream::new(upstream_url, config.call_timeout)
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Arc::new(Gateway::new(
            Core::new(upstream.clone(), config.core),
            Authenticator::new(upstream.clone(), config.auth_cache_ttl),
            Arc::new(crate::mcp::session::MemorySessionStore::default()),
            config.server,
            upstream,
        )))
    }

    pub fn new(
        core: Core,
        auth: Authenticator,
        sessions: Arc<dyn SessionStore>,
        options: ServerOptions,
        upstream: Upstream,
    ) -> Gateway {
        let limiter = RateLimiter::new(options.requests_per_minute);
        Gateway {
            core,
            auth,
            sessions,
            options,
            upstream,
            limiter,
            tasks: TaskTracker::new(),
        }
    }

    /// The caller, or the response that refuses them (401, or 503 when the API is unreachable).
    pub async fn principal(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Arc<Principal>, Refused> {
        if query.is_some_and(|q| q.contains("tak_")) {
            // A key in a URL ends up in proxy and server logs: refuse it, whatever else is sent.
            return Err(Box::new(unauthorized(
                "API keys are never accepted in the URL; send `Authorization: Bearer tak_…`",
            )));
        }
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        self.auth
            .authenticate(authorization)
            .await
            .map_err(|failure| {
                Box::new(match failure {
                    AuthFailure::Unavailable(message) => {
                        tracing::warn!(%message, "key introspection failed");
                        http_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "upstream_unavailable",
                            "the TrainAR API is unreachable; try again",
                        )
                    }
                    other => unauthorized(other.message()),
                })
            })
    }

    /// 429 with Retry-After when `principal` is over its request rate.
    pub fn check_rate(&self, principal: &Principal) -> Result<(), Refused> {
        self.limiter
            .check(&principal.fingerprint)
            .map_err(|retry_after| {
                let mut response = http_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    &format!("too many requests for this key; retry in {retry_after} s"),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                Box::new(response)
            })
    }

    /// Room for one more session of `principal`. At the cap, the key's longest-idle session that
    /// is neither streaming nor busy makes way (clients that never DELETE their Streamable HTTP
    /// sessions, such as the Inspector, would otherwise be locked out until idle expiry; the
    /// evicted session's next request gets 404, which tells its client to initialize again).
    /// 429 when every session of the key is in use.
    pub fn check_session_cap(&self, principal: &Principal) -> Result<(), Refused> {
        if self.sessions.count_for_key(&principal.fingerprint) < self.options.sessions_per_key {
            return Ok(());
        }
        if let Some(evicted) = self.sessions.evict_idlest(&principal.fingerprint) {
            evicted.close();
            tracing::info!(key_id = %principal.key_id, idle_secs = evicted.idle_for().as_secs(), "session evicted for a new one");
            return Ok(());
        }
        let mut response = http_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sessions",
            &format!(
                "this key already holds {} sessions, all streaming or busy; close one first",
                self.options.sessions_per_key
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(30u32));
        Err(Box::new(response))
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

    /// Ends every session (their streams close) and waits for spawned work, bounded by `grace`.
    pub async fn drain(&self, grace: Duration) {
        for session in self.sessions.drain() {
            session.close();
        }
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

/// A token bucket per key: `per_minute` requests a minute, bursts up to a sixth of that.
struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    fn new(per_minute: u32) -> RateLimiter {
        let per_minute = f64::from(per_minute.max(1));
        RateLimiter {
            per_second: per_minute / 60.0,
            burst: (per_minute / 6.0).max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token, or says how many seconds until one is available.
    fn check(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            buckets.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(600));
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
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

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(gateway): State<SharedGateway>) -> Response {
    match gateway.upstream.probe().await {
        Ok(()) => axum::Json(json!({"status": "ready", "upstream": "reachable"})).into_response(),
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
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(streamable::routes())
        .merge(sse::routes())
        .fallback(|| async {
            http_error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; MCP is at /mcp and /sse",
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
    let sweeper = tokio::spawn(expire_idle_sessions(gateway.clone()));
    let draining = gateway.clone();
    let mut shutdown = std::pin::pin!(async move {
        shutdown.await;
        tracing::info!("shutting down: closing sessions and draining in-flight calls");
        draining.drain(Duration::from_secs(10)).await;
    });
    // The route table is built once and shared by every connection (cloning it is an Arc).
    let app = router(gateway);
    let http = hyper::server::conn::http1::Builder::new();
    // Connections finish their current response and close once this says so.
    let (stop, stopped) = tokio::sync::watch::channel(());
    let connections = TaskTracker::new();
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut connection = http.serve_connection(hyper_util::rt::TokioIo::new(socket), service);
        let mut stopped = stopped.clone();
        // hyper's connection is Unpin: the task drives it where it lies instead of moving it into
        // a pinned local (which can leave the task holding room for two).
        connections.spawn(async move {
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
    sweeper.abort();
    Ok(())
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

async fn expire_idle_sessions(gateway: SharedGateway) {
    let period = (gateway.options.idle_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        tokio::time::sleep(period).await;
        for session in gateway.sessions.remove_idle(gateway.options.idle_timeout) {
            session.close();
        }
    }
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

    #[test]
    fn the_rate_limiter_allows_a_burst_then_says_when_to_retry() {
        let limiter = RateLimiter::new(60);
        let allowed = (0..20).filter(|_| limiter.check("k").is_ok()).count();
        assert_eq!(allowed, 10);
        assert!(limiter.check("k").unwrap_err() >= 1);
        assert!(limiter.check("other").is_ok());
    }
}

//! The gateway's HTTP face: the router, and what every endpoint shares at the edge: the Origin
//! allow-list and CORS, the body limit, health checks, the connection limits, graceful shutdown.
//!
//! It assembles the routes of the transports (`transport::streamable`, `transport::sse`), which
//! only turn HTTP into JSON-RPC messages for the core (`mcp::core`) and back. What handlers share
//! lives below both: the gateway handle in `gateway`, refusals as responses in `http`.

use crate::gateway::{ServerOptions, SharedGateway};
use crate::http::{Peer, http_error};
use crate::sync::lock;
use crate::transport::{sse, streamable};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::body::Incoming;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::task::TaskTracker;

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

/// Every request's way in: `origin_and_cors`, and `Connection: close` on an answer given before
/// the request's body was read to its end.
///
/// Why: hyper then closes the connection after the answer (the unread body is still on the
/// wire) without saying so in the answer it already wrote, so a keep-alive client (httpx in the
/// Python SDK's sign-in, whose first POST gets a 401) sent its next request on a closing
/// connection and got "disconnected without a response". Saying it makes the client reconnect.
async fn at_the_edge(
    State(gateway): State<SharedGateway>,
    request: Request,
    next: Next,
) -> Response {
    if !declares_body(request.headers()) {
        return origin_and_cors(&gateway, request, next).await;
    }
    let ended = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        axum::body::Body::new(ReadToEnd {
            body,
            ended: ended.clone(),
        })
    });
    let mut response = origin_and_cors(&gateway, request, next).await;
    if !ended.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Whether the request has a body to read: a length above zero, or chunks.
fn declares_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || crate::transport::request::declared_length(headers).is_some_and(|length| length > 0)
}

/// A request body that notes when it has been read to its end.
struct ReadToEnd {
    body: axum::body::Body,
    ended: Arc<AtomicBool>,
}

impl hyper::body::Body for ReadToEnd {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled {
            self.ended.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Origin validation (403, against DNS rebinding) and CORS for allowed browser origins.
async fn origin_and_cors(gateway: &SharedGateway, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let Some(origin) = origin else {
        return next.run(request).await;
    };
    if !origin_allowed(&origin, &gateway.options.allowed_origins) {
        crate::telemetry::record_refused(crate::telemetry::Refusal::Origin);
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
    let base = crate::oauth::base_url(gateway.options.public_url.as_deref(), &headers);
    axum::response::Html(crate::page::index(&base)).into_response()
}

/// RFC 9728 protected-resource metadata: for the server, and for each MCP endpoint.
async fn resource_metadata(
    State(gateway): State<SharedGateway>,
    headers: HeaderMap,
    endpoint: &'static str,
) -> Response {
    let base = crate::oauth::base_url(gateway.options.public_url.as_deref(), &headers);
    let document = crate::oauth::metadata(
        &base,
        endpoint,
        gateway.options.authorization_server.as_deref(),
    );
    axum::Json(document).into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Ready when the API answers. With Redis, its state is reported too, but an unreachable Redis
/// does not make the replica unready: the stateless era still works, and a load balancer that
/// took every replica out at once would turn a Redis outage into a full one.
async fn readyz(State(gateway): State<SharedGateway>) -> Response {
    if gateway.is_draining() {
        // A load balancer stops sending here; what is in flight finishes.
        return http_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "this gateway is shutting down",
        );
    }
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
        .route(
            crate::oauth::METADATA_PATH,
            get(|state, headers| resource_metadata(state, headers, "")),
        )
        .route(
            &format!("{}/mcp", crate::oauth::METADATA_PATH),
            get(|state, headers| resource_metadata(state, headers, "/mcp")),
        )
        .route(
            &format!("{}/sse", crate::oauth::METADATA_PATH),
            get(|state, headers| resource_metadata(state, headers, "/sse")),
        )
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
        .layer(middleware::from_fn_with_state(gateway.clone(), at_the_edge))
        .with_state(gateway)
}

/// Serves on `listener` until `shutdown` resolves; then drains (`Gateway::drain`: refuses new
/// sessions that would hold a stream here or end with this process, ends this replica's sessions,
/// closing SSE streams, and lets in-flight calls finish, bounded by 10 s) while still accepting,
/// so that requests a load balancer sends before it sees `/readyz` fail are answered; then stops
/// accepting and waits for every connection to finish its last response.
///
/// The accept loop runs here; each connection is served on a lane (`lanes`), the one with the
/// fewest connections.
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
    // Lanes first: nothing else has started if their threads cannot.
    let lanes = crate::lanes::Lanes::start(gateway.options.lanes)?;
    let mut background = gateway.replicas.start();
    if let Some(refused) = gateway.take_refused_keys() {
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
        // Nagle off: an SSE stream writes one small event after another, and with Nagle each
        // would wait for the ACK of the one before, which a client that sends nothing on that
        // connection may delay (up to 40 ms on Linux).
        let _ = socket.set_nodelay(true);
        // The router is shared (a clone is an Arc); each request learns its connection's peer.
        let router = app.clone();
        let peer = Peer(peer.ip());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(peer);
            tower_service::Service::call(&mut router.clone(), request.map(axum::body::Body::new))
        });
        // Handed to a lane as a std socket, registered there with the lane's reactor.
        let socket = match socket.into_std() {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!(error = %e, "an accepted connection could not be handed on");
                continue;
            }
        };
        let mut stopped = stopped.clone();
        lanes.spawn(|| {
            let socket = tokio::net::TcpStream::from_std(socket)
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "an accepted connection could not be served");
                })
                .ok()?;
            let mut connection =
                http.serve_connection(hyper_util::rt::TokioIo::new(socket), service);
            // hyper's connection is Unpin: the task drives it where it lies instead of moving it
            // into a pinned local (which can leave the task holding room for two).
            Some(connections.track_future(async move {
                let _slot = slot;
                tokio::select! {
                    _ = &mut connection => return,
                    _ = stopped.changed() => std::pin::Pin::new(&mut connection).graceful_shutdown(),
                }
                let _ = connection.await;
            }))
        });
    }
    drop(listener);
    drop(stop);
    connections.close();
    connections.wait().await;
    lanes.stop().await;
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
        let mut open = lock(&self.open);
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
        let mut open = lock(&self.open);
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
    crate::telemetry::record_refused(crate::telemetry::Refusal::Connections);
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

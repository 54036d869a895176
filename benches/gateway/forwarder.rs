//! A second hop that only forwards, built on the gateway's own HTTP stack (axum in front,
//! hyper-util's pooled client behind): the shape of axum's reverse-proxy example. HAProxy's row
//! shows what any hop costs on this machine; this one shows what the stack the gateway is built
//! on costs before the gateway does any MCP work, so that the gap between the gateway and HAProxy
//! splits into "the stack" and "ours".
//!
//! It runs as a child process (the bench binary started again with `--forward-only LISTEN
//! UPSTREAM`) so that its CPU is read from its own pid, as the gateway's and HAProxy's are. It
//! allocates with the bench's allocator (the system's), not the gateway's mimalloc: a global
//! allocator here would also change the sandbox's, which runs in the bench process.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;

/// The flag that makes the bench binary a forwarder.
pub const FLAG: &str = "--forward-only";

#[derive(Clone)]
struct Upstream {
    client: Client<HttpConnector, Body>,
    authority: String,
}

/// Serves on `listen`, forwarding every request to `upstream`, until killed. One thread: a
/// current-thread runtime, as each of the gateway's lanes is. (In one full run each, a two-worker
/// runtime put the hop's p50 at c=1 126 µs over direct's, against 76 µs for this, presumably from
/// wakeups across threads, and gave no more calls/s at c=64: at about 40 µs of CPU per call one
/// thread is never what limits the hop here.)
pub fn serve(listen: SocketAddr, upstream: SocketAddr) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("the forwarder's runtime: {e}"))?;
    runtime.block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let upstream = Upstream {
            client: Client::builder(TokioExecutor::new()).build(connector),
            authority: upstream.to_string(),
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("{listen}: {e}"))?;
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = Router::new().fallback(forward).with_state(upstream);
        axum::serve(listener, app)
            .await
            .map_err(|e| format!("the forwarder: {e}"))
    })
}

async fn forward(State(upstream): State<Upstream>, mut request: Request) -> Response {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    match Uri::try_from(format!("http://{}{path}", upstream.authority)) {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    }
    match upstream.client.request(request).await {
        Ok(response) => response.into_response(),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

//! trainar-mcp: the TrainAR Tenant REST API as MCP tools.
//!
//! Layout (see ARCHITECTURE.md for the path of a tool call):
//! - `generated`: everything build.rs derives from spec/trainar.yaml (client, catalogue, dispatch).
//! - `catalogue`: the tool catalogue at run time: lookup and selection by scope, toolset, name.
//! - `scopes`: a key's scopes with the spec's hierarchy applied, and the check for one operation.
//! - `upstream`: the generated client with one shared pool, the caller's key per request, and its
//!   errors mapped for callers.
//! - `upstream_client`: the upstream leg's connections: a pooled hyper client over rustls.
//! - `api_key`: the `tak_` secret, which never reaches a log.
//! - `diff`: `tools diff`, the breaking/compatible classification of two catalogues.
//! - `auth`: `Authorization: Bearer tak_…` → `Principal`, through the API's key introspection.
//! - `mcp`: the protocol core (JSON-RPC, lifecycle, tools), sessions and tool selection.
//! - `replicas`: sessions and per-key limits, in this process or shared through Redis.
//! - `rate_limiter`: a token bucket per key in this process (a leaf: replicas and auth use it).
//! - `transport`: Streamable HTTP (`/mcp`) and legacy SSE (`/sse`), thin over the core.
//! - `gateway`: the handle every handler shares (core, auth, sessions and limits, upstream), built
//!   from `GatewayConfig`; the caller, rate and session checks a request passes.
//! - `http`: the connection's `Peer` and the responses that refuse a request (below the router and
//!   the transports alike).
//! - `server`: the gateway's router, Origin/CORS, connection limits, health, graceful shutdown.
//! - `lanes`: the threads that serve connections, a single-threaded runtime each.
//! - `sandbox`: the embedded REST API (a second implementation of the spec; no gateway inside).
//! - `stats`: `tools stats`, what each listing mode costs in bytes and tokens, dialect pass counts.
//! - `validation`: JSON Schema checks naming every failing field (gateway and sandbox).
//! - `logging`: the process's log lines, batched to stderr by a thread of their own.
//! - `page`: the HTML page at `GET /` (how to connect, the catalogue with a scope filter).
//! - `telemetry`: the Prometheus metrics (names, labels, recorder, the `/metrics` listener).
//! - `trace_context`: W3C `traceparent`/`tracestate`, read, started and passed on.
//! - `audit`: the audit trail, one JSON line per tool call, on a writer thread of its own.

pub mod api_key;
pub mod audit;
pub mod auth;
pub mod catalogue;
pub mod diff;
pub mod gateway;
pub mod generated;
pub mod http;
pub mod json_string;
pub mod lanes;
pub mod log_line;
pub mod logging;
pub mod mcp;
pub mod oauth;
pub mod page;
pub mod rate_limiter;
pub mod replicas;
pub mod sandbox;
pub mod scopes;
pub mod server;
pub mod stats;
pub mod sync;
pub mod telemetry;
pub mod trace_context;
pub mod transport;
pub mod upstream;
pub mod upstream_client;
pub mod validation;

/// Installs ring as rustls' crypto provider. reqwest is built without a default one (aws-lc is
/// slow to build), so every `reqwest::Client` in the process needs this first. Idempotent.
pub fn install_tls_provider() {
    // A second install fails harmlessly; the first one wins.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

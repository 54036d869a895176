//! Prometheus metrics: every metric the gateway exports (its name, labels and meaning, in one
//! place), the recorder, and the separate listener that serves `/metrics`.
//!
//! Without `--metrics-listen` no recorder is installed and every `record_*` call below returns at
//! once (`ENABLED`): the `metrics` macros would still build each key and its labels for the no-op
//! recorder.
//!
//! Invariant: label values come from closed sets (the catalogue's tool names, the outcomes and
//! reasons named here, protocol versions, status classes); never a key, a session id or free
//! text, so the number of series stays bounded whatever clients send.

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set once a recorder is installed.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether metrics are recorded (for callers whose labels cost something to compute).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub const TOOL_CALLS: &str = "trainar_tool_calls_total";
pub const TOOL_CALL_SECONDS: &str = "trainar_tool_call_duration_seconds";
pub const TOOL_CALLS_IN_FLIGHT: &str = "trainar_tool_calls_in_flight";
pub const UPSTREAM_RESPONSES: &str = "trainar_upstream_responses_total";
pub const UPSTREAM_SECONDS: &str = "trainar_upstream_request_duration_seconds";
pub const UPSTREAM_BODIES_TOO_LARGE: &str = "trainar_upstream_bodies_too_large_total";
pub const KEY_LOOKUPS: &str = "trainar_key_lookups_total";
pub const KEY_INTROSPECTION_SECONDS: &str = "trainar_key_introspection_duration_seconds";
pub const SESSIONS_OPEN: &str = "trainar_sessions_open";
pub const SESSIONS_OPENED: &str = "trainar_sessions_opened_total";
pub const SSE_STREAMS_OPEN: &str = "trainar_sse_streams_open";
pub const SLOW_CLIENTS_DROPPED: &str = "trainar_sse_slow_clients_dropped_total";
pub const REQUESTS_REFUSED: &str = "trainar_requests_refused_total";
pub const AUDIT_WRITE_FAILURES: &str = "trainar_audit_write_failures_total";
pub const AUDIT_LINES_DROPPED: &str = "trainar_audit_lines_dropped_total";
pub const BUILD_INFO: &str = "trainar_build_info";

/// Every metric name above, for the dashboard check and the README.
pub const ALL: [&str; 16] = [
    TOOL_CALLS,
    TOOL_CALL_SECONDS,
    TOOL_CALLS_IN_FLIGHT,
    UPSTREAM_RESPONSES,
    UPSTREAM_SECONDS,
    UPSTREAM_BODIES_TOO_LARGE,
    KEY_LOOKUPS,
    KEY_INTROSPECTION_SECONDS,
    SESSIONS_OPEN,
    SESSIONS_OPENED,
    SSE_STREAMS_OPEN,
    SLOW_CLIENTS_DROPPED,
    REQUESTS_REFUSED,
    AUDIT_WRITE_FAILURES,
    AUDIT_LINES_DROPPED,
    BUILD_INFO,
];

/// Latency buckets, in seconds: from a cached sandbox read (~0.3 ms) to the default call timeout.
const SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// How a tool call ended, as counted and logged. A closed set: it is a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The key lacks a scope the tool needs (found here, or by the API's 403).
    ScopeDenied,
    /// The arguments do not fit the tool's schema; nothing was sent.
    InvalidArguments,
    /// The API answered 4xx (other than 401/403).
    Upstream4xx,
    /// The API answered 5xx.
    Upstream5xx,
    /// The API did not answer within the call timeout.
    Timeout,
    /// The API could not be reached (connection refused, TLS, a non-API answer).
    Unreachable,
    /// The API no longer accepts the key (401 during the call).
    KeyRefused,
    /// The client cancelled the call, or went away, before it was answered.
    Cancelled,
    /// Any other isError result: a result over the size limit, an API answer that breaks the
    /// output schema, a meta-tool's bad arguments.
    ToolError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ScopeDenied => "scope_denied",
            Outcome::InvalidArguments => "invalid_arguments",
            Outcome::Upstream4xx => "upstream_4xx",
            Outcome::Upstream5xx => "upstream_5xx",
            Outcome::Timeout => "timeout",
            Outcome::Unreachable => "unreachable",
            Outcome::KeyRefused => "key_refused",
            Outcome::Cancelled => "cancelled",
            Outcome::ToolError => "tool_error",
        }
    }
}

/// The transport a message arrived on (a closed set: it is a label value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Streamable,
    Sse,
    Stdio,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Streamable => "streamable",
            Transport::Sse => "sse",
            Transport::Stdio => "stdio",
        }
    }
}

/// Why a request was refused before it reached the protocol core (label `reason`).
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    RateLimit,
    SessionCap,
    Origin,
    BodySize,
    Auth,
    Connections,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::RateLimit => "rate_limit",
            Refusal::SessionCap => "session_cap",
            Refusal::Origin => "origin",
            Refusal::BodySize => "body_size",
            Refusal::Auth => "auth",
            Refusal::Connections => "connections",
        }
    }
}

/// Installs the Prometheus recorder for this process and describes every metric. Errors if a
/// recorder is already installed (only one per process).
pub fn install() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        .map_err(|e| format!("metrics buckets: {e}"))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| format!("a metrics recorder is already installed: {e}"))?;
    ENABLED.store(true, Ordering::Relaxed);
    describe();
    start_at_zero();
    gauge!(BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "spec_sha256" => env!("TRAINAR_SPEC_SHA256"))
    .set(1.0);
    Ok(handle)
}

/// Series that exist before their first event, so that dashboards and alerts (`rate()`, absent
/// series) see a 0 rather than nothing.
fn start_at_zero() {
    for reason in [
        Refusal::RateLimit,
        Refusal::SessionCap,
        Refusal::Origin,
        Refusal::BodySize,
        Refusal::Auth,
        Refusal::Connections,
    ] {
        counter!(REQUESTS_REFUSED, "reason" => reason.as_str()).absolute(0);
    }
    for transport in [Transport::Streamable, Transport::Sse, Transport::Stdio] {
        counter!(SESSIONS_OPENED, "transport" => transport.as_str()).absolute(0);
        gauge!(SESSIONS_OPEN, "transport" => transport.as_str()).set(0.0);
    }
    for counter in [
        UPSTREAM_BODIES_TOO_LARGE,
        SLOW_CLIENTS_DROPPED,
        AUDIT_WRITE_FAILURES,
        AUDIT_LINES_DROPPED,
    ] {
        counter!(counter).absolute(0);
    }
    gauge!(SSE_STREAMS_OPEN).set(0.0);
    gauge!(TOOL_CALLS_IN_FLIGHT).set(0.0);
}

fn describe() {
    describe_counter!(
        TOOL_CALLS,
        "Tool calls answered, by tool, outcome, transport (streamable, sse, stdio) and protocol version"
    );
    describe_histogram!(
        TOOL_CALL_SECONDS,
        Unit::Seconds,
        "Whole tool calls, from the parsed request to the shaped result, by tool and transport"
    );
    describe_gauge!(TOOL_CALLS_IN_FLIGHT, "Tool calls being answered now");
    describe_counter!(
        UPSTREAM_RESPONSES,
        "Responses from the TrainAR API to tool calls, by status class (2xx, 4xx, 5xx, or error: none came)"
    );
    describe_histogram!(
        UPSTREAM_SECONDS,
        Unit::Seconds,
        "The upstream leg of tool calls: request sent to body read"
    );
    describe_counter!(
        UPSTREAM_BODIES_TOO_LARGE,
        "API responses refused for being over --max-upstream-body-bytes"
    );
    describe_counter!(
        KEY_LOOKUPS,
        "Key and access-token checks, by result: hit (cached), miss_ok, miss_refused, failed (the API could not be asked), throttled"
    );
    describe_histogram!(
        KEY_INTROSPECTION_SECONDS,
        Unit::Seconds,
        "Key introspection calls to the TrainAR API"
    );
    describe_gauge!(
        SESSIONS_OPEN,
        "Sessions held by this process, by transport (with --redis, sessions live in Redis and this counts none)"
    );
    describe_counter!(SESSIONS_OPENED, "Sessions opened here, by transport");
    describe_gauge!(
        SSE_STREAMS_OPEN,
        "Legacy SSE streams held open by this process"
    );
    describe_counter!(
        SLOW_CLIENTS_DROPPED,
        "SSE clients dropped for not reading their stream"
    );
    describe_counter!(
        REQUESTS_REFUSED,
        "Requests refused before the protocol core, by reason (rate_limit, session_cap, origin, body_size, auth, connections)"
    );
    describe_counter!(
        AUDIT_WRITE_FAILURES,
        "Failed writes to the audit log (a full disk, say); the lines are kept and retried"
    );
    describe_counter!(
        AUDIT_LINES_DROPPED,
        "Audit lines given up after the retry buffer filled while the log could not be written"
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; labels say the version and the spec's SHA-256"
    );
}

/// Serves `/metrics` (and nothing else: 404) on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
) -> std::io::Result<()> {
    use axum::http::header;
    use axum::routing::get;
    let render = move || {
        let handle = handle.clone();
        async move {
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
        }
    };
    let app = axum::Router::new().route("/metrics", get(render));
    axum::serve(listener, app).await
}

/// Keeps the exporter's histograms drained (they grow between renders otherwise).
pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(5));
        loop {
            ticks.tick().await;
            handle.run_upkeep();
        }
    });
}

/// Binds `address` for `/metrics`, failing loudly rather than serving without metrics.
pub async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address} for metrics: {e}"))
}

pub fn record_tool_call(
    tool: &'static str,
    outcome: Outcome,
    transport: &'static str,
    era: &'static str,
    elapsed: Duration,
) {
    if !enabled() {
        return;
    }
    counter!(TOOL_CALLS, "tool" => tool, "outcome" => outcome.as_str(),
        "transport" => transport, "version" => era)
    .increment(1);
    histogram!(TOOL_CALL_SECONDS, "tool" => tool, "transport" => transport)
        .record(elapsed.as_secs_f64());
}

/// One upstream leg: `status` is None when no response came.
pub fn record_upstream(status: Option<u16>, elapsed: Duration) {
    if !enabled() {
        return;
    }
    let class = match status {
        Some(200..=299) => 0,
        Some(300..=399) => 1,
        Some(400..=499) => 2,
        Some(500..=599) => 3,
        Some(_) => 4,
        None => 5,
    };
    let handles = per_call_handles();
    handles.upstream_responses[class].increment(1);
    handles.upstream_seconds.record(elapsed.as_secs_f64());
}

/// Handles of the per-call metrics whose labels are fixed, looked up once: a macro looks its
/// metric up in the registry on every use (hashing the name and labels).
struct PerCallHandles {
    /// By class: 2xx, 3xx, 4xx, 5xx, other, error (no response).
    upstream_responses: [metrics::Counter; 6],
    upstream_seconds: metrics::Histogram,
    calls_in_flight: metrics::Gauge,
}

fn per_call_handles() -> &'static PerCallHandles {
    static HANDLES: std::sync::OnceLock<PerCallHandles> = std::sync::OnceLock::new();
    HANDLES.get_or_init(|| PerCallHandles {
        upstream_responses: ["2xx", "3xx", "4xx", "5xx", "other", "error"]
            .map(|class| counter!(UPSTREAM_RESPONSES, "class" => class)),
        upstream_seconds: histogram!(UPSTREAM_SECONDS),
        calls_in_flight: gauge!(TOOL_CALLS_IN_FLIGHT),
    })
}

pub fn record_upstream_body_too_large() {
    if !enabled() {
        return;
    }
    counter!(UPSTREAM_BODIES_TOO_LARGE).increment(1);
}

pub fn record_key_lookup(result: &'static str) {
    if !enabled() {
        return;
    }
    counter!(KEY_LOOKUPS, "result" => result).increment(1);
}

pub fn record_key_introspection(elapsed: Duration) {
    if !enabled() {
        return;
    }
    histogram!(KEY_INTROSPECTION_SECONDS).record(elapsed.as_secs_f64());
}

pub fn record_refused(reason: Refusal) {
    if !enabled() {
        return;
    }
    counter!(REQUESTS_REFUSED, "reason" => reason.as_str()).increment(1);
}

pub fn record_session_opened(transport: Transport) {
    if !enabled() {
        return;
    }
    counter!(SESSIONS_OPENED, "transport" => transport.as_str()).increment(1);
}

pub fn record_slow_client_dropped() {
    if !enabled() {
        return;
    }
    counter!(SLOW_CLIENTS_DROPPED).increment(1);
}

pub fn record_audit_write_failure() {
    if !enabled() {
        return;
    }
    counter!(AUDIT_WRITE_FAILURES).increment(1);
}

pub fn record_audit_lines_dropped(lines: u64) {
    if !enabled() {
        return;
    }
    counter!(AUDIT_LINES_DROPPED).increment(lines);
}

/// A gauge raised while this value lives: a session held, a stream open, a call in flight.
pub struct Held {
    gauge: metrics::Gauge,
}

impl Held {
    pub fn session(transport: Transport) -> Held {
        if !enabled() {
            return Held::idle();
        }
        Held::raise(gauge!(SESSIONS_OPEN, "transport" => transport.as_str()))
    }

    pub fn sse_stream() -> Held {
        if !enabled() {
            return Held::idle();
        }
        Held::raise(gauge!(SSE_STREAMS_OPEN))
    }

    pub fn call_in_flight() -> Held {
        if !enabled() {
            return Held::idle();
        }
        Held::raise(per_call_handles().calls_in_flight.clone())
    }

    fn raise(gauge: metrics::Gauge) -> Held {
        gauge.increment(1.0);
        Held { gauge }
    }

    /// Nothing to count: no recorder is installed.
    fn idle() -> Held {
        Held {
            gauge: metrics::Gauge::noop(),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

//! Where a message came from, as the protocol core needs to know it: the transport (a metrics
//! label and an audit field), the trace context its HTTP request carried, and where the
//! notifications about it go.

use crate::mcp::session::Notify;
pub use crate::telemetry::Transport;
use crate::trace_context::{TRACEPARENT, TRACESTATE, TraceContext};
use axum::http::{HeaderMap, HeaderName};
use serde_json::{Map, Value};

pub struct Via {
    pub transport: Transport,
    pub notify: Notify,
    pub trace_headers: TraceHeaders,
}

/// `traceparent` and `tracestate` of an HTTP request, as sent (checked only when used).
#[derive(Clone, Debug, Default)]
pub struct TraceHeaders {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl TraceHeaders {
    pub fn of(headers: &HeaderMap) -> TraceHeaders {
        let text = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        TraceHeaders {
            traceparent: text(&TRACEPARENT),
            tracestate: text(&TRACESTATE),
        }
    }
}

impl Via {
    /// A message that came with no trace context of its own transport (stdio).
    pub fn new(transport: Transport, notify: Notify) -> Via {
        Via {
            transport,
            notify,
            trace_headers: TraceHeaders::default(),
        }
    }

    pub fn http(transport: Transport, notify: Notify, trace_headers: &TraceHeaders) -> Via {
        Via {
            transport,
            notify,
            trace_headers: trace_headers.clone(),
        }
    }

    /// The trace a call belongs to: its own `params._meta` first (a client that traces each
    /// call), then the HTTP request's headers, else a new trace.
    pub fn trace_for(&self, params: &Map<String, Value>) -> TraceContext {
        let meta = params.get("_meta");
        let from_meta = |name: &str| meta.and_then(|m| m.get(name)).and_then(Value::as_str);
        let headers = &self.trace_headers;
        TraceContext::from_first([
            (from_meta("traceparent"), from_meta("tracestate")),
            (
                headers.traceparent.as_deref(),
                headers.tracestate.as_deref(),
            ),
        ])
    }
}

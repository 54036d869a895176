//! Transports (`streamable`: /mcp, `sse`: /sse, `stdio`): each turns its wire format into
//! JSON-RPC messages for `mcp::core` and back, and nothing else. Invariant: no protocol logic lives
//! here.

pub mod request;
pub mod sse;
pub mod stdio;
pub mod streamable;

use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::time::Duration;

/// A `text/event-stream` response for `events`, with a `: ping` comment every 15 s (proxies cut
/// idle streams at 60–125 s) and the headers that keep proxies from buffering or caching it.
pub fn event_stream<S>(events: S) -> Response
where
    S: futures_core::Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let mut response = Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("ping"),
        )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

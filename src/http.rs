//! What the gateway's HTTP side shares below the router and the transports: the connection's
//! `Peer`, and the responses that refuse a request (a JSON error body, 405 with `Allow`, 401 with
//! a Bearer challenge, a JSON-RPC error as HTTP, a refused admission as 429/404/503 with
//! `Retry-After`). Invariant: no state and no routes; pure constructors of responses.

use crate::mcp::jsonrpc::{ErrorCode, failure};
use crate::replicas::Refusal;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::IpAddr;

/// The address of the connection a request came on (a request extension set by `server::serve`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub IpAddr);

/// A refusal of the whole HTTP request (boxed: a `Response` is large, and refusals are rare).
pub type Refused = Box<Response>;

/// The JSON-RPC error code of every HTTP-level refusal (the implementation-defined server range);
/// `data.status` and `data.reason` say which.
pub const REFUSED: i64 = -32001;

/// An HTTP-level refusal, with a JSON-RPC error body: clients show a JSON-RPC error's message
/// (the Python SDK does, on any status), where they would show only the status otherwise. Its
/// `id` is null: the request may not have been read (a key is checked before the body).
pub fn http_error(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {
        "code": REFUSED, "message": message,
        "data": {"status": status.as_u16(), "reason": reason},
    }});
    (status, axum::Json(body)).into_response()
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

/// 401 with a Bearer `challenge` (`oauth::challenge`: it names the protected-resource metadata,
/// where OAuth clients start signing in).
pub fn unauthorized(message: &str, challenge: &str) -> Response {
    with_challenge(
        http_error(StatusCode::UNAUTHORIZED, "unauthorized", message),
        challenge,
    )
}

/// 403 `insufficient_scope` with a challenge naming the scopes needed (so a client can step up).
pub fn insufficient_scope(message: &str, challenge: &str) -> Response {
    with_challenge(
        http_error(StatusCode::FORBIDDEN, "insufficient_scope", message),
        challenge,
    )
}

fn with_challenge(mut response: Response, challenge: &str) -> Response {
    let value = HeaderValue::from_str(challenge)
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"trainar-mcp\""));
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, value);
    response
}

/// The response to a refused admission. An unknown session is worded by each transport (its
/// client reconnects differently); this is the general form.
pub fn refused(refusal: Refusal) -> Response {
    use crate::telemetry::{Refusal as Counted, record_refused};
    match refusal {
        Refusal::RateLimited { .. } => record_refused(Counted::RateLimit),
        Refusal::SessionCap { .. } => record_refused(Counted::SessionCap),
        Refusal::UnknownSession | Refusal::Unavailable { .. } | Refusal::ShuttingDown => {}
    }
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
        Refusal::ShuttingDown => (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "this gateway is shutting down; connect again (another replica answers), or use \
             protocol 2026-07-28, which needs no session"
                .to_string(),
            1,
        ),
    };
    let mut response = http_error(status, code, &message);
    if retry_after > 0 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    }
    response
}

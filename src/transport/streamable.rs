//! Streamable HTTP (2025-03-26 … 2025-11-25) on `/mcp` (and `/mcp/`, never redirected):
//! POST carries one message, answered with one JSON object (202 for notifications); GET is 405
//! (no server stream is offered); DELETE ends the session.

use crate::mcp::core::SUPPORTED_VERSIONS;
use crate::mcp::jsonrpc::{ErrorCode, Incoming, Reply, RpcError};
use crate::mcp::session::Session;
use crate::server::{SharedGateway, http_error, method_not_allowed, rpc_error};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

pub fn routes() -> Router<SharedGateway> {
    let endpoint = get(get_mcp).post(post_mcp).delete(delete_mcp);
    Router::new()
        .route("/mcp", endpoint.clone())
        .route("/mcp/", endpoint)
}

async fn get_mcp() -> Response {
    method_not_allowed(
        "POST, DELETE",
        "this server offers no server-initiated stream; POST messages to /mcp",
    )
}

async fn post_mcp(
    State(gateway): State<SharedGateway>,
    Query(query): Query<HashMap<String, String>>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let principal = match gateway.principal(&headers, raw_query.as_deref()).await {
        Ok(principal) => principal,
        Err(response) => return *response,
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            return rpc_error(
                status,
                &Value::Null,
                ErrorCode::InvalidRequest,
                &rejection.body_text(),
            );
        }
    };
    if let Some(version) = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok())
        && !SUPPORTED_VERSIONS.contains(&version)
    {
        let message = format!(
            "unsupported MCP-Protocol-Version {version}; supported: {}",
            SUPPORTED_VERSIONS.join(", ")
        );
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            ErrorCode::InvalidRequest,
            &message,
        );
    }
    if let Err(response) = gateway.check_rate(&principal) {
        return *response;
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                ErrorCode::ParseError,
                &format!("parse error: {e}"),
            );
        }
    };
    if value.is_array() {
        // A batch: only within an existing session (initialize cannot be batched).
        let Some(session) = headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|id| gateway.sessions.get(id, &principal.fingerprint))
        else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                ErrorCode::InvalidRequest,
                "a batch needs a session",
            );
        };
        return reply_response(gateway.core.handle_json(&principal, &session, value).await);
    }
    let message = match Incoming::parse(value) {
        Ok(message) => message,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, axum::Json(error.to_json())).into_response();
        }
    };

    if let Incoming::Request(request) = &message
        && request.method == "initialize"
    {
        let selection = match gateway.selection_for(&query) {
            Ok(selection) => selection,
            Err(response) => return *response,
        };
        if let Err(response) = gateway.check_session_cap(&principal) {
            return *response;
        }
        let session = Arc::new(Session::new(&principal.fingerprint, selection, None));
        gateway.sessions.insert(session.clone());
        let reply = gateway.core.handle(&principal, &session, message).await;
        let mut response = reply_response(reply);
        if let Ok(id) = HeaderValue::from_str(&session.id) {
            response.headers_mut().insert(SESSION_HEADER, id);
        }
        return response;
    }

    let session = match headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        Some(id) => match gateway.sessions.get(id, &principal.fingerprint) {
            Some(session) => session,
            None => {
                let id = request_id(&message);
                return rpc_error(
                    StatusCode::NOT_FOUND,
                    &id,
                    ErrorCode::InvalidRequest,
                    "unknown or expired session; initialize again",
                );
            }
        },
        None => match &message {
            // Without a session only what needs no session is answered: ping, and -32601 for
            // methods this era does not know (clients probe with them, e.g. server/discover).
            Incoming::Request(request) if !request.method.starts_with("tools/") => {
                Arc::new(Session::new(
                    &principal.fingerprint,
                    gateway.selection_for(&query).unwrap_or_default(),
                    None,
                ))
            }
            Incoming::Request(request) => {
                let error = RpcError::new(
                    request.id.clone(),
                    ErrorCode::InvalidRequest,
                    "missing Mcp-Session-Id header; send initialize first",
                );
                return (StatusCode::BAD_REQUEST, axum::Json(error.to_json())).into_response();
            }
            _ => return StatusCode::ACCEPTED.into_response(),
        },
    };
    reply_response(gateway.core.handle(&principal, &session, message).await)
}

fn request_id(message: &Incoming) -> Value {
    match message {
        Incoming::Request(request) => request.id.clone(),
        _ => Value::Null,
    }
}

/// A reply as one JSON object; no reply (a notification, a cancelled request) is 202.
fn reply_response(reply: Option<Reply>) -> Response {
    match reply {
        Some(reply) => (
            [(header::CONTENT_TYPE, "application/json")],
            reply.into_string(),
        )
            .into_response(),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

async fn delete_mcp(
    State(gateway): State<SharedGateway>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let principal = match gateway.principal(&headers, raw_query.as_deref()).await {
        Ok(principal) => principal,
        Err(response) => return *response,
    };
    let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return http_error(
            StatusCode::BAD_REQUEST,
            "missing_session",
            "send the Mcp-Session-Id header of the session to end",
        );
    };
    match gateway.sessions.get(id, &principal.fingerprint) {
        Some(session) => {
            gateway.sessions.remove(&session.id);
            session.close();
            StatusCode::NO_CONTENT.into_response()
        }
        None => http_error(
            StatusCode::NOT_FOUND,
            "unknown_session",
            "unknown or expired session",
        ),
    }
}

//! Legacy HTTP+SSE (2024-11-05): `GET /sse` opens a stream whose first event names the POST
//! endpoint (`messages?sessionId=…`, relative so it survives path prefixes); `POST /messages`
//! answers 202 and the reply travels on the stream. `POST /sse` is 405 (clients probe it).
//!
//! A stream's queue is bounded; a client that stops reading is dropped (see `Session::send`).

use super::request::{AcceptRule, RequestHead, checked_post};
use crate::gateway::SharedGateway;
use crate::http::{http_error, method_not_allowed, refused};
use crate::mcp::jsonrpc::{Demand, Reply};
use crate::mcp::session::{Notify, Session};
use crate::mcp::via::{TraceHeaders, Transport, Via};
use crate::replicas::{Refusal, Replicas};
use crate::telemetry::Held;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Messages a stream may have queued before its client counts as gone.
const STREAM_QUEUE: usize = 64;

pub fn routes() -> Router<SharedGateway> {
    Router::new()
        .route("/sse", get(open_stream).post(sse_post))
        .route("/messages", post(post_message))
}

async fn sse_post() -> Response {
    method_not_allowed("GET", "GET /sse opens the stream; POST to its endpoint")
}

async fn open_stream(
    State(gateway): State<SharedGateway>,
    Query(query): Query<HashMap<String, String>>,
    request: RequestHead,
) -> Response {
    let principal = match gateway
        .principal(&request.headers, &request.uri, request.peer.as_ref())
        .await
    {
        Ok(principal) => principal,
        Err(response) => return *response,
    };
    let selection = match gateway.selection_for(&query) {
        Ok(selection) => selection,
        Err(response) => return *response,
    };
    let (sender, receiver) = mpsc::channel(STREAM_QUEUE);
    let session =
        Session::new(&principal.fingerprint, selection, Some(sender)).opened_by(Transport::Sse);
    let session = match gateway.open_session(session, false).await {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let endpoint = match &gateway.options.public_url {
        Some(base) => format!(
            "{}/messages?sessionId={}",
            base.trim_end_matches('/'),
            session.id
        ),
        None => format!("messages?sessionId={}", session.id),
    };
    let key_check = tokio::spawn(end_when_key_refused(
        gateway.clone(),
        principal,
        Arc::downgrade(&session),
    ));
    let stream = SessionStream {
        endpoint: Some(endpoint),
        receiver,
        owner: Some((gateway.replicas.clone(), session)),
        key_check,
        _open: Held::sse_stream(),
    };
    super::event_stream(stream)
}

/// The SSE stream of one session: the endpoint event, then every queued message. When the
/// client goes away the stream is dropped, and with it the session.
struct SessionStream {
    endpoint: Option<String>,
    receiver: mpsc::Receiver<Reply>,
    owner: Option<(Arc<Replicas>, Arc<Session>)>,
    /// Ends the stream once the API no longer accepts its key; stopped with the stream.
    key_check: tokio::task::JoinHandle<()>,
    /// Counts the stream as open while it is.
    _open: Held,
}

/// A stream outlives any one request, so its key is checked again as often as the auth cache
/// expires (one introspection per key and period, however many streams share the key): once the
/// API refuses it (revoked, expired), the stream and its session end.
async fn end_when_key_refused(
    gateway: SharedGateway,
    principal: Arc<crate::auth::Principal>,
    session: std::sync::Weak<Session>,
) {
    let period = gateway.auth.ttl().max(std::time::Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        // Boxed: this task sleeps for the stream's whole life, and its future would otherwise
        // hold room for a whole key (or token) lookup, about 1 KiB per idle stream.
        if !Box::pin(gateway.auth.still_accepted(&principal.key)).await {
            if let Some(session) = session.upgrade() {
                tracing::info!(key_id = %principal.key_id, "the API refused the key of an open stream: it ends");
                gateway.replicas.stream_closed(&session);
            }
            return;
        }
    }
}

impl futures_core::Stream for SessionStream {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(endpoint) = self.endpoint.take() {
            return Poll::Ready(Some(Ok(Event::default().event("endpoint").data(endpoint))));
        }
        self.receiver.poll_recv(cx).map(|message| {
            message.map(|message| {
                Ok(Event::default()
                    .event("message")
                    .data(message.into_string()))
            })
        })
    }
}

impl Drop for SessionStream {
    fn drop(&mut self) {
        self.key_check.abort();
        if let Some((replicas, session)) = self.owner.take() {
            replicas.stream_closed(&session);
        }
    }
}

async fn post_message(
    State(gateway): State<SharedGateway>,
    Query(query): Query<HashMap<String, String>>,
    request: RequestHead,
    body: Body,
) -> Response {
    let Some(session_id) = query.get("sessionId") else {
        return http_error(
            StatusCode::BAD_REQUEST,
            "missing_session",
            "the sessionId query parameter is required",
        );
    };
    let (principal, body) = match checked_post(&gateway, &request, body, AcceptRule::Any).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let value = match serde_json::from_slice::<Value>(&body) {
        Ok(value) => value,
        Err(e) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                "parse_error",
                &format!("parse error: {e}"),
            );
        }
    };
    let demand = Demand::of(&value);
    if let Some(message) = gateway.batch_too_large(demand) {
        return http_error(StatusCode::BAD_REQUEST, "batch_too_large", &message);
    }
    let admitted = match gateway.admit(&principal, session_id, demand).await {
        Ok(admitted) => admitted,
        Err(Refusal::UnknownSession) => {
            return http_error(
                StatusCode::NOT_FOUND,
                "unknown_session",
                "unknown or expired session; open /sse again",
            );
        }
        Err(refusal) => return refused(refusal),
    };
    let worker = gateway.clone();
    let via = Via::http(
        Transport::Sse,
        Notify::Session,
        &TraceHeaders::of(&request.headers),
    );
    gateway.tasks.spawn(async move {
        let session = &admitted.session;
        // Replies, and JSON-RPC errors about the message, travel on the stream.
        if let Some(reply) = worker
            .core
            .handle_json(&principal, session, value, &via)
            .await
            && !session.send(reply)
        {
            // The client stopped reading (or left): end the session rather than buffer for it.
            worker.replicas.stream_closed(session);
        }
    });
    (StatusCode::ACCEPTED, "Accepted").into_response()
}

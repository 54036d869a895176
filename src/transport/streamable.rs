//! Streamable HTTP on `/mcp` (and `/mcp/`, never redirected), for both eras:
//!
//! - the handshake eras (2025-03-26 … 2025-11-25): `initialize` opens a session named by
//!   `Mcp-Session-Id`; DELETE ends it;
//! - the stateless era (2026-07-28): every POST carries its own envelope (see `envelope`), no
//!   session is kept, and any replica can answer.
//!
//! POST carries one message (a batch under 2025-03-26). A request is answered with one JSON
//! object, or, when the client accepts `text/event-stream` and the core has something to say
//! first (progress, log messages), with an SSE stream that ends on the reply; closing that stream
//! cancels the call. Notifications are 202. GET is 405: no standalone server stream is offered.

use super::request::{AcceptRule, RequestHead, checked_post};
use crate::auth::Principal;
use crate::gateway::SharedGateway;
use crate::http::{Refused, http_error, method_not_allowed, refused, rpc_error};
use crate::mcp::envelope::{self, RoutingHeaders};
use crate::mcp::jsonrpc::{Demand, ErrorCode, Incoming, Reply, RpcError};
use crate::mcp::session::{LogLevel, Notify, Session};
use crate::mcp::via::{TraceHeaders, Transport, Via};
use crate::replicas::{Admitted, Refusal};
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

// Names made once: looking a header up by `&str` parses and lowercases the name every time.
static SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
static VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");
static METHOD_HEADER: HeaderName = HeaderName::from_static("mcp-method");
static NAME_HEADER: HeaderName = HeaderName::from_static("mcp-name");
/// Notifications a response stream may have queued; beyond that they are dropped (advisory).
const STREAM_QUEUE: usize = 32;

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
    request: RequestHead,
    body: Body,
) -> Response {
    let accept = AcceptRule::JsonOrEventStream;
    let (principal, body) = match checked_post(&gateway, &request, body, accept).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let (headers, accepts) = (request.headers, request.accepts);
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
    let exchange = Exchange {
        gateway,
        principal,
        streams: accepts.event_stream,
        json: accepts.json,
        trace_headers: TraceHeaders::of(&headers),
    };
    if envelope::is_modern(header(&headers, &VERSION_HEADER), &value) {
        if let Err(response) = exchange.gateway.check_rate(&exchange.principal).await {
            return *response;
        }
        return exchange.modern(&query, &headers, value).await;
    }
    exchange.handshake(&query, &headers, value).await
}

/// One POST being answered.
struct Exchange {
    gateway: SharedGateway,
    principal: Arc<Principal>,
    /// The client accepts `text/event-stream` responses.
    streams: bool,
    /// The client accepts `application/json` responses (else a reply goes as a one-event stream).
    json: bool,
    trace_headers: TraceHeaders,
}

impl Exchange {
    fn via(&self, notify: Notify) -> Via {
        Via::http(Transport::Streamable, notify, &self.trace_headers)
    }

    /// A message of the handshake eras: `initialize` opens a session, the rest need one.
    async fn handshake(
        self,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        value: Value,
    ) -> Response {
        let (gateway, principal) = (&self.gateway, &self.principal);
        let session_id = header(headers, &SESSION_HEADER);
        if value.is_array() {
            // A batch: only within an existing session (initialize cannot be batched).
            let Some(id) = session_id else {
                if let Err(response) = gateway.check_rate(principal).await {
                    return *response;
                }
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    &Value::Null,
                    ErrorCode::InvalidRequest,
                    "a batch needs a session",
                );
            };
            let demand = Demand::of(&value);
            if let Some(message) = gateway.batch_too_large(demand) {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    &Value::Null,
                    ErrorCode::InvalidRequest,
                    &message,
                );
            }
            let admitted = match self.admit(id, demand, &Value::Null).await {
                Ok(admitted) => admitted,
                Err(response) => return *response,
            };
            let reply = gateway
                .core
                .handle_json(
                    principal,
                    &admitted.session,
                    value,
                    &self.via(Notify::Nowhere),
                )
                .await;
            return self.reply(reply, false);
        }
        let demand = Demand::of(&value);
        let message = match Incoming::parse(value) {
            Ok(message) => message,
            Err(error) => {
                return (StatusCode::BAD_REQUEST, axum::Json(error.to_json())).into_response();
            }
        };

        if let Incoming::Request(request) = &message
            && request.method == "initialize"
        {
            let selection = match gateway.selection_for(query) {
                Ok(selection) => selection,
                Err(response) => return *response,
            };
            // Answered first, stored after: the stored session carries its negotiated version,
            // and storing is the one step that counts the request and checks the cap.
            let session = Session::new(&principal.fingerprint, selection, None)
                .opened_by(Transport::Streamable);
            let reply = gateway
                .core
                .handle(principal, &session, message, &self.via(Notify::Nowhere))
                .await;
            let session = match gateway.open_session(session, true).await {
                Ok(session) => session,
                Err(response) => return *response,
            };
            let mut response = self.reply(reply, false);
            if let Ok(id) = HeaderValue::from_str(&session.id) {
                response.headers_mut().insert(&SESSION_HEADER, id);
            }
            return response;
        }

        let admitted = match session_id {
            Some(id) => match self.admit(id, demand, &request_id(&message)).await {
                Ok(admitted) => admitted,
                Err(response) => return *response,
            },
            None => {
                if let Err(response) = gateway.check_rate(principal).await {
                    return *response;
                }
                match &message {
                    // Without a session only what needs no session is answered: ping, and
                    // -32601 for methods no era here knows.
                    Incoming::Request(request) if !request.method.starts_with("tools/") => {
                        let session = Session::for_one_request(
                            &principal.fingerprint,
                            gateway.selection_for(query).unwrap_or_default(),
                            "",
                        );
                        return self.answer(Arc::new(session), message, None).await;
                    }
                    Incoming::Request(request) => {
                        let error = RpcError::new(
                            request.id.clone(),
                            ErrorCode::InvalidRequest,
                            "missing Mcp-Session-Id header; send initialize first (or use \
                             protocol 2026-07-28, which needs no session)",
                        );
                        return (StatusCode::BAD_REQUEST, axum::Json(error.to_json()))
                            .into_response();
                    }
                    _ => return StatusCode::ACCEPTED.into_response(),
                }
            }
        };
        let session = admitted.session.clone();
        self.answer(session, message, Some(admitted)).await
    }

    /// The rate limit and session `id`; an unknown session is 404 with a JSON-RPC error for
    /// request `reply_id`.
    async fn admit(&self, id: &str, demand: Demand, reply_id: &Value) -> Result<Admitted, Refused> {
        self.gateway
            .admit(&self.principal, id, demand)
            .await
            .map_err(|refusal| {
                Box::new(match refusal {
                    Refusal::UnknownSession => rpc_error(
                        StatusCode::NOT_FOUND,
                        reply_id,
                        ErrorCode::InvalidRequest,
                        "unknown or expired session; initialize again",
                    ),
                    other => refused(other),
                })
            })
    }

    /// A message of the stateless era: checked against its envelope, answered by a session
    /// that lives for this request only.
    async fn modern(
        self,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        value: Value,
    ) -> Response {
        if value.is_array() {
            return modern_error(RpcError::new(
                Value::Null,
                ErrorCode::InvalidRequest,
                "protocol 2026-07-28 takes one message per POST (batches belong to 2025-03-26)",
            ));
        }
        let request = match Incoming::parse(value) {
            Ok(Incoming::Request(request)) => request,
            // The era defines no client notifications on HTTP (cancelling is closing the
            // response stream); they are acknowledged and dropped, as the handshake eras do.
            Ok(_) => return StatusCode::ACCEPTED.into_response(),
            Err(error) => return modern_error(error),
        };
        if let Some(name) = [&VERSION_HEADER, &METHOD_HEADER, &NAME_HEADER]
            .into_iter()
            .find(|name| headers.get_all(*name).iter().count() > 1)
        {
            return modern_error(RpcError::new(
                request.id,
                ErrorCode::HeaderMismatch,
                format!("the {name} header appears more than once"),
            ));
        }
        let routing = RoutingHeaders {
            protocol_version: header(headers, &VERSION_HEADER),
            method: header(headers, &METHOD_HEADER),
            name: header(headers, &NAME_HEADER),
        };
        let envelope = match envelope::check(&request, routing) {
            Ok(envelope) => envelope,
            Err(error) => return modern_error(error),
        };
        if let Some(refused) = self
            .gateway
            .step_up(&self.principal, &request, headers, "/mcp")
        {
            return *refused;
        }
        let selection = match self.gateway.selection_for(query) {
            Ok(selection) => selection,
            Err(response) => return *response,
        };
        let session = Session::for_one_request(
            &self.principal.fingerprint,
            selection,
            &envelope.protocol_version,
        );
        // A session of one request shares nothing, so setting its level cannot fail.
        session.refresh_log_level(envelope.log_level);
        self.answer(Arc::new(session), Incoming::Request(request), None)
            .await
    }

    /// Answers one message of `session`: with one JSON object, or with an SSE stream when the
    /// client accepts one and the request may produce notifications before its reply. The
    /// admission is held until the reply is made (a tool call counts as in flight until then).
    async fn answer(
        self,
        session: Arc<Session>,
        message: Incoming,
        admission: Option<Admitted>,
    ) -> Response {
        let modern = session.is_modern();
        if !(self.streams && may_notify(&message, &session)) {
            let reply = self
                .gateway
                .core
                .handle(
                    &self.principal,
                    &session,
                    message,
                    &self.via(Notify::Nowhere),
                )
                .await;
            return self.reply(reply, modern);
        }
        let (sender, mut notifications) = mpsc::channel(STREAM_QUEUE);
        let worker = self.gateway.clone();
        let via = self.via(Notify::Stream(sender));
        let principal = self.principal;
        let mut call = AbortOnDrop(self.gateway.tasks.spawn(async move {
            let _admission = admission;
            worker
                .core
                .handle(&principal, &session, message, &via)
                .await
        }));
        // The first notification commits the response to a stream; a reply that comes first
        // (nothing to report) goes out as JSON, with the status its era gives it.
        let json = self.json;
        tokio::select! {
            biased;
            Some(first) = notifications.recv() => super::event_stream(ReplyStream {
                first: Some(first),
                notifications,
                call: Some(call),
            }),
            reply = &mut call.0 => reply_as(joined(reply), modern, json),
        }
    }

    fn reply(&self, reply: Option<Reply>, modern: bool) -> Response {
        reply_as(reply, modern, self.json)
    }
}

/// A reply as JSON, or, for a client that accepts only `text/event-stream`, as a stream of that
/// one message.
fn reply_as(reply: Option<Reply>, modern: bool, json: bool) -> Response {
    match reply {
        Some(reply) if !json => super::event_stream(ReplyStream {
            first: Some(reply),
            notifications: mpsc::channel(1).1,
            call: None,
        }),
        reply => reply_response(reply, modern),
    }
}

/// Whether answering `message` may send notifications first: a tool call that asked for
/// progress, or one of a session that wants log messages.
fn may_notify(message: &Incoming, session: &Session) -> bool {
    match message {
        Incoming::Request(request) if request.method == "tools/call" => {
            let wants_progress = request
                .params
                .get("_meta")
                .is_some_and(|meta| meta.get("progressToken").is_some());
            // Emergency is the most severe level: wanted if any level at all was asked for.
            wants_progress || session.wants_log(LogLevel::Emergency)
        }
        _ => false,
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn request_id(message: &Incoming) -> Value {
    match message {
        Incoming::Request(request) => request.id.clone(),
        _ => Value::Null,
    }
}

/// A reply as one JSON object; no reply (a notification, a cancelled request) is 202. In the
/// stateless era an error reply carries its HTTP status (-32601 is 404, the client's errors 400).
fn reply_response(reply: Option<Reply>, modern: bool) -> Response {
    let Some(reply) = reply else {
        return StatusCode::ACCEPTED.into_response();
    };
    let status = match reply.error_code() {
        Some(code) if modern => {
            StatusCode::from_u16(code.modern_http_status()).unwrap_or(StatusCode::BAD_REQUEST)
        }
        _ => StatusCode::OK,
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        reply.into_string(),
    )
        .into_response()
}

fn modern_error(error: RpcError) -> Response {
    reply_response(Some(Reply::error(&error)), true)
}

/// The reply of a spawned call; a call that panicked is a -32603 (its id is lost with it).
fn joined(result: Result<Option<Reply>, tokio::task::JoinError>) -> Option<Reply> {
    result.unwrap_or_else(|_| {
        Some(Reply::error(&RpcError::new(
            Value::Null,
            ErrorCode::InternalError,
            "the call failed inside the gateway",
        )))
    })
}

/// Aborts the task when dropped: a response stream the client closed takes its call with it.
struct AbortOnDrop(JoinHandle<Option<Reply>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request's response stream: its notifications as they come, then its reply, then the end.
struct ReplyStream {
    first: Option<Reply>,
    notifications: mpsc::Receiver<Reply>,
    call: Option<AbortOnDrop>,
}

impl futures_core::Stream for ReplyStream {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let message =
            |reply: Reply| Ok(Event::default().event("message").data(reply.into_string()));
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(message(first)));
        }
        // The call holds the sending side: the queue ends only when the call has finished.
        match self.notifications.poll_recv(cx) {
            Poll::Ready(Some(notification)) => return Poll::Ready(Some(message(notification))),
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {}
        }
        let Some(call) = self.call.as_mut() else {
            return Poll::Ready(None);
        };
        let reply = std::task::ready!(Pin::new(&mut call.0).poll(cx));
        self.call = None;
        Poll::Ready(joined(reply).map(message))
    }
}

async fn delete_mcp(State(gateway): State<SharedGateway>, request: RequestHead) -> Response {
    let principal = match gateway
        .principal(&request.headers, &request.uri, request.peer.as_ref())
        .await
    {
        Ok(principal) => principal,
        Err(response) => return *response,
    };
    let Some(id) = header(&request.headers, &SESSION_HEADER) else {
        return http_error(
            StatusCode::BAD_REQUEST,
            "missing_session",
            "send the Mcp-Session-Id header of the session to end",
        );
    };
    match gateway.replicas.end(id, &principal.fingerprint).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => http_error(
            StatusCode::NOT_FOUND,
            "unknown_session",
            "unknown or expired session",
        ),
        Err(refusal) => refused(refusal),
    }
}

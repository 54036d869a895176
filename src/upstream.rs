//! The upstream REST API as the gateway reaches it: the generated client over ONE shared
//! connection pool, the caller's key injected per request, and the client's errors mapped into
//! `DispatchError`, which says what a caller can act on.
//!
//! Invariant: the caller's key reaches the upstream only through `Caller`, as a sensitive header,
//! and never appears in an error or a log (see `api_key`).

use crate::api_key::ApiKey;
use crate::generated::api::Operation;
use crate::generated::client::Client;
use crate::generated::dispatch::dispatch;
use crate::sync::lock;
use crate::trace_context::{TRACEPARENT, TRACESTATE, TraceContext};
/// How the gateway talks to the API (defined with the connections it shapes).
pub use crate::upstream_client::UpstreamOptions;
use crate::upstream_client::{Failure, Received, UpstreamClient};
use axum::http::StatusCode;
use bytes::Bytes;
use progenitor_client::{ClientHooks, ClientInfo, OperationInfo, ResponseValue};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

/// The upstream API: its base URL, the `reqwest::Client` the generated code builds requests
/// with, and the one sender (one pool) every caller shares.
#[derive(Clone, Debug)]
pub struct Upstream {
    base_url: String,
    /// The same, parsed once: each request's URL is built from it (see `Caller::api_url`).
    base: Arc<ApiBase>,
    /// Builds requests only; it never connects.
    http: reqwest::Client,
    /// Shared by every key: a pool per key would multiply connections by the number of tenants.
    sender: UpstreamClient,
}

impl Upstream {
    /// A client for the API at `base_url`, with an upstream pool for each of `lanes` serving
    /// lanes (see `upstream_client`).
    pub fn new(base_url: &str, options: UpstreamOptions, lanes: usize) -> Result<Upstream, String> {
        crate::install_tls_provider();
        // Only builds requests (for the generated code); `sender` makes every connection. So it
        // needs no trust roots: reading the platform's CA store for it too cost start-up ~6 ms.
        let http = reqwest::Client::builder()
            .tls_certs_only([])
            // The API never redirects; following one would carry the caller's key elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Upstream {
            base_url: base_url.trim_end_matches('/').to_string(),
            base: Arc::new(ApiBase::parse(base_url)?),
            http,
            sender: UpstreamClient::new(base_url, &options, lanes)?,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Whether the API answers as the API: key introspection without a key must be refused (401,
    /// or another refusal: 403, 429). Anything else means `--upstream` is not the API's base:
    /// a 404 (a path prefix missing), a 2xx (a web front end that answers every path), a 3xx (a
    /// redirect, http to https say: redirects are not followed), a 5xx. Every key would be
    /// refused, so the gateway is not ready. The error names the URL and what it answered.
    pub async fn probe(&self) -> Result<(), String> {
        let url = format!("{}/v1/api-keys/current", self.base_url);
        let request = self
            .http
            .get(&url)
            .build()
            .map_err(|e| format!("{url}: {}", describe(e)))?;
        match self.sender.send(request).await {
            Err(failure) => Err(format!(
                "{} is unreachable: {}",
                self.base_url, failure.message
            )),
            Ok(Received::Answer(response)) if response.status() == StatusCode::NOT_FOUND => {
                Err(format!(
                    "{url} answered 404: --upstream must be the API's base URL (the one whose \
                     /v1/api-keys/current is key introspection)"
                ))
            }
            Ok(Received::Answer(response)) if response.status().is_client_error() => Ok(()),
            Ok(Received::Answer(response)) if response.status().is_redirection() => {
                let to = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|to| to.to_str().ok())
                    .unwrap_or("elsewhere");
                Err(format!(
                    "{url} answered {} (to {to}): --upstream must be the API's base URL itself \
                     (redirects are not followed)",
                    response.status().as_u16()
                ))
            }
            Ok(Received::Answer(response)) if response.status().is_success() => Err(format!(
                "{url} answered {} to a request without a key: that is not the TrainAR API, \
                 which refuses it (401); --upstream must be the API's base URL",
                response.status().as_u16()
            )),
            Ok(Received::Answer(response)) => Err(format!("{url} answered {}", response.status())),
            Ok(Received::TooLarge { .. }) => Err(format!(
                "{url} answered with a body over the size limit: not the API's refusal"
            )),
        }
    }

    /// A generated client that acts as `key` over the shared pool. Cheap: no connection is made.
    pub fn client_for(&self, key: &ApiKey, idempotency_key: Option<String>) -> Client {
        let extras = CallExtras {
            idempotency_key,
            trace: None,
        };
        self.client_with(key, extras)
    }

    fn client_with(&self, key: &ApiKey, extras: CallExtras<'_>) -> Client {
        Client::new_with_client(
            &self.base_url,
            self.http.clone(),
            Caller::new(key, self.base.clone(), self.sender.clone(), extras),
        )
    }

    /// Calls `operation` with a tool's flat `arguments` as `key`; a POST carries
    /// `idempotency_key`, when given, as its `Idempotency-Key`.
    pub async fn call(
        &self,
        key: &ApiKey,
        operation: Operation,
        arguments: Map<String, Value>,
        idempotency_key: Option<String>,
    ) -> Result<Box<RawValue>, DispatchError> {
        let extras = CallExtras {
            idempotency_key,
            trace: None,
        };
        self.answer(key, operation, arguments, extras).await.result
    }

    /// A tool call's upstream leg: `call`, with the trace passed on, and the leg counted in the
    /// metrics (key introspection, through `call`, has metrics of its own).
    pub async fn call_with(
        &self,
        key: &ApiKey,
        operation: Operation,
        arguments: Map<String, Value>,
        extras: CallExtras<'_>,
    ) -> Answer {
        let started = std::time::Instant::now();
        let answer = self.answer(key, operation, arguments, extras).await;
        crate::telemetry::record_upstream(answer.status, started.elapsed());
        answer
    }

    async fn answer(
        &self,
        key: &ApiKey,
        operation: Operation,
        arguments: Map<String, Value>,
        extras: CallExtras<'_>,
    ) -> Answer {
        let client = self.client_with(key, extras);
        // Boxed: the dispatch future holds the largest of 67 operations' request futures, and
        // every future above it (core, transport, axum's handler) would embed it and be moved
        // with it; one allocation costs less than those copies.
        let result = Box::pin(dispatch(&client, operation, arguments)).await;
        let status = match client.inner().last_status.load(Ordering::Relaxed) {
            0 => None,
            status => Some(status),
        };
        Answer { result, status }
    }
}

/// The API's base URL, parsed once. reqwest would parse a request's whole URL again (host and
/// all) on every call; a clone with its path set costs a fraction of that.
#[derive(Debug)]
struct ApiBase {
    url: reqwest::Url,
    /// The base's own path without its trailing `/` (empty at the root): operation paths follow it.
    path: String,
}

impl ApiBase {
    fn parse(base_url: &str) -> Result<ApiBase, String> {
        let url = reqwest::Url::parse(base_url)
            .map_err(|e| format!("the upstream URL `{base_url}` is not a URL: {e}"))?;
        if url.cannot_be_a_base() || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "the upstream URL `{base_url}` must be a base such as https://api.example.com \
                 (a path is allowed; a query or a fragment is not)"
            ));
        }
        let path = url.path().trim_end_matches('/').to_string();
        Ok(ApiBase { url, path })
    }

    /// The URL of an operation's `path` (already encoded by the generated code).
    fn at(&self, path: std::fmt::Arguments<'_>) -> reqwest::Url {
        use std::fmt::Write;
        let mut full = String::with_capacity(self.path.len() + 64);
        full.push_str(&self.path);
        let _ = full.write_fmt(path);
        let mut url = self.url.clone();
        url.set_path(&full);
        url
    }
}

/// What a call sends besides the key and the arguments.
#[derive(Default)]
pub struct CallExtras<'a> {
    /// Sent as `Idempotency-Key` on a POST (see `Core`'s `idempotency_key`).
    pub idempotency_key: Option<String>,
    /// Passed on as `traceparent` (with a new parent id) and `tracestate`.
    pub trace: Option<&'a TraceContext>,
}

/// The outcome of one call, and the HTTP status the API answered with, if it answered.
pub struct Answer {
    pub result: Result<Box<RawValue>, DispatchError>,
    pub status: Option<u16>,
}

/// The per-call inner value of the generated client: who is calling, and what the upstream said.
#[derive(Debug)]
pub struct Caller {
    /// `Bearer tak_…`, marked sensitive so that reqwest and hyper never print it.
    authorization: HeaderValue,
    /// The HTTP status of the last response, kept for errors whose body was not JSON (a proxy's
    /// HTML 502), where progenitor's error carries no status of its own.
    last_status: AtomicU16,
    /// The body of the last error response the spec does not declare (a 5xx), which progenitor
    /// hands over unread: kept so that the API's own code and message reach the caller.
    last_error_body: Mutex<Option<Bytes>>,
    max_body_bytes: usize,
    /// Sent as `Idempotency-Key` on a POST (see `Core`'s `idempotency_key`).
    idempotency_key: Option<HeaderValue>,
    /// `traceparent` and `tracestate` for the request (see `trace_context`).
    trace_headers: Option<(HeaderValue, Option<HeaderValue>)>,
    /// Where the API is; the generated methods build their URLs from it (`api_url`).
    base: Arc<ApiBase>,
    /// Sends the request (see `upstream_client`).
    sender: UpstreamClient,
    /// Why the generated code was handed a stand-in rather than the API's answer (none came, or
    /// its body was over the cap and not read): the error `respond` returns instead.
    stand_in: Mutex<Option<DispatchError>>,
}

impl Caller {
    /// The URL of an operation's `path`; the generated client calls it for every request.
    pub fn api_url(&self, path: std::fmt::Arguments<'_>) -> reqwest::Url {
        self.base.at(path)
    }

    fn new(
        key: &ApiKey,
        base: Arc<ApiBase>,
        sender: UpstreamClient,
        extras: CallExtras<'_>,
    ) -> Caller {
        Caller {
            authorization: key.authorization(),
            last_status: AtomicU16::new(0),
            last_error_body: Mutex::new(None),
            max_body_bytes: sender.max_body_bytes(),
            idempotency_key: extras
                .idempotency_key
                .and_then(|key| HeaderValue::from_str(&key).ok()),
            trace_headers: extras.trace.and_then(|trace| {
                let parent = HeaderValue::from_str(&trace.child_traceparent()).ok()?;
                let state = trace
                    .tracestate()
                    .and_then(|s| HeaderValue::from_str(s).ok());
                Some((parent, state))
            }),
            base,
            sender,
            stand_in: Mutex::new(None),
        }
    }
}

// The generated `Client` derives Clone; a clone starts with what was seen so far.
impl Clone for Caller {
    fn clone(&self) -> Caller {
        Caller {
            authorization: self.authorization.clone(),
            last_status: AtomicU16::new(self.last_status.load(Ordering::Relaxed)),
            last_error_body: Mutex::new(lock(&self.last_error_body).clone()),
            max_body_bytes: self.max_body_bytes,
            idempotency_key: self.idempotency_key.clone(),
            trace_headers: self.trace_headers.clone(),
            base: self.base.clone(),
            sender: self.sender.clone(),
            stand_in: Mutex::new(lock(&self.stand_in).clone()),
        }
    }
}

impl ClientHooks<Caller> for Client {
    async fn pre<E>(
        &self,
        request: &mut reqwest::Request,
        _info: &OperationInfo,
    ) -> Result<(), progenitor_client::Error<E>> {
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.inner().authorization.clone());
        if let Some(key) = &self.inner().idempotency_key
            && request.method() == reqwest::Method::POST
        {
            request.headers_mut().insert("idempotency-key", key.clone());
        }
        if let Some((traceparent, tracestate)) = &self.inner().trace_headers {
            request
                .headers_mut()
                .insert(&TRACEPARENT, traceparent.clone());
            if let Some(tracestate) = tracestate {
                request
                    .headers_mut()
                    .insert(&TRACESTATE, tracestate.clone());
            }
        }
        Ok(())
    }

    /// Sends the request through `upstream_client`, which reads the body up to the limit: past it
    /// the connection is dropped, so a huge body is never held whole. The body is handed on to the
    /// generated code as it came. A body over the limit, or no answer at all, is kept as the error
    /// `respond` returns (`stand_in`), and the generated code is handed an empty 502 meanwhile.
    async fn exec(
        &self,
        request: reqwest::Request,
        _info: &OperationInfo,
    ) -> reqwest::Result<reqwest::Response> {
        let caller = self.inner();
        let limit = caller.max_body_bytes;
        let stand_in = |error: DispatchError| {
            *lock(&caller.stand_in) = Some(error);
            let mut replacement = axum::http::Response::new(Bytes::new());
            *replacement.status_mut() = axum::http::StatusCode::BAD_GATEWAY;
            Ok(reqwest::Response::from(replacement))
        };
        match caller.sender.send(request).await {
            Ok(Received::Answer(response)) => {
                if response.status().as_u16() >= 400 {
                    *lock(&caller.last_error_body) = Some(response.body().clone());
                }
                Ok(reqwest::Response::from(response))
            }
            // The API answered (its status is what `post` records), but not what the caller
            // can have.
            Ok(Received::TooLarge { length, status }) => {
                crate::telemetry::record_upstream_body_too_large();
                caller.last_status.store(status.as_u16(), Ordering::Relaxed);
                stand_in(DispatchError::TooLarge {
                    message: format!(
                        "the API's response is {length} bytes or more, over this gateway's \
                         limit of {limit} bytes; ask for less (a smaller `limit`, or narrower \
                         filters)"
                    ),
                })
            }
            Err(Failure { message, timed_out }) => {
                stand_in(DispatchError::Transport { message, timed_out })
            }
        }
    }

    async fn post<E>(
        &self,
        result: &reqwest::Result<reqwest::Response>,
        _info: &OperationInfo,
    ) -> Result<(), progenitor_client::Error<E>> {
        // A stand-in's status is not the API's: none came, or `exec` recorded the API's own.
        if let Ok(response) = result
            && lock(&self.inner().stand_in).is_none()
        {
            self.inner()
                .last_status
                .store(response.status().as_u16(), Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Why a tool call did not produce a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DispatchError {
    /// The arguments do not fit the operation; nothing was sent.
    #[error("invalid argument `{field}`: {message}")]
    InvalidArgument { field: String, message: String },
    /// The upstream answered with an error status.
    #[error("the API answered {status}{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Upstream {
        status: u16,
        /// The API's machine-readable code (`not_found`, `insufficient_scope`, …), when it sent one.
        code: Option<String>,
        message: String,
        /// The API's error body as it came, for `details` and `required_scopes`.
        body: Option<Value>,
    },
    /// The upstream could not be reached, timed out, or sent something that is not the API.
    #[error("the API could not be reached: {message}")]
    Transport {
        message: String,
        /// No answer within the call timeout (the rest: no connection, or not the API's answer).
        timed_out: bool,
    },
    /// The API answered with a body over `--upstream-max-body-bytes`, which was not read.
    #[error("{message}")]
    TooLarge { message: String },
}

impl DispatchError {
    /// Neither an answer of the API's nor a timeout: the words say what went wrong.
    fn transport(message: String) -> DispatchError {
        DispatchError::Transport {
            message,
            timed_out: false,
        }
    }
}

/// A tool's flat arguments, consumed field by field by the generated dispatch.
pub struct Arguments(Map<String, Value>);

impl Arguments {
    pub fn new(arguments: Map<String, Value>) -> Arguments {
        Arguments(arguments)
    }

    pub fn required<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, DispatchError> {
        self.optional(name)?
            .ok_or_else(|| DispatchError::InvalidArgument {
                field: name.to_string(),
                message: "is required".to_string(),
            })
    }

    /// Absent and `null` both mean "not given".
    pub fn optional<T: DeserializeOwned>(
        &mut self,
        name: &str,
    ) -> Result<Option<T>, DispatchError> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value(value).map(Some).map_err(|e| {
                DispatchError::InvalidArgument {
                    field: name.to_string(),
                    message: e.to_string(),
                }
            }),
        }
    }

    /// Gathers the body's fields (`(flat name, wire name)` pairs) into the body type. Every other
    /// argument must already have been taken: an unknown one is an error, never silently dropped.
    pub fn body<T: DeserializeOwned>(
        &mut self,
        fields: &[(&str, &str)],
    ) -> Result<T, DispatchError> {
        let mut body = Map::new();
        for (flat, wire) in fields {
            if let Some(value) = self.0.remove(*flat) {
                body.insert((*wire).to_string(), value);
            }
        }
        self.unknown_arguments()?;
        serde_path_to_error::deserialize(Value::Object(body)).map_err(|e| {
            let field = e.path().to_string();
            DispatchError::InvalidArgument {
                field: if field == "." {
                    "arguments".to_string()
                } else {
                    field
                },
                message: e.into_inner().to_string(),
            }
        })
    }

    /// Fails on any argument the operation does not have.
    pub fn finish(self) -> Result<(), DispatchError> {
        self.unknown_arguments()
    }

    fn unknown_arguments(&self) -> Result<(), DispatchError> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(name) => Err(DispatchError::InvalidArgument {
                field: name.clone(),
                message: "is not an argument of this tool".to_string(),
            }),
        }
    }
}

/// A success body as the generated client returns it: JSON already decoded into a `Value` (build.rs
/// retypes progenitor's JSON success bodies, see codegen/src/client.rs), or nothing (no content).
pub trait SuccessBody {
    fn into_json(self) -> Box<RawValue>;
}

impl SuccessBody for Box<RawValue> {
    fn into_json(self) -> Box<RawValue> {
        self
    }
}

/// No content: `null`.
impl SuccessBody for () {
    fn into_json(self) -> Box<RawValue> {
        RawValue::NULL.to_owned()
    }
}

/// Maps the generated client's result into JSON or a `DispatchError`.
pub fn respond<T: SuccessBody, E: Serialize + std::fmt::Debug>(
    client: &Client,
    result: Result<ResponseValue<T>, progenitor_client::Error<E>>,
) -> Result<Box<RawValue>, DispatchError> {
    use progenitor_client::Error as ClientError;
    if let Some(error) = lock(&client.inner().stand_in).take() {
        return Err(error);
    }
    let last_status = client.inner().last_status.load(Ordering::Relaxed);
    match result {
        // The body as the API sent it: checked to be JSON, not parsed into a tree.
        Ok(response) => Ok(response.into_inner().into_json()),
        Err(ClientError::ErrorResponse(response)) => {
            let status = response.status().as_u16();
            let body = serde_json::to_value(response.into_inner()).ok();
            Err(upstream_error(status, body))
        }
        Err(ClientError::InvalidRequest(message)) => Err(DispatchError::InvalidArgument {
            field: "arguments".into(),
            message,
        }),
        Err(ClientError::CommunicationError(e)) => Err(DispatchError::transport(describe(e))),
        Err(ClientError::UnexpectedResponse(response)) => {
            // A status the spec does not declare (a 5xx): the API's Error JSON when it sent one.
            let status = response.status().as_u16();
            let body = lock(&client.inner().last_error_body)
                .take()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .filter(|body| body["error"]["message"].is_string());
            match body {
                Some(body) => Err(upstream_error(status, Some(body))),
                None => Err(DispatchError::Upstream {
                    status,
                    code: None,
                    message: format!("unexpected response with status {status}"),
                    body: None,
                }),
            }
        }
        Err(ClientError::InvalidResponsePayload(bytes, e)) if last_status >= 400 => {
            let body = serde_json::from_slice::<Value>(&bytes).ok();
            let mut error = upstream_error(last_status, body);
            if let DispatchError::Upstream {
                message,
                code: None,
                ..
            } = &mut error
            {
                *message = format!("an error response that is not the API's JSON ({e})");
            }
            Err(error)
        }
        // A success status whose body is not JSON at all (its shape is the API's to keep).
        Err(ClientError::InvalidResponsePayload(_, e)) => Err(DispatchError::transport(format!(
            "the response is not the API's JSON: {e}"
        ))),
        Err(ClientError::ResponseBodyError(e)) => Err(DispatchError::transport(describe(e))),
        Err(other) => Err(DispatchError::transport(other.to_string())),
    }
}

fn upstream_error(status: u16, body: Option<Value>) -> DispatchError {
    let error = body.as_ref().map(|b| &b["error"]);
    let code = error.and_then(|e| e["code"].as_str()).map(String::from);
    let message = error
        .and_then(|e| e["message"].as_str())
        .map(String::from)
        .unwrap_or_else(|| format!("status {status}"));
    DispatchError::Upstream {
        status,
        code,
        message,
        body,
    }
}

/// A reqwest error in words, without its URL (the caller's model needs the cause, not our
/// address; operators get the URL from `probe`). reqwest only builds requests here (sending is
/// `upstream_client`'s, which describes its own failures), so these are building errors.
fn describe(error: reqwest::Error) -> String {
    error.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_urls_are_the_base_with_the_operation_path() {
        let at = |base: &str, id: &str| {
            ApiBase::parse(base)
                .unwrap()
                .at(format_args!("/v1/tasks/{id}"))
                .to_string()
        };
        assert_eq!(
            at("http://127.0.0.1:9/", "t1"),
            "http://127.0.0.1:9/v1/tasks/t1"
        );
        assert_eq!(
            at("https://api.example.com/trainar/", "t%2F1"),
            "https://api.example.com/trainar/v1/tasks/t%2F1"
        );
        // As a whole-URL parse would have it: the same path parser runs.
        assert_eq!(
            at("http://h", "a b"),
            reqwest::Url::parse("http://h/v1/tasks/a b")
                .unwrap()
                .to_string()
        );
        assert!(ApiBase::parse("not a url").is_err());
        assert!(ApiBase::parse("https://h/?q=1").is_err());
    }
}

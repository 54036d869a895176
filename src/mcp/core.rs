//! The protocol core: one JSON-RPC message in, at most one reply out, for every transport.
//!
//! It owns the lifecycle (initialize, version negotiation), ping, tools/list (scope-filtered,
//! paginated, in the connection's view; in tool-search mode the meta-tools of `discovery`) and
//! tools/call (scope check, null = omitted, argument validation, dispatch with timeout and
//! cancellation, result shaping; `call_tool` takes the same path). Invariant: it never sees
//! HTTP or stdin; transports hand it parsed messages, the caller's `Principal` and their
//! `Session`.

use crate::audit::{AuditLog, AuditRecord};
use crate::auth::Principal;
use crate::catalogue::{Catalogue, Dialect, Tool};
use crate::mcp::discovery::{
    self, CALL_TOOL, CallTool, Discovery, SEARCH_TOOLS, SearchResults, SearchTools,
};
use crate::mcp::jsonrpc::{ErrorCode, Incoming, Reply, Request, RpcError};
use crate::mcp::outline;
use crate::mcp::selection::Selection;
use crate::mcp::session::{LogLevel, Notify, Session};
use crate::mcp::versions::{HANDSHAKE_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_VERSIONS};
use crate::mcp::via::Via;
use crate::sync::FastMap;
use crate::telemetry::{self, Held, Outcome};
use crate::upstream::{CallExtras, DispatchError, Upstream};
use crate::validation::SchemaCheck;
use serde_json::{Map, Value, json};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

/// How often a long tool call reports that it is still waiting for the API.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How long a 2026-07-28 client may cache tools/list and server/discover: the catalogue is fixed
/// for the life of the process, and a key's scopes never change (it is revoked instead).
const MODERN_CACHE_TTL_MS: u64 = 60_000;
/// What every tool has in common, said once here instead of in 67 descriptions.
const INSTRUCTIONS: &str = "Tools for one TrainAR tenant: users and AR devices, training sessions, tasks and skills, \
the knowledge base, billing, integrations and webhooks. The API key's scopes decide which tools are listed \
and callable.

Conventions shared by every tool:
- Arguments: leave out what you do not need. null means the same as leaving an argument out; a required \
argument cannot be null. Ids are opaque strings with a type prefix (`tsk_`, `usr_`, ...); timestamps are \
RFC 3339 in UTC.
- Pagination: a list returns one page `{data, next_cursor}`. Pass `limit` (1-100, default 20), then pass \
`next_cursor` back as `cursor` until it is null.
- Errors come back as a tool result with isError true. \"Invalid arguments\" names each failing field: fix \
those and call again. \"The TrainAR API answered <status>\": 400 an invalid argument (the fields are \
listed), 404 no such object in this tenant (check the id, e.g. with the list tool), 409 a conflict with \
the object's current state (read it again first), 413 a body too large, 422 a business rule refused it \
(the message says which), 429 too many requests (wait, then retry), 5xx or \"could not be reached\": \
try again shortly.
- \"Permission denied\" names the scope the tool needs and the scopes this API key holds: calling again \
cannot succeed. Tell the user which scope to add (Dashboard > API & Webhooks > API Keys).";

fn server_info() -> Value {
    json!({"name": "trainar-mcp", "title": "TrainAR", "version": env!("CARGO_PKG_VERSION")})
}

/// The members every 2026-07-28 result carries, as JSON text to splice into a result object.
static MODERN_RESULT_MEMBERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        r#""resultType":"complete","_meta":{{"io.modelcontextprotocol/serverInfo":{}}}"#,
        server_info()
    )
});
/// The only version with JSON-RPC batches (added in it, removed in 2025-06-18).
const BATCH_VERSION: &str = "2025-03-26";

/// How the core behaves; set once by `serve`.
#[derive(Clone, Debug)]
pub struct CoreOptions {
    /// tools/list shows every selected tool, allowed or not (calls are still checked).
    pub list_all_tools: bool,
    /// The server-wide selection (`--toolsets`, `--tools`, `--read-only`).
    pub selection: Selection,
    /// Text results longer than this are truncated with a notice.
    pub max_result_bytes: usize,
    /// tools/list page size.
    pub page_size: usize,
}

impl Default for CoreOptions {
    fn default() -> CoreOptions {
        CoreOptions {
            list_all_tools: false,
            selection: Selection::default(),
            max_result_bytes: 100_000,
            page_size: 100,
        }
    }
}

pub struct Core {
    upstream: Upstream,
    options: CoreOptions,
    /// Told the fingerprint of a key the API refused during a call (revoked or expired since it
    /// was cached), so that its sessions and streams can be ended.
    refused_keys: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// `--audit-log`: one line per tool call.
    audit: Option<AuditLog>,
}

/// Each tool's input schema, compiled the first time the tool is called. Not at start-up: all
/// 67 cost a quarter of it (27 M instructions), one about 0.4 M (0.1–0.2 ms, once).
static ARGUMENT_CHECKS: LazyLock<FastMap<&'static str, OnceLock<SchemaCheck>>> =
    LazyLock::new(|| {
        Catalogue::get()
            .tools()
            .iter()
            .map(|tool| (tool.name(), OnceLock::new()))
            .collect()
    });

/// `tool`'s compiled input schema (see `ARGUMENT_CHECKS`).
fn argument_check(tool: &Tool) -> &'static SchemaCheck {
    ARGUMENT_CHECKS[tool.name()].get_or_init(|| {
        SchemaCheck::new(&tool.definition["inputSchema"])
            .expect("build.rs writes valid schemas (a test compiles every one)")
    })
}

impl Core {
    pub fn new(upstream: Upstream, options: CoreOptions) -> Core {
        Core {
            upstream,
            options,
            refused_keys: None,
            audit: None,
        }
    }

    /// Reports keys the API refuses during calls to `sender`.
    pub fn report_refused_keys(&mut self, sender: tokio::sync::mpsc::UnboundedSender<String>) {
        self.refused_keys = Some(sender);
    }

    /// Records every tool call in `audit`.
    pub fn record_calls_in(&mut self, audit: AuditLog) {
        self.audit = Some(audit);
    }

    pub fn options(&self) -> &CoreOptions {
        &self.options
    }

    /// Handles one JSON value from a client: a message, or (only when 2025-03-26 was negotiated,
    /// the one version that has them) a batch. Returns the reply or the array of replies.
    pub async fn handle_json(
        &self,
        principal: &Principal,
        session: &Session,
        value: Value,
        via: &Via,
    ) -> Option<Reply> {
        let Value::Array(items) = value else {
            return match Incoming::parse(value) {
                Ok(message) => self.handle(principal, session, message, via).await,
                Err(error) => Some(Reply::error(&error)),
            };
        };
        let refuse = |message: &str| {
            Some(Reply::error(&RpcError::new(
                Value::Null,
                ErrorCode::InvalidRequest,
                message,
            )))
        };
        if session.protocol_version() != BATCH_VERSION {
            return refuse(
                "JSON-RPC batches are accepted only when protocol version 2025-03-26 is negotiated",
            );
        }
        if items.is_empty() {
            return refuse("an empty batch");
        }
        let mut replies = Vec::new();
        for item in items {
            // Ended part-way (DELETE, its stream closed, its key refused): the rest is not run.
            if session.is_closed() {
                break;
            }
            let reply = match Incoming::parse(item) {
                Ok(Incoming::Request(request)) if request.method == "initialize" => {
                    Some(Reply::error(&RpcError::new(
                        request.id,
                        ErrorCode::InvalidRequest,
                        "initialize cannot be part of a batch",
                    )))
                }
                Ok(message) => self.handle(principal, session, message, via).await,
                Err(error) => Some(Reply::error(&error)),
            };
            replies.extend(reply);
        }
        (!replies.is_empty()).then(|| Reply::batch(replies))
    }

    /// Handles one message of `session`. Returns the reply for a request; None for anything else
    /// (and for a request cancelled while in flight, which gets no reply by the spec).
    pub async fn handle(
        &self,
        principal: &Principal,
        session: &Session,
        message: Incoming,
        via: &Via,
    ) -> Option<Reply> {
        session.touch();
        match message {
            Incoming::Request(request) => self.request(principal, session, request, via).await,
            Incoming::Notification(notification) => {
                if notification.method == "notifications/cancelled"
                    && let Some(id) = notification.params.get("requestId")
                {
                    session.cancel(id);
                }
                None
            }
            Incoming::Response => None,
        }
    }

    async fn request(
        &self,
        principal: &Principal,
        session: &Session,
        request: Request,
        via: &Via,
    ) -> Option<Reply> {
        let id = request.id.clone();
        let modern = session.is_modern();
        // Every result as JSON text: tools/list joins cached tool JSON and tools/call serialises
        // the API's body once, so neither builds a `Value` only to serialise it again.
        let result: Result<String, RpcError> = match (request.method.as_str(), modern) {
            ("initialize", false) => {
                let result = self.initialize(session, &request.params).to_string();
                match session.share_protocol_version().await {
                    Ok(()) => Ok(result),
                    Err(reason) => Err(RpcError::new(
                        id.clone(),
                        ErrorCode::InternalError,
                        format!("the session could not be saved ({reason}); try again"),
                    )),
                }
            }
            ("ping", false) => Ok("{}".into()),
            ("logging/setLevel", false) => set_log_level(session, &request).await,
            ("server/discover", true) => Ok(discover().to_string()),
            ("tools/list", _) => self.list_tools(principal, session, &request),
            ("tools/call", _) => match session.start_request(&id) {
                Some(mut call) => {
                    let outcome = tokio::select! {
                        outcome = self.call_tool(principal, session, &request, via) => Some(outcome),
                        _ = &mut call.cancelled => None,
                    };
                    // Also dropped, taking the id off the session, when this future is (the
                    // client went away).
                    drop(call);
                    outcome?
                }
                None => Err(RpcError::new(
                    id.clone(),
                    ErrorCode::InvalidRequest,
                    format!(
                        "request id {id} is already in flight in this session; give each \
                         request its own id"
                    ),
                )),
            },
            ("initialize" | "ping" | "logging/setLevel", true) => Err(RpcError::new(
                id.clone(),
                ErrorCode::MethodNotFound,
                format!(
                    "{} is not part of protocol {} (it belongs to the handshake eras, which begin \
                     with initialize and carry no `_meta` envelope)",
                    request.method, MODERN_VERSIONS[0]
                ),
            )),
            (other, _) => Err(RpcError::new(
                id.clone(),
                ErrorCode::MethodNotFound,
                format!("method not found: {other}"),
            )),
        };
        Some(match result {
            Ok(result) if modern => {
                Reply::raw_success(&id, &with_members(result, &MODERN_RESULT_MEMBERS))
            }
            Ok(result) => Reply::raw_success(&id, &result),
            Err(error) => Reply::error(&error),
        })
    }

    /// Echoes a supported version, else answers with the latest (the client then decides).
    pub fn initialize(&self, session: &Session, params: &Map<String, Value>) -> Value {
        let requested = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let version = if HANDSHAKE_VERSIONS.contains(&requested) {
            requested
        } else {
            LATEST_HANDSHAKE_VERSION
        };
        session.set_protocol_version(version);
        json!({
            "protocolVersion": version,
            "capabilities": capabilities(),
            "serverInfo": server_info(),
            "instructions": INSTRUCTIONS,
        })
    }

    fn offered<'c>(&self, principal: &Principal, session: &Session) -> Vec<&'c Tool> {
        session
            .selection
            .offered(&principal.scopes, self.options.list_all_tools)
    }

    fn list_tools(
        &self,
        principal: &Principal,
        session: &Session,
        request: &Request,
    ) -> Result<String, RpcError> {
        let view = session.selection.presentation.view();
        if session.selection.presentation.discovery() == Discovery::Search {
            let mut page = format!(r#"{{"tools":[{}]"#, discovery::listing(view));
            if session.is_modern() {
                page.push_str(&format!(
                    r#","ttlMs":{MODERN_CACHE_TTL_MS},"cacheScope":"private""#
                ));
            }
            page.push('}');
            return Ok(page);
        }
        let offered = self.offered(principal, session);
        let start = match request.params.get("cursor") {
            None | Some(Value::Null) => 0,
            Some(cursor) => cursor
                .as_str()
                .and_then(|c| c.strip_prefix("tools:"))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n > 0 && *n < offered.len())
                .ok_or_else(|| {
                    RpcError::new(
                        request.id.clone(),
                        ErrorCode::InvalidParams,
                        "invalid cursor",
                    )
                })?,
        };
        let end = (start + self.options.page_size.max(1)).min(offered.len());
        // Joined from each tool's JSON serialised at load: the catalogue is large (~250 KB), and
        // copying and re-serialising it per request cost milliseconds. Into one allocation of
        // the final size: a growing string is copied at each doubling (mimalloc's realloc copies
        // a large block where glibc's remapped it).
        let tools: Vec<&str> = offered[start..end]
            .iter()
            .map(|t| t.json_in(view))
            .collect();
        let length: usize = tools.iter().map(|tool| tool.len() + 1).sum();
        let mut page = String::with_capacity(length + 256);
        page.push_str(r#"{"tools":["#);
        for (index, tool) in tools.iter().enumerate() {
            if index > 0 {
                page.push(',');
            }
            page.push_str(tool);
        }
        page.push(']');
        if end < offered.len() {
            page.push_str(&format!(r#","nextCursor":"tools:{end}""#));
        }
        if session.is_modern() {
            page.push_str(&format!(
                r#","ttlMs":{MODERN_CACHE_TTL_MS},"cacheScope":"private""#
            ));
        }
        page.push('}');
        Ok(page)
    }

    async fn call_tool(
        &self,
        principal: &Principal,
        session: &Session,
        request: &Request,
        via: &Via,
    ) -> Result<String, RpcError> {
        let invalid =
            |message: String| RpcError::new(request.id.clone(), ErrorCode::InvalidParams, message);
        let name = request
            .params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("`name` is required".into()))?;
        let arguments = match request.params.get("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(arguments)) => arguments.clone(),
            Some(_) => return Err(invalid("`arguments` must be an object".into())),
        };
        let presentation = &session.selection.presentation;
        let dialect = presentation.view().dialect;
        if presentation.discovery() == Discovery::Search {
            // A selected tool may still be called by its own name (some clients call what
            // search_tools found directly); the meta-tools exist only in this mode.
            match name {
                SEARCH_TOOLS => {
                    let record =
                        self.call_record(principal, session, via, SEARCH_TOOLS, &arguments);
                    let (result, outcome) = self.search_tools(principal, session, arguments);
                    record.finish(outcome);
                    return Ok(result);
                }
                CALL_TOOL => {
                    let call = match CallTool::read(arguments, dialect) {
                        Ok(call) => call,
                        Err(text) => return Ok(error_result(text)),
                    };
                    let Some(tool) = self.admitted(session, &call.name) else {
                        return Ok(error_result(format!(
                            "Unknown tool `{}`: `{SEARCH_TOOLS}` finds the tools you can call.",
                            call.name
                        )));
                    };
                    let arguments = call.arguments.unwrap_or_default();
                    return Ok(self
                        .call_admitted(principal, session, tool, arguments, request, via)
                        .await);
                }
                _ => {}
            }
        }
        let tool = self
            .admitted(session, name)
            .ok_or_else(|| invalid(format!("unknown tool: {name}")))?;
        Ok(self
            .call_admitted(principal, session, tool, arguments, request, via)
            .await)
    }

    /// The catalogue's tool `name`, if the session's selection admits it.
    fn admitted(&self, session: &Session, name: &str) -> Option<&'static Tool> {
        Catalogue::get()
            .find(name)
            .filter(|tool| session.selection.admits(tool))
    }

    /// Calls `tool`, directly or through `call_tool`: progress (asked for in `request`'s
    /// `_meta`), scope check, validation, dispatch, and the log line.
    async fn call_admitted(
        &self,
        principal: &Principal,
        session: &Session,
        tool: &'static Tool,
        arguments: Map<String, Value>,
        request: &Request,
        via: &Via,
    ) -> String {
        let dialect = session.selection.presentation.view().dialect;
        let progress = request
            .params
            .get("_meta")
            .and_then(|meta| meta.get("progressToken"))
            .filter(|token| token.is_string() || token.is_i64() || token.is_u64())
            .filter(|_| tool.reports_progress && via.notify.is_open(session))
            .map(|token| Progress {
                token: token.clone(),
                session,
                notify: &via.notify,
                count: 0,
            });
        let mut record = self.call_record(principal, session, via, tool.name(), &arguments);
        let trace = via.trace_for(&request.params);
        record.trace_id = trace.trace_id();
        let extras = CallExtras {
            idempotency_key: idempotency_key(session, tool, &request.id, &arguments),
            trace: Some(&trace),
        };
        let (result, outcome) = self
            .run_tool(
                principal,
                tool,
                arguments,
                dialect,
                progress,
                extras,
                &mut record,
            )
            .await;
        record.finish(outcome);
        result
    }

    /// The record of a call starting now; it is written when the call ends (see `CallRecord`).
    fn call_record<'a>(
        &'a self,
        principal: &'a Principal,
        session: &'a Session,
        via: &'a Via,
        tool: &'static str,
        arguments: &Map<String, Value>,
    ) -> CallRecord<'a> {
        let audit = self.audit.as_ref();
        CallRecord {
            audit,
            principal,
            session,
            via,
            tool,
            // Kept only for the audit trail.
            arguments: match audit {
                Some(_) => arguments.keys().cloned().collect(),
                None => Vec::new(),
            },
            trace_id: String::new(),
            upstream_status: None,
            started: Instant::now(),
            finished: false,
            _in_flight: Held::call_in_flight(),
        }
    }

    /// `search_tools`: the best matches among the tools this key may call in this selection.
    fn search_tools(
        &self,
        principal: &Principal,
        session: &Session,
        arguments: Map<String, Value>,
    ) -> (String, Outcome) {
        let search = match SearchTools::read(arguments) {
            Ok(search) => search,
            Err(text) => return (error_result(text), Outcome::InvalidArguments),
        };
        let callable = session.selection.offered(&principal.scopes, false);
        let limit = usize::from(search.limit.unwrap_or(5));
        let dialect = session.selection.presentation.view().dialect;
        let results = SearchResults {
            tools: discovery::search(&search.query, &callable, limit)
                .into_iter()
                .map(|tool| discovery::found(tool, dialect))
                .collect(),
        };
        let body = serde_json::to_string(&results).unwrap_or_default();
        self.success_result(&body)
    }

    /// The tool's result, and how the call ended; the API's status goes into `record`.
    #[allow(clippy::too_many_arguments)]
    async fn run_tool(
        &self,
        principal: &Principal,
        tool: &Tool,
        mut arguments: Map<String, Value>,
        dialect: Dialect,
        progress: Option<Progress<'_>>,
        extras: CallExtras<'_>,
        record: &mut CallRecord<'_>,
    ) -> (String, Outcome) {
        let missing = principal.scopes.missing_for(tool.operation);
        if !missing.is_empty() {
            let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            let token = principal.audience.is_some();
            return (
                denied(tool, &missing, &principal.scope_names, token),
                Outcome::ScopeDenied,
            );
        }
        if dialect != Dialect::Full
            && let Err(text) = parse_json_text_arguments(tool, &mut arguments)
        {
            return (error_result(text), Outcome::InvalidArguments);
        }
        let problems = argument_check(tool).field_problems_with_nulls_omitted(&mut arguments);
        if !problems.is_empty() {
            let lines: Vec<String> = problems
                .iter()
                .map(|p| format!("- `{}`: {}", p.field, p.message))
                .collect();
            let text = format!(
                "Invalid arguments for {}:\n{}",
                tool.name(),
                lines.join("\n")
            );
            return (error_result(text), Outcome::InvalidArguments);
        }
        let call = self
            .upstream
            .call_with(&principal.key, tool.operation, arguments, extras);
        let answer = match progress {
            Some(progress) => progress.around(tool, call).await,
            None => call.await,
        };
        record.upstream_status = answer.status;
        match answer.result {
            Ok(body) => match outline::problem(tool.name(), &body) {
                None => self.success_result(body.get()),
                Some(problem) => {
                    tracing::warn!(tool = tool.name(), %problem, "the API's answer breaks the tool's output schema");
                    (
                        error_result(format!(
                            "The TrainAR API answered {} with something that does not match its \
                             output schema: {problem}. This is the API's fault, not the request's; \
                             report it, and try again later.",
                            tool.name()
                        )),
                        Outcome::ToolError,
                    )
                }
            },
            Err(DispatchError::Upstream {
                status: 403,
                body,
                message,
                ..
            }) => {
                let required: Vec<String> = body
                    .as_ref()
                    .and_then(|b| b["error"]["required_scopes"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect();
                let missing: Vec<&str> = if required.is_empty() {
                    vec![message.as_str()]
                } else {
                    required.iter().map(String::as_str).collect()
                };
                (
                    denied(
                        tool,
                        &missing,
                        &principal.scope_names,
                        principal.audience.is_some(),
                    ),
                    Outcome::ScopeDenied,
                )
            }
            Err(DispatchError::Upstream {
                status: 401,
                message,
                ..
            }) => {
                if let Some(refused_keys) = &self.refused_keys {
                    let _ = refused_keys.send(principal.fingerprint.clone());
                }
                (
                    error_result(format!(
                        "The TrainAR API no longer accepts this API key ({message}): it was \
                         revoked or has expired. This session has ended; connect again with a \
                         valid key."
                    )),
                    Outcome::KeyRefused,
                )
            }
            Err(DispatchError::Upstream {
                status,
                code,
                message,
                body,
            }) => {
                let mut text = format!(
                    "The TrainAR API answered {status}{}: {message}",
                    code.as_deref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                );
                for detail in body
                    .as_ref()
                    .and_then(|b| b["error"]["details"].as_array())
                    .into_iter()
                    .flatten()
                {
                    text.push_str(&format!(
                        "\n- `{}`: {}",
                        detail["field"].as_str().unwrap_or("?"),
                        detail["message"].as_str().unwrap_or("")
                    ));
                }
                let outcome = if status >= 500 {
                    Outcome::Upstream5xx
                } else {
                    Outcome::Upstream4xx
                };
                (error_result(text), outcome)
            }
            Err(DispatchError::TooLarge { message }) => (
                error_result(format!("The result was not returned: {message}.")),
                Outcome::ToolError,
            ),
            Err(DispatchError::InvalidArgument { field, message }) => (
                error_result(format!("Invalid argument `{field}`: {message}")),
                Outcome::InvalidArguments,
            ),
            Err(DispatchError::Transport { message, timed_out }) => (
                error_result(format!(
                    "The TrainAR API could not be reached ({message}). Try again shortly."
                )),
                if timed_out {
                    Outcome::Timeout
                } else {
                    Outcome::Unreachable
                },
            ),
        }
    }

    /// `structuredContent` plus the same JSON as text. Over the cap the result is a tool error
    /// that says how to ask for less: a cut result could not carry `structuredContent` (it
    /// would no longer match the output schema) and clients that validate it would fail.
    fn success_result(&self, text: &str) -> (String, Outcome) {
        let cap = self.options.max_result_bytes;
        if text.len() <= cap {
            return (tool_result(text, Some(text), false), Outcome::Ok);
        }
        let mut advice = format!(
            "The result is {} bytes, over this server's limit of {cap} bytes, so it was not \
             returned. Ask for less: pass a smaller `limit` (e.g. 10) and page with `cursor`, or \
             narrow the request with filters.",
            text.len()
        );
        // Parsed only here, where the cursor is wanted.
        let parsed = serde_json::from_str::<Value>(text).unwrap_or_default();
        if let Some(items) = parsed.get("data").and_then(Value::as_array)
            && !items.is_empty()
        {
            let fits = (items.len() * cap / text.len()).max(1);
            advice.push_str(&format!(
                " This page held {} items; about {fits} fit.",
                items.len()
            ));
        }
        (error_result(advice), Outcome::ToolError)
    }
}

/// One tool call while it runs. When it ends (`finish`), or is dropped unfinished (the client
/// cancelled, or went away), it is recorded exactly once: the metrics, one log line, the same
/// line to the client's own log if it asked for one (logging/setLevel), and the audit trail.
struct CallRecord<'a> {
    audit: Option<&'a AuditLog>,
    principal: &'a Principal,
    session: &'a Session,
    via: &'a Via,
    tool: &'static str,
    /// The arguments' names, kept only for the audit trail.
    arguments: Vec<String>,
    trace_id: String,
    upstream_status: Option<u16>,
    started: Instant,
    finished: bool,
    _in_flight: Held,
}

impl CallRecord<'_> {
    fn finish(mut self, outcome: Outcome) {
        self.record(outcome);
    }

    fn record(&mut self, outcome: Outcome) {
        self.finished = true;
        let elapsed = self.started.elapsed();
        let transport = self.via.transport.as_str();
        if telemetry::enabled() {
            let version = known_version(&self.session.protocol_version());
            telemetry::record_tool_call(self.tool, outcome, transport, version, elapsed);
        }
        let (principal, tool, status) = (self.principal, self.tool, outcome.as_str());
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        // Display (`%`), not Debug: Debug escapes a `str` char by char, for names that never
        // need it.
        tracing::info!(key_id = %principal.key_id, tool = %tool, status = %status,
            duration_ms = duration_ms as u64, trace_id = %self.trace_id, "tools/call");
        if let Some(audit) = self.audit {
            audit.record(&AuditRecord {
                time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                key_id: &principal.key_id,
                tenant_id: &principal.tenant_id,
                tool,
                arguments: self.arguments.iter().map(String::as_str).collect(),
                outcome: status,
                upstream_status: self.upstream_status,
                duration_ms: (duration_ms * 1000.0).round() / 1000.0,
                trace_id: &self.trace_id,
                transport,
            });
        }
        let level = if outcome == Outcome::Ok {
            LogLevel::Info
        } else {
            LogLevel::Warning
        };
        let (session, notify) = (self.session, &self.via.notify);
        if outcome != Outcome::Cancelled && session.wants_log(level) && notify.is_open(session) {
            let data = json!({"tool": tool, "status": status, "duration_ms": duration_ms as u64});
            notify.send(
                session,
                Reply::notification(
                    "notifications/message",
                    &json!({
                        "level": level.as_str(), "logger": "trainar-mcp", "data": data,
                    }),
                ),
            );
        }
    }
}

impl Drop for CallRecord<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.record(Outcome::Cancelled);
        }
    }
}

/// The negotiated version as a label value (a closed set).
fn known_version(version: &str) -> &'static str {
    MODERN_VERSIONS
        .iter()
        .chain(HANDSHAKE_VERSIONS)
        .find(|known| **known == version)
        .copied()
        .unwrap_or("none")
}

/// The `Idempotency-Key` of a call that changes something (a POST): the same for a retry of the
/// same request in the same session (a client that lost the reply sends it again: same JSON-RPC
/// id, same tool, same arguments), different for anything else, including a client that reuses
/// an id for another request. Sessions of one request (the stateless era) have no id to derive
/// it from, and get none.
fn idempotency_key(
    session: &Session,
    tool: &Tool,
    request_id: &Value,
    arguments: &Map<String, Value>,
) -> Option<String> {
    use sha2::Digest;
    if session.id.is_empty() || tool.operation.method() != "POST" {
        return None;
    }
    // serde_json's maps are ordered by key here: equal arguments give equal text.
    let arguments = serde_json::to_string(arguments).unwrap_or_default();
    let request = format!("{}\n{request_id}\n{}\n{arguments}", session.id, tool.name());
    Some(format!(
        "mcp-{:x}",
        sha2::Sha256::digest(request.as_bytes())
    ))
}

/// `notifications/progress` for one tool call. The API answers each call in one response, so the
/// steps are the gateway's: the call sent, each `PROGRESS_INTERVAL` spent waiting, the answer.
struct Progress<'a> {
    token: Value,
    session: &'a Session,
    notify: &'a Notify,
    count: u64,
}

impl Progress<'_> {
    async fn around<T>(mut self, tool: &Tool, call: impl Future<Output = T>) -> T {
        self.step(format!("Calling the TrainAR API: {}", tool.name()), false);
        let mut call = std::pin::pin!(call);
        let started = Instant::now();
        let mut ticks = tokio::time::interval_at(
            tokio::time::Instant::now() + PROGRESS_INTERVAL,
            PROGRESS_INTERVAL,
        );
        let answer = loop {
            tokio::select! {
                answer = &mut call => break answer,
                _ = ticks.tick() => self.step(
                    format!("Waiting for the TrainAR API ({} s)", started.elapsed().as_secs()),
                    false,
                ),
            }
        };
        self.step("The TrainAR API answered".into(), true);
        answer
    }

    /// Sends the next step; `last` also states the total, so clients can show completion.
    fn step(&mut self, message: String, last: bool) {
        self.count += 1;
        let mut params = json!({
            "progressToken": self.token, "progress": self.count, "message": message,
        });
        if last {
            params["total"] = json!(self.count);
        }
        self.notify.send(
            self.session,
            Reply::notification("notifications/progress", &params),
        );
    }
}

/// The capabilities both eras announce.
fn capabilities() -> Value {
    json!({"tools": {"listChanged": false}, "logging": {}})
}

/// `server/discover` (2026-07-28): what initialize says, minus the negotiation.
fn discover() -> Value {
    json!({
        "supportedVersions": MODERN_VERSIONS,
        "capabilities": capabilities(),
        "instructions": INSTRUCTIONS,
        "ttlMs": MODERN_CACHE_TTL_MS,
        "cacheScope": "private",
    })
}

/// `logging/setLevel`: from now on the session receives `notifications/message` at `level` and
/// above, on whatever carries the request's notifications (see `Notify`).
async fn set_log_level(session: &Session, request: &Request) -> Result<String, RpcError> {
    let level = request
        .params
        .get("level")
        .and_then(Value::as_str)
        .and_then(LogLevel::parse)
        .ok_or_else(|| {
            let names: Vec<&str> = LogLevel::ALL.iter().map(|l| l.as_str()).collect();
            RpcError::new(
                request.id.clone(),
                ErrorCode::InvalidParams,
                format!("`level` must be one of: {}", names.join(", ")),
            )
        })?;
    session.set_log_level(level).await.map_err(|reason| {
        RpcError::new(
            request.id.clone(),
            ErrorCode::InternalError,
            format!("the log level could not be saved ({reason}); try again"),
        )
    })?;
    Ok("{}".into())
}

/// The vendor dialects carry free-form object arguments as JSON text (neither can describe an
/// object of any shape); this turns that text back into the object the API takes. A value that
/// is not text is left for validation to judge.
fn parse_json_text_arguments(
    tool: &Tool,
    arguments: &mut Map<String, Value>,
) -> Result<(), String> {
    for name in &tool.json_text_arguments {
        if let Some(Value::String(text)) = arguments.get(name) {
            let parsed: Value = serde_json::from_str(text).map_err(|error| {
                format!(
                    "Invalid arguments for {}:\n- `{name}`: is not JSON text of an object ({error})",
                    tool.name()
                )
            })?;
            arguments.insert(name.clone(), parsed);
        }
    }
    Ok(())
}

fn error_result(text: String) -> String {
    tool_result(&text, None, true)
}

/// A tools/call result as JSON text; `structured_json` is the structured content, already JSON.
fn tool_result(text: &str, structured_json: Option<&str>, is_error: bool) -> String {
    // The pieces are pushed into one allocation (`format!` costs more than the copies), sized
    // for the text's escapes too (a JSON body has about one `"` in eight bytes; a buffer that
    // grows is copied).
    let structured = structured_json.unwrap_or_default();
    let mut result = String::with_capacity(text.len() + text.len() / 4 + structured.len() + 96);
    result.push_str(r#"{"content":[{"type":"text","text":"#);
    crate::json_string::push(&mut result, text);
    result.push_str("}]");
    if let Some(json) = structured_json {
        result.push_str(r#","structuredContent":"#);
        result.push_str(json);
    }
    result.push_str(if is_error {
        r#","isError":true}"#
    } else {
        r#","isError":false}"#
    });
    result
}

/// `object` (JSON text of an object) with `members` (JSON text of members) added at its end.
fn with_members(mut object: String, members: &str) -> String {
    debug_assert!(object.ends_with('}'), "{object}");
    object.pop();
    if !object.ends_with('{') {
        object.push(',');
    }
    object.push_str(members);
    object.push('}');
    object
}

fn denied(tool: &Tool, missing: &[&str], held: &[String], token: bool) -> String {
    let held = if held.is_empty() {
        "none".to_string()
    } else {
        held.join(", ")
    };
    let (holder, remedy) = if token {
        // An OAuth client signs in again to be granted more (a key cannot be).
        ("This access token", "Sign in again and grant the scope")
    } else {
        (
            "This API key",
            "Create a key with the required scope (Dashboard → API & Webhooks → API Keys)",
        )
    };
    error_result(format!(
        "Permission denied: {} requires the scope {}. {holder} holds: {held}. {remedy} and reconnect.",
        tool.name(),
        missing.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// They are compiled on first use, so a schema that does not compile would only fail there.
    #[test]
    fn every_tools_input_schema_compiles() {
        for tool in Catalogue::get().tools() {
            let compiled = SchemaCheck::new(&tool.definition["inputSchema"]);
            assert!(compiled.is_ok(), "{}: {:?}", tool.name(), compiled.err());
        }
    }
}

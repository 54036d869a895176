//! The 2026-07-28 ("modern", stateless) era's per-request envelope: which requests belong to it,
//! and the checks every one of them passes before the core sees it.
//!
//! A modern request carries its protocol version, client info and client capabilities in
//! `params._meta`, mirrored in the `MCP-Protocol-Version`, `Mcp-Method` and (tools/call)
//! `Mcp-Name` headers. The checks run in the spec's order, the first failure winning: envelope
//! present (-32602), headers agree with the body (-32020), version served (-32022 with
//! `data.supported` and `data.requested`). Invariant: nothing here touches HTTP types; the
//! transport passes the header values it read.

use crate::mcp::jsonrpc::{ErrorCode, Request, RpcError};
use crate::mcp::session::LogLevel;
use crate::mcp::versions::{HANDSHAKE_VERSIONS, MODERN_VERSIONS, all_versions};
use serde_json::{Value, json};

pub const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
pub const CLIENT_INFO_KEY: &str = "io.modelcontextprotocol/clientInfo";
pub const CLIENT_CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
pub const LOG_LEVEL_KEY: &str = "io.modelcontextprotocol/logLevel";

/// The routing headers of one HTTP request, as sent (None when absent).
#[derive(Clone, Copy, Debug, Default)]
pub struct RoutingHeaders<'a> {
    pub protocol_version: Option<&'a str>,
    pub method: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// What a modern request says about its client.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub protocol_version: String,
    pub client_info: Option<Value>,
    pub client_capabilities: Value,
    /// The least severe `notifications/message` level wanted for this request; None: no log.
    pub log_level: Option<LogLevel>,
}

/// Whether a message belongs to the stateless era: its `MCP-Protocol-Version` header names no
/// handshake-era version, or its body carries the envelope's version key.
pub fn is_modern(header_version: Option<&str>, body: &Value) -> bool {
    match header_version {
        Some(version) => !HANDSHAKE_VERSIONS.contains(&version),
        None => body["params"]["_meta"].get(PROTOCOL_VERSION_KEY).is_some(),
    }
}

/// Runs the envelope checks over one request. A request with no envelope at all but an unknown
/// version header (a handshake-era client) is told every version served, both eras.
pub fn check(request: &Request, headers: RoutingHeaders) -> Result<Envelope, RpcError> {
    let fail = |code, message: String| RpcError::new(request.id.clone(), code, message);
    let meta = request.params.get("_meta").and_then(Value::as_object);
    let Some(meta) = meta.filter(|m| m.contains_key(PROTOCOL_VERSION_KEY)) else {
        if let Some(requested) = headers.protocol_version
            && !MODERN_VERSIONS.contains(&requested)
        {
            return Err(unsupported(request, requested, &all_versions()));
        }
        return Err(fail(
            ErrorCode::InvalidParams,
            format!(
                "a {} request carries `params._meta` with `{PROTOCOL_VERSION_KEY}` and \
                 `{CLIENT_CAPABILITIES_KEY}`; handshake-era clients send `initialize` first",
                MODERN_VERSIONS[0]
            ),
        ));
    };
    let Some(capabilities) = meta.get(CLIENT_CAPABILITIES_KEY) else {
        return Err(fail(
            ErrorCode::InvalidParams,
            format!("`params._meta` is missing `{CLIENT_CAPABILITIES_KEY}`"),
        ));
    };
    let version = &meta[PROTOCOL_VERSION_KEY];
    let mismatch = |message: String| fail(ErrorCode::HeaderMismatch, message);
    if headers.protocol_version.map(Value::from).as_ref() != Some(version) {
        return Err(mismatch(format!(
            "the MCP-Protocol-Version header ({}) must equal `params._meta.{PROTOCOL_VERSION_KEY}` ({version})",
            headers.protocol_version.unwrap_or("absent")
        )));
    }
    if headers.method != Some(request.method.as_str()) {
        return Err(mismatch(format!(
            "the Mcp-Method header ({}) must equal the body's method ({})",
            headers.method.unwrap_or("absent"),
            request.method
        )));
    }
    if request.method == "tools/call"
        && let Some(name) = request.params.get("name").and_then(Value::as_str)
        && headers.name != Some(name)
    {
        return Err(mismatch(format!(
            "the Mcp-Name header ({}) must equal the tool called ({name})",
            headers.name.unwrap_or("absent")
        )));
    }
    let Some(version) = version.as_str() else {
        return Err(fail(
            ErrorCode::InvalidParams,
            format!("`{PROTOCOL_VERSION_KEY}` must be a string"),
        ));
    };
    if !MODERN_VERSIONS.contains(&version) {
        return Err(unsupported(request, version, MODERN_VERSIONS));
    }
    if !capabilities.is_object() {
        return Err(fail(
            ErrorCode::InvalidParams,
            format!("`{CLIENT_CAPABILITIES_KEY}` must be an object"),
        ));
    }
    let log_level = match meta.get(LOG_LEVEL_KEY) {
        None | Some(Value::Null) => None,
        Some(level) => Some(level.as_str().and_then(LogLevel::parse).ok_or_else(|| {
            let names: Vec<&str> = LogLevel::ALL.iter().map(|l| l.as_str()).collect();
            fail(
                ErrorCode::InvalidParams,
                format!("`{LOG_LEVEL_KEY}` must be one of: {}", names.join(", ")),
            )
        })?),
    };
    Ok(Envelope {
        protocol_version: version.to_string(),
        client_info: meta.get(CLIENT_INFO_KEY).cloned(),
        client_capabilities: capabilities.clone(),
        log_level,
    })
}

fn unsupported(request: &Request, requested: &str, supported: &[&str]) -> RpcError {
    RpcError::new(
        request.id.clone(),
        ErrorCode::UnsupportedProtocolVersion,
        format!(
            "unsupported protocol version {requested}; supported: {}",
            supported.join(", ")
        ),
    )
    .with_data(json!({"supported": supported, "requested": requested}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn request(method: &str, params: Value) -> Request {
        let Value::Object(params) = params else {
            unreachable!()
        };
        Request {
            id: json!(1),
            method: method.into(),
            params,
        }
    }

    fn envelope(version: &str) -> Value {
        json!({PROTOCOL_VERSION_KEY: version, CLIENT_CAPABILITIES_KEY: {}})
    }

    const HEADERS: RoutingHeaders = RoutingHeaders {
        protocol_version: Some("2026-07-28"),
        method: Some("tools/call"),
        name: Some("list_tasks"),
    };

    #[test]
    fn a_consistent_request_passes() {
        let call = request(
            "tools/call",
            json!({"name": "list_tasks", "_meta": envelope("2026-07-28")}),
        );
        let envelope = check(&call, HEADERS).unwrap();
        assert_eq!(envelope.protocol_version, "2026-07-28");
        assert_eq!(envelope.log_level, None);
    }

    #[test]
    fn each_check_fails_with_its_code() {
        let cases = [
            (json!({"name": "list_tasks"}), HEADERS, -32602),
            (
                json!({"name": "list_tasks", "_meta": {PROTOCOL_VERSION_KEY: "2026-07-28"}}),
                HEADERS,
                -32602,
            ),
            (
                json!({"name": "get_task", "_meta": envelope("2026-07-28")}),
                HEADERS,
                -32020,
            ),
            (
                json!({"name": "list_tasks", "_meta": envelope("2026-07-28")}),
                RoutingHeaders {
                    method: Some("tools/list"),
                    ..HEADERS
                },
                -32020,
            ),
            (
                json!({"name": "list_tasks", "_meta": envelope("2026-07-28")}),
                RoutingHeaders {
                    protocol_version: None,
                    ..HEADERS
                },
                -32020,
            ),
            (
                json!({"name": "list_tasks", "_meta": envelope("2030-01-01")}),
                RoutingHeaders {
                    protocol_version: Some("2030-01-01"),
                    ..HEADERS
                },
                -32022,
            ),
        ];
        for (params, headers, code) in cases {
            let error = check(&request("tools/call", params.clone()), headers).unwrap_err();
            assert_eq!(error.code.code(), code, "{params}: {}", error.message);
        }
    }

    #[test]
    fn unsupported_versions_say_what_is_supported() {
        let call = request(
            "tools/list",
            json!({"_meta": {PROTOCOL_VERSION_KEY: "2030-01-01", CLIENT_CAPABILITIES_KEY: {}}}),
        );
        let headers = RoutingHeaders {
            protocol_version: Some("2030-01-01"),
            method: Some("tools/list"),
            name: None,
        };
        let error = check(&call, headers).unwrap_err();
        assert_eq!(
            error.data,
            Some(json!({"supported": ["2026-07-28"], "requested": "2030-01-01"}))
        );
        let bare = request("tools/list", Value::Object(Map::new()));
        let error = check(&bare, headers).unwrap_err();
        assert_eq!(error.data.unwrap()["supported"][1], "2025-11-25");
    }

    #[test]
    fn the_log_level_is_read_and_checked() {
        let mut meta = envelope("2026-07-28");
        meta[LOG_LEVEL_KEY] = json!("warning");
        let headers = RoutingHeaders {
            method: Some("tools/list"),
            ..HEADERS
        };
        let list = request("tools/list", json!({"_meta": meta}));
        assert_eq!(
            check(&list, headers).unwrap().log_level,
            Some(LogLevel::Warning)
        );
        meta[LOG_LEVEL_KEY] = json!("loud");
        let list = request("tools/list", json!({"_meta": meta}));
        assert_eq!(check(&list, headers).unwrap_err().code.code(), -32602);
    }
}

//! JSON-RPC 2.0 as MCP uses it: parsing one message into a closed enum, and building replies.
//!
//! Invariant: nothing here knows about HTTP, sessions or tools.

use serde_json::{Map, Value, json};

/// The JSON-RPC and MCP error codes this server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    ParseError,
    InvalidRequest,
    MethodNotFound,
    InvalidParams,
    InternalError,
    /// 2026-07-28: a routing header disagrees with the body.
    HeaderMismatch,
    /// 2026-07-28: the request's protocol version is not served here.
    UnsupportedProtocolVersion,
}

impl ErrorCode {
    pub fn code(self) -> i64 {
        match self {
            ErrorCode::ParseError => -32700,
            ErrorCode::InvalidRequest => -32600,
            ErrorCode::MethodNotFound => -32601,
            ErrorCode::InvalidParams => -32602,
            ErrorCode::InternalError => -32603,
            ErrorCode::HeaderMismatch => -32020,
            ErrorCode::UnsupportedProtocolVersion => -32022,
        }
    }

    /// The HTTP status a 2026-07-28 reply carrying this error is sent with (the handshake eras
    /// answer JSON-RPC errors with 200 once the message itself was accepted).
    pub fn modern_http_status(self) -> u16 {
        match self {
            ErrorCode::MethodNotFound => 404,
            ErrorCode::InternalError => 500,
            _ => 400,
        }
    }
}

/// A JSON-RPC error with the id it answers (null when the id is unknown).
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    pub id: Value,
    pub code: ErrorCode,
    pub message: String,
    /// The error's `data` member, when it has one (-32022 says what is supported).
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(id: Value, code: ErrorCode, message: impl Into<String>) -> RpcError {
        RpcError {
            id,
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> RpcError {
        self.data = Some(data);
        self
    }

    pub fn to_json(&self) -> Value {
        let mut reply = failure(&self.id, self.code, &self.message);
        if let Some(data) = &self.data {
            reply["error"]["data"] = data.clone();
        }
        reply
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub id: Value,
    pub method: String,
    pub params: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub method: String,
    pub params: Map<String, Value>,
}

/// One message from the client.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    Request(Request),
    Notification(Notification),
    /// A response to a request of ours; this server sends none that need answers, so it is dropped.
    Response,
}

impl Incoming {
    /// Parses one message; a malformed one is -32600 naming what is wrong.
    pub fn parse(value: Value) -> Result<Incoming, RpcError> {
        let Value::Object(mut object) = value else {
            return Err(RpcError::new(
                Value::Null,
                ErrorCode::InvalidRequest,
                "a JSON-RPC message must be an object",
            ));
        };
        let id = object.remove("id");
        if let Some(id) = &id
            && !(id.is_string() || id.is_i64() || id.is_u64())
        {
            return Err(RpcError::new(
                Value::Null,
                ErrorCode::InvalidRequest,
                "`id` must be a string or an integer",
            ));
        }
        let invalid = |message: &str| {
            RpcError::new(
                id.clone().unwrap_or(Value::Null),
                ErrorCode::InvalidRequest,
                message,
            )
        };
        if object.get("jsonrpc") != Some(&json!("2.0")) {
            return Err(invalid("`jsonrpc` must be \"2.0\""));
        }
        let method = match object.remove("method") {
            None if object.contains_key("result") || object.contains_key("error") => {
                return Ok(Incoming::Response);
            }
            None => return Err(invalid("a request needs a `method`")),
            Some(Value::String(method)) => method,
            Some(_) => return Err(invalid("`method` must be a string")),
        };
        let params = match object.remove("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(params)) => params,
            Some(_) => return Err(invalid("`params` must be an object")),
        };
        Ok(match id {
            Some(id) => Incoming::Request(Request { id, method, params }),
            None => Incoming::Notification(Notification { method, params }),
        })
    }
}

/// One reply, already serialised: transports write it as it is. Serialising once, from borrowed
/// parts, saves the copies that building a `Value` tree and then serialising it would make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    text: String,
    /// The error it carries, if it is an error reply (HTTP transports pick a status by it).
    error: Option<ErrorCode>,
}

impl Reply {
    /// A success whose result is already JSON text (the core builds every result as text).
    pub fn raw_success(id: &Value, result_json: &str) -> Reply {
        // Pieces pushed into one allocation of the right size: `format!` costs more than the copy.
        let id = match id {
            Value::Number(number) => number.to_string(),
            other => other.to_string(),
        };
        let mut text = String::with_capacity(result_json.len() + id.len() + 36);
        text.push_str(r#"{"jsonrpc":"2.0","id":"#);
        text.push_str(&id);
        text.push_str(r#","result":"#);
        text.push_str(result_json);
        text.push('}');
        Reply::text(text)
    }

    /// A message another replica built, as the JSON text it sent (for a stream held here).
    pub fn relayed(text: String) -> Reply {
        Reply::text(text)
    }

    pub fn notification(method: &str, params: &Value) -> Reply {
        Reply::text(json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string())
    }

    pub fn error(error: &RpcError) -> Reply {
        Reply {
            text: error.to_json().to_string(),
            error: Some(error.code),
        }
    }

    /// The replies to a batch, as one JSON array.
    pub fn batch(replies: Vec<Reply>) -> Reply {
        let parts: Vec<String> = replies.into_iter().map(|r| r.text).collect();
        Reply::text(format!("[{}]", parts.join(",")))
    }

    fn text(text: String) -> Reply {
        Reply { text, error: None }
    }

    pub fn error_code(&self) -> Option<ErrorCode> {
        self.error
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

pub fn failure(id: &Value, code: ErrorCode, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code.code(), "message": message}})
}

/// What one POST asks of the limits before it is answered: how many messages it carries (each
/// message of a batch counts against the rate), and whether any calls a tool (such a request may
/// stay in flight for as long as the call timeout, which the session store needs to know).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Demand {
    pub messages: usize,
    pub calls_a_tool: bool,
}

impl Demand {
    pub fn of(value: &Value) -> Demand {
        let is_call =
            |message: &Value| message.get("method").and_then(Value::as_str) == Some("tools/call");
        match value {
            Value::Array(items) => Demand {
                messages: items.len().max(1),
                calls_a_tool: items.iter().any(is_call),
            },
            message => Demand {
                messages: 1,
                calls_a_tool: is_call(message),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_valid_json_rpc() {
        let reply = Reply::raw_success(&json!(7), r#"{"ok":true}"#);
        let parsed: Value = serde_json::from_str(reply.as_str()).unwrap();
        assert_eq!(
            parsed,
            json!({"jsonrpc": "2.0", "id": 7, "result": {"ok": true}})
        );
        let batch = Reply::batch(vec![reply.clone(), Reply::raw_success(&json!("a"), "{}")]);
        let parsed: Value = serde_json::from_str(batch.as_str()).unwrap();
        assert_eq!(
            parsed[1],
            json!({"jsonrpc": "2.0", "id": "a", "result": {}})
        );
    }

    #[test]
    fn parses_the_three_shapes_and_rejects_the_rest() {
        let request =
            Incoming::parse(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})).unwrap();
        assert!(
            matches!(request, Incoming::Request(Request { ref method, .. }) if method == "ping")
        );
        let note =
            Incoming::parse(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .unwrap();
        assert!(matches!(note, Incoming::Notification(_)));
        assert_eq!(
            Incoming::parse(json!({"jsonrpc": "2.0", "id": 1, "result": {}})).unwrap(),
            Incoming::Response
        );
        for bad in [
            json!([1]),
            json!({"id": 1, "method": "x"}),
            json!({"jsonrpc": "2.0", "id": 1.5, "method": "x"}),
            json!({"jsonrpc": "2.0", "id": 1, "method": 3}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "x", "params": [1]}),
        ] {
            assert_eq!(
                Incoming::parse(bad.clone()).unwrap_err().code,
                ErrorCode::InvalidRequest,
                "{bad}"
            );
        }
    }
}

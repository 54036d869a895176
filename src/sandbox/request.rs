//! One REST request, from bytes to a validated `Input`: authentication, the scope rule, and
//! validation against the spec's request shapes (generated `requests.json`).
//!
//! Order matters and is the production API's: 401 before 403 before 400, so that an anonymous
//! caller learns nothing about the request's validity.

use crate::generated::REQUESTS_JSON;
use crate::generated::api::Operation;
use crate::sandbox::db::{Page, Store};
use crate::sandbox::error::{ApiError, FieldError};
use crate::sandbox::ids;
use crate::scopes::ScopeSet;
use crate::validation::SchemaCheck;
use rusqlite::Transaction;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::LazyLock;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: String,
    pub key_id: String,
    /// The scopes as granted to the key (for messages and for minting checks).
    pub scope_names: Vec<String>,
    pub scopes: ScopeSet,
}

/// Sets the caller's key's `last_used_at` to now.
pub fn touch(tx: &Transaction, principal: &Principal) -> Result<(), ApiError> {
    let store = Store::new(tx, &principal.tenant_id);
    // The key may have been deleted with its tenant meanwhile; nothing to record then.
    if let Some(mut key) = store.get("api_key", &principal.key_id)? {
        key["last_used_at"] = json!(ids::now_string());
        store.update("api_key", &key)?;
    }
    Ok(())
}

/// The spec's scope rule for `operation`: 403 naming the required scopes.
pub fn authorize(principal: &Principal, operation: Operation) -> Result<(), ApiError> {
    let missing = principal.scopes.missing_for(operation);
    if missing.is_empty() {
        return Ok(());
    }
    let required: Vec<String> = operation
        .required_scopes()
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
    Err(ApiError::insufficient_scope(
        required,
        format!(
            "{} requires {}; this key lacks it",
            operation.name(),
            missing.join(" and ")
        ),
    ))
}

/// Where each flat argument of one operation travels, and the schema they must satisfy together.
struct RequestShape {
    path: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Option<Vec<(String, String)>>,
    schema: Value,
    check: SchemaCheck,
}

static SHAPES: LazyLock<HashMap<String, RequestShape>> = LazyLock::new(|| {
    let requests: Map<String, Value> =
        serde_json::from_str(REQUESTS_JSON).expect("build.rs writes requests.json");
    let pairs = |value: &Value| -> Vec<(String, String)> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap_or("").to_string(),
                    pair[1].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    requests
        .into_iter()
        .map(|(name, request)| {
            let shape = RequestShape {
                path: pairs(&request["path"]),
                query: pairs(&request["query"]),
                body: (!request["body"].is_null()).then(|| pairs(&request["body"])),
                check: SchemaCheck::new(&request["schema"]).expect("build.rs writes valid schemas"),
                schema: request["schema"].clone(),
            };
            (name, shape)
        })
        .collect()
});

/// Compiles every request schema now, so the first request pays nothing.
pub fn warm_up() {
    LazyLock::force(&SHAPES);
}

/// What arrived, before validation.
pub struct RawRequest {
    pub path: HashMap<String, String>,
    pub query: Option<String>,
    pub body: bytes::Bytes,
    /// `Idempotency-Key`, checked (see `idempotency`).
    pub idempotency_key: Option<String>,
}

/// Builds the flat argument object from path, query and body, and validates it against the spec.
pub fn validate(operation: Operation, raw: &RawRequest) -> Result<Input, ApiError> {
    let shape = SHAPES
        .get(operation.name())
        .ok_or_else(|| ApiError::internal("no request shape"))?;
    let mut args = Map::new();
    let mut problems = Vec::new();
    for (flat, wire) in &shape.path {
        if let Some(value) = raw.path.get(wire) {
            args.insert(
                flat.clone(),
                coerce(&shape.schema["properties"][flat], value),
            );
        }
    }
    let pairs: Vec<(String, String)> = match raw.query.as_deref() {
        None | Some("") => Vec::new(),
        Some(query) => serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::bad_request(format!("the query string is malformed: {e}")))?,
    };
    for (name, value) in pairs {
        let Some((flat, _)) = shape.query.iter().find(|(_, wire)| *wire == name) else {
            problems.push(FieldError {
                field: name,
                message: "is not a query parameter of this operation".into(),
            });
            continue;
        };
        if args.contains_key(flat) {
            problems.push(FieldError {
                field: name,
                message: "is given more than once".into(),
            });
            continue;
        }
        args.insert(
            flat.clone(),
            coerce(&shape.schema["properties"][flat], &value),
        );
    }
    match &shape.body {
        None if !raw.body.is_empty() => {
            return Err(ApiError::bad_request(format!(
                "{} takes no request body",
                operation.name()
            )));
        }
        None => {}
        Some(fields) => {
            let body: Value = serde_json::from_slice(&raw.body).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
            })?;
            let Value::Object(body) = body else {
                return Err(ApiError::bad_request(
                    "the request body must be a JSON object",
                ));
            };
            for (name, value) in body {
                match fields.iter().find(|(_, wire)| *wire == name) {
                    Some((flat, _)) => {
                        args.insert(flat.clone(), value);
                    }
                    None => problems.push(FieldError {
                        field: name,
                        message: "is not a known field".into(),
                    }),
                }
            }
        }
    }
    problems.extend(
        shape
            .check
            .problems(&Value::Object(args.clone()))
            .into_iter()
            .map(|p| FieldError {
                field: p.field,
                message: p.message,
            }),
    );
    if !problems.is_empty() {
        problems.sort_by(|a, b| a.field.cmp(&b.field));
        problems.dedup();
        return Err(ApiError::validation(problems));
    }
    for value in args.values_mut() {
        whole_numbers_as_integers(value);
    }
    Ok(Input { args })
}

/// JSON Schema counts `600.0` as an integer, so validation lets it through where the spec says
/// `integer`; the handlers read integers with `as_i64`, which sees only integer literals. Every
/// whole number that fits an i64 becomes one (recursively), once, here.
fn whole_numbers_as_integers(value: &mut Value) {
    match value {
        Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && float >= i64::MIN as f64
                && float < i64::MAX as f64
            {
                *value = Value::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// A path or query string, typed as the schema says, so the schema can judge it.
fn coerce(schema: &Value, text: &str) -> Value {
    let kind = match &schema["type"] {
        Value::String(kind) => kind.as_str(),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("string"),
        _ => "string",
    };
    match kind {
        "integer" => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| json!(text)),
        "number" => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| json!(text)),
        "boolean" => match text {
            "true" => json!(true),
            "false" => json!(false),
            _ => json!(text),
        },
        _ => json!(text),
    }
}

/// A request's validated flat arguments: path, query and body fields by name.
pub struct Input {
    args: Map<String, Value>,
}

impl Input {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.args.get(name).filter(|v| !v.is_null())
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// A field the schema marks required (so validation has already proven it is there).
    pub fn required_str(&self, name: &str) -> Result<&str, ApiError> {
        self.str(name)
            .ok_or_else(|| ApiError::invalid_field(name, "is required"))
    }

    pub fn i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(Value::as_i64)
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(Value::as_bool)
    }

    /// `limit`, defaulting to the spec's 20.
    pub fn limit(&self) -> usize {
        self.i64("limit")
            .map(|n| n.clamp(1, 100) as usize)
            .unwrap_or(20)
    }

    pub fn cursor(&self) -> Option<&str> {
        self.str("cursor")
    }

    /// The fields given among `names`, for partial updates: `(name, value)` pairs.
    pub fn given<'a>(
        &'a self,
        names: &'a [&'a str],
    ) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        names
            .iter()
            .filter_map(|name| self.args.get(*name).map(|value| (*name, value)))
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.args
    }
}

/// A successful answer: its status (200, 201 or 202, as the spec says) and body.
pub type Reply = (axum::http::StatusCode, Value);

pub fn ok(body: Value) -> Result<Reply, ApiError> {
    Ok((axum::http::StatusCode::OK, body))
}

pub fn created(body: Value) -> Result<Reply, ApiError> {
    Ok((axum::http::StatusCode::CREATED, body))
}

pub fn accepted(body: Value) -> Result<Reply, ApiError> {
    Ok((axum::http::StatusCode::ACCEPTED, body))
}

pub fn page(page: Page) -> Result<Reply, ApiError> {
    ok(page.into_json())
}

pub fn deleted(id: &str) -> Result<Reply, ApiError> {
    ok(json!({"id": id, "deleted": true}))
}

//! `ApiError`: every failure the sandbox answers with, rendered as the spec's shared Error body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One offending field of a rejected request.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// One of the spec's `Error.error.code` values.
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldError>,
    pub required_scopes: Vec<String>,
    /// For 429: the seconds after which the request would be admitted (`Retry-After`).
    pub retry_after: Option<u64>,
    /// Not an answer but a reason to run the request again another way; never reaches a client
    /// as such (it would be a 500).
    pub redo: Option<Box<Redo>>,
}

/// Why a request's attempt stopped to be run again (`Sandbox::run`).
#[derive(Debug, Clone, PartialEq)]
pub enum Redo {
    /// It tried to write on a read connection: run it on the writer.
    OnWriter,
    /// Its tenant (this id) holds every read connection it may: wait for one of them.
    WhenReadFree(String),
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            required_scopes: Vec::new(),
            retry_after: None,
            redo: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn validation(details: Vec<FieldError>) -> ApiError {
        let fields: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
        let mut error = ApiError::new(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            format!("invalid request: check {}", fields.join(", ")),
        );
        error.details = details;
        error
    }

    /// One invalid field, for checks that the schema cannot express.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::validation(vec![FieldError {
            field: field.to_string(),
            message: message.into(),
        }])
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn insufficient_scope(required: Vec<String>, message: impl Into<String>) -> ApiError {
        let mut error = ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", message);
        error.required_scopes = required;
        error
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message)
    }

    /// 429: the tenant is over its budget; `Retry-After: retry_after`.
    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> ApiError {
        let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        error.retry_after = Some(retry_after);
        error
    }

    /// Not an answer: the request is to be run again as `redo` says (see `Redo`).
    pub fn redo(redo: Redo) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the sandbox failed; see its log",
        );
        error.redo = Some(Box::new(redo));
        error
    }

    /// A fault of the sandbox itself; the detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(%detail, "sandbox internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the sandbox failed; see its log",
        )
    }

    pub fn body(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if !self.details.is_empty() {
            error["details"] = self
                .details
                .iter()
                .map(|d| json!({"field": d.field, "message": d.message}))
                .collect();
        }
        if !self.required_scopes.is_empty() {
            error["required_scopes"] = json!(self.required_scopes);
        }
        json!({ "error": error })
    }
}

/// What a client hears of a read that SQLite interrupted for running too long.
pub const READ_INTERRUPTED: &str = "this read ran longer than the sandbox allows and was stopped: \
     narrow it (a smaller page, a shorter period, a more specific query)";

impl From<rusqlite::Error> for ApiError {
    fn from(error: rusqlite::Error) -> ApiError {
        if error.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly) {
            // A read connection refused a write; `Sandbox::run` retries on the writer.
            return ApiError::redo(Redo::OnWriter);
        }
        if error.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) {
            // `Db::read` words it with the limit it applied.
            return ApiError::bad_request(READ_INTERRUPTED);
        }
        ApiError::internal(format!("sqlite: {error}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer realm=\"trainar\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from(seconds));
        }
        response
    }
}

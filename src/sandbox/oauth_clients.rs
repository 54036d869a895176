//! OAuth clients of the sandbox's authorization server: Dynamic Client Registration (RFC 7591,
//! `POST /oauth/register`) and Client ID Metadata Documents (a client whose `client_id` is the
//! https URL of its metadata, fetched when it asks to authorize).
//!
//! Every client is public (`token_endpoint_auth_method: none`): MCP clients run on users'
//! machines or in a vendor's cloud with no secret we could check, so PKCE is what binds a code to
//! the client that asked for it. A metadata document is fetched under the webhooks' egress policy
//! (`egress`): public addresses only (loopback only when the operator allows private ones, for
//! tests), no redirects, no proxy, a small body and a short timeout, so a `client_id` cannot make
//! the sandbox probe its own network.

use crate::sandbox::egress;
use crate::sandbox::oauth::{OAuthError, now_secs};
use crate::sandbox::{Sandbox, ids};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};
use std::time::Duration;

/// What the authorization endpoint needs of a client.
pub struct Client {
    pub client_id: String,
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
}

const MAX_REDIRECT_URIS: usize = 10;
const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Why a redirect URI cannot be registered, if it cannot: https; http only to loopback (RFC 8252
/// native apps); a private-use scheme for native apps; never a fragment, nor a scheme a browser
/// would run (javascript:, data:, …).
pub fn redirect_uri_refusal(text: &str) -> Option<String> {
    let url = match reqwest::Url::parse(text) {
        Ok(url) => url,
        Err(e) => return Some(format!("`{text}` is not an absolute URI: {e}")),
    };
    if url.fragment().is_some() {
        return Some(format!("`{text}` has a fragment (RFC 6749 section 3.1.2)"));
    }
    match url.scheme() {
        "https" => None,
        "http" => {
            let host = url.host_str().unwrap_or("");
            let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
            (!loopback).then(|| format!("`{text}`: plain http is allowed only to loopback"))
        }
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" => {
            Some(format!("`{text}`: scheme {} is not allowed", url.scheme()))
        }
        _ => None,
    }
}

/// `POST /oauth/register` (RFC 7591): a public client with its redirect URIs.
pub async fn register(State(sandbox): State<Sandbox>, body: Bytes) -> Response {
    let metadata = match registration(&body) {
        Ok(metadata) => metadata,
        Err(error) => return error.into_response(),
    };
    let client_id = ids::new_id("cli_");
    let mut answer = metadata;
    answer["client_id"] = json!(client_id);
    answer["client_id_issued_at"] = json!(now_secs());
    let stored = answer.to_string();
    let id = client_id.clone();
    let saved = sandbox
        .db()
        .transaction(move |tx| {
            tx.execute(
                "INSERT INTO oauth_clients (client_id, metadata, created_at) VALUES (?1, ?2, ?3)",
                params![id, stored, now_secs()],
            )?;
            Ok(())
        })
        .await;
    match saved {
        Ok(()) => (StatusCode::CREATED, axum::Json(answer)).into_response(),
        Err(error) => OAuthError::from(error).into_response(),
    }
}

/// The registration request, checked: the metadata to keep, with the defaults filled in.
fn registration(body: &[u8]) -> Result<Value, OAuthError> {
    let invalid = |message: String| OAuthError::new("invalid_client_metadata", message);
    if body.len() > MAX_METADATA_BYTES {
        return Err(invalid(format!(
            "client metadata is at most {MAX_METADATA_BYTES} bytes"
        )));
    }
    let request: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("the body is not JSON: {e}")))?;
    let uris: Vec<String> = request["redirect_uris"]
        .as_array()
        .map(|uris| {
            uris.iter()
                .map(|u| u.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
        })
        .unwrap_or(None)
        .filter(|uris| !uris.is_empty() && uris.len() <= MAX_REDIRECT_URIS)
        .ok_or_else(|| {
            OAuthError::new(
                "invalid_redirect_uri",
                format!("redirect_uris must be 1 to {MAX_REDIRECT_URIS} URIs"),
            )
        })?;
    if let Some(problem) = uris.iter().find_map(|u| redirect_uri_refusal(u)) {
        return Err(OAuthError::new("invalid_redirect_uri", problem));
    }
    let method = request["token_endpoint_auth_method"]
        .as_str()
        .unwrap_or("none");
    if method != "none" {
        return Err(invalid(format!(
            "token_endpoint_auth_method `{method}` is not supported: clients are public (`none`) \
             and use PKCE"
        )));
    }
    let strings = |field: &str, default: &[&str], allowed: &[&str]| {
        let values: Vec<String> = match &request[field] {
            Value::Null => default.iter().map(|s| s.to_string()).collect(),
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid(format!("{field} must be an array of strings")))?,
            _ => return Err(invalid(format!("{field} must be an array of strings"))),
        };
        if let Some(other) = values.iter().find(|v| !allowed.contains(&v.as_str())) {
            return Err(invalid(format!("{field}: `{other}` is not supported")));
        }
        Ok(values)
    };
    let grant_types = strings(
        "grant_types",
        &["authorization_code", "refresh_token"],
        &["authorization_code", "refresh_token"],
    )?;
    let response_types = strings("response_types", &["code"], &["code"])?;
    let name = match &request["client_name"] {
        Value::Null => None,
        Value::String(name) if !name.trim().is_empty() && name.chars().count() <= 200 => {
            Some(name.clone())
        }
        _ => return Err(invalid("client_name must be 1 to 200 characters".into())),
    };
    let mut metadata = json!({
        "redirect_uris": uris, "token_endpoint_auth_method": "none",
        "grant_types": grant_types, "response_types": response_types,
    });
    if let Some(name) = name {
        metadata["client_name"] = json!(name);
    }
    Ok(metadata)
}

/// The client `client_id` names: a registered one, or the metadata document at that URL.
pub async fn find(sandbox: &Sandbox, client_id: &str) -> Result<Client, String> {
    if client_id.starts_with("https://") || client_id.starts_with("http://") {
        return fetch_document(client_id, sandbox.config.allow_private_webhooks).await;
    }
    let id = client_id.to_string();
    let stored: Option<String> = sandbox
        .db()
        .read(move |tx| {
            Ok(tx
                .query_row(
                    "SELECT metadata FROM oauth_clients WHERE client_id = ?1",
                    params![id],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
        .map_err(|e| e.message)?;
    let stored = stored.ok_or_else(|| {
        format!("unknown client_id `{client_id}`: register the client first (RFC 7591)")
    })?;
    let metadata: Value = serde_json::from_str(&stored).map_err(|e| e.to_string())?;
    Ok(client_from(client_id, &metadata))
}

fn client_from(client_id: &str, metadata: &Value) -> Client {
    Client {
        client_id: client_id.to_string(),
        name: metadata["client_name"].as_str().map(String::from),
        redirect_uris: metadata["redirect_uris"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(String::from))
            .collect(),
    }
}

/// A Client ID Metadata Document: fetched from `url` under the egress policy; its `client_id`
/// must be that very URL, its redirect URIs acceptable ones.
async fn fetch_document(url: &str, allow_private: bool) -> Result<Client, String> {
    let checked = egress::check_url(url, allow_private)
        .map_err(|reason| format!("client_id {url}: {reason}"))?;
    if checked.scheme() != "https" && !allow_private {
        return Err(format!(
            "client_id {url}: a metadata document is fetched over https only"
        ));
    }
    if checked.path() == "/" || checked.fragment().is_some() {
        return Err(format!(
            "client_id {url}: a metadata document URL needs a path and no fragment"
        ));
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .dns_resolver(std::sync::Arc::new(egress::Resolver { allow_private }))
        .build()
        .map_err(|e| e.to_string())?;
    let mut response = client
        .get(checked)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("cannot fetch the client metadata document {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "the client metadata document {url} answered {}",
            response.status()
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("cannot read the client metadata document {url}: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_METADATA_BYTES {
            return Err(format!(
                "the client metadata document {url} is over {MAX_METADATA_BYTES} bytes"
            ));
        }
    }
    let metadata: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the client metadata document {url} is not JSON: {e}"))?;
    if metadata["client_id"].as_str() != Some(url) {
        return Err(format!(
            "the client metadata document {url} names another client_id"
        ));
    }
    registration(&body)
        .map_err(|e| format!("the client metadata document {url}: {}", e.description))?;
    Ok(client_from(url, &metadata))
}

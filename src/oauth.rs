//! The gateway as an OAuth 2.1 protected resource (the MCP authorization spec, 2025-06-18 and
//! 2025-11-25): its RFC 9728 metadata, the `WWW-Authenticate` challenges that point at it, the
//! audiences (RFC 8707) it accepts, and its one conversation with the authorization server: the
//! RFC 8693 exchange of a client's access token (issued for this gateway) for one issued for the
//! API, so that the client's token never leaves the gateway (no token passthrough).
//!
//! Who issues and who checks tokens is in ARCHITECTURE.md ("Tokens"). Scopes are the spec's:
//! `scopes_supported` lists the generated scope table.

use crate::generated::api::Scope;
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};
use std::time::Duration;

pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The gateway's public base URL: `--public-url`, or else what the client reached (its Host).
pub fn base_url(public_url: Option<&str>, headers: &HeaderMap) -> String {
    match public_url {
        Some(public) => public.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("127.0.0.1:8080");
            format!("http://{host}")
        }
    }
}

/// The MCP endpoint a request path belongs to (`/mcp`, `/sse`; `/messages` is the SSE
/// transport's), whose own metadata document a challenge names; `""` for anything else.
pub fn endpoint_of(path: &str) -> &'static str {
    if path == "/mcp" || path.starts_with("/mcp/") {
        "/mcp"
    } else if path == "/sse" || path.starts_with("/messages") {
        "/sse"
    } else {
        ""
    }
}

/// `WWW-Authenticate` for a request to `path`: a Bearer challenge naming the metadata document
/// (RFC 9728 section 5.1), with `error` when a credential was sent and refused, and `scope`
/// when the scopes a call needs are known (step-up, 403 `insufficient_scope`).
pub fn challenge(base: &str, path: &str, error: Option<&str>, scope: Option<&str>) -> String {
    let mut value = format!(
        r#"Bearer realm="trainar-mcp", resource_metadata="{base}{METADATA_PATH}{}""#,
        endpoint_of(path)
    );
    if let Some(error) = error {
        value.push_str(&format!(r#", error="{error}""#));
    }
    if let Some(scope) = scope {
        value.push_str(&format!(r#", scope="{scope}""#));
    }
    value
}

/// RFC 9728 metadata for the resource at `base` + `endpoint` (`""`, `/mcp` or `/sse`).
pub fn metadata(base: &str, endpoint: &str, authorization_server: Option<&str>) -> Value {
    let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let mut document = json!({
        "resource": format!("{base}{endpoint}"),
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": "TrainAR MCP server",
        "resource_documentation": format!("{base}/"),
    });
    if let Some(server) = authorization_server {
        document["authorization_servers"] = json!([server.trim_end_matches('/')]);
    }
    document
}

/// Whether a token issued for `audience` is for this gateway at `base`: the base itself or one
/// of its MCP endpoints (clients ask for the resource their metadata document named).
pub fn accepts_audience(base: &str, audience: &str) -> bool {
    let audience = audience.trim_end_matches('/');
    audience == base || audience == format!("{base}/mcp") || audience == format!("{base}/sse")
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// The authorization server refused the token (expired, revoked, unknown): the caller's fault.
    Refused(String),
    /// It could not be asked, or answered nonsense: not the caller's fault.
    Unavailable(String),
}

/// An API token obtained by exchange.
pub struct Exchanged {
    pub access_token: String,
    pub expires_in: u64,
}

/// The authorization server the gateway's metadata names, as far as the gateway talks to it.
pub struct AuthorizationServer {
    url: String,
    http: reqwest::Client,
    /// Its token endpoint, read from its RFC 8414 metadata on first use.
    token_endpoint: tokio::sync::OnceCell<String>,
}

impl AuthorizationServer {
    pub fn new(url: &str) -> Result<AuthorizationServer, String> {
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            // A redirect would carry the client's token to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(AuthorizationServer {
            url: url.trim_end_matches('/').to_string(),
            http,
            token_endpoint: tokio::sync::OnceCell::new(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn token_endpoint(&self) -> Result<&str, ExchangeError> {
        self.token_endpoint
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/oauth-authorization-server", self.url);
                let unavailable = |e: String| {
                    ExchangeError::Unavailable(format!(
                        "the authorization server's metadata ({url}): {e}"
                    ))
                };
                let response = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                if !response.status().is_success() {
                    return Err(unavailable(format!("answered {}", response.status())));
                }
                let metadata: Value = response
                    .json()
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                metadata["token_endpoint"]
                    .as_str()
                    .map(String::from)
                    .ok_or_else(|| unavailable("it names no token_endpoint".into()))
            })
            .await
            .map(String::as_str)
    }

    /// Trades `token` (a client's, issued for this gateway) for an access token for the API at
    /// `api` (RFC 8693).
    pub async fn exchange(&self, token: &str, api: &str) -> Result<Exchanged, ExchangeError> {
        let endpoint = self.token_endpoint().await?;
        let form = serde_urlencoded::to_string([
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("resource", api),
        ])
        .map_err(|e| ExchangeError::Unavailable(e.to_string()))?;
        let response = self
            .http
            .post(endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| ExchangeError::Unavailable(format!("token exchange: {e}")))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| {
            ExchangeError::Unavailable(format!("token exchange answered {status}: {e}"))
        })?;
        if status.is_client_error() && body["error"] == "invalid_grant" {
            return Err(ExchangeError::Refused(
                body["error_description"]
                    .as_str()
                    .unwrap_or("the authorization server refused the access token")
                    .to_string(),
            ));
        }
        match (status.is_success(), body["access_token"].as_str()) {
            (true, Some(access_token)) => Ok(Exchanged {
                access_token: access_token.to_string(),
                expires_in: body["expires_in"].as_u64().unwrap_or(60),
            }),
            _ => Err(ExchangeError::Unavailable(format!(
                "token exchange answered {status}: {}",
                body["error"].as_str().unwrap_or("no access_token")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_names_the_metadata_of_the_endpoint_asked() {
        let base = "https://mcp.example.com";
        assert_eq!(
            challenge(base, "/mcp", None, None),
            r#"Bearer realm="trainar-mcp", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#
        );
        assert!(
            challenge(
                base,
                "/messages",
                Some("insufficient_scope"),
                Some("read:tasks")
            )
            .ends_with(
                r#"/oauth-protected-resource/sse", error="insufficient_scope", scope="read:tasks""#
            )
        );
    }

    #[test]
    fn only_this_servers_resources_are_accepted_audiences() {
        let base = "https://mcp.example.com";
        for audience in [
            base,
            "https://mcp.example.com/mcp",
            "https://mcp.example.com/sse/",
        ] {
            assert!(accepts_audience(base, audience), "{audience}");
        }
        for audience in [
            "https://other.example.com/mcp",
            "https://mcp.example.com/mcp/x",
            "http://mcp.example.com/mcp",
            "https://mcp.example.com.evil/mcp",
        ] {
            assert!(!accepts_audience(base, audience), "{audience}");
        }
    }
}

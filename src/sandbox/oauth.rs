//! The sandbox as TrainAR's OAuth 2.1 authorization server, for MCP clients that cannot send a
//! static key (claude.ai's and ChatGPT's connectors, the Inspector): RFC 8414 metadata, client
//! registration (RFC 7591; Client ID Metadata Documents in `oauth_clients`), the token endpoint
//! (authorization code with PKCE S256, refresh with rotation, RFC 8693 exchange for the MCP
//! gateway), revocation (RFC 7009); and the API's side of tokens: `identify_token` (an API call
//! made with an access token) and `introspect` (the spec's `introspect_oauth_token`). The
//! consent page is `oauth_consent`.
//!
//! Tokens are opaque: `tat_` access tokens, `tar_` refresh tokens, `tac_` codes. The database
//! keeps only their SHA-256. An access token carries the resource it was issued for (RFC 8707):
//! the MCP server's URL. The API accepts only tokens issued for itself, which the gateway gets
//! by exchanging the client's token, so a client's token is never passed on to another service.

use crate::generated::api::Scope;
use crate::sandbox::error::ApiError;
use crate::sandbox::request::{Input, Principal, Reply, ok};
use crate::sandbox::{Ctx, Sandbox, ids};
use crate::scopes::ScopeSet;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::{Value, json};

pub const ACCESS_PREFIX: &str = "tat_";
pub const REFRESH_PREFIX: &str = "tar_";
pub const CODE_PREFIX: &str = "tac_";
/// Access tokens are short-lived: a client refreshes, and a revoked grant stops soon everywhere.
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
const REFRESH_TTL_SECS: i64 = 30 * 24 * 3600;
pub const CODE_TTL_SECS: i64 = 60;
/// An API token lives only in the gateway's memory; it may outlast the access token it was
/// exchanged for, so that an SSE stream opened with that token lasts while its grant does (it is
/// revoked with the token it came from, and with the grant).
const API_TOKEN_TTL_SECS: i64 = 24 * 3600;
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Where each endpoint lives, relative to the issuer.
pub const AUTHORIZE_PATH: &str = "/oauth/authorize";
pub const TOKEN_PATH: &str = "/oauth/token";
pub const REGISTER_PATH: &str = "/oauth/register";
pub const REVOKE_PATH: &str = "/oauth/revoke";
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// An error of an OAuth endpoint, in the RFCs' shape: `{error, error_description}`.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        let status = match error {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }
}

impl From<ApiError> for OAuthError {
    fn from(error: ApiError) -> OAuthError {
        OAuthError {
            status: error.status,
            error: if error.status.is_server_error() {
                "server_error"
            } else {
                "invalid_request"
            },
            description: error.message,
        }
    }
}

impl From<rusqlite::Error> for OAuthError {
    fn from(error: rusqlite::Error) -> OAuthError {
        ApiError::from(error).into()
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut response = (self.status, axum::Json(body)).into_response();
        no_store(&mut response);
        response
    }
}

/// Token responses and errors must not be cached (RFC 6749 section 5.1).
pub fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The issuer: this server's own origin as the client reached it (the sandbox runs on loopback,
/// its address known only once bound; or behind an HTTPS tunnel, which says so in
/// `X-Forwarded-Proto`, when a hosted connector must reach it).
pub fn issuer(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = match headers.get("x-forwarded-proto").map(|v| v.as_bytes()) {
        Some(b"https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A form body (or query) as pairs, refusing a parameter sent twice (RFC 6749 section 3.1).
pub fn form(bytes: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes).map_err(|e| {
        OAuthError::new(
            "invalid_request",
            format!("the body is not form-encoded: {e}"),
        )
    })?;
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !matches!(name.as_str(), "scope" | "grant") && pairs[..i].iter().any(|(n, _)| n == name)
        {
            return Err(OAuthError::new(
                "invalid_request",
                format!("`{name}` is sent more than once"),
            ));
        }
    }
    Ok(pairs)
}

pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn required<'a>(pairs: &'a [(String, String)], name: &str) -> Result<&'a str, OAuthError> {
    param(pairs, name)
        .ok_or_else(|| OAuthError::new("invalid_request", format!("`{name}` is required")))
}

/// Which scopes a user of `role` may grant a client: an admin all of them; a manager all but
/// the tenant's keys, billing and account; a trainer reads (but not billing or keys) and works
/// on tasks, skills and knowledge; a trainee reads and runs training content.
pub fn role_may_grant(role: &str, scope: Scope) -> bool {
    let name = scope.as_str();
    let (verb, resource) = name.split_once(':').unwrap_or((name, ""));
    let sensitive = matches!(resource, "api_keys" | "billing" | "account");
    match role {
        "admin" => true,
        "manager" => !(sensitive && verb != "read"),
        "trainer" => {
            (verb == "read" && !matches!(resource, "api_keys" | "billing"))
                || matches!(resource, "tasks" | "skills" | "knowledge")
        }
        "trainee" => {
            matches!(resource, "tasks" | "skills" | "knowledge" | "sessions")
                && (verb == "read" || name == "execute:skills")
        }
        _ => false,
    }
}

/// Scope names from a space-separated `scope`, each known to the spec (`invalid_scope` otherwise).
pub fn parse_scopes(text: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let mut scopes: Vec<String> = Vec::new();
    for name in text.unwrap_or("").split_whitespace() {
        if Scope::parse(name).is_none() {
            return Err(OAuthError::new(
                "invalid_scope",
                format!("`{name}` is not a scope of the TrainAR API"),
            ));
        }
        if !scopes.iter().any(|s| s == name) {
            scopes.push(name.to_string());
        }
    }
    Ok(scopes)
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn metadata(headers: HeaderMap) -> Response {
    let issuer = issuer(&headers);
    let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
        "registration_endpoint": format!("{issuer}{REGISTER_PATH}"),
        "revocation_endpoint": format!("{issuer}{REVOKE_PATH}"),
        "introspection_endpoint": format!("{issuer}/v1/oauth/introspect"),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

/// A grant: one user's consent to one client, for some scopes and one resource.
struct Grant {
    id: String,
    tenant_id: String,
    user_id: String,
    client_id: String,
    scope: String,
    resource: String,
    revoked: bool,
}

fn grant(tx: &Transaction, id: &str) -> Result<Option<Grant>, rusqlite::Error> {
    tx.query_row(
        "SELECT id, tenant_id, user_id, client_id, scope, resource, revoked_at IS NOT NULL
             FROM oauth_grants WHERE id = ?1",
        params![id],
        |row| {
            Ok(Grant {
                id: row.get(0)?,
                tenant_id: row.get(1)?,
                user_id: row.get(2)?,
                client_id: row.get(3)?,
                scope: row.get(4)?,
                resource: row.get(5)?,
                revoked: row.get(6)?,
            })
        },
    )
    .optional()
}

/// One stored token (its hash is the key).
struct Token {
    grant_id: String,
    kind: String,
    audience: String,
    scope: String,
    issued_at: i64,
    expires_at: i64,
    /// `rotated` (a refresh token that was used) or `revoked`.
    revoked: Option<String>,
}

fn token(tx: &Transaction, secret: &str) -> Result<Option<Token>, rusqlite::Error> {
    tx.query_row(
        "SELECT grant_id, kind, audience, scope, issued_at, expires_at, revoked
         FROM oauth_tokens WHERE sha256 = ?1",
        params![ids::sha256_hex(secret.as_bytes())],
        |row| {
            Ok(Token {
                grant_id: row.get(0)?,
                kind: row.get(1)?,
                audience: row.get(2)?,
                scope: row.get(3)?,
                issued_at: row.get(4)?,
                expires_at: row.get(5)?,
                revoked: row.get(6)?,
            })
        },
    )
    .optional()
}

/// Stores a new token of `kind` and returns its secret.
fn issue(
    tx: &Transaction,
    grant: &Grant,
    kind: &str,
    audience: &str,
    scope: &str,
    expires_at: i64,
    parent: Option<&str>,
) -> Result<String, OAuthError> {
    let prefix = if kind == "refresh" {
        REFRESH_PREFIX
    } else {
        ACCESS_PREFIX
    };
    let secret = format!("{prefix}{}", ids::random_base62(40));
    tx.execute(
        "INSERT INTO oauth_tokens (sha256, grant_id, kind, audience, scope, issued_at, expires_at, parent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            ids::sha256_hex(secret.as_bytes()),
            grant.id,
            kind,
            audience,
            scope,
            now_secs(),
            expires_at,
            parent
        ],
    )?;
    Ok(secret)
}

/// An access token and a refresh token for `grant`, as the token endpoint answers them.
fn token_pair(tx: &Transaction, grant: &Grant, scope: &str) -> Result<Value, OAuthError> {
    let now = now_secs();
    let access = issue(
        tx,
        grant,
        "access",
        &grant.resource,
        scope,
        now + ACCESS_TTL_SECS,
        None,
    )?;
    let refresh = issue(
        tx,
        grant,
        "refresh",
        &grant.resource,
        scope,
        now + REFRESH_TTL_SECS,
        None,
    )?;
    Ok(json!({
        "access_token": access, "token_type": "Bearer", "expires_in": ACCESS_TTL_SECS,
        "refresh_token": refresh, "scope": scope,
    }))
}

/// Revokes the user's live grants that `role` may no longer grant in whole (None: the user is
/// deactivated, so every one), with every token issued under them. A grant speaks for its user as
/// the user is now, not as at consent. Returns how many were revoked.
pub fn revoke_grants_beyond(
    tx: &Transaction,
    tenant_id: &str,
    user_id: &str,
    role: Option<&str>,
) -> Result<usize, rusqlite::Error> {
    let grants: Vec<(String, String)> = tx
        .prepare(
            "SELECT id, scope FROM oauth_grants
             WHERE tenant_id = ?1 AND user_id = ?2 AND revoked_at IS NULL",
        )?
        .query_map(params![tenant_id, user_id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut revoked = 0;
    for (grant_id, scope) in grants {
        let still_grantable = role.is_some_and(|role| {
            scope
                .split_whitespace()
                .all(|name| Scope::parse(name).is_some_and(|scope| role_may_grant(role, scope)))
        });
        if !still_grantable {
            revoke_grant(tx, &grant_id)?;
            revoked += 1;
        }
    }
    Ok(revoked)
}

/// Revokes a grant and every token issued under it.
fn revoke_grant(tx: &Transaction, grant_id: &str) -> Result<(), rusqlite::Error> {
    let now = now_secs();
    tx.execute(
        "UPDATE oauth_grants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![grant_id, now],
    )?;
    tx.execute(
        "UPDATE oauth_tokens SET revoked = 'revoked' WHERE grant_id = ?1 AND revoked IS NULL",
        params![grant_id],
    )?;
    Ok(())
}

/// The message for a secret that is not of the kind an endpoint takes.
fn wrong_kind(secret: &str, wanted: &str) -> Option<String> {
    if secret.starts_with("tak_") {
        Some(format!(
            "a `tak_` API key is not an OAuth {wanted}; send the key itself as \
             `Authorization: Bearer tak_…` to the API or the MCP server"
        ))
    } else {
        None
    }
}

/// `POST /oauth/token`: the authorization code, a refresh, or an exchange for an API token.
pub async fn token_endpoint(State(sandbox): State<Sandbox>, body: Bytes) -> Response {
    let result = async {
        let pairs = form(&body)?;
        let grant_type = required(&pairs, "grant_type")?.to_string();
        sandbox
            .db()
            .transaction(move |tx| {
                let answer = match grant_type.as_str() {
                    "authorization_code" => redeem_code(tx, &pairs),
                    "refresh_token" => refresh(tx, &pairs),
                    TOKEN_EXCHANGE => exchange(tx, &pairs),
                    other => Err(OAuthError::new(
                        "unsupported_grant_type",
                        format!(
                            "grant_type `{other}` is not supported: use authorization_code, \
                             refresh_token or token exchange"
                        ),
                    )),
                };
                // The reused code or refresh token revoked its grant: that must stick, so the
                // transaction commits and the error is answered after.
                Ok(answer)
            })
            .await
            .map_err(OAuthError::from)?
    }
    .await;
    match result {
        Ok(body) => {
            let mut response = axum::Json(body).into_response();
            no_store(&mut response);
            response
        }
        Err(error) => error.into_response(),
    }
}

fn redeem_code(tx: &Transaction, pairs: &[(String, String)]) -> Result<Value, OAuthError> {
    let code = required(pairs, "code")?;
    let client_id = required(pairs, "client_id")?;
    if let Some(message) = wrong_kind(code, "authorization code") {
        return Err(OAuthError::new("invalid_grant", message));
    }
    let found = tx
        .query_row(
            "SELECT client_id, redirect_uri, code_challenge, scope, resource, tenant_id, user_id,
                    expires_at, used_at IS NOT NULL, grant_id
             FROM oauth_codes WHERE code_sha256 = ?1",
            params![ids::sha256_hex(code.as_bytes())],
            |row| {
                Ok((
                    (
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                    ),
                    (
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, String>(5)?,
                        row.get::<_, String>(6)?,
                    ),
                    (
                        row.get::<_, i64>(7)?,
                        row.get::<_, bool>(8)?,
                        row.get::<_, Option<String>>(9)?,
                    ),
                ))
            },
        )
        .optional()?;
    let Some((
        (code_client, redirect_uri, challenge),
        (scope, resource, tenant_id, user_id),
        (expires_at, used, grant_id),
    )) = found
    else {
        return Err(OAuthError::new(
            "invalid_grant",
            "unknown authorization code",
        ));
    };
    if used {
        // A code seen twice was intercepted, or replayed: what it bought is revoked (RFC 6749
        // section 4.1.2).
        if let Some(grant_id) = grant_id {
            revoke_grant(tx, &grant_id)?;
        }
        return Err(OAuthError::new(
            "invalid_grant",
            "this authorization code was already used; the tokens issued for it are revoked",
        ));
    }
    if expires_at <= now_secs() {
        return Err(OAuthError::new(
            "invalid_grant",
            "the authorization code has expired; authorize again",
        ));
    }
    if code_client != client_id {
        return Err(OAuthError::new(
            "invalid_grant",
            "the authorization code was issued to another client",
        ));
    }
    if param(pairs, "redirect_uri") != Some(redirect_uri.as_str()) {
        return Err(OAuthError::new(
            "invalid_grant",
            "redirect_uri does not match the one of the authorization request",
        ));
    }
    let verifier = param(pairs, "code_verifier").ok_or_else(|| {
        OAuthError::new(
            "invalid_request",
            "code_verifier is required: this server requires PKCE (S256)",
        )
    })?;
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed {
        return Err(OAuthError::new(
            "invalid_request",
            "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636)",
        ));
    }
    if s256(verifier) != challenge {
        return Err(OAuthError::new(
            "invalid_grant",
            "code_verifier does not match the code_challenge (PKCE S256)",
        ));
    }
    if let Some(asked) = param(pairs, "resource")
        && asked != resource
    {
        return Err(OAuthError::new(
            "invalid_target",
            format!("the code was issued for resource {resource}, not {asked}"),
        ));
    }
    let grant = Grant {
        id: ids::new_id("grt_"),
        tenant_id,
        user_id,
        client_id: client_id.to_string(),
        scope: scope.clone(),
        resource,
        revoked: false,
    };
    tx.execute(
        "INSERT INTO oauth_grants (id, tenant_id, user_id, client_id, scope, resource, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            grant.id,
            grant.tenant_id,
            grant.user_id,
            grant.client_id,
            grant.scope,
            grant.resource,
            now_secs()
        ],
    )?;
    tx.execute(
        "UPDATE oauth_codes SET used_at = ?2, grant_id = ?3 WHERE code_sha256 = ?1",
        params![ids::sha256_hex(code.as_bytes()), now_secs(), grant.id],
    )?;
    token_pair(tx, &grant, &scope)
}

/// BASE64URL(SHA-256(verifier)), unpadded: the S256 code challenge (RFC 7636 section 4.2).
pub fn s256(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

fn refresh(tx: &Transaction, pairs: &[(String, String)]) -> Result<Value, OAuthError> {
    let secret = required(pairs, "refresh_token")?;
    let client_id = required(pairs, "client_id")?;
    if let Some(message) = wrong_kind(secret, "refresh token") {
        return Err(OAuthError::new("invalid_grant", message));
    }
    let Some(old) = token(tx, secret)?.filter(|t| t.kind == "refresh") else {
        let message = if secret.starts_with(ACCESS_PREFIX) {
            "this is an access token, not a refresh token"
        } else {
            "unknown refresh token"
        };
        return Err(OAuthError::new("invalid_grant", message));
    };
    match old.revoked.as_deref() {
        Some("rotated") => {
            // A refresh token is good once (rotation); seeing it again means two parties hold
            // it, so the whole grant goes (OAuth 2.1 section 4.3.1).
            revoke_grant(tx, &old.grant_id)?;
            return Err(OAuthError::new(
                "invalid_grant",
                "this refresh token was already used; the grant is revoked, authorize again",
            ));
        }
        Some(_) => {
            return Err(OAuthError::new(
                "invalid_grant",
                "this refresh token was revoked",
            ));
        }
        None => {}
    }
    if old.expires_at <= now_secs() {
        return Err(OAuthError::new(
            "invalid_grant",
            "this refresh token has expired; authorize again",
        ));
    }
    let grant = grant(tx, &old.grant_id)?
        .filter(|g| !g.revoked)
        .ok_or_else(|| OAuthError::new("invalid_grant", "the grant was revoked"))?;
    if grant.client_id != client_id {
        return Err(OAuthError::new(
            "invalid_grant",
            "the refresh token was issued to another client",
        ));
    }
    if let Some(asked) = param(pairs, "resource")
        && asked != grant.resource
    {
        return Err(OAuthError::new(
            "invalid_target",
            format!("the grant is for resource {}, not {asked}", grant.resource),
        ));
    }
    let held: Vec<&str> = old.scope.split_whitespace().collect();
    let scope = match param(pairs, "scope") {
        None => old.scope.clone(),
        Some(asked) => {
            let asked = parse_scopes(Some(asked))?;
            if let Some(beyond) = asked.iter().find(|s| !held.contains(&s.as_str())) {
                return Err(OAuthError::new(
                    "invalid_scope",
                    format!("`{beyond}` was not granted; a refresh may only narrow the scopes"),
                ));
            }
            asked.join(" ")
        }
    };
    tx.execute(
        "UPDATE oauth_tokens SET revoked = 'rotated' WHERE sha256 = ?1",
        params![ids::sha256_hex(secret.as_bytes())],
    )?;
    token_pair(tx, &grant, &scope)
}

/// RFC 8693: the MCP gateway trades a client's access token (issued for the gateway) for one
/// issued for this API, with the same grant and scopes.
fn exchange(tx: &Transaction, pairs: &[(String, String)]) -> Result<Value, OAuthError> {
    let subject = required(pairs, "subject_token")?;
    if required(pairs, "subject_token_type")? != ACCESS_TOKEN_TYPE {
        return Err(OAuthError::new(
            "invalid_request",
            format!("subject_token_type must be {ACCESS_TOKEN_TYPE}"),
        ));
    }
    // The API's address as the gateway knows it (often not the issuer's: a loopback address
    // behind a public one); what makes the token the API's is its kind, `api`.
    let resource = required(pairs, "resource")?;
    if !reqwest::Url::parse(resource).is_ok_and(|url| matches!(url.scheme(), "http" | "https")) {
        return Err(OAuthError::new(
            "invalid_target",
            format!("resource must be the API's URL, not `{resource}`"),
        ));
    }
    if let Some(message) = wrong_kind(subject, "access token") {
        return Err(OAuthError::new("invalid_grant", message));
    }
    let subject_token = token(tx, subject)?
        .filter(|t| t.kind == "access")
        .ok_or_else(|| OAuthError::new("invalid_grant", "unknown access token"))?;
    if subject_token.revoked.is_some() {
        return Err(OAuthError::new(
            "invalid_grant",
            "the access token was revoked",
        ));
    }
    let now = now_secs();
    if subject_token.expires_at <= now {
        return Err(OAuthError::new(
            "invalid_grant",
            "the access token has expired; refresh it",
        ));
    }
    let grant = grant(tx, &subject_token.grant_id)?
        .filter(|g| !g.revoked)
        .ok_or_else(|| OAuthError::new("invalid_grant", "the grant was revoked"))?;
    let api_token = issue(
        tx,
        &grant,
        "api",
        resource,
        &subject_token.scope,
        now + API_TOKEN_TTL_SECS,
        Some(&ids::sha256_hex(subject.as_bytes())),
    )?;
    Ok(json!({
        "access_token": api_token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": API_TOKEN_TTL_SECS,
        "scope": subject_token.scope,
    }))
}

/// `POST /oauth/revoke` (RFC 7009): a refresh token revokes its whole grant; an access token
/// itself and the API tokens exchanged for it. Unknown tokens are answered 200, as the RFC says.
pub async fn revoke(State(sandbox): State<Sandbox>, body: Bytes) -> Response {
    let result = async {
        let pairs = form(&body)?;
        let secret = required(&pairs, "token")?.to_string();
        if secret.starts_with("tak_") {
            return Err(OAuthError::new(
                "unsupported_token_type",
                "a `tak_` API key is not revoked here: use the API's revoke_api_key",
            ));
        }
        let client_id = param(&pairs, "client_id").map(String::from);
        sandbox
            .db()
            .transaction(move |tx| {
                let Some(found) = token(tx, &secret)? else {
                    return Ok(Ok(()));
                };
                let Some(grant) = grant(tx, &found.grant_id)? else {
                    return Ok(Ok(()));
                };
                if client_id.as_deref().is_some_and(|id| id != grant.client_id) {
                    return Ok(Err(OAuthError::new(
                        "invalid_client",
                        "the token was issued to another client",
                    )));
                }
                let hash = ids::sha256_hex(secret.as_bytes());
                if found.kind == "refresh" {
                    revoke_grant(tx, &grant.id)?;
                } else {
                    tx.execute(
                        "UPDATE oauth_tokens SET revoked = 'revoked'
                         WHERE (sha256 = ?1 OR parent = ?1) AND revoked IS NULL",
                        params![hash],
                    )?;
                }
                Ok(Ok(()))
            })
            .await
            .map_err(OAuthError::from)?
    }
    .await;
    match result {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            no_store(&mut response);
            response
        }
        Err(error) => error.into_response(),
    }
}

/// The caller of an API operation that sent an access token: only a token issued for this API
/// (by exchange) is accepted; one issued for another resource (the MCP server) is refused, as
/// RFC 8707 audiences require.
pub fn identify_token(tx: &Transaction, secret: &str) -> Result<Principal, ApiError> {
    if secret.starts_with(REFRESH_PREFIX) {
        return Err(ApiError::unauthorized(
            "a refresh token is not an access token; exchange it at the token endpoint",
        ));
    }
    let found = token(tx, secret)?.ok_or_else(|| ApiError::unauthorized("unknown access token"))?;
    if found.kind != "api" {
        return Err(ApiError::unauthorized(format!(
            "this access token was issued for {}, not for this API (RFC 8707): the MCP server \
             exchanges it for one of its own",
            found.audience
        )));
    }
    if found.revoked.is_some() {
        return Err(ApiError::unauthorized("this access token was revoked"));
    }
    if found.expires_at <= now_secs() {
        return Err(ApiError::unauthorized("this access token has expired"));
    }
    let grant = grant(tx, &found.grant_id)?
        .filter(|g| !g.revoked)
        .ok_or_else(|| ApiError::unauthorized("this access token's grant was revoked"))?;
    let scope_names: Vec<String> = found.scope.split_whitespace().map(String::from).collect();
    Ok(Principal {
        tenant_id: grant.tenant_id,
        key_id: grant.id,
        scopes: ScopeSet::from_names(scope_names.iter().map(String::as_str)),
        scope_names,
    })
}

/// `introspect_oauth_token`: RFC 7662's answer, active only for a live token of the caller's
/// own tenant (anything else is indistinguishable from an unknown token).
pub fn introspect(ctx: &Ctx, input: &Input) -> Result<Reply, ApiError> {
    let inactive = || ok(json!({"active": false}));
    let Some(secret) = input.str("token") else {
        return inactive();
    };
    let tx = ctx.store.tx();
    let Some(found) = token(tx, secret)?.filter(|t| t.kind != "refresh") else {
        return inactive();
    };
    if found.revoked.is_some() || found.expires_at <= now_secs() {
        return inactive();
    }
    let Some(grant) = grant(tx, &found.grant_id)? else {
        return inactive();
    };
    if grant.revoked || grant.tenant_id != ctx.principal.tenant_id {
        return inactive();
    }
    ok(json!({
        "active": true, "scope": found.scope, "client_id": grant.client_id, "sub": grant.user_id,
        "aud": found.audience, "exp": found.expires_at, "iat": found.issued_at,
        "token_type": "Bearer", "tenant_id": grant.tenant_id, "grant_id": grant.id,
    }))
}

/// What the consent page stores when the user allows: a one-time code (its hash), for a minute.
pub struct NewCode<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
    pub scope: &'a str,
    pub resource: &'a str,
    pub tenant_id: &'a str,
    pub user_id: &'a str,
}

pub fn store_code(tx: &Transaction, code: &NewCode) -> Result<String, ApiError> {
    let secret = format!("{CODE_PREFIX}{}", ids::random_base62(40));
    tx.execute(
        "INSERT INTO oauth_codes (code_sha256, client_id, redirect_uri, code_challenge, scope,
                                  resource, tenant_id, user_id, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            ids::sha256_hex(secret.as_bytes()),
            code.client_id,
            code.redirect_uri,
            code.code_challenge,
            code.scope,
            code.resource,
            code.tenant_id,
            code.user_id,
            now_secs() + CODE_TTL_SECS
        ],
    )?;
    Ok(secret)
}

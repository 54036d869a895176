//! The authorization endpoint and its consent page: plain HTML forms, no script, no external
//! assets. The sandbox has no passwords: the page lists the demo tenant's active users to sign
//! in as, then the requested scopes that user's role may grant (`oauth::role_may_grant`).
//!
//! Errors follow RFC 6749 section 4.1.2.1: while the client or its redirect URI is not
//! established, the page says what is wrong and redirects nowhere; after that, the error goes
//! back to the client's redirect URI (`error`, `error_description`, `state`, `iss`).

use crate::generated::api::Scope;
use crate::sandbox::db::{Filter, Store};
use crate::sandbox::error::ApiError;
use crate::sandbox::oauth::{self, OAuthError, form, param};
use crate::sandbox::{Sandbox, oauth_clients};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};

/// An authorization request whose client and redirect URI are established.
struct Request {
    client_id: String,
    client_name: Option<String>,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: String,
    scopes: Vec<String>,
    resource: String,
    issuer: String,
}

/// Either a page (nobody to send the error to) or the error for the client's redirect URI.
enum Refusal {
    Page(String),
    Redirect(Box<Request>, OAuthError),
}

impl Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Page(message) => page(
                StatusCode::BAD_REQUEST,
                "This authorization request cannot be served",
                &format!("<p>{}</p>", escape(&message)),
            ),
            Refusal::Redirect(request, error) => redirect(
                &request,
                &[
                    ("error", error.error),
                    ("error_description", &error.description),
                ],
            ),
        }
    }
}

/// The request's parameters, checked in the RFC's order.
async fn checked(
    sandbox: &Sandbox,
    pairs: &[(String, String)],
    issuer: String,
) -> Result<Request, Refusal> {
    let client_id =
        param(pairs, "client_id").ok_or_else(|| Refusal::Page("client_id is required".into()))?;
    let client = oauth_clients::find(sandbox, client_id)
        .await
        .map_err(Refusal::Page)?;
    let redirect_uri = match param(pairs, "redirect_uri") {
        Some(uri) => uri.to_string(),
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Err(Refusal::Page(
                "redirect_uri is required: the client registered several".into(),
            ));
        }
    };
    if !client.redirect_uris.contains(&redirect_uri) {
        return Err(Refusal::Page(format!(
            "redirect_uri `{redirect_uri}` is not one the client registered; the code is sent \
             only to a registered URI"
        )));
    }
    let mut request = Request {
        client_id: client.client_id,
        client_name: client.name,
        redirect_uri,
        state: param(pairs, "state").map(String::from),
        code_challenge: String::new(),
        scopes: Vec::new(),
        resource: String::new(),
        issuer,
    };
    let fail = |request: Request, error: &'static str, message: &str| {
        Err(Refusal::Redirect(
            Box::new(request),
            OAuthError::new(error, message),
        ))
    };
    if param(pairs, "response_type") != Some("code") {
        return fail(
            request,
            "unsupported_response_type",
            "response_type must be `code`",
        );
    }
    let Some(challenge) = param(pairs, "code_challenge") else {
        return fail(
            request,
            "invalid_request",
            "code_challenge is required: this server requires PKCE (S256)",
        );
    };
    if param(pairs, "code_challenge_method") != Some("S256") {
        return fail(
            request,
            "invalid_request",
            "code_challenge_method must be S256 (plain is not accepted)",
        );
    }
    if challenge.len() != 43 {
        return fail(
            request,
            "invalid_request",
            "code_challenge must be the 43-character BASE64URL of a SHA-256",
        );
    }
    request.code_challenge = challenge.to_string();
    let Some(resource) = param(pairs, "resource") else {
        return fail(
            request,
            "invalid_target",
            "resource is required (RFC 8707): the URL of the MCP server the token is for",
        );
    };
    let absolute = reqwest::Url::parse(resource).is_ok_and(|url| url.fragment().is_none());
    if !absolute {
        return fail(
            request,
            "invalid_target",
            "resource must be an absolute URI without a fragment (RFC 8707)",
        );
    }
    request.resource = resource.to_string();
    let asked: Vec<&str> = pairs
        .iter()
        .filter(|(name, _)| name == "scope")
        .map(|(_, value)| value.as_str())
        .collect();
    match oauth::parse_scopes(Some(&asked.join(" "))) {
        Ok(scopes) => request.scopes = scopes,
        Err(error) => return Err(Refusal::Redirect(Box::new(request), error)),
    }
    if request.scopes.is_empty() {
        request.scopes = Scope::ALL.iter().map(|s| s.as_str().to_string()).collect();
    }
    Ok(request)
}

/// `GET /oauth/authorize`: the sign-in page, then (with `user`) the consent page.
pub async fn authorize(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = match form(query.unwrap_or_default().as_bytes()) {
        Ok(pairs) => pairs,
        Err(error) => return Refusal::Page(error.description).into_response(),
    };
    let request = match checked(&sandbox, &pairs, oauth::issuer(&headers)).await {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(),
    };
    let users = match demo_users(&sandbox).await {
        Ok(users) => users,
        Err(error) => return error.into_response(),
    };
    match param(&pairs, "user") {
        None => sign_in_page(&request, &users),
        Some(user_id) => match users.iter().find(|u| u["id"] == user_id) {
            Some(user) => consent_page(&request, user),
            None => {
                Refusal::Page(format!("no active user {user_id} to sign in as")).into_response()
            }
        },
    }
}

/// `POST /oauth/authorize`: the consent form's answer; a code, or `access_denied`.
pub async fn decide(State(sandbox): State<Sandbox>, headers: HeaderMap, body: Bytes) -> Response {
    let pairs = match form(&body) {
        Ok(pairs) => pairs,
        Err(error) => return Refusal::Page(error.description).into_response(),
    };
    // The form carries the request's own parameters, checked again: nothing is trusted from it.
    let mut request_pairs: Vec<(String, String)> = pairs
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "scope" | "grant" | "decision" | "user"))
        .cloned()
        .collect();
    if let Some(asked) = param(&pairs, "requested_scope") {
        request_pairs.push(("scope".into(), asked.into()));
    }
    let request = match checked(&sandbox, &request_pairs, oauth::issuer(&headers)).await {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(),
    };
    let refuse = |error: &'static str, message: String| {
        Refusal::Redirect(Box::new(clone(&request)), OAuthError::new(error, message))
            .into_response()
    };
    if param(&pairs, "decision") != Some("allow") {
        return refuse("access_denied", "the user denied the request".into());
    }
    let users = match demo_users(&sandbox).await {
        Ok(users) => users,
        Err(error) => return error.into_response(),
    };
    let Some(user) = param(&pairs, "user").and_then(|id| users.iter().find(|u| u["id"] == id))
    else {
        return refuse("access_denied", "no active user signed in".into());
    };
    let role = user["role"].as_str().unwrap_or("");
    let granted: Vec<&str> = pairs
        .iter()
        .filter(|(name, _)| name == "grant")
        .map(|(_, value)| value.as_str())
        .collect();
    if granted.is_empty() {
        return refuse(
            "invalid_scope",
            "no scope was granted; choose at least one".into(),
        );
    }
    for name in &granted {
        if !request.scopes.iter().any(|s| s == name) {
            return refuse(
                "invalid_scope",
                format!("`{name}` was not requested by the client"),
            );
        }
        let grantable = Scope::parse(name).is_some_and(|scope| oauth::role_may_grant(role, scope));
        if !grantable {
            return refuse(
                "invalid_scope",
                format!("a user with the role {role} may not grant `{name}`"),
            );
        }
    }
    let scope = granted.join(" ");
    let tenant_id = user["tenant_id"].as_str().unwrap_or_default().to_string();
    let user_id = user["id"].as_str().unwrap_or_default().to_string();
    let (client_id, redirect_uri) = (request.client_id.clone(), request.redirect_uri.clone());
    let (challenge, resource) = (request.code_challenge.clone(), request.resource.clone());
    let stored = sandbox
        .db()
        .transaction(move |tx| {
            oauth::store_code(
                tx,
                &oauth::NewCode {
                    client_id: &client_id,
                    redirect_uri: &redirect_uri,
                    code_challenge: &challenge,
                    scope: &scope,
                    resource: &resource,
                    tenant_id: &tenant_id,
                    user_id: &user_id,
                },
            )
        })
        .await;
    match stored {
        Ok(code) => redirect(&request, &[("code", &code)]),
        Err(error) => OAuthError::from(error).into_response(),
    }
}

fn clone(request: &Request) -> Request {
    Request {
        client_id: request.client_id.clone(),
        client_name: request.client_name.clone(),
        redirect_uri: request.redirect_uri.clone(),
        state: request.state.clone(),
        code_challenge: request.code_challenge.clone(),
        scopes: request.scopes.clone(),
        resource: request.resource.clone(),
        issuer: request.issuer.clone(),
    }
}

/// 303 to the client's redirect URI with `extra`, the request's `state` and our `iss` (RFC 9207).
fn redirect(request: &Request, extra: &[(&str, &str)]) -> Response {
    let Ok(mut url) = reqwest::Url::parse(&request.redirect_uri) else {
        return Refusal::Page("the redirect URI is not a URL".into()).into_response();
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in extra {
            query.append_pair(name, value);
        }
        if let Some(state) = &request.state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", &request.issuer);
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(url.as_str()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    oauth::no_store(&mut response);
    response
}

/// The first tenant's active users, each with its tenant id.
async fn demo_users(sandbox: &Sandbox) -> Result<Vec<Value>, OAuthError> {
    Ok(sandbox
        .db()
        .read(|tx| {
            let tenant_id: String =
                tx.query_row("SELECT id FROM tenants ORDER BY rowid LIMIT 1", [], |row| {
                    row.get(0)
                })?;
            let store = Store::new(tx, &tenant_id);
            let mut users =
                store.all_matching("user", &[Filter::field("status", json!("active"))])?;
            for user in &mut users {
                user["tenant_id"] = json!(tenant_id);
            }
            Ok::<_, ApiError>(users)
        })
        .await?)
}

/// The request's parameters as hidden fields, so the next form carries them.
fn hidden_fields(request: &Request) -> String {
    let mut fields = vec![
        ("response_type", "code".to_string()),
        ("client_id", request.client_id.clone()),
        ("redirect_uri", request.redirect_uri.clone()),
        ("code_challenge", request.code_challenge.clone()),
        ("code_challenge_method", "S256".to_string()),
        ("resource", request.resource.clone()),
        ("requested_scope", request.scopes.join(" ")),
    ];
    if let Some(state) = &request.state {
        fields.push(("state", state.clone()));
    }
    fields
        .iter()
        .map(|(name, value)| {
            format!(
                r#"<input type="hidden" name="{name}" value="{}">"#,
                escape(value)
            )
        })
        .collect()
}

fn client_label(request: &Request) -> String {
    let name = request.client_name.as_deref().unwrap_or("An application");
    format!(
        "<strong>{}</strong> (<code>{}</code>)",
        escape(name),
        escape(&request.client_id)
    )
}

fn sign_in_page(request: &Request, users: &[Value]) -> Response {
    let mut options = String::new();
    for (i, user) in users.iter().enumerate() {
        let checked = if i == 0 { " checked" } else { "" };
        options.push_str(&format!(
            r#"<label><input type="radio" name="user" value="{id}"{checked}> {name} &lt;{email}&gt; — {role}</label><br>"#,
            id = escape(user["id"].as_str().unwrap_or("")),
            name = escape(user["name"].as_str().unwrap_or("")),
            email = escape(user["email"].as_str().unwrap_or("")),
            role = escape(user["role"].as_str().unwrap_or("")),
        ));
    }
    // The query form keeps the request's own parameters under their names.
    let hidden = hidden_fields(request).replace(r#"name="requested_scope""#, r#"name="scope""#);
    let body = format!(
        r#"<p>{client} asks to use the TrainAR API for {resource}.</p>
<p>The sandbox has no passwords: choose whom to sign in as.</p>
<form method="get" action="{action}">{hidden}{options}<p><button type="submit">Continue</button></p></form>"#,
        client = client_label(request),
        resource = escape(&request.resource),
        action = oauth::AUTHORIZE_PATH,
    );
    page(StatusCode::OK, "Sign in to the TrainAR sandbox", &body)
}

fn consent_page(request: &Request, user: &Value) -> Response {
    let role = user["role"].as_str().unwrap_or("");
    let mut grantable = String::new();
    let mut withheld = String::new();
    for name in &request.scopes {
        let scope = Scope::parse(name);
        let description = scope.map(|s| s.description()).unwrap_or("");
        if scope.is_some_and(|s| oauth::role_may_grant(role, s)) {
            grantable.push_str(&format!(
                r#"<label><input type="checkbox" name="grant" value="{name}" checked> <code>{name}</code> — {description}</label><br>"#,
                name = escape(name),
                description = escape(description),
            ));
        } else {
            withheld.push_str(&format!("<li><code>{}</code></li>", escape(name)));
        }
    }
    let withheld = if withheld.is_empty() {
        String::new()
    } else {
        format!(
            "<p>Not yours to grant as a {}:</p><ul>{withheld}</ul>",
            escape(role)
        )
    };
    let body = format!(
        r#"<p>Signed in as <strong>{name}</strong> ({role}) of the demo tenant.</p>
<p>{client} asks for these permissions on {resource}:</p>
<form method="post" action="{action}">{hidden}<input type="hidden" name="user" value="{user_id}">
{grantable}{withheld}
<p><button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button></p></form>"#,
        name = escape(user["name"].as_str().unwrap_or("")),
        role = escape(role),
        client = client_label(request),
        resource = escape(&request.resource),
        action = oauth::AUTHORIZE_PATH,
        hidden = hidden_fields(request),
        user_id = escape(user["id"].as_str().unwrap_or("")),
    );
    page(StatusCode::OK, "Allow access to TrainAR", &body)
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em;line-height:1.5}}</style>
</head><body><h1>{title}</h1>{body}</body></html>"#
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    // Not to be framed (clickjacking the Allow button) nor cached.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    oauth::no_store(&mut response);
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

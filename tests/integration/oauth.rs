//! OAuth (issue 14) over real loopback HTTP: the gateway as a protected resource in front of the
//! sandbox as its authorization server. Discovery, each bad input the RFCs name an error for,
//! audiences, step-up, and the scope rule over the whole catalogue for a token as for a key.
//! The Python SDK's own OAuth provider runs the whole flow against `serve` at the end.

use crate::common::{KillOnDrop, binary};
use crate::gateway_fixture::{TestGateway, read_events, text_of};
use crate::mcp_clients::run_python;
use crate::mcp_modern::{modern, send};
use crate::sandbox_fixture::{TestSandbox, fresh_dir};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::time::Duration;
use trainar_mcp::catalogue::Catalogue;
use trainar_mcp::generated::api::Scope;
use trainar_mcp::sandbox::oauth::s256;
use trainar_mcp::scopes::ScopeSet;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "a-pkce-verifier-of-at-least-forty-three-characters-0123456789";

/// A gateway whose metadata names the sandbox behind it as its authorization server; keys and
/// tokens are never cached (`cache_ttl` zero), so revocations show at once.
struct OAuthSetup {
    gateway: TestGateway,
    issuer: String,
    /// Does not follow redirects: a redirect is what the tests look at.
    http: reqwest::Client,
}

impl OAuthSetup {
    async fn new() -> OAuthSetup {
        OAuthSetup::caching(Duration::ZERO).await
    }

    /// The same, keeping what introspection resolved for `ttl`, as a deployed gateway does.
    async fn caching(ttl: Duration) -> OAuthSetup {
        OAuthSetup::in_front_of(TestSandbox::demo().await, ttl).await
    }

    async fn in_front_of(sandbox: TestSandbox, ttl: Duration) -> OAuthSetup {
        let issuer = sandbox.url.clone();
        let server = issuer.clone();
        let mut gateway = TestGateway::in_front_of(&sandbox.url, |config| {
            config.server.authorization_server = Some(server);
            config.auth_cache_ttl = ttl;
        })
        .await;
        gateway.sandbox = Some(sandbox);
        OAuthSetup {
            gateway,
            issuer,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn resource(&self) -> String {
        format!("{}/mcp", self.gateway.url)
    }

    async fn register(&self) -> String {
        let reply = self
            .http
            .post(format!("{}/oauth/register", self.issuer))
            .json(&json!({"client_name": "test client", "redirect_uris": [REDIRECT]}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201);
        let body: Value = reply.json().await.unwrap();
        body["client_id"].as_str().unwrap().to_string()
    }

    /// An active user of the demo tenant with `role`.
    async fn user(&self, role: &str) -> String {
        let sandbox = self.gateway.sandbox();
        let (_, page) = sandbox
            .get(
                &sandbox.admin,
                &format!("/v1/users?role={role}&status=active&limit=1"),
            )
            .await;
        page["data"][0]["id"].as_str().unwrap().to_string()
    }

    /// The consent form's answer, as the page would submit it: `grant` the scopes given.
    async fn consent(&self, client_id: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let resource = self.resource();
        let challenge = s256(VERIFIER);
        let mut form: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "xyz"),
        ];
        if !fields.iter().any(|(name, _)| *name == "decision") {
            form.push(("decision", "allow"));
        }
        if !fields.iter().any(|(name, _)| *name == "resource") {
            form.push(("resource", &resource));
        }
        form.extend_from_slice(fields);
        self.http
            .post(format!("{}/oauth/authorize", self.issuer))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&form).unwrap())
            .send()
            .await
            .unwrap()
    }

    /// The code a 303 to the redirect URI carries, after checking state and iss.
    /// A code for `client_id`, `user` having allowed `read:tasks`.
    async fn read_tasks_code(&self, client_id: &str, user: &str) -> String {
        let answer = self
            .consent(client_id, &[("user", user), ("grant", "read:tasks")])
            .await;
        self.code_of(&answer)
    }

    fn code_of(&self, response: &reqwest::Response) -> String {
        let query = redirect_query(response);
        assert_eq!(query["state"], "xyz");
        assert_eq!(query["iss"], self.issuer);
        query
            .get("code")
            .unwrap_or_else(|| panic!("no code: {query:?}"))
            .clone()
    }

    async fn token(&self, fields: &[(&str, &str)]) -> (u16, Value) {
        let reply = self
            .http
            .post(format!("{}/oauth/token", self.issuer))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.headers()["cache-control"], "no-store");
        (reply.status().as_u16(), reply.json().await.unwrap())
    }

    async fn redeem(&self, client_id: &str, code: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", &self.resource()),
        ])
        .await
    }

    /// Access and refresh token of a user with `role` who granted `scopes`, and the client id.
    async fn tokens(&self, role: &str, scopes: &[&str]) -> (String, String, String) {
        let client_id = self.register().await;
        let user = self.user(role).await;
        let requested = scopes.join(" ");
        let mut fields = vec![
            ("user", user.as_str()),
            ("requested_scope", requested.as_str()),
        ];
        fields.extend(scopes.iter().map(|s| ("grant", *s)));
        let answer = self.consent(&client_id, &fields).await;
        let code = self.code_of(&answer);
        let (status, tokens) = self.redeem(&client_id, &code).await;
        assert_eq!(status, 200, "{tokens}");
        (
            tokens["access_token"].as_str().unwrap().to_string(),
            tokens["refresh_token"].as_str().unwrap().to_string(),
            client_id,
        )
    }

    /// `ping` on a new session at /mcp as `credential`: the HTTP status and the challenge.
    async fn initialize_status(&self, credential: &str) -> (u16, String, Value) {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        let reply = self.gateway.post(Some(credential), None, init, &[]).await;
        let challenge = reply
            .headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (reply.status, challenge, reply.body)
    }
}

fn redirect_query(response: &reqwest::Response) -> std::collections::HashMap<String, String> {
    assert_eq!(response.status(), 303, "a redirect to the client");
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    let url = reqwest::Url::parse(location).unwrap();
    url.query_pairs().into_owned().collect()
}

#[tokio::test]
async fn a_401_points_at_metadata_that_points_at_the_authorization_server() {
    let setup = OAuthSetup::new().await;
    let base = &setup.gateway.url;
    for (path, endpoint) in [
        ("/mcp", "/mcp"),
        ("/sse", "/sse"),
        ("/messages?sessionId=x", "/sse"),
    ] {
        let method = if path == "/sse" { "GET" } else { "POST" };
        let reply = setup
            .http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 401, "{path}");
        let challenge = reply.headers()["www-authenticate"].to_str().unwrap();
        assert_eq!(
            challenge,
            format!(
                r#"Bearer realm="trainar-mcp", resource_metadata="{base}/.well-known/oauth-protected-resource{endpoint}""#
            ),
            "{path}"
        );
    }
    // A refused credential says so in the challenge too.
    let (status, challenge, _) = setup.initialize_status("tak_NotAKeyOfAnyTenant000").await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains(r#"error="invalid_token""#) && challenge.contains("resource_metadata="),
        "{challenge}"
    );

    let all_scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    for endpoint in ["", "/mcp", "/sse"] {
        let document: Value = setup
            .http
            .get(format!(
                "{base}/.well-known/oauth-protected-resource{endpoint}"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(document["resource"], format!("{base}{endpoint}"));
        assert_eq!(document["authorization_servers"], json!([setup.issuer]));
        assert_eq!(document["scopes_supported"], json!(all_scopes));
        assert_eq!(document["bearer_methods_supported"], json!(["header"]));
    }
    let server: Value = setup
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            setup.issuer
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(server["issuer"], setup.issuer);
    assert_eq!(server["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        server["token_endpoint"],
        format!("{}/oauth/token", setup.issuer)
    );
    assert_eq!(server["client_id_metadata_document_supported"], true);
}

#[tokio::test]
async fn a_token_works_beside_keys_and_resolves_to_its_grant() {
    let setup = OAuthSetup::new().await;
    let (access, _, client_id) = setup
        .tokens("trainer", &["read:tasks", "write:tasks"])
        .await;
    let session = setup.gateway.initialize(&access, "/mcp").await;
    let listed = setup
        .gateway
        .call_tool(&access, &session, "list_tasks", json!({"limit": 1}))
        .await;
    assert_eq!(listed["isError"], false, "{listed}");
    // Scopes apply: a trainer's token for tasks cannot read billing.
    let denied = setup
        .gateway
        .call_tool(&access, &session, "get_subscription", json!({}))
        .await;
    assert_eq!(denied["isError"], true);
    assert!(text_of(&denied).contains("read:billing"), "{denied}");
    assert!(
        text_of(&denied)
            .contains("This access token holds: read:tasks, write:tasks. Sign in again"),
        "{denied}"
    );
    // Keys keep working beside tokens, unchanged.
    let admin = setup.gateway.admin();
    let key_session = setup.gateway.initialize(&admin, "/mcp").await;
    let billing = setup
        .gateway
        .call_tool(&admin, &key_session, "get_subscription", json!({}))
        .await;
    assert_eq!(billing["isError"], false, "{billing}");
    // The API's introspection of the token (asked with an admin key of its tenant).
    let sandbox = setup.gateway.sandbox();
    let (status, answer) = sandbox
        .call(
            &admin,
            "POST",
            "/v1/oauth/introspect",
            Some(json!({"token": access})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], client_id);
    assert_eq!(answer["aud"], setup.resource());
    assert_eq!(answer["scope"], "read:tasks write:tasks");
    assert!(answer["grant_id"].as_str().unwrap().starts_with("grt_"));
    assert!(answer["sub"].as_str().unwrap().starts_with("usr_"));
    // Another tenant's key learns nothing about it.
    let stranger = sandbox.other_tenant("Other");
    let (_, answer) = sandbox
        .call(
            &stranger,
            "POST",
            "/v1/oauth/introspect",
            Some(json!({"token": access})),
        )
        .await;
    assert_eq!(answer, json!({"active": false}));
    // Nothing secret is stored in clear.
    let stored = sandbox.sql_text("SELECT group_concat(sha256, ',') FROM oauth_tokens", []);
    assert!(!stored.contains(&access) && !stored.contains(&access[4..]));
}

#[tokio::test]
async fn redirect_uris_that_do_not_match_are_refused() {
    let setup = OAuthSetup::new().await;
    let client_id = setup.register().await;
    // At the authorization endpoint: a page, and no redirect to the unregistered URI.
    let url = format!(
        "{}/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={}&code_challenge_method=S256&resource={}",
        setup.issuer,
        "https%3A%2F%2Fevil.example%2Fcb",
        s256(VERIFIER),
        setup.resource()
    );
    let reply = setup.http.get(&url).send().await.unwrap();
    assert_eq!(reply.status(), 400);
    assert!(reply.headers().get("location").is_none());
    assert!(
        reply
            .text()
            .await
            .unwrap()
            .contains("is not one the client registered")
    );
    // At registration: plain http to a non-loopback host, or a fragment.
    for uri in [
        "http://example.com/cb",
        "https://example.com/cb#x",
        "javascript:alert(1)",
    ] {
        let reply = setup
            .http
            .post(format!("{}/oauth/register", setup.issuer))
            .json(&json!({"redirect_uris": [uri]}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 400, "{uri}");
        let body: Value = reply.json().await.unwrap();
        assert_eq!(body["error"], "invalid_redirect_uri", "{uri}");
    }
    // At the token endpoint: another redirect_uri than the code's.
    let user = setup.user("admin").await;
    let code = setup.read_tasks_code(&client_id, &user).await;
    let (status, body) = setup
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_oauth_error(status, &body, 400, "invalid_grant", None);
}

#[tokio::test]
async fn pkce_is_required_s256_only_and_checked() {
    let setup = OAuthSetup::new().await;
    let client_id = setup.register().await;
    let base = format!(
        "{}/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}&state=xyz&resource={}",
        setup.issuer,
        "http%3A%2F%2F127.0.0.1%3A9%2Fcallback",
        setup.resource()
    );
    for extra in ["", "&code_challenge=abc&code_challenge_method=plain"] {
        let reply = setup
            .http
            .get(format!("{base}{extra}"))
            .send()
            .await
            .unwrap();
        let query = redirect_query(&reply);
        assert_eq!(query["error"], "invalid_request", "{extra}: {query:?}");
        assert_eq!(query["state"], "xyz");
    }
    let user = setup.user("admin").await;
    let code = setup.read_tasks_code(&client_id, &user).await;
    let redeem = |verifier: Option<&'static str>| {
        let mut fields = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT),
        ];
        if let Some(verifier) = verifier {
            fields.push(("code_verifier", verifier));
        }
        let setup = &setup;
        async move { setup.token(&fields).await }
    };
    let (status, body) = redeem(None).await;
    assert_oauth_error(status, &body, 400, "invalid_request", None);
    let (status, body) = redeem(Some(
        "another-verifier-of-at-least-forty-three-characters-0000",
    ))
    .await;
    assert_oauth_error(status, &body, 400, "invalid_grant", None);
    // A failed verification does not burn the code: the right verifier still redeems it.
    let (status, body) = redeem(Some(VERIFIER)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_reused_code_is_refused_and_revokes_what_it_bought() {
    let setup = OAuthSetup::new().await;
    let client_id = setup.register().await;
    let user = setup.user("admin").await;
    let code = setup.read_tasks_code(&client_id, &user).await;
    let (status, tokens) = setup.redeem(&client_id, &code).await;
    assert_eq!(status, 200);
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(setup.initialize_status(access).await.0, 200);
    let (status, body) = setup.redeem(&client_id, &code).await;
    assert_oauth_error(status, &body, 400, "invalid_grant", None);
    let (status, challenge, body) = setup.initialize_status(access).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    // A code not redeemed within its minute.
    let code = setup.read_tasks_code(&client_id, &user).await;
    setup.gateway.sandbox().sql(
        "UPDATE oauth_codes SET expires_at = 0 WHERE used_at IS NULL",
        [],
    );
    let (status, body) = setup.redeem(&client_id, &code).await;
    assert_oauth_error(status, &body, 400, "invalid_grant", Some("expired"));
}

/// One request to an OAuth endpoint: method, URL, content type, body, and the error it must get
/// (None: no client to send it to, so a page).
type Case<'a> = (&'a str, String, &'a str, Vec<u8>, Option<&'a str>);

/// Whatever arrives at the authorization server's endpoints, the answer is the error the RFCs
/// name (or a page saying what is wrong), never a 5xx.
#[tokio::test]
async fn garbage_at_the_oauth_endpoints_gets_named_errors() {
    let setup = OAuthSetup::new().await;
    let issuer = &setup.issuer;
    let form = |pairs: &[(&str, &str)]| serde_urlencoded::to_string(pairs).unwrap().into_bytes();
    let urlencoded = "application/x-www-form-urlencoded";
    let token = format!("{issuer}/oauth/token");
    let register = format!("{issuer}/oauth/register");
    let exchange = "urn:ietf:params:oauth:grant-type:token-exchange";
    let access_type = "urn:ietf:params:oauth:token-type:access_token";
    let cases: Vec<Case> = vec![
        ("POST", token.clone(), urlencoded, Vec::new(), Some("invalid_request")),
        ("POST", token.clone(), urlencoded, form(&[("grant_type", "password")]), Some("unsupported_grant_type")),
        ("POST", token.clone(), urlencoded, form(&[("grant_type", "refresh_token"), ("grant_type", "refresh_token")]), Some("invalid_request")),
        ("POST", token.clone(), urlencoded, vec![0xff, 0xfe, b'=', 0x80], Some("invalid_request")),
        ("POST", token.clone(), urlencoded, form(&[("grant_type", "authorization_code"), ("code", "tac_nope"), ("client_id", "cli_nope")]), Some("invalid_grant")),
        ("POST", token.clone(), urlencoded, form(&[("grant_type", exchange), ("subject_token", "tat_x"), ("subject_token_type", access_type), ("resource", "not a url")]), Some("invalid_target")),
        ("POST", register.clone(), "application/json", b"{not json".to_vec(), Some("invalid_client_metadata")),
        ("POST", register.clone(), "application/json", br#"{"redirect_uris": []}"#.to_vec(), Some("invalid_redirect_uri")),
        ("POST", register.clone(), "application/json", br#"{"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_basic"}"#.to_vec(), Some("invalid_client_metadata")),
        ("POST", format!("{issuer}/oauth/revoke"), urlencoded, Vec::new(), Some("invalid_request")),
        ("GET", format!("{issuer}/oauth/authorize"), "text/plain", Vec::new(), None),
        ("GET", format!("{issuer}/oauth/authorize?client_id=cli_unknown&response_type=code"), "text/plain", Vec::new(), None),
        ("POST", format!("{issuer}/oauth/authorize"), urlencoded, b"user=%ZZ".to_vec(), None),
    ];
    for (method, url, content_type, body, error) in cases {
        let reply = setup
            .http
            .request(method.parse().unwrap(), &url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        assert!((400..500).contains(&status), "{method} {url}: {status}");
        let text = reply.text().await.unwrap();
        match error {
            Some(error) => {
                let body: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(body["error"], error, "{method} {url}: {body}");
                assert!(body["error_description"].is_string());
            }
            // No client to send the error to: a page that says what is wrong.
            None => assert!(text.contains("cannot be served"), "{method} {url}: {text}"),
        }
    }
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_refused() {
    let setup = OAuthSetup::new().await;
    let sandbox = setup.gateway.sandbox();
    let revoke = |token: String, client_id: String| {
        let setup = &setup;
        async move {
            setup
                .http
                .post(format!("{}/oauth/revoke", setup.issuer))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(
                    serde_urlencoded::to_string([("token", token), ("client_id", client_id)])
                        .unwrap(),
                )
                .send()
                .await
                .unwrap()
        }
    };
    // A revoked access token.
    let (access, refresh, client_id) = setup.tokens("admin", &["read:tasks"]).await;
    assert_eq!(setup.initialize_status(&access).await.0, 200);
    assert_eq!(
        revoke(access.clone(), client_id.clone()).await.status(),
        200
    );
    let (status, _, body) = setup.initialize_status(&access).await;
    assert_eq!(status, 401, "{body}");
    // Its refresh token still refreshes; revoking the refresh token ends the grant.
    let refreshed = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", client_id.as_str()),
    ];
    let (status, tokens) = setup.token(&refreshed).await;
    assert_eq!(status, 200, "{tokens}");
    let (access, refresh) = (
        tokens["access_token"].as_str().unwrap().to_string(),
        tokens["refresh_token"].as_str().unwrap().to_string(),
    );
    assert_eq!(setup.initialize_status(&access).await.0, 200);
    assert_eq!(
        revoke(refresh.clone(), client_id.clone()).await.status(),
        200
    );
    assert_eq!(setup.initialize_status(&access).await.0, 401);
    let again = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", client_id.as_str()),
    ];
    let (status, body) = setup.token(&again).await;
    assert_oauth_error(status, &body, 400, "invalid_grant", None);
    // Revoking an unknown token is not an error (RFC 7009 section 2.2).
    assert_eq!(
        revoke("tat_unknown0000000000".into(), client_id.clone())
            .await
            .status(),
        200
    );
    // An expired access token (and an expired refresh token).
    let (access, refresh, client_id) = setup.tokens("admin", &["read:tasks"]).await;
    assert_eq!(setup.initialize_status(&access).await.0, 200);
    sandbox.sql("UPDATE oauth_tokens SET expires_at = 0", []);
    let (status, _, body) = setup.initialize_status(&access).await;
    assert_eq!(status, 401, "{body}");
    let expired = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", client_id.as_str()),
    ];
    let (status, body) = setup.token(&expired).await;
    assert_oauth_error(status, &body, 400, "invalid_grant", None);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn a_token_for_another_resource_is_refused() {
    let setup = OAuthSetup::new().await;
    let client_id = setup.register().await;
    let user = setup.user("admin").await;
    let answer = setup
        .consent(
            &client_id,
            &[
                ("user", &user),
                ("grant", "read:tasks"),
                ("resource", "https://other.example/mcp"),
            ],
        )
        .await;
    let code = setup.code_of(&answer);
    let (status, tokens) = setup
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(status, 200);
    let access = tokens["access_token"].as_str().unwrap();
    let (status, challenge, body) = setup.initialize_status(access).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("issued for https://other.example/mcp"),
        "{body}"
    );
    assert!(challenge.contains(r#"error="invalid_token""#));
    // Redeeming a code for another resource than it was issued for.
    let code = setup.read_tasks_code(&client_id, &user).await;
    let (status, body) = setup
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", "https://other.example/mcp"),
        ])
        .await;
    assert_oauth_error(status, &body, 400, "invalid_target", None);
    // A token for the gateway is not one for the API: sent there directly, it is refused.
    let (access, _, _) = setup.tokens("admin", &["read:tasks"]).await;
    let (status, body) = setup.gateway.sandbox().get(&access, "/v1/tasks").await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not for this API"),
        "{body}"
    );
}

#[tokio::test]
async fn keys_and_tokens_are_not_interchangeable() {
    let setup = OAuthSetup::new().await;
    let admin = setup.gateway.admin();
    let (access, refresh, client_id) = setup.tokens("admin", &["read:tasks"]).await;
    // A key where a token belongs.
    let (status, body) = setup
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &admin),
            ("client_id", &client_id),
        ])
        .await;
    assert_oauth_error(status, &body, 400, "invalid_grant", Some("`tak_` API key"));
    assert!(
        !body.to_string().contains(&admin[4..]),
        "the key is never echoed"
    );
    let reply = setup
        .http
        .post(format!("{}/oauth/revoke", setup.issuer))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("token", &admin)]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    assert_eq!(
        reply.json::<Value>().await.unwrap()["error"],
        "unsupported_token_type"
    );
    // A token where a key (or an access token) belongs.
    let (status, _, body) = setup.initialize_status(&refresh).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refresh token is not an access token")
    );
    let (status, body) = setup
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &access),
            ("client_id", &client_id),
        ])
        .await;
    assert_oauth_error(
        status,
        &body,
        400,
        "invalid_grant",
        Some("access token, not a refresh token"),
    );
    let (status, _) = setup
        .gateway
        .sandbox()
        .get(&access, "/v1/api-keys/current")
        .await;
    assert_eq!(status, 401);
    // A token in the URL is refused like a key, and never echoed.
    let in_url = setup
        .http
        .post(format!("{}/mcp?note={access}", setup.gateway.url))
        .bearer_auth(&access)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(in_url.status(), 401);
    assert!(!in_url.text().await.unwrap().contains(&access[4..]));
}

#[tokio::test]
async fn a_user_grants_only_what_their_role_allows() {
    let setup = OAuthSetup::new().await;
    let client_id = setup.register().await;
    let trainee = setup.user("trainee").await;
    // The page offers a trainee's scopes only.
    let url = format!(
        "{}/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={}&code_challenge_method=S256&resource={}&scope={}&user={trainee}",
        setup.issuer,
        "http%3A%2F%2F127.0.0.1%3A9%2Fcallback",
        s256(VERIFIER),
        setup.resource(),
        "read%3Atasks%20manage%3Abilling"
    );
    let page = setup
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"name="grant" value="read:tasks""#),
        "{page}"
    );
    assert!(
        !page.contains(r#"name="grant" value="manage:billing""#),
        "{page}"
    );
    assert!(page.contains("Not yours to grant as a trainee"), "{page}");
    // A forged form that grants more anyway.
    let answer = setup
        .consent(
            &client_id,
            &[
                ("user", &trainee),
                ("requested_scope", "read:tasks manage:billing"),
                ("grant", "read:tasks"),
                ("grant", "manage:billing"),
            ],
        )
        .await;
    let query = redirect_query(&answer);
    assert_eq!(query["error"], "invalid_scope");
    assert!(
        query["error_description"].contains("trainee may not grant `manage:billing`"),
        "{query:?}"
    );
    assert!(!query.contains_key("code"));
    // An unknown scope in the request, and a denial.
    let answer = setup
        .consent(
            &client_id,
            &[("user", &trainee), ("requested_scope", "read:everything")],
        )
        .await;
    assert_eq!(redirect_query(&answer)["error"], "invalid_scope");
    let answer = setup
        .consent(
            &client_id,
            &[
                ("user", &trainee),
                ("grant", "read:tasks"),
                ("decision", "deny"),
            ],
        )
        .await;
    assert_eq!(redirect_query(&answer)["error"], "access_denied");
}

#[tokio::test]
async fn a_sessionless_call_beyond_the_tokens_scopes_is_403_so_the_client_can_step_up() {
    let setup = OAuthSetup::new().await;
    let (access, _, _) = setup.tokens("admin", &["read:tasks"]).await;
    let call = |name: &str| {
        modern(
            1,
            "tools/call",
            json!({"name": name, "arguments": {}}),
            json!({}),
        )
    };
    let reply = send(&setup.gateway, &access, &call("get_subscription"), &[], &[]).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    let challenge = reply.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.ends_with(r#"/oauth-protected-resource/mcp", error="insufficient_scope", scope="read:tasks read:billing""#),
        "{challenge}"
    );
    assert_eq!(reply.body["error"]["data"]["reason"], "insufficient_scope");
    let allowed = send(&setup.gateway, &access, &call("list_tasks"), &[], &[]).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.body["result"]["isError"], false, "{}", allowed.body);
    // A key cannot step up: the same call stays an isError result, as before.
    let key = setup.gateway.sandbox().key_with(&["read:tasks"]).await;
    let denied = send(&setup.gateway, &key, &call("get_subscription"), &[], &[]).await;
    assert_eq!(denied.status, 200);
    assert_eq!(denied.body["result"]["isError"], true);
}

/// Where the API records who acted, a token's grant stands for the key; what a grant must not do
/// (mint keys that would outlive it) and what it is not (a key to introspect) is said plainly.
#[tokio::test]
async fn a_grant_acts_as_itself_and_mints_no_keys() {
    let setup = OAuthSetup::new().await;
    let sandbox = setup.gateway.sandbox();
    let (access, _, client_id) = setup
        .tokens(
            "admin",
            &["read:skills", "execute:skills", "manage:api_keys"],
        )
        .await;
    let session = setup.gateway.initialize(&access, "/mcp").await;
    let skills = sandbox.all_pages(&sandbox.admin, "/v1/skills", 100).await;
    let forklift = skills
        .iter()
        .find(|skill| skill["slug"] == "forklift-pre-shift-inspection")
        .expect("the demo's forklift skill");
    let arguments =
        json!({"skill_id": forklift["id"], "arguments": {"forklift_id": "FL-7"}, "dry_run": true});
    let executed = setup
        .gateway
        .call_tool(&access, &session, "execute_skill", arguments)
        .await;
    assert_eq!(executed["isError"], false, "{executed}");
    let by = executed["structuredContent"]["executed_by_key_id"]
        .as_str()
        .unwrap();
    assert!(by.starts_with("grt_"), "{executed}");
    let minted = setup
        .gateway
        .call_tool(
            &access,
            &session,
            "create_api_key",
            json!({"name": "from a connector", "scopes": ["read:skills"]}),
        )
        .await;
    assert_eq!(minted["isError"], true);
    assert!(
        text_of(&minted).contains("not with an OAuth access token"),
        "{minted}"
    );
    // The API token the gateway gets by exchange is not a key to introspect as one.
    let (status, exchanged) = setup
        .token(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", &access),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("resource", &setup.issuer),
        ])
        .await;
    assert_eq!(status, 200, "{exchanged} {client_id}");
    let api_token = exchanged["access_token"].as_str().unwrap();
    let (status, body) = sandbox.get(api_token, "/v1/api-keys/current").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("introspect_oauth_token")
    );
    let (status, _) = sandbox.get(api_token, "/v1/tasks").await;
    assert_eq!(
        status, 403,
        "the API token carries the grant's scopes, not read:tasks"
    );
}

/// An SSE stream opened with an access token lasts while its grant does (past the token's own
/// 15 minutes, here made past at once), and ends when the token is revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_outlives_its_token_but_not_its_revocation() {
    let setup = OAuthSetup::new().await;
    let (access, _, client_id) = setup.tokens("admin", &["read:tasks"]).await;
    let mut stream = setup.gateway.get(&access, "/sse").await;
    assert_eq!(stream.status(), 200);
    assert_eq!(read_events(&mut stream, 1).await[0].0, "endpoint");
    let sandbox = setup.gateway.sandbox();
    sandbox.sql(
        "UPDATE oauth_tokens SET expires_at = 0 WHERE kind = 'access'",
        [],
    );
    // The stream is checked every second (the cache keeps nothing here): still open after two.
    let still_open = tokio::time::timeout(Duration::from_millis(2500), stream.chunk()).await;
    assert!(still_open.is_err(), "the stream ended: {still_open:?}");
    sandbox.sql(
        "UPDATE oauth_tokens SET expires_at = 4102444800 WHERE kind = 'access'",
        [],
    );
    let revoked = setup
        .http
        .post(format!("{}/oauth/revoke", setup.issuer))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("token", &access), ("client_id", &client_id)]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream of a revoked token ends");
}

/// Serves `document` as JSON at `/client.json` on loopback; returns that URL.
async fn serve_document(document: impl Fn(&str) -> Value + Send + Sync + 'static) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let body = document(&url);
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || {
            let body = body.clone();
            async move { axum::Json(body) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_client_id_metadata_document_is_fetched_under_the_egress_policy() {
    let url = serve_document(|url| {
        json!({"client_id": url, "client_name": "A CIMD client", "redirect_uris": [REDIRECT]})
    })
    .await;
    let authorize = |issuer: &str, client_id: &str| {
        format!(
            "{issuer}/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&code_challenge={}&code_challenge_method=S256&resource=http%3A%2F%2F127.0.0.1%2Fmcp",
            urlencode(client_id),
            urlencode(REDIRECT),
            s256(VERIFIER)
        )
    };
    // By default loopback is out of bounds: a client_id cannot make the sandbox probe its host.
    let closed = OAuthSetup::new().await;
    let reply = closed
        .http
        .get(authorize(&closed.issuer, &url))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    assert!(reply.text().await.unwrap().contains("loopback"));
    let metadata_service = "https://169.254.169.254/latest/meta-data/x";
    let reply = closed
        .http
        .get(authorize(&closed.issuer, metadata_service))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);

    // Where the operator allows private addresses (tests), the document is fetched and used.
    let sandbox = TestSandbox::open_with(fresh_dir("sandbox"), true, |config| {
        config.allow_private_webhooks = true
    })
    .await;
    let setup = OAuthSetup::in_front_of(sandbox, Duration::ZERO).await;
    let page = setup
        .http
        .get(authorize(&setup.issuer, &url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("A CIMD client"));
    let user = setup.user("admin").await;
    let code = setup.read_tasks_code(&url, &user).await;
    let (status, tokens) = setup.redeem(&url, &code).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        setup
            .initialize_status(tokens["access_token"].as_str().unwrap())
            .await
            .0,
        200
    );
    // A document that names another client is not this client's.
    let impostor = serve_document(|_| {
        json!({"client_id": "https://someone.example/client.json", "redirect_uris": [REDIRECT]})
    })
    .await;
    let reply = setup
        .http
        .get(authorize(&setup.issuer, &impostor))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    assert!(
        reply
            .text()
            .await
            .unwrap()
            .contains("names another client_id")
    );
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("v", text)]).unwrap()[2..].to_string()
}

/// Over the whole catalogue: a token holding one scope is allowed and denied exactly the tools a
/// key holding that scope is, which is what the generated scope table says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_apply_to_a_token_exactly_as_to_a_key() {
    let setup = OAuthSetup::caching(Duration::from_secs(30)).await;
    let sandbox = setup.gateway.sandbox();
    let tools = Catalogue::get().tools();
    for scope in Scope::ALL {
        let name = scope.as_str();
        let (access, _, _) = setup.tokens("admin", &[name]).await;
        let key = sandbox.key_with(&[name]).await;
        let token_session = setup.gateway.initialize(&access, "/mcp").await;
        let key_session = setup.gateway.initialize(&key, "/mcp").await;
        let held = ScopeSet::from_names([name]);
        for tool in tools {
            let expected = held.missing_for(tool.operation).is_empty();
            let outcome = |result: Value| {
                let text = text_of(&result);
                (
                    !text.starts_with("Permission denied"),
                    text.contains("insufficient_scope"),
                )
            };
            let by_token = outcome(
                setup
                    .gateway
                    .call_tool(&access, &token_session, tool.name(), json!({}))
                    .await,
            );
            let by_key = outcome(
                setup
                    .gateway
                    .call_tool(&key, &key_session, tool.name(), json!({}))
                    .await,
            );
            assert_eq!(by_token, by_key, "{} with {name}", tool.name());
            assert_eq!(by_token, (expected, false), "{} with {name}", tool.name());
        }
    }
}

/// The Python SDK's OAuth client provider signs in to `serve` from nothing but its URL, over
/// Streamable HTTP and SSE (tests/python/oauth_flow.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_signs_in_to_serve_and_calls_tools() {
    let workdir = fresh_dir("oauth-serve");
    std::fs::create_dir_all(&workdir).unwrap();
    let mut child = KillOnDrop(
        binary()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&workdir)
            .env_remove("TRAINAR_SANDBOX_ADMIN_KEY")
            .env_remove("TRAINAR_AUTHORIZATION_SERVER")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("serve prints its URL").unwrap();
        if let Some(rest) = line.strip_prefix("trainar-mcp listening on ") {
            break rest.trim().to_string();
        }
    };
    let stdout = run_python("oauth_flow.py", &[&url]).await;
    assert!(stdout.contains("all checks passed"), "{stdout}");
    assert!(
        stdout.contains("[sse] the refresh token was rotated"),
        "{stdout}"
    );
}

/// An OAuth error answer: its status, its RFC error code and, when given, words of its
/// description.
#[track_caller]
fn assert_oauth_error(status: u16, body: &Value, expected: u16, error: &str, about: Option<&str>) {
    assert_eq!(
        (status, body["error"].as_str()),
        (expected, Some(error)),
        "{body}"
    );
    if let Some(about) = about {
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(description.contains(about), "{body}");
    }
}

/// A grant speaks for its user as the user is now: deactivating the user revokes it, and so does
/// a role that may no longer grant its scopes (a role that still may leaves it alone).
#[tokio::test]
async fn a_deactivated_or_demoted_users_grants_stop_working() {
    let setup = OAuthSetup::new().await;
    let sandbox = setup.gateway.sandbox();
    let admin = sandbox.as_admin();
    let refreshed = |refresh: String, client_id: String| {
        let setup = &setup;
        async move {
            setup
                .token(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh),
                    ("client_id", &client_id),
                ])
                .await
        }
    };

    let trainee = setup.user("trainee").await;
    let (access, refresh, client_id) = setup.tokens("trainee", &["read:tasks"]).await;
    assert_eq!(setup.initialize_status(&access).await.0, 200);
    admin
        .post(200, &format!("/v1/users/{trainee}/deactivate"), json!({}))
        .await;
    assert_eq!(setup.initialize_status(&access).await.0, 401);
    let (status, body) = refreshed(refresh, client_id).await;
    assert_oauth_error(status, &body, 400, "invalid_grant", None);

    let manager = setup.user("manager").await;
    let (kept, _, _) = setup.tokens("manager", &["read:tasks"]).await;
    let (access, refresh, client_id) = setup.tokens("manager", &["manage:users"]).await;
    admin
        .put(
            200,
            &format!("/v1/users/{manager}/role"),
            json!({"role": "trainee"}),
        )
        .await;
    assert_eq!(
        setup.initialize_status(&access).await.0,
        401,
        "a trainee may not grant manage:users"
    );
    let (status, body) = refreshed(refresh, client_id).await;
    assert_oauth_error(status, &body, 400, "invalid_grant", None);
    assert_eq!(
        setup.initialize_status(&kept).await.0,
        200,
        "a trainee may still grant read:tasks"
    );
}

//! The sandbox's cross-cutting behaviour: authentication, the scope rule for every operation
//! (driven from the generated table), key minting and revocation, tenant isolation, validation,
//! pagination under concurrent inserts, and durability across restarts and `kill -9`.

use crate::common::{KillOnDrop, binary};
use crate::sandbox_fixture::{ADMIN_KEY, TestSandbox, fresh_dir};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use trainar_mcp::generated::api::{Operation, Scope};
use trainar_mcp::scopes::ScopeSet;

#[tokio::test]
async fn requests_without_a_valid_key_are_401_with_a_challenge() {
    let sandbox = TestSandbox::empty().await;
    let url = format!("{}/v1/tasks", sandbox.url);
    let cases: [Option<&str>; 4] = [
        None,
        Some("Basic abc"),
        Some("Bearer sk_live_1"),
        Some("Bearer tak_unknown000000000000000000000000000000000"),
    ];
    for header in cases {
        let mut request = sandbox.http().get(&url);
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{header:?}");
        assert!(
            response
                .headers()
                .get("www-authenticate")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}

#[tokio::test]
async fn introspection_names_the_key_and_its_tenant() {
    let sandbox = TestSandbox::empty().await;
    let key = sandbox.key_with(&["read:tasks"]).await;
    let me = sandbox.as_key(&key).get(200, "/v1/api-keys/current").await;
    assert_eq!(me["scopes"], json!(["read:tasks"]));
    assert_eq!(me["prefix"], key[..12]);
    assert!(me["tenant_id"].as_str().unwrap().starts_with("ten_"));
    assert_eq!(me["tenant_name"], "Acme Field Services");
}

/// A placeholder for each path parameter: well-formed enough to pass the scope check's stage.
fn concrete_path(operation: Operation) -> String {
    operation
        .path()
        .split('/')
        .map(|segment| match segment {
            "{integration_id}" => "servicenow".to_string(),
            s if s.starts_with('{') => "abc_0123456789abcdef".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_operation_enforces_its_scopes_from_the_generated_table() {
    let sandbox = TestSandbox::empty().await;
    let mut keys_by_scopes = std::collections::HashMap::new();
    for &operation in Operation::ALL {
        let required: Vec<&str> = operation
            .required_scopes()
            .iter()
            .map(|s| s.as_str())
            .collect();
        let body =
            (operation.method() != "GET" && operation.method() != "DELETE").then(|| json!({}));
        let path = concrete_path(operation);

        // Holding exactly the required scopes: never 401/403.
        let holder = match keys_by_scopes.get(&required) {
            Some(key) => String::clone(key),
            None if required.is_empty() => sandbox.key_with(&["read:tasks"]).await,
            None => sandbox.key_with(&required).await,
        };
        keys_by_scopes.insert(required.clone(), holder.clone());
        let (status, reply) = sandbox
            .call(&holder, operation.method(), &path, body.clone())
            .await;
        assert!(
            status != 401 && status != 403 && status < 500,
            "{} with {required:?}: {status} {reply}",
            operation.name()
        );

        if required.is_empty() {
            continue;
        }
        // Every scope whose expansion does not reach a required scope: 403 naming them.
        let lacking: Vec<&str> = Scope::ALL
            .iter()
            .filter(|scope| {
                ScopeSet::from_names([scope.as_str()])
                    .missing_for(operation)
                    .len()
                    == required.len()
            })
            .map(|scope| scope.as_str())
            .collect();
        let key = sandbox.key_with(&lacking).await;
        let (status, reply) = sandbox.call(&key, operation.method(), &path, body).await;
        assert_eq!(
            status,
            403,
            "{} without {required:?}: {reply}",
            operation.name()
        );
        assert_eq!(reply["error"]["code"], "insufficient_scope");
        assert_eq!(
            reply["error"]["required_scopes"],
            json!(required),
            "{}",
            operation.name()
        );
    }
}

#[tokio::test]
async fn a_key_cannot_mint_a_key_with_more_scopes_than_it_holds() {
    let sandbox = TestSandbox::empty().await;
    let minter_key = sandbox.key_with(&["manage:api_keys", "write:tasks"]).await;
    let minter = sandbox.as_key(&minter_key);
    let denied = json!({"name": "escalate", "scopes": ["read:tasks", "manage:users"]});
    let reply = minter.post(403, "/v1/api-keys", denied).await;
    assert_eq!(reply["error"]["required_scopes"], json!(["manage:users"]));
    // Implied scopes are held: write:tasks implies read:tasks.
    let allowed = json!({"name": "reader", "scopes": ["read:tasks"]});
    let created = minter.post(201, "/v1/api-keys", allowed).await;
    assert!(created["key"].as_str().unwrap().starts_with("tak_"));
    let listed = minter.get(200, "/v1/api-keys").await;
    assert!(
        listed
            .to_string()
            .find(created["key"].as_str().unwrap())
            .is_none(),
        "secrets are never listed"
    );
}

#[tokio::test]
async fn revocation_takes_effect_on_the_next_request() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let key = sandbox.key_with(&["read:tasks"]).await;
    let reader = sandbox.as_key(&key);
    reader.get(200, "/v1/tasks").await;
    let me = reader.get(200, "/v1/api-keys/current").await;
    let path = format!("/v1/api-keys/{}/revoke", me["id"].as_str().unwrap());
    let revoked = admin.post(200, &path, json!({})).await;
    assert!(revoked["revoked_at"].is_string());
    let reply = reader.get(401, "/v1/tasks").await;
    assert_eq!(reply["error"]["code"], "unauthorized");
    admin.post(409, &path, json!({})).await;
    let active = admin.get(200, "/v1/api-keys").await;
    assert!(
        active["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["id"] != me["id"])
    );
    let all = admin.get(200, "/v1/api-keys?include_revoked=true").await;
    assert!(
        all["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == me["id"])
    );
}

#[tokio::test]
async fn tenants_never_see_each_others_data() {
    let sandbox = TestSandbox::demo().await;
    let admin = sandbox.as_admin();
    let other_key = sandbox.other_tenant("Globex");
    let other = sandbox.as_key(&other_key);
    let task = admin
        .post(201, "/v1/tasks", json!({"title": "Acme only"}))
        .await;
    let path = format!("/v1/tasks/{}", task["id"].as_str().unwrap());
    other.get(404, &path).await;
    other.patch(404, &path, json!({"status": "done"})).await;
    other.delete(404, &path).await;
    let listed = other.get(200, "/v1/tasks?limit=100").await;
    assert_eq!(
        listed["data"],
        json!([]),
        "a new tenant has no tasks, and none of Acme's"
    );
    admin.get(200, &path).await;
}

#[tokio::test]
async fn malformed_requests_get_specific_errors() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let details = |reply: &Value| -> BTreeSet<String> {
        reply["error"]["details"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d["field"].as_str().unwrap().to_string())
            .collect()
    };
    let reply = admin
        .post(
            400,
            "/v1/tasks",
            json!({"title": "", "priority": 1, "status": "later"}),
        )
        .await;
    assert_eq!(reply["error"]["code"], "validation_failed");
    assert_eq!(
        details(&reply),
        ["priority", "status", "title"].map(String::from).into()
    );
    let reply = admin.post(400, "/v1/tasks", json!({})).await;
    assert_eq!(details(&reply), ["title".to_string()].into());
    for query in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "cursor=garbage!",
        "status=finished",
        "color=red",
    ] {
        let reply = admin.get(400, &format!("/v1/tasks?{query}")).await;
        let field = query.split('=').next().unwrap();
        assert!(details(&reply).contains(field), "{query}: {reply}");
    }
    let reply = admin.get(400, "/v1/tasks/not-a-task").await;
    assert!(details(&reply).contains("task_id"));
    admin.get(404, "/v1/tasks/tsk_0000000000000000").await;

    let raw = sandbox
        .http()
        .post(format!("{}/v1/tasks", sandbox.url))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");

    let huge = json!({"title": "big", "description": "x".repeat(3 * 1024 * 1024)});
    let reply = admin.post(413, "/v1/tasks", huge).await;
    assert_eq!(reply["error"]["code"], "payload_too_large");

    let reply = admin.get(404, "/v1/nothing-here").await;
    assert_eq!(reply["error"]["code"], "not_found");
    sandbox
        .expect(405, ADMIN_KEY, "PUT", "/v1/tasks", None)
        .await;
}

#[tokio::test]
async fn pages_stay_stable_while_rows_are_inserted() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let mut existing = BTreeSet::new();
    for n in 0..30 {
        let task = admin
            .post(201, "/v1/tasks", json!({"title": format!("t{n}")}))
            .await;
        existing.insert(task["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut inserted = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tasks?limit=7&cursor={c}"),
            None => "/v1/tasks?limit=7".to_string(),
        };
        // Writers race the reader: three inserts between pages.
        let writes = (0..3).map(|n| {
            sandbox.call(
                ADMIN_KEY,
                "POST",
                "/v1/tasks",
                Some(json!({"title": format!("new{n}")})),
            )
        });
        let (page, written) = tokio::join!(sandbox.get(ADMIN_KEY, &path), futures_join(writes));
        inserted += written;
        assert_eq!(page.0, 200, "{}", page.1);
        seen.extend(
            page.1["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string()),
        );
        match page.1["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no task appears twice");
    assert!(
        existing.is_subset(&unique),
        "every task that existed before paging appears"
    );
    assert!(inserted > 0);
}

async fn futures_join(
    calls: impl Iterator<Item = impl std::future::Future<Output = (u16, Value)>>,
) -> usize {
    let mut done = 0;
    for call in calls {
        assert_eq!(call.await.0, 201);
        done += 1;
    }
    done
}

#[tokio::test]
async fn concurrent_writers_lose_nothing_and_data_survives_a_restart() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let mut writers = Vec::new();
    for w in 0..8 {
        let (url, key) = (sandbox.url.clone(), ADMIN_KEY.to_string());
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for n in 0..10 {
                let response = http
                    .post(format!("{url}/v1/tasks"))
                    .bearer_auth(&key)
                    .json(&json!({"title": format!("w{w}-{n}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let count = |page: &Value| page["data"].as_array().unwrap().len();
    let listed = admin.get(200, "/v1/tasks?limit=100").await;
    assert_eq!(count(&listed), 80);
    let sandbox = sandbox.restart().await;
    let admin = sandbox.as_admin();
    let listed = admin.get(200, "/v1/tasks?limit=100").await;
    assert_eq!(count(&listed), 80);
}

/// Starts `trainar-mcp sandbox` as a process on an ephemeral port; returns it and its URL.
fn spawn_sandbox_process(data_dir: &std::path::Path) -> (KillOnDrop, String) {
    let mut child = binary()
        .args([
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "none",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("TRAINAR_SANDBOX_ADMIN_KEY", ADMIN_KEY)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the sandbox prints its URL").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split("/v1").next().unwrap().to_string();
        }
    };
    (KillOnDrop(child), url)
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_write() {
    trainar_mcp::install_tls_provider();
    let data_dir = fresh_dir("kill9");
    let (mut child, url) = spawn_sandbox_process(&data_dir);
    let http = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let response = http
            .post(format!("{url}/v1/tasks"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"title": format!("k{n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let task: Value = response.json().await.unwrap();
        acknowledged.push(task["id"].as_str().unwrap().to_string());
    }
    child.kill(); // SIGKILL on Unix

    let (_child, url) = spawn_sandbox_process(&data_dir);
    for id in &acknowledged {
        let response = http
            .get(format!("{url}/v1/tasks/{id}"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{id} was acknowledged, then lost");
    }
}

#[test]
fn tenant_create_prints_a_working_admin_key_once() {
    let data_dir = fresh_dir("tenant");
    let output = binary()
        .args(["sandbox", "--seed", "none", "--data-dir"])
        .arg(&data_dir)
        .args(["tenant", "create", "Initech"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("Initech") && text.contains("tak_"), "{text}");
    let output = binary()
        .args(["sandbox", "--data-dir"])
        .arg(&data_dir)
        .args(["tenant", "create", " "])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// The field a 400 names.
fn named_field(reply: &Value) -> &str {
    reply["error"]["details"][0]["field"].as_str().unwrap_or("")
}

#[tokio::test]
async fn client_timestamps_must_have_a_four_digit_year_in_utc() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    // Valid RFC 3339, but 10000-01-01T04:00:00Z in UTC (and year 0 for the early one).
    let late = "9999-12-31T23:00:00-05:00";
    let early = "0001-01-01T00:30:00+01:00";
    let reads = [
        (format!("/v1/reports/overview?to={late}"), "to"),
        (
            format!("/v1/reports/sessions?from=9999-12-31T20:00:00Z&to={late}"),
            "to",
        ),
        (format!("/v1/billing/minute-transactions?to={late}"), "to"),
        (format!("/v1/sessions?to={late}"), "to"),
        (format!("/v1/analytics/sessions?to={late}"), "to"),
        (
            format!("/v1/reports/minutes?from={early}&to=0001-03-01T00:00:00Z"),
            "from",
        ),
    ];
    for (path, field) in &reads {
        let path = path.replace('+', "%2B");
        let reply = admin.get(400, &path).await;
        assert_eq!(named_field(&reply), *field, "{path}: {reply}");
    }
    admin
        .get(
            200,
            "/v1/billing/minute-transactions?to=9999-12-31T23:59:59Z",
        )
        .await;

    let key = json!({"name": "far future", "scopes": ["read:tasks"], "expires_at": late});
    let reply = admin.post(400, "/v1/api-keys", key).await;
    assert_eq!(named_field(&reply), "expires_at", "{reply}");
    let task = json!({"title": "someday", "due_at": late});
    let reply = admin.post(400, "/v1/tasks", task).await;
    assert_eq!(named_field(&reply), "due_at", "{reply}");
    let task = admin
        .post(
            201,
            "/v1/tasks",
            json!({"title": "soon", "due_at": "2030-01-01T09:00:00+01:00"}),
        )
        .await;
    let path = format!("/v1/tasks/{}", task["id"].as_str().unwrap());
    let reply = admin.patch(400, &path, json!({"due_at": late})).await;
    assert_eq!(named_field(&reply), "due_at", "{reply}");
}

#[tokio::test]
async fn a_key_cannot_expire_in_the_past_and_a_revocation_keeps_its_reason() {
    let sandbox = TestSandbox::empty().await;
    let admin = sandbox.as_admin();
    let past =
        json!({"name": "stale", "scopes": ["read:tasks"], "expires_at": "2020-01-01T00:00:00Z"});
    let reply = admin.post(422, "/v1/api-keys", past).await;
    assert_eq!(reply["error"]["code"], "unprocessable");

    let key = sandbox.key_with(&["read:tasks"]).await;
    let me = sandbox.as_key(&key).get(200, "/v1/api-keys/current").await;
    let key_id = me["id"].as_str().unwrap();
    let admin_record = admin.get(200, "/v1/api-keys/current").await;
    let revoked = admin
        .post(
            200,
            &format!("/v1/api-keys/{key_id}/revoke"),
            json!({"reason": "Leaked in a CI log"}),
        )
        .await;
    assert!(
        !revoked.to_string().contains("Leaked"),
        "the audit log is not part of the ApiKey"
    );
    let private: Value = serde_json::from_str(&sandbox.sql_text(
        "SELECT private FROM objects WHERE kind = 'api_key' AND id = ?1",
        [key_id],
    ))
    .unwrap();
    let entry = &private["audit"][0];
    assert_eq!(entry["action"], "revoked");
    assert_eq!(entry["reason"], "Leaked in a CI log");
    assert_eq!(entry["actor"], admin_record["id"]);
    assert_eq!(entry["at"], revoked["revoked_at"]);
}

#[tokio::test]
async fn tenant_names_fit_key_introspection() {
    let sandbox = TestSandbox::empty().await;
    let config = trainar_mcp::sandbox::Config::new(&sandbox.data_dir);
    assert!(trainar_mcp::sandbox::create_tenant(&config, &"x".repeat(101)).is_err());
    // 100 characters in 200 bytes: the limit counts characters, as maxLength does.
    let name = "ü".repeat(100);
    let (_, key) = trainar_mcp::sandbox::create_tenant(&config, &name).unwrap();
    let me = sandbox.as_key(&key).get(200, "/v1/api-keys/current").await;
    assert_eq!(me["tenant_name"], name);
}

#[test]
fn debug_output_never_shows_the_admin_key() {
    let mut config = trainar_mcp::sandbox::Config::new(fresh_dir("debug"));
    config.demo_seed = false;
    config.admin_key = Some(ADMIN_KEY.to_string());
    let shown = format!("{config:?}");
    assert!(
        !shown.contains(ADMIN_KEY) && shown.contains("admin_key"),
        "{shown}"
    );
    let (_, first) = trainar_mcp::sandbox::Sandbox::open(config).unwrap();
    let first = first.expect("a first start");
    assert_eq!(first.admin_key, ADMIN_KEY);
    let shown = format!("{first:?}");
    assert!(
        !shown.contains(ADMIN_KEY) && shown.contains(&first.tenant_id),
        "{shown}"
    );
}

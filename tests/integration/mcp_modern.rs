//! The 2026-07-28 stateless era on /mcp over real loopback HTTP: discovery, the envelope and
//! header checks with their codes and statuses, no sessions (two replicas answer one client),
//! and streamed responses: progress, log messages, and cancellation by closing the stream.

use crate::gateway_fixture::{
    SLOW_KEY, TestGateway, hanging_api, hanging_api_seeing, read_events, text_of, until_abandoned,
    until_set,
};
use crate::replicas_fixture::Redis;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use trainar_mcp::replicas::RedisOptions;

const VERSION: &str = "2026-07-28";

/// A 2026-07-28 request: the envelope in `_meta` (plus `extra_meta`) and nothing else.
pub fn modern(id: i64, method: &str, mut params: Value, extra_meta: Value) -> Value {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    for (key, value) in extra_meta.as_object().into_iter().flatten() {
        meta[key] = value.clone();
    }
    params["_meta"] = meta;
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The routing headers a conforming client sends with `message`.
fn routing(message: &Value) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("mcp-protocol-version", VERSION.to_string()),
        (
            "mcp-method",
            message["method"].as_str().unwrap().to_string(),
        ),
    ];
    if let Some(name) = message["params"]["name"].as_str() {
        headers.push(("mcp-name", name.to_string()));
    }
    headers
}

/// POSTs `message` with its routing headers (minus `omit`, plus `extra`).
pub async fn send(
    gateway: &TestGateway,
    key: &str,
    message: &Value,
    omit: &[&str],
    extra: &[(&str, &str)],
) -> crate::gateway_fixture::Exchange {
    let headers = routing(message);
    let mut all: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(name, _)| !omit.contains(name))
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    all.extend_from_slice(extra);
    gateway.post(Some(key), None, message.clone(), &all).await
}

#[tokio::test]
async fn discovery_and_calls_need_no_session_and_any_replica_answers() {
    let first = TestGateway::demo(|_| {}).await;
    let admin = first.admin();
    // A second replica in front of the same API: it has never seen this client.
    let second = TestGateway::in_front_of(&first.sandbox().url, |_| {}).await;

    let discover = send(
        &first,
        &admin,
        &modern(1, "server/discover", json!({}), json!({})),
        &[],
        &[],
    )
    .await;
    assert_eq!(discover.status, 200, "{}", discover.body);
    assert!(discover.headers.get("mcp-session-id").is_none());
    let result = &discover.body["result"];
    assert_eq!(result["supportedVersions"], json!([VERSION]));
    assert_eq!(result["resultType"], "complete");
    assert_eq!(
        result["capabilities"]["tools"],
        json!({"listChanged": false})
    );
    assert_eq!(result["cacheScope"], "private");
    assert!(result["ttlMs"].as_u64().is_some());
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "trainar-mcp"
    );

    let list = send(
        &second,
        &admin,
        &modern(2, "tools/list", json!({}), json!({})),
        &[],
        &[],
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["result"]["tools"].as_array().unwrap().len(), 67);
    assert_eq!(list.body["result"]["resultType"], "complete");
    assert_eq!(list.body["result"]["cacheScope"], "private");

    let create = modern(
        3,
        "tools/call",
        json!({"name": "create_task", "arguments": {"title": "stateless"}}),
        json!({}),
    );
    let created = send(&first, &admin, &create, &[], &[]).await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(created.body["result"]["resultType"], "complete");
    assert_eq!(created.body["result"]["isError"], false);
    let task_id = created.body["result"]["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let get = modern(
        4,
        "tools/call",
        json!({"name": "get_task", "arguments": {"task_id": task_id}}),
        json!({}),
    );
    let got = send(&second, &admin, &get, &[], &[]).await;
    assert_eq!(
        got.body["result"]["structuredContent"]["title"], "stateless",
        "{}",
        got.body
    );

    // The handshake era keeps working on the same endpoint, without the modern members.
    let session = first.initialize(&admin, "/mcp").await;
    let listed = first
        .request(&admin, &session, "tools/list", json!({}))
        .await;
    assert!(listed["result"].get("resultType").is_none());
    let discover_in_session = first
        .request(&admin, &session, "server/discover", json!({}))
        .await;
    assert_eq!(discover_in_session["error"]["code"], -32601);
}

#[tokio::test]
async fn envelope_and_header_errors_carry_their_codes_and_statuses() {
    let gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    let call = modern(
        9,
        "tools/call",
        json!({"name": "list_tasks", "arguments": {}}),
        json!({}),
    );
    let mut no_envelope = call.clone();
    no_envelope["params"]
        .as_object_mut()
        .unwrap()
        .remove("_meta");
    let mut no_capabilities = call.clone();
    no_capabilities["params"]["_meta"]
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientCapabilities");
    let mut future = call.clone();
    future["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2030-01-01");
    type Case<'a> = (
        &'a str,
        &'a Value,
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        u16,
        i64,
    );
    let cases: &[Case] = &[
        ("no envelope", &no_envelope, &[], &[], 400, -32602),
        (
            "no clientCapabilities",
            &no_capabilities,
            &[],
            &[],
            400,
            -32602,
        ),
        (
            "no MCP-Protocol-Version",
            &call,
            &["mcp-protocol-version"],
            &[],
            400,
            -32020,
        ),
        ("no Mcp-Method", &call, &["mcp-method"], &[], 400, -32020),
        (
            "Mcp-Method disagrees",
            &call,
            &["mcp-method"],
            &[("mcp-method", "tools/list")],
            400,
            -32020,
        ),
        ("no Mcp-Name", &call, &["mcp-name"], &[], 400, -32020),
        (
            "Mcp-Name disagrees",
            &call,
            &["mcp-name"],
            &[("mcp-name", "get_task")],
            400,
            -32020,
        ),
        (
            "Mcp-Method twice",
            &call,
            &[],
            &[("mcp-method", "tools/call")],
            400,
            -32020,
        ),
        (
            "header and body versions differ",
            &call,
            &["mcp-protocol-version"],
            &[("mcp-protocol-version", "2030-01-01")],
            400,
            -32020,
        ),
        (
            "unsupported version",
            &future,
            &["mcp-protocol-version"],
            &[("mcp-protocol-version", "2030-01-01")],
            400,
            -32022,
        ),
    ];
    for (what, message, omit, extra, status, code) in cases {
        let reply = send(&gateway, &admin, message, omit, extra).await;
        assert_eq!(reply.status, *status, "{what}: {}", reply.body);
        assert_eq!(reply.body["error"]["code"], *code, "{what}: {}", reply.body);
        assert_eq!(reply.body["id"], 9, "{what}");
    }
    let unsupported = send(
        &gateway,
        &admin,
        &future,
        &["mcp-protocol-version"],
        &[("mcp-protocol-version", "2030-01-01")],
    )
    .await;
    assert_eq!(
        unsupported.body["error"]["data"],
        json!({"supported": [VERSION], "requested": "2030-01-01"})
    );

    for method in ["ping", "logging/setLevel", "initialize", "resources/list"] {
        let reply = send(
            &gateway,
            &admin,
            &modern(5, method, json!({}), json!({})),
            &[],
            &[],
        )
        .await;
        assert_eq!(reply.status, 404, "{method}: {}", reply.body);
        assert_eq!(reply.body["error"]["code"], -32601, "{method}");
    }
    let unknown_tool = modern(6, "tools/call", json!({"name": "no_such_tool"}), json!({}));
    let reply = send(&gateway, &admin, &unknown_tool, &[], &[]).await;
    assert_eq!(
        (reply.status, reply.body["error"]["code"].clone()),
        (400, json!(-32602))
    );

    let batch = json!([modern(7, "tools/list", json!({}), json!({}))]);
    let reply = gateway
        .post(
            Some(&admin),
            None,
            batch,
            &[
                ("mcp-protocol-version", VERSION),
                ("mcp-method", "tools/list"),
            ],
        )
        .await;
    assert_eq!(
        (reply.status, reply.body["error"]["code"].clone()),
        (400, json!(-32600))
    );
    let notification =
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}});
    let reply = gateway
        .post(
            Some(&admin),
            None,
            notification,
            &[("mcp-protocol-version", VERSION)],
        )
        .await;
    assert_eq!(reply.status, 202);
    // Auth is the same in every era.
    let reply = send(&gateway, "tak_nope", &call, &[], &[]).await;
    assert_eq!(reply.status, 401);
}

const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// POSTs `message` and returns the raw streaming response.
async fn open(
    gateway: &TestGateway,
    key: &str,
    session: Option<&str>,
    message: &Value,
    headers: &[(&str, String)],
    accept: &str,
) -> reqwest::Response {
    let mut request = gateway
        .http()
        .post(format!("{}/mcp", gateway.url))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .header("accept", accept)
        .body(message.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.unwrap()
}

/// A sessionless execute_skill (streamed, with progress under `token`) as SLOW_KEY: against
/// `hanging_api`, a call that waits until it is cancelled.
async fn execute_skill_sessionless(
    gateway: &TestGateway,
    id: i64,
    token: &str,
) -> reqwest::Response {
    let execute = modern(
        id,
        "tools/call",
        json!({"name": "execute_skill", "arguments": {"skill_id": "skl_0123456789abcdef", "arguments": {}}}),
        json!({"progressToken": token}),
    );
    open(
        gateway,
        SLOW_KEY,
        None,
        &execute,
        &routing(&execute),
        ACCEPT_BOTH,
    )
    .await
}

fn parsed(events: &[(String, String)]) -> Vec<Value> {
    events
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect()
}

#[tokio::test]
async fn progress_streams_while_waiting_and_closing_the_stream_cancels_the_call() {
    let abandoned = Arc::new(AtomicBool::new(false));
    let upstream = hanging_api(abandoned.clone()).await;
    let gateway = TestGateway::in_front_of(&upstream, |_| {}).await;
    let mut response = execute_skill_sessionless(&gateway, 11, "tok-1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = parsed(&read_events(&mut response, 3).await);
    let progress: Vec<f64> = events
        .iter()
        .map(|event| {
            assert_eq!(event["method"], "notifications/progress", "{event}");
            assert_eq!(event["params"]["progressToken"], "tok-1");
            event["params"]["progress"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(
        progress,
        [1.0, 2.0, 3.0],
        "one step at once, then one a second"
    );
    assert!(
        events[2]["params"]["message"]
            .as_str()
            .unwrap()
            .contains("Waiting")
    );
    assert!(!abandoned.load(Ordering::SeqCst));
    drop(response);
    assert!(
        until_abandoned(&abandoned).await,
        "closing the stream aborted the upstream request"
    );
}

#[tokio::test]
async fn handshake_sessions_stream_progress_and_cancel_by_notification() {
    let (abandoned, arrived) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let upstream = hanging_api_seeing(abandoned.clone(), Arc::clone(&arrived)).await;
    let gateway = TestGateway::in_front_of(&upstream, |_| {}).await;
    let session = gateway.initialize(SLOW_KEY, "/mcp").await;
    let execute = json!({"jsonrpc": "2.0", "id": 12, "method": "tools/call", "params": {
        "name": "execute_skill", "arguments": {"skill_id": "skl_0123456789abcdef", "arguments": {}},
        "_meta": {"progressToken": 77}}});
    let version = vec![("mcp-protocol-version", "2025-06-18".to_string())];
    let mut response = open(
        &gateway,
        SLOW_KEY,
        Some(&session),
        &execute,
        &version,
        ACCEPT_BOTH,
    )
    .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let first = parsed(&read_events(&mut response, 1).await);
    assert_eq!(
        first[0]["params"],
        json!({"progressToken": 77, "progress": 1, "message": "Calling the TrainAR API: execute_skill"})
    );
    // The progress comes before the request is written (on a lane whose pool has no connection
    // yet, before it is even opened): cancel once the API holds the request.
    assert!(until_set(&arrived).await, "the request reached the API");
    assert_eq!(gateway.cancel(SLOW_KEY, &session, 12).await, 202);
    // The stream ends without a reply (a cancelled request gets none); progress may precede it.
    let rest = tokio::time::timeout(Duration::from_secs(5), response.text())
        .await
        .expect("the stream ends")
        .unwrap();
    assert!(!rest.contains("\"id\":12"), "{rest}");
    assert!(until_abandoned(&abandoned).await);
}

#[tokio::test]
async fn log_messages_and_progress_ride_the_response_only_when_asked_for() {
    let gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    let list = |meta: Value| {
        modern(
            13,
            "tools/call",
            json!({"name": "list_tasks", "arguments": {"limit": 1}}),
            meta,
        )
    };
    // Asked for: a log message, then the reply, on one stream.
    let wanted = list(json!({"io.modelcontextprotocol/logLevel": "info"}));
    let mut response = open(
        &gateway,
        &admin,
        None,
        &wanted,
        &routing(&wanted),
        ACCEPT_BOTH,
    )
    .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = parsed(&read_events(&mut response, 2).await);
    assert_eq!(events[0]["method"], "notifications/message");
    assert_eq!(events[0]["params"]["data"]["tool"], "list_tasks");
    assert_eq!(events[0]["params"]["level"], "info");
    assert_eq!(events[1]["id"], 13);
    assert_eq!(events[1]["result"]["isError"], false);

    // Above the call's level: nothing to say, so a plain JSON reply.
    let quiet = list(json!({"io.modelcontextprotocol/logLevel": "error"}));
    let reply = send(&gateway, &admin, &quiet, &[], &[]).await;
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.body["result"]["isError"], false, "{}", reply.body);

    // A progressToken on a short tool, or a client that accepts only JSON: JSON, no progress.
    let short = list(json!({"progressToken": "t"}));
    let reply = send(&gateway, &admin, &short, &[], &[]).await;
    assert_eq!(reply.headers["content-type"], "application/json");
    let json_only = open(
        &gateway,
        &admin,
        None,
        &wanted,
        &routing(&wanted),
        "application/json",
    )
    .await;
    assert_eq!(json_only.headers()["content-type"], "application/json");
    let body: Value = serde_json::from_str(&json_only.text().await.unwrap()).unwrap();
    assert_eq!(body["result"]["isError"], false);
    assert!(text_of(&body["result"]).contains("data"));
}

#[tokio::test]
async fn no_session_opens_while_a_gateway_of_its_own_drains_so_shutdown_ends() {
    drain_with_a_call_held(None).await;
}

#[tokio::test]
async fn a_replica_on_redis_that_drains_opens_only_sessions_without_a_stream() {
    drain_with_a_call_held(Some(Redis::start())).await;
}

/// Shuts a gateway down while a sessionless call holds its drain open (up to the 10 s grace),
/// and asks for sessions meanwhile. A legacy SSE stream opened then would keep the server waiting
/// for its client after the drain: refused. A Streamable HTTP session has no stream here: on a
/// gateway of its own it would end with the process (refused, so the client retries
/// elsewhere at once); shared through Redis it goes on at the other replicas (opened).
async fn drain_with_a_call_held(redis: Option<Redis>) {
    let (abandoned, arrived) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let upstream = hanging_api_seeing(abandoned.clone(), Arc::clone(&arrived)).await;
    let redis_url = redis.as_ref().map(Redis::url);
    let mut gateway = TestGateway::in_front_of(&upstream, |config| {
        config.server.redis = redis_url.map(|url| RedisOptions {
            url,
            timeout: Duration::from_secs(2),
        });
    })
    .await;
    if redis.is_some() {
        let mut ready = (0, Value::Null);
        for _ in 0..100 {
            ready = gateway.readiness().await;
            if ready.1["redis"] == "reachable" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(ready.1["redis"], "reachable", "{}", ready.1);
    }
    let call = execute_skill_sessionless(&gateway, 21, "tok-21").await;
    assert!(until_set(&arrived).await, "the call reached the API");
    gateway.begin_shutdown();
    let mut status = 0;
    for _ in 0..100 {
        status = gateway.readiness().await.0;
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 503, "a draining replica is not ready");
    let stream = gateway.get(SLOW_KEY, "/sse").await;
    assert_eq!(stream.status(), 503);
    assert_eq!(stream.headers()["retry-after"], "1");
    let refusal: Value = stream.json().await.unwrap();
    assert_eq!(
        refusal["error"]["data"]["reason"], "shutting_down",
        "{refusal}"
    );
    let init = gateway
        .post(
            Some(SLOW_KEY),
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "late", "version": "1"}}}),
            &[],
        )
        .await;
    if redis.is_some() {
        assert_eq!(init.status, 200, "{}", init.body);
        assert!(init.headers.contains_key("mcp-session-id"));
    } else {
        assert_eq!(init.status, 503, "{}", init.body);
        assert_eq!(init.body["error"]["data"]["reason"], "shutting_down");
    }
    // Sessionless calls are still answered while the drain lasts.
    let list = modern(22, "tools/list", json!({}), json!({}));
    let listed = send(&gateway, SLOW_KEY, &list, &[], &[]).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(listed.body["result"]["tools"].is_array(), "{}", listed.body);
    drop(call);
    tokio::time::timeout(Duration::from_secs(15), gateway.finish_shutdown())
        .await
        .expect("shutdown completes")
        .unwrap();
}

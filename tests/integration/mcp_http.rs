//! The MCP runtime over real loopback HTTP: lifecycle, JSON-RPC errors, sessions and their
//! binding, auth, Origin and CORS, limits, scopes, results, timeouts, cancellation, SSE framing,
//! idle expiry and graceful shutdown.

use crate::gateway_fixture::{
    SLOW_KEY, TestGateway, hanging_api, read_events, text_of, until_abandoned,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

fn rpc(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[tokio::test]
async fn initialize_negotiates_versions_and_opens_a_session() {
    let gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    for (asked, answered) in [
        ("2025-11-25", "2025-11-25"),
        ("2024-11-05", "2024-11-05"),
        ("1999-01-01", "2025-11-25"),
    ] {
        let reply = gateway
            .post(
                Some(&admin),
                None,
                rpc(1, "initialize", json!({"protocolVersion": asked})),
                &[],
            )
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["result"]["protocolVersion"], answered);
        assert_eq!(reply.body["result"]["serverInfo"]["name"], "trainar-mcp");
        let id = reply.headers["mcp-session-id"].to_str().unwrap();
        assert!(id.len() >= 32 && id.chars().all(|c| c.is_ascii_hexdigit()));
    }
    // A trailing slash is served, not redirected.
    let reply = gateway
        .post_raw(
            Some(&admin),
            None,
            rpc(1, "initialize", json!({})).to_string(),
            &[],
            "/mcp/",
        )
        .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn json_rpc_errors_are_specific_and_prompt() {
    let gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    // Unknown methods get -32601 even before initialize (clients probe with server/discover).
    let reply = gateway
        .post(
            Some(&admin),
            None,
            rpc(1, "server/discover", json!({})),
            &[],
        )
        .await;
    assert_eq!(reply.body["error"]["code"], -32601);
    let reply = gateway
        .post(Some(&admin), None, rpc(2, "ping", json!({})), &[])
        .await;
    assert_eq!(reply.body["result"], json!({}));
    let reply = gateway
        .post_raw(Some(&admin), None, "{not json".into(), &[], "/mcp")
        .await;
    assert_eq!(
        (reply.status, reply.body["error"]["code"].clone()),
        (400, json!(-32700))
    );
    let reply = gateway
        .post(Some(&admin), None, json!({"id": 1, "method": "ping"}), &[])
        .await;
    assert_eq!(reply.body["error"]["code"], -32600);

    let session = gateway.initialize(&admin, "/mcp").await;
    let reply = gateway
        .request(
            &admin,
            &session,
            "tools/call",
            json!({"name": "drop_tables", "arguments": {}}),
        )
        .await;
    assert_eq!(reply["error"]["code"], -32602);
    let reply = gateway
        .request(&admin, &session, "tools/list", json!({"cursor": "bogus"}))
        .await;
    assert_eq!(reply["error"]["code"], -32602);
    let reply = gateway
        .request(&admin, &session, "resources/list", json!({}))
        .await;
    assert_eq!(reply["error"]["code"], -32601);
    // tools/* without a session: 400, telling the client to initialize.
    let reply = gateway
        .post(Some(&admin), None, rpc(3, "tools/list", json!({})), &[])
        .await;
    assert_eq!(reply.status, 400);
    let reply = gateway
        .post(
            Some(&admin),
            Some(&session),
            rpc(4, "ping", json!({})),
            &[("mcp-protocol-version", "2030-01-01")],
        )
        .await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn sessions_are_bound_to_their_key_and_end_on_delete() {
    let gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    let other_key = gateway.sandbox().key_with(&["read:tasks"]).await;
    let session = gateway.initialize(&admin, "/mcp").await;
    let reply = gateway
        .post(
            Some(&other_key),
            Some(&session),
            rpc(1, "tools/list", json!({})),
            &[],
        )
        .await;
    assert_eq!(reply.status, 404, "another key cannot use the session");
    let reply = gateway
        .post(
            Some(&admin),
            Some("0123456789abcdef0123456789abcdef"),
            rpc(1, "ping", json!({})),
            &[],
        )
        .await;
    assert_eq!(reply.status, 404);
    let deleted = gateway
        .http()
        .delete(format!("{}/mcp", gateway.url))
        .bearer_auth(&admin)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let reply = gateway
        .post(Some(&admin), Some(&session), rpc(1, "ping", json!({})), &[])
        .await;
    assert_eq!(reply.status, 404, "a deleted session is unknown");
    let get = gateway.get(&admin, "/mcp").await;
    assert_eq!(get.status(), 405);
    let post_sse = gateway
        .http()
        .post(format!("{}/sse", gateway.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(post_sse.status(), 405);
}

#[tokio::test]
async fn every_request_needs_a_valid_key_in_the_header() {
    let gateway = TestGateway::demo(|_| {}).await;
    let init = rpc(1, "initialize", json!({}));
    for key in [
        None,
        Some("not-a-key"),
        Some("tak_unknownunknownunknownunknownunknown1234"),
    ] {
        let reply = gateway.post(key, None, init.clone(), &[]).await;
        assert_eq!(reply.status, 401, "{key:?}");
        assert!(
            reply.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        assert_eq!(reply.body["error"]["data"]["reason"], "unauthorized");
        assert_eq!(
            reply.body["error"]["code"], -32001,
            "a JSON-RPC error clients can show"
        );
    }
    let admin = gateway.admin();
    let in_url = gateway
        .post_raw(
            None,
            None,
            init.to_string(),
            &[],
            &format!("/mcp?api_key={admin}"),
        )
        .await;
    assert_eq!(in_url.status, 401, "a key in the query string is refused");
    // Even together with a valid header.
    let both = gateway
        .post_raw(
            Some(&admin),
            None,
            init.to_string(),
            &[],
            &format!("/mcp?key={admin}"),
        )
        .await;
    assert_eq!(both.status, 401);
}

#[tokio::test]
async fn origins_are_checked_and_cors_answered() {
    let gateway = TestGateway::demo(|config| {
        config.server.allowed_origins = vec!["https://app.trainar.ai".into()]
    })
    .await;
    let admin = gateway.admin();
    let init = rpc(1, "initialize", json!({}));
    let evil = gateway
        .post(
            Some(&admin),
            None,
            init.clone(),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(evil.status, 403);
    for origin in ["http://localhost:6274", "https://app.trainar.ai"] {
        let ok = gateway
            .post(Some(&admin), None, init.clone(), &[("origin", origin)])
            .await;
        assert_eq!(ok.status, 200, "{origin}");
        assert_eq!(ok.headers["access-control-allow-origin"], origin);
        assert!(
            ok.headers["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .contains("Mcp-Session-Id")
        );
    }
    let preflight = gateway
        .http()
        .request(reqwest::Method::OPTIONS, format!("{}/mcp", gateway.url))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert!(
        preflight.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("Authorization")
    );
}

#[tokio::test]
async fn limits_answer_413_and_429_with_retry_after() {
    let gateway = TestGateway::demo(|config| {
        config.server.max_body_bytes = 64 * 1024;
        config.server.requests_per_minute = 60; // a burst of 10
        config.server.sessions_per_key = 2;
    })
    .await;
    let admin = gateway.admin();
    let big = rpc(1, "ping", json!({"pad": "x".repeat(100 * 1024)}));
    assert_eq!(gateway.post(Some(&admin), None, big, &[]).await.status, 413);

    // At the cap, the longest-idle quiet session makes way for a new one...
    let evicted = gateway.initialize(&admin, "/mcp").await;
    let first = gateway.initialize(&admin, "/mcp").await;
    let _third = gateway.initialize(&admin, "/mcp").await;
    let gone = gateway
        .post(Some(&admin), Some(&evicted), rpc(1, "ping", json!({})), &[])
        .await;
    assert_eq!(gone.status, 404, "the evicted session is unknown");
    // ...but sessions holding an open stream are never evicted: with both slots streaming, 429.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let stream = gateway.get(&admin, "/sse").await;
        assert_eq!(stream.status(), 200);
        streams.push(stream);
    }
    let refused = gateway
        .post(Some(&admin), None, rpc(1, "initialize", json!({})), &[])
        .await;
    assert_eq!(refused.status, 429, "the session cap");
    assert!(refused.headers.contains_key("retry-after"));
    drop(streams);

    let mut limited = None;
    for _ in 0..20 {
        let reply = gateway
            .post(Some(&admin), Some(&first), rpc(1, "ping", json!({})), &[])
            .await;
        if reply.status == 429 {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.expect("the rate limit answers 429");
    assert!(
        limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(limited.body["error"]["data"]["reason"], "rate_limited");
}

#[tokio::test]
async fn scopes_filter_the_list_and_deny_calls_without_reaching_the_api() {
    let gateway = TestGateway::demo(|_| {}).await;
    let reader = gateway.sandbox().key_with(&["read:tasks"]).await;
    let session = gateway.initialize(&reader, "/mcp").await;
    let listed = gateway
        .request(&reader, &session, "tools/list", json!({}))
        .await;
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["list_tasks", "get_task"]);

    let admin = gateway.admin();
    let before = gateway.sandbox().get(&admin, "/v1/tasks?limit=100").await.1["data"]
        .as_array()
        .unwrap()
        .len();
    let denied = gateway
        .call_tool(&reader, &session, "create_task", json!({"title": "no"}))
        .await;
    assert_eq!(denied["isError"], true);
    let text = text_of(&denied);
    assert!(
        text.contains("write:tasks") && text.contains("holds: read:tasks"),
        "{text}"
    );
    let after = gateway.sandbox().get(&admin, "/v1/tasks?limit=100").await.1["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "nothing reached the API");

    // The API's own 403 maps the same way: a key may not mint scopes it lacks.
    let minter = gateway.sandbox().key_with(&["manage:api_keys"]).await;
    let session = gateway.initialize(&minter, "/mcp").await;
    let denied = gateway
        .call_tool(
            &minter,
            &session,
            "create_api_key",
            json!({"name": "x", "scopes": ["manage:users"]}),
        )
        .await;
    assert_eq!(denied["isError"], true);
    assert!(
        text_of(&denied).contains("manage:users"),
        "{}",
        text_of(&denied)
    );
}

#[tokio::test]
async fn list_all_tools_shows_everything_with_scopes_and_pages() {
    let gateway = TestGateway::demo(|config| {
        config.core.list_all_tools = true;
        config.core.page_size = 10;
    })
    .await;
    let reader = gateway.sandbox().key_with(&["read:tasks"]).await;
    let session = gateway.initialize(&reader, "/mcp").await;
    let mut tools = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let page = gateway
            .request(&reader, &session, "tools/list", json!({"cursor": cursor}))
            .await;
        let page_tools = page["result"]["tools"].as_array().unwrap();
        assert!(page_tools.len() <= 10);
        tools.extend(page_tools.iter().cloned());
        cursor = page["result"]["nextCursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(tools.len(), 67);
    assert!(
        tools
            .iter()
            .all(|t| t["_meta"]["ai.trainar/requiredScopes"].is_array())
    );
    let denied = gateway
        .call_tool(&reader, &session, "list_users", json!({}))
        .await;
    assert_eq!(denied["isError"], true, "listed is not allowed");
}

#[tokio::test]
async fn results_mirror_json_and_large_ones_become_errors_that_say_how_to_ask_for_less() {
    let gateway = TestGateway::demo(|config| config.core.max_result_bytes = 1024).await;
    let admin = gateway.admin();
    let session = gateway.initialize(&admin, "/mcp").await;
    let small = gateway
        .call_tool(&admin, &session, "create_task", json!({"title": "short"}))
        .await;
    assert_eq!(small["isError"], false);
    let parsed: Value = serde_json::from_str(&text_of(&small)).unwrap();
    assert_eq!(
        parsed, small["structuredContent"],
        "the text content mirrors structuredContent"
    );
    for n in 0..10 {
        gateway
            .sandbox()
            .expect(
                201,
                &admin,
                "POST",
                "/v1/tasks",
                Some(json!({"title": format!("padding task {n}"), "description": "x".repeat(200)})),
            )
            .await;
    }
    let big = gateway
        .call_tool(&admin, &session, "list_tasks", json!({"limit": 5}))
        .await;
    // Not a cut result (it would break clients that check structuredContent against the
    // outputSchema): an error that tells the model how to ask for less.
    assert_eq!(big["isError"], true);
    let text = text_of(&big);
    assert!(
        text.contains("over this server's limit of 1024 bytes")
            && text.contains("`limit`")
            && text.contains("`cursor`")
            && text.contains(" fit."),
        "{text}"
    );
    assert!(big.get("structuredContent").is_none());
    let fitting = gateway
        .call_tool(&admin, &session, "list_tasks", json!({"limit": 1}))
        .await;
    assert_eq!(fitting["isError"], false, "{}", text_of(&fitting));
}

#[tokio::test]
async fn a_slow_api_becomes_an_error_result_within_the_timeout() {
    let abandoned = Arc::new(AtomicBool::new(false));
    let upstream = hanging_api(abandoned.clone()).await;
    let gateway = TestGateway::in_front_of(&upstream, |config| {
        config.upstream.timeout = Duration::from_millis(500)
    })
    .await;
    let session = gateway.initialize(SLOW_KEY, "/mcp").await;
    let started = std::time::Instant::now();
    let result = gateway
        .call_tool(SLOW_KEY, &session, "list_tasks", json!({}))
        .await;
    assert_eq!(result["isError"], true);
    assert!(
        text_of(&result).contains("timed out"),
        "{}",
        text_of(&result)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn cancellation_aborts_the_upstream_request_and_sends_no_reply() {
    let abandoned = Arc::new(AtomicBool::new(false));
    let upstream = hanging_api(abandoned.clone()).await;
    let gateway = Arc::new(TestGateway::in_front_of(&upstream, |_| {}).await);
    let session = gateway.initialize(SLOW_KEY, "/mcp").await;
    let call = {
        let (gateway, session) = (gateway.clone(), session.clone());
        tokio::spawn(async move {
            gateway
                .post(
                    Some(SLOW_KEY),
                    Some(&session),
                    rpc(
                        42,
                        "tools/call",
                        json!({"name": "list_tasks", "arguments": {}}),
                    ),
                    &[],
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gateway.cancel(SLOW_KEY, &session, 42).await, 202);
    let reply = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the call ends promptly")
        .unwrap();
    assert_eq!(
        reply.status, 202,
        "a cancelled request gets no JSON-RPC reply"
    );
    assert!(
        until_abandoned(&abandoned).await,
        "the upstream request was aborted"
    );
}

#[tokio::test]
async fn legacy_sse_sends_a_relative_endpoint_and_replies_on_the_stream() {
    let gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    let mut stream = gateway.get(&admin, "/sse").await;
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let endpoint = read_events(&mut stream, 1).await.remove(0);
    assert_eq!(endpoint.0, "endpoint");
    assert!(
        endpoint.1.starts_with("messages?sessionId="),
        "relative, so path prefixes work: {}",
        endpoint.1
    );
    let post_url = format!("{}/{}", gateway.url, endpoint.1);
    let accepted = gateway
        .http()
        .post(&post_url)
        .bearer_auth(&admin)
        .json(&rpc(
            5,
            "initialize",
            json!({"protocolVersion": "2024-11-05"}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let reply = read_events(&mut stream, 1).await.remove(0);
    assert_eq!(reply.0, "message");
    let reply: Value = serde_json::from_str(&reply.1).unwrap();
    assert_eq!(
        (
            reply["id"].clone(),
            reply["result"]["protocolVersion"].clone()
        ),
        (json!(5), json!("2024-11-05"))
    );

    let other = gateway.sandbox().key_with(&["read:tasks"]).await;
    let foreign = gateway
        .http()
        .post(&post_url)
        .bearer_auth(&other)
        .json(&rpc(6, "ping", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 404, "the session is bound to its key");
    let missing = gateway
        .http()
        .post(format!("{}/messages", gateway.url))
        .bearer_auth(&admin)
        .json(&rpc(6, "ping", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
}

#[tokio::test]
async fn idle_sessions_expire() {
    let gateway =
        TestGateway::demo(|config| config.server.idle_timeout = Duration::from_millis(300)).await;
    let admin = gateway.admin();
    let session = gateway.initialize(&admin, "/mcp").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let reply = gateway
        .post(Some(&admin), Some(&session), rpc(1, "ping", json!({})), &[])
        .await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn shutdown_closes_streams_and_returns() {
    let mut gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    let mut stream = gateway.get(&admin, "/sse").await;
    read_events(&mut stream, 1).await;
    tokio::time::timeout(Duration::from_secs(15), gateway.shutdown())
        .await
        .expect("shutdown completes")
        .unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(rest.is_ok(), "the stream was closed");
}

#[tokio::test]
async fn health_and_readiness() {
    let gateway = TestGateway::demo(|_| {}).await;
    let health = gateway
        .http()
        .get(format!("{}/healthz", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = gateway
        .http()
        .get(format!("{}/readyz", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let orphan = TestGateway::in_front_of(&dead, |_| {}).await;
    let (status, body) = orphan.readiness().await;
    assert_eq!(status, 503);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("the connection was refused")),
        "{body}"
    );
    let init = orphan
        .post(Some(SLOW_KEY), None, rpc(1, "initialize", json!({})), &[])
        .await;
    assert_eq!(
        init.status, 503,
        "an unreachable API is not the caller's fault"
    );
}

#[tokio::test]
async fn batches_are_answered_only_in_a_2025_03_26_session() {
    let gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    let batch = json!([rpc(1, "ping", json!({})), rpc(2, "tools/list", json!({}))]);
    for (version, batched) in [("2025-03-26", true), ("2025-06-18", false)] {
        let init = gateway
            .post(
                Some(&admin),
                None,
                rpc(0, "initialize", json!({"protocolVersion": version})),
                &[],
            )
            .await;
        let session = init.headers["mcp-session-id"].to_str().unwrap().to_string();
        let reply = gateway
            .post(Some(&admin), Some(&session), batch.clone(), &[])
            .await;
        if batched {
            let replies = reply.body.as_array().expect("an array of replies");
            assert_eq!(replies.len(), 2);
            assert_eq!(replies[1]["result"]["tools"].as_array().unwrap().len(), 67);
        } else {
            assert_eq!(reply.body["error"]["code"], -32600, "{version}");
        }
    }
}

/// One `tools/call` of list_tasks in `session`, on a connection of its own (a new client), as
/// Streamable HTTP; returns the reply's `result`.
async fn list_tasks_on_a_new_connection(url: &str, key: &str, session: &str, id: i64) -> Value {
    let reply: Value = reqwest::Client::new()
        .post(format!("{url}/mcp"))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&rpc(
            id,
            "tools/call",
            json!({"name": "list_tasks", "arguments": {"limit": 1}}),
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["id"], id, "{reply}");
    reply["result"].clone()
}

/// Three lanes: a legacy SSE client whose POSTs come on connections of their own (so on other
/// lanes than its stream's) gets every reply on its stream, and six Streamable HTTP callers,
/// each on its own connection and so two per lane, sharing one session, are all answered.
#[tokio::test]
async fn calls_are_answered_whichever_lanes_their_connections_are_on() {
    let gateway = TestGateway::demo(|config| config.server.lanes = 3).await;
    let admin = gateway.admin();

    let mut stream = gateway.get(&admin, "/sse").await;
    let endpoint = read_events(&mut stream, 1).await.remove(0).1;
    let post_url = format!("{}/{endpoint}", gateway.url);
    let messages = [
        rpc(1, "initialize", json!({"protocolVersion": "2024-11-05"})),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        rpc(
            2,
            "tools/call",
            json!({"name": "list_tasks", "arguments": {"limit": 1}}),
        ),
        rpc(
            3,
            "tools/call",
            json!({"name": "list_tasks", "arguments": {"limit": 1}}),
        ),
    ];
    let mut replies = Vec::new();
    for message in messages {
        let expects_reply = message.get("id").is_some();
        let accepted = reqwest::Client::new()
            .post(&post_url)
            .bearer_auth(&admin)
            .json(&message)
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), 202);
        if expects_reply {
            let (event, data) = read_events(&mut stream, 1).await.remove(0);
            assert_eq!(event, "message");
            replies.push(serde_json::from_str::<Value>(&data).unwrap());
        }
    }
    assert_eq!(
        replies.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(),
        [json!(1), json!(2), json!(3)]
    );
    for call in &replies[1..] {
        assert_eq!(call["result"]["isError"], false, "{call}");
    }

    let session = gateway.initialize(&admin, "/mcp").await;
    let callers: Vec<_> = (0..6)
        .map(|id| {
            let (url, key, session) = (gateway.url.clone(), admin.clone(), session.clone());
            tokio::spawn(
                async move { list_tasks_on_a_new_connection(&url, &key, &session, id).await },
            )
        })
        .collect();
    for caller in callers {
        let result = caller.await.unwrap();
        assert_eq!(result["isError"], false, "{result}");
        assert!(result["structuredContent"]["data"].is_array(), "{result}");
    }
}

/// An upstream that is not the API: a web front end that answers 200 to every path, or a URL
/// that redirects (http to https, say). Every key would then be refused, so the gateway must
/// not say it is ready.
#[tokio::test]
async fn an_upstream_that_is_not_the_api_is_not_ready() {
    let pretenders = [
        (
            axum::Router::new()
                .fallback(|| async { ([("content-type", "text/html")], "<html>welcome</html>") }),
            "200",
        ),
        (
            axum::Router::new().fallback(|| async {
                (
                    axum::http::StatusCode::MOVED_PERMANENTLY,
                    [("location", "https://api.example.com/v1/api-keys/current")],
                )
            }),
            "301",
        ),
    ];
    for (app, status) in pretenders {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let gateway = TestGateway::in_front_of(&url, |_| {}).await;
        let (answer, body) = gateway.readiness().await;
        assert_eq!(answer, 503, "an upstream answering {status}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("answered {status}")), "{body}");
    }
}

/// An API whose address takes no connection (its accept queue full, so the SYN goes unanswered):
/// the gateway says connecting timed out, not that the connection was refused.
#[tokio::test]
async fn an_api_that_never_takes_the_connection_is_reported_as_a_connect_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = socket.local_addr().unwrap();
    let _never_accepting = socket.listen(0).unwrap();
    // Fill the accept queue; later SYNs are dropped (and retried) rather than answered.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(address),
        )
        .await
        {
            fillers.push(stream);
        }
    }
    let gateway = TestGateway::in_front_of(&format!("http://{address}"), |config| {
        config.upstream.timeout = Duration::from_secs(1);
    })
    .await;
    let (status, body) = gateway.readiness().await;
    assert_eq!(status, 503);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("timed out"), "{body}");
}

/// An API host name that does not resolve (`.invalid` never does, RFC 6761) is named as such.
#[tokio::test]
async fn an_api_host_that_does_not_resolve_is_named_as_such() {
    let gateway = TestGateway::in_front_of("http://no-such-api.invalid", |_| {}).await;
    let (status, body) = gateway.readiness().await;
    assert_eq!(status, 503);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("did not resolve"), "{body}");
}

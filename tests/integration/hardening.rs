//! A public endpoint under abuse, over real loopback HTTP: batches pay per message, bodies are
//! read only after the key is checked and only so fast, connections are capped, credentials in
//! URLs and loose headers are refused, the API's bodies are bounded and checked, a refused key
//! ends its sessions, the per-key cap holds under a race, busy sessions outlive idle expiry, and
//! bad keys cannot hammer the API.

use crate::gateway_fixture::{SLOW_KEY, TestGateway, read_events, text_of};
use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn init(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
}

fn address(gateway: &TestGateway) -> String {
    gateway.url.trim_start_matches("http://").to_string()
}

/// Reads whatever the server sends until it closes or `within` passes; None on a timeout.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&received).into()),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

#[tokio::test]
async fn every_message_of_a_batch_counts_and_large_batches_are_refused() {
    let gateway = TestGateway::demo(|config| config.server.max_batch = 40).await;
    let admin = gateway.admin();
    let reply = gateway
        .post_raw(
            Some(&admin),
            None,
            init("2025-03-26").to_string(),
            &[],
            "/mcp",
        )
        .await;
    let session = reply.headers["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let batch = |size: usize| {
        Value::Array(
            (0..size)
                .map(|n| json!({"jsonrpc": "2.0", "id": n + 1, "method": "ping"}))
                .collect(),
        )
    };
    let too_big = gateway
        .post(Some(&admin), Some(&session), batch(41), &[])
        .await;
    assert_eq!(too_big.status, 400);
    assert!(
        too_big.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 40"),
        "{}",
        too_big.body
    );
    // 600 a minute is a burst of 100: two batches of 40 fit (with initialize), a third does not.
    for _ in 0..2 {
        let answered = gateway
            .post(Some(&admin), Some(&session), batch(40), &[])
            .await;
        assert_eq!(answered.status, 200, "{}", answered.body);
        assert_eq!(answered.body.as_array().unwrap().len(), 40);
    }
    let limited = gateway
        .post(Some(&admin), Some(&session), batch(40), &[])
        .await;
    assert_eq!(
        limited.status, 429,
        "each message of a batch counts: {}",
        limited.body
    );
    assert!(limited.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn bodies_are_refused_before_they_are_read_and_slow_ones_are_cut_off() {
    let gateway = TestGateway::demo(|config| {
        config.server.header_read_timeout = Duration::from_secs(1);
        config.server.body_read_timeout = Duration::from_secs(1);
    })
    .await;
    let at = address(&gateway);
    // A huge declared length: 413 at once, with no body sent.
    let mut huge = TcpStream::connect(&at).await.unwrap();
    huge.write_all(
        format!("POST /mcp HTTP/1.1\r\nHost: {at}\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut huge, Duration::from_secs(3)).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 413")),
        "{answer:?}"
    );
    // No key: 401 once the headers are in, without waiting for the body it announced.
    let mut anonymous = TcpStream::connect(&at).await.unwrap();
    let started = Instant::now();
    anonymous
        .write_all(
            format!("POST /mcp HTTP/1.1\r\nHost: {at}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: 4000000\r\n\r\n{{\"jsonrpc\"")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_millis(800), anonymous.read(&mut buffer))
        .await
        .expect("an answer before the body")
        .unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 401"));
    assert!(started.elapsed() < Duration::from_millis(800));
    // Half-sent headers and a bare connect: closed after the header timeout.
    let mut half = TcpStream::connect(&at).await.unwrap();
    half.write_all(b"POST /mcp HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut bare = TcpStream::connect(&at).await.unwrap();
    for stream in [&mut half, &mut bare] {
        let ended = read_until_closed(stream, Duration::from_secs(4)).await;
        assert!(
            ended.is_some(),
            "the connection is closed after the header timeout"
        );
    }
    // A key, then a body that trickles: 408 after the body timeout.
    let mut slow = TcpStream::connect(&at).await.unwrap();
    let admin = gateway.admin();
    slow.write_all(
        format!("POST /mcp HTTP/1.1\r\nHost: {at}\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: 100\r\n\r\n{{")
            .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut slow, Duration::from_secs(4)).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 408")),
        "{answer:?}"
    );
}

/// A refusal answered before the body is read closes the connection, and says so: otherwise a
/// keep-alive client (httpx, in the Python SDK's sign-in) sends its next request on a connection
/// the server is closing, and gets "disconnected without a response". A refusal after the body
/// was read keeps the connection.
#[tokio::test]
async fn a_refusal_before_the_body_is_read_says_the_connection_closes() {
    let gateway = TestGateway::demo(|_| {}).await;
    let at = address(&gateway);
    let body = init("2025-06-18").to_string();
    let admin = gateway.admin();
    for (refusal, headers) in [
        (
            "401",
            "Accept: application/json\r\nContent-Type: application/json\r\n".to_string(),
        ),
        (
            "415",
            format!(
                "Authorization: Bearer {admin}\r\nAccept: application/json\r\nContent-Type: text/plain\r\n"
            ),
        ),
        (
            "406",
            format!(
                "Authorization: Bearer {admin}\r\nAccept: text/html\r\nContent-Type: application/json\r\n"
            ),
        ),
    ] {
        let mut stream = TcpStream::connect(&at).await.unwrap();
        // The head alone: the body is held back until the answer is in, as a slow network would.
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {at}\r\n{headers}Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut stream, Duration::from_secs(5))
            .await
            .expect("the refused connection is closed");
        let lower = answer.to_ascii_lowercase();
        assert!(
            lower.starts_with(&format!("http/1.1 {refusal}")),
            "{answer}"
        );
        assert!(lower.contains("\r\nconnection: close\r\n"), "{answer}");
    }
    // Refused after the body was read (it does not parse): the connection serves the next request.
    let mut stream = TcpStream::connect(&at).await.unwrap();
    let bad = "{not json";
    stream
        .write_all(
            format!("POST /mcp HTTP/1.1\r\nHost: {at}\r\nAuthorization: Bearer {admin}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{bad}GET /healthz HTTP/1.1\r\nHost: {at}\r\nConnection: close\r\n\r\n", bad.len())
                .as_bytes(),
        )
        .await
        .unwrap();
    let answers = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("both answered, then closed");
    assert!(answers.starts_with("HTTP/1.1 400"), "{answers}");
    assert_eq!(answers.matches("HTTP/1.1 ").count(), 2, "{answers}");
    assert!(answers.contains("HTTP/1.1 200"), "{answers}");
}

#[tokio::test]
async fn connections_per_address_are_capped() {
    let gateway = TestGateway::demo(|config| config.server.max_connections_per_ip = 3).await;
    let at = address(&gateway);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&at).await.unwrap());
    }
    let mut fourth = TcpStream::connect(&at).await.unwrap();
    let answer = read_until_closed(&mut fourth, Duration::from_secs(2)).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 503") && a.contains("too_many_connections")),
        "{answer:?}"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let health = gateway
        .http()
        .get(format!("{}/healthz", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        200,
        "a place frees when a connection closes"
    );
}

#[tokio::test]
async fn credentials_in_urls_and_loose_headers_are_refused() {
    let gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    let encoded = admin.replacen('_', "%5F", 1);
    let lower = admin.replacen('_', "%5f", 1);
    for path in [
        format!("/mcp?api_key={encoded}"),
        format!("/mcp?x={lower}"),
        "/mcp?access_token=abc".to_string(),
        "/mcp?Api-Key=abc".to_string(),
    ] {
        let reply = gateway
            .post_raw(
                Some(&admin),
                None,
                init("2025-06-18").to_string(),
                &[],
                &path,
            )
            .await;
        assert_eq!(reply.status, 401, "{path}");
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("never accepted in the URL"), "{message}");
        assert!(!message.contains(&admin[4..]), "the key is never echoed");
    }
    let post = |content_type: Option<&'static str>, accept: Option<&'static str>| {
        let mut request = gateway
            .http()
            .post(format!("{}/mcp", gateway.url))
            .bearer_auth(&admin)
            .body(init("2025-06-18").to_string());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        request.send()
    };
    let both = Some("application/json, text/event-stream");
    for wrong in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        assert_eq!(post(wrong, both).await.unwrap().status(), 415, "{wrong:?}");
    }
    assert_eq!(
        post(Some("application/json"), Some("text/html"))
            .await
            .unwrap()
            .status(),
        406
    );
    // reqwest always sends an Accept; without one at all, 406 too.
    let at = address(&gateway);
    let body = init("2025-06-18").to_string();
    let mut no_accept = TcpStream::connect(&at).await.unwrap();
    no_accept
        .write_all(
            format!(
                "POST /mcp HTTP/1.1\r\nHost: {at}\r\nAuthorization: Bearer {admin}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut no_accept, Duration::from_secs(3)).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 406")),
        "{answer:?}"
    );
    let json_only = post(
        Some("application/json; charset=utf-8"),
        Some("application/json"),
    )
    .await
    .unwrap();
    assert_eq!(json_only.status(), 200);
    assert_eq!(json_only.headers()["content-type"], "application/json");
    let stream_only = post(Some("application/json"), Some("text/event-stream"))
        .await
        .unwrap();
    assert_eq!(stream_only.status(), 200);
    assert_eq!(stream_only.headers()["content-type"], "text/event-stream");
    let two_keys = gateway
        .http()
        .post(format!("{}/mcp", gateway.url))
        .header("authorization", format!("Bearer {admin}"))
        .header("authorization", "Bearer tak_AAAAAAAAAAAAAAAAAAAA")
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(init("2025-06-18").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(two_keys.status(), 400);
}

/// An API whose introspection accepts `SLOW_KEY` and whose get_task answers with `body` and
/// `status`, repeated `repeat` times (streamed); counts the bytes it managed to send.
async fn scripted_api(
    status: u16,
    body: &'static str,
    repeat: usize,
    sent: Arc<AtomicUsize>,
) -> String {
    let app = Router::new()
        .route(
            "/v1/api-keys/current",
            get(|| async {
                axum::Json(json!({"id": "key_0123456789ab", "tenant_id": "ten_0123456789ab", "tenant_name": "T",
                    "name": "k", "scopes": ["read:tasks"], "prefix": "tak_AAAAAAAA", "expires_at": null}))
            }),
        )
        .route(
            "/v1/tasks/{id}",
            get(move || {
                let sent = sent.clone();
                async move {
                    let chunks = futures_stream(body, repeat, sent);
                    axum::response::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from_stream(chunks))
                        .unwrap()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// `body` `repeat` times, as a stream of chunks that counts what was taken.
fn futures_stream(
    body: &'static str,
    repeat: usize,
    sent: Arc<AtomicUsize>,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    struct Chunks(usize, &'static str, Arc<AtomicUsize>);
    impl futures_core::Stream for Chunks {
        type Item = Result<bytes::Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(None);
            }
            self.0 -= 1;
            self.2.fetch_add(self.1.len(), Ordering::SeqCst);
            std::task::Poll::Ready(Some(Ok(bytes::Bytes::from_static(self.1.as_bytes()))))
        }
    }
    Chunks(repeat, body, sent)
}

async fn get_task_through(
    api: &str,
    configure: impl FnOnce(&mut trainar_mcp::gateway::GatewayConfig),
) -> Value {
    let gateway = TestGateway::in_front_of(api, configure).await;
    let session = gateway.initialize(SLOW_KEY, "/mcp").await;
    gateway
        .call_tool(
            SLOW_KEY,
            &session,
            "get_task",
            json!({"task_id": "tsk_0000000000000000"}),
        )
        .await
}

#[tokio::test]
async fn the_apis_bodies_are_bounded_checked_and_its_errors_kept() {
    // A 5xx with the API's Error JSON: its code and message reach the caller.
    let sent = Arc::new(AtomicUsize::new(0));
    let maintenance =
        r#"{"error":{"code":"maintenance","message":"down for maintenance until 10:00"}}"#;
    let api = scripted_api(503, maintenance, 1, sent).await;
    let result = get_task_through(&api, |_| {}).await;
    assert_eq!(result["isError"], true);
    let text = text_of(&result);
    assert!(
        text.contains("maintenance") && text.contains("until 10:00"),
        "{text}"
    );

    // A body that breaks the outputSchema: a tool error naming the field.
    let sent = Arc::new(AtomicUsize::new(0));
    let api = scripted_api(200, r#"{"id":42,"title":"x"}"#, 1, sent).await;
    let result = get_task_through(&api, |_| {}).await;
    assert_eq!(result["isError"], true);
    let text = text_of(&result);
    assert!(
        text.contains("`id`") && text.contains("output schema"),
        "{text}"
    );
    assert!(result.get("structuredContent").is_none());

    // 50 MB streamed: cut off at the 1 MB cap; the gateway stops reading long before the end.
    let sent = Arc::new(AtomicUsize::new(0));
    let chunk: &'static str =
        Box::leak(format!("{{\"x\":\"{}\"}}", "a".repeat(64 * 1024)).into_boxed_str());
    let api = scripted_api(200, chunk, 800, sent.clone()).await;
    let result =
        get_task_through(&api, |config| config.upstream.max_body_bytes = 1024 * 1024).await;
    assert_eq!(result["isError"], true);
    let text = text_of(&result);
    assert!(
        text.contains("over this gateway's limit of 1048576 bytes"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let streamed = sent.load(Ordering::SeqCst);
    assert!(
        streamed < 20 * 1024 * 1024,
        "the gateway read on to {streamed} bytes"
    );
}

#[tokio::test]
async fn a_key_the_api_refuses_ends_its_sessions_and_streams() {
    let gateway = TestGateway::demo(|_| {}).await;
    let key = gateway
        .sandbox()
        .key_with(&["read:tasks", "read:users"])
        .await;
    let mut stream = gateway.get(&key, "/sse").await;
    let endpoint = read_events(&mut stream, 1).await.remove(0).1;
    let session = gateway.initialize(&key, "/mcp").await;
    let keys = gateway
        .sandbox()
        .expect(200, &gateway.admin(), "GET", "/v1/api-keys?limit=100", None)
        .await;
    let key_id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"].as_str().is_some_and(|p| key.starts_with(p)))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    gateway
        .sandbox()
        .expect(
            200,
            &gateway.admin(),
            "POST",
            &format!("/v1/api-keys/{key_id}/revoke"),
            Some(json!({})),
        )
        .await;
    // The gateway still trusts its cache; the API refuses the call, and the gateway learns.
    let refused = gateway
        .call_tool(&key, &session, "list_tasks", json!({"limit": 1}))
        .await;
    assert_eq!(refused["isError"], true);
    assert!(text_of(&refused).contains("no longer accepts this API key"));
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match stream.chunk().await {
                Ok(Some(chunk)) if chunk.starts_with(b":") => continue,
                other => return other.map(|c| c.is_none()).unwrap_or(true),
            }
        }
    })
    .await;
    assert_eq!(ended.ok(), Some(true), "the key's SSE stream ends");
    let after = gateway
        .post_raw(
            Some(&key),
            None,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
            &[],
            &format!("/{endpoint}"),
        )
        .await;
    assert!(matches!(after.status, 401 | 404), "{}", after.status);
}

#[tokio::test]
async fn the_session_cap_holds_under_a_race() {
    let gateway = Arc::new(TestGateway::demo(|config| config.server.sessions_per_key = 2).await);
    let key = gateway.sandbox().key_with(&["read:tasks"]).await;
    let mut racers = Vec::new();
    for _ in 0..60 {
        let (gateway, key) = (gateway.clone(), key.clone());
        racers.push(tokio::spawn(async move { gateway.get(&key, "/sse").await }));
    }
    let mut open = Vec::new();
    for racer in racers {
        let response = racer.await.unwrap();
        match response.status().as_u16() {
            200 => open.push(response),
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        open.len(),
        2,
        "streams are never evicted: exactly the cap are open"
    );
}

#[tokio::test]
async fn a_busy_session_outlives_idle_expiry() {
    let abandoned = Arc::new(AtomicBool::new(false));
    let api = crate::gateway_fixture::hanging_api(abandoned).await;
    let gateway = TestGateway::in_front_of(&api, |config| {
        config.server.idle_timeout = Duration::from_millis(500);
        config.upstream.timeout = Duration::from_secs(3);
    })
    .await;
    let session = gateway.initialize(SLOW_KEY, "/mcp").await;
    let call = {
        let http = gateway.http().clone();
        let (url, session) = (gateway.url.clone(), session.clone());
        tokio::spawn(async move {
            http.post(format!("{url}/mcp"))
                .bearer_auth(SLOW_KEY)
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .header("mcp-session-id", session)
                .body(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                    "params": {"name": "get_task", "arguments": {"task_id": "tsk_0000000000000000"}}}).to_string())
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // Three idle timeouts pass while the call waits on the API.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ping = json!({"jsonrpc": "2.0", "id": 4, "method": "ping"});
    let alive = gateway
        .post(Some(SLOW_KEY), Some(&session), ping, &[])
        .await;
    assert_eq!(
        alive.status, 200,
        "the session was kept while its call was in flight"
    );
    assert_eq!(call.await.unwrap(), 200);
}

#[tokio::test]
async fn unknown_keys_from_one_address_cannot_hammer_the_api() {
    let lookups = Arc::new(AtomicUsize::new(0));
    let counted = lookups.clone();
    let app = Router::new().route(
        "/v1/api-keys/current",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    axum::Json(
                        json!({"error": {"code": "unauthorized", "message": "unknown API key"}}),
                    ),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let gateway = TestGateway::in_front_of(&api, |_| {}).await;
    let mut throttled = 0;
    for n in 0..100 {
        let key = format!("tak_{n:0>40}");
        let reply = gateway
            .post_raw(
                Some(&key),
                None,
                init("2025-06-18").to_string(),
                &[],
                "/mcp",
            )
            .await;
        match reply.status {
            401 => {}
            429 => throttled += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let asked = lookups.load(Ordering::SeqCst);
    assert!(asked <= 12, "{asked} of 100 unknown keys reached the API");
    assert!(throttled >= 85, "{throttled} refused here");
}

#[tokio::test]
async fn a_retried_create_runs_once() {
    let gateway = TestGateway::demo(|_| {}).await;
    let admin = gateway.admin();
    // The sandbox itself: same key and body, one task; the same key for another body, 400.
    let http = gateway.http();
    let post = |key: &'static str, title: &'static str| {
        http.post(format!("{}/v1/tasks", gateway.sandbox().url))
            .bearer_auth(&admin)
            .header("idempotency-key", key)
            .json(&json!({"title": title}))
            .send()
    };
    let first: Value = post("order-7", "once").await.unwrap().json().await.unwrap();
    let again = post("order-7", "once").await.unwrap();
    assert_eq!(again.status(), 201);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        first["id"], again["id"],
        "the kept answer, not a second task"
    );
    let reused = post("order-7", "another").await.unwrap();
    assert_eq!(reused.status(), 400);
    let bad = post("has space", "x").await.unwrap();
    assert_eq!(bad.status(), 400);

    // Through the gateway: a client's retry of the same request (same session, same JSON-RPC
    // id, e.g. after a lost reply) creates once; another request creates anew.
    let session = gateway.initialize(&admin, "/mcp").await;
    let create = |id: i64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "create_task", "arguments": {"title": "retried"}}})
    };
    let sent = gateway
        .post(Some(&admin), Some(&session), create(42), &[])
        .await;
    let retried = gateway
        .post(Some(&admin), Some(&session), create(42), &[])
        .await;
    let other = gateway
        .post(Some(&admin), Some(&session), create(43), &[])
        .await;
    let id_of = |reply: &crate::gateway_fixture::Exchange| {
        reply.body["result"]["structuredContent"]["id"].clone()
    };
    assert!(id_of(&sent).is_string(), "{}", sent.body);
    assert_eq!(
        id_of(&sent),
        id_of(&retried),
        "the retry got the first answer"
    );
    assert_ne!(id_of(&sent), id_of(&other), "a new request is a new task");
    // A client that reuses an id for another request is not mistaken for a retry.
    let reused_id = json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call",
        "params": {"name": "create_task", "arguments": {"title": "retried", "description": "another"}}});
    let reused_id = gateway
        .post(Some(&admin), Some(&session), reused_id, &[])
        .await;
    assert_eq!(
        reused_id.body["result"]["isError"], false,
        "{}",
        reused_id.body
    );
    assert_ne!(id_of(&reused_id), id_of(&sent));
    let listed = gateway
        .sandbox()
        .expect(200, &admin, "GET", "/v1/tasks?limit=100", None)
        .await;
    let created = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|task| task["title"] == "retried")
        .count();
    assert_eq!(
        created, 3,
        "three requests, three tasks, whatever the retries"
    );
}

#[tokio::test]
async fn a_request_id_already_in_flight_is_refused_and_the_first_call_goes_on() {
    let abandoned = Arc::new(AtomicBool::new(false));
    let api = crate::gateway_fixture::hanging_api(abandoned.clone()).await;
    let gateway = TestGateway::in_front_of(&api, |config| {
        config.upstream.timeout = Duration::from_secs(2);
    })
    .await;
    let session = gateway.initialize(SLOW_KEY, "/mcp").await;
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "get_task", "arguments": {"task_id": "tsk_0000000000000000"}}});
    let first = {
        let http = gateway.http().clone();
        let (url, session, call) = (gateway.url.clone(), session.clone(), call.clone());
        tokio::spawn(async move {
            let reply: Value = http
                .post(format!("{url}/mcp"))
                .bearer_auth(SLOW_KEY)
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .header("mcp-session-id", session)
                .body(call.to_string())
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            reply
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = gateway
        .post(Some(SLOW_KEY), Some(&session), call, &[])
        .await;
    assert_eq!(second.body["id"], 5, "{}", second.body);
    assert_eq!(second.body["error"]["code"], -32600, "{}", second.body);
    assert!(
        second.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already in flight"),
        "{}",
        second.body
    );
    // The first call was not cancelled by the second: it runs to its own end (here the API's
    // timeout, answered as a tool error).
    let first = first.await.unwrap();
    assert_eq!(first["id"], 5, "{first}");
    assert_eq!(first["result"]["isError"], true, "{first}");
    // The API sees its connection dropped a moment after the gateway answered: wait for it.
    assert!(
        crate::gateway_fixture::until_abandoned(&abandoned).await,
        "the API call ran until the timeout, and was then given up"
    );
}

/// A body over the cap is the gateway's refusal, not the API's failure: the audit trail (and the
/// upstream-status metric) keep the status the API sent, not the 502 standing in for the body.
#[tokio::test]
async fn a_body_over_the_cap_is_recorded_with_the_status_the_api_sent() {
    let sent = Arc::new(AtomicUsize::new(0));
    let chunk: &'static str =
        Box::leak(format!("{{\"x\":\"{}\"}}", "a".repeat(64 * 1024)).into_boxed_str());
    let api = scripted_api(200, chunk, 40, sent).await;
    let dir = crate::sandbox_fixture::fresh_dir("audit-too-large");
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.log");
    let result = get_task_through(&api, |config| {
        config.upstream.max_body_bytes = 1024 * 1024;
        config.audit_log = Some(audit.clone());
    })
    .await;
    assert_eq!(result["isError"], true);
    let line = crate::common::line_with(&audit, &["\"tool\":\"get_task\""]).await;
    let record: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["tool"], "get_task", "{record}");
    assert_eq!(record["upstream_status"], 200, "{record}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An idle lifetime of 0 s would keep idle connections open and reuse none of them: refused at
/// start, naming the flag.
#[test]
fn an_upstream_idle_lifetime_of_zero_is_refused_at_start() {
    let mut serving = crate::common::binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--upstream"])
        .arg("http://127.0.0.1:9")
        .args(["--upstream-pool-idle-secs", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut exited = None;
    for _ in 0..100 {
        exited = serving.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if exited.is_none() {
        let _ = serving.kill();
    }
    let output = serving.wait_with_output().unwrap();
    assert!(exited.is_some_and(|status| !status.success()), "it served");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("--upstream-pool-idle-secs"), "{said}");
    assert!(said.contains("0 is not in 1.."), "{said}");
}

/// A call whose client went away (its response stream closed) is over: its id may be used again
/// in the session, and the session may go idle.
#[tokio::test]
async fn an_abandoned_call_frees_its_request_id() {
    let (abandoned, arrived) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let api =
        crate::gateway_fixture::hanging_api_seeing(abandoned.clone(), Arc::clone(&arrived)).await;
    let gateway = TestGateway::in_front_of(&api, |_| {}).await;
    let session = gateway.initialize(SLOW_KEY, "/mcp").await;
    // A tool whose calls stream their progress (a skill runs for a while).
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "execute_skill",
        "arguments": {"skill_id": "skl_0123456789abcdef", "arguments": {}},
        "_meta": {"progressToken": "p"}}});
    let send = || {
        gateway
            .http()
            .post(format!("{}/mcp", gateway.url))
            .bearer_auth(SLOW_KEY)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .body(call.to_string())
            .send()
    };
    let mut first = send().await.unwrap();
    assert_eq!(first.headers()["content-type"], "text/event-stream");
    read_events(&mut first, 1).await;
    assert!(crate::gateway_fixture::until_set(&arrived).await);
    drop(first);
    assert!(
        crate::gateway_fixture::until_abandoned(&abandoned).await,
        "closing the stream gave the call up"
    );
    arrived.store(false, Ordering::SeqCst);
    let mut again = send().await.unwrap();
    // Refused, it would be a JSON error at once; running, it streams its progress.
    if again.headers()["content-type"] != "text/event-stream" {
        panic!("the id is still taken: {}", again.text().await.unwrap());
    }
    read_events(&mut again, 1).await;
    assert!(
        crate::gateway_fixture::until_set(&arrived).await,
        "the retry reached the API"
    );
}

/// Ending a session part-way through a batch ends the batch: what was not yet called is not.
#[tokio::test]
async fn a_batch_stops_when_its_session_ends() {
    let calls = Arc::new(AtomicUsize::new(0));
    let api =
        crate::gateway_fixture::hanging_api_counting(Arc::default(), Arc::default(), calls.clone())
            .await;
    let gateway = TestGateway::in_front_of(&api, |_| {}).await;
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let reply = gateway.post(Some(SLOW_KEY), None, init, &[]).await;
    let session = reply.headers["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let get = |id: i64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "get_task", "arguments": {"task_id": "tsk_0000000000000000"}}})
    };
    let batch = json!([get(1), get(2), get(3)]);
    let post = {
        let (http, url, session) = (gateway.http().clone(), gateway.url.clone(), session.clone());
        tokio::spawn(async move {
            http.post(format!("{url}/mcp"))
                .bearer_auth(SLOW_KEY)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", session)
                .body(batch.to_string())
                .send()
                .await
        })
    };
    for _ in 0..100 {
        if calls.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the first call reached the API"
    );
    let ended = gateway
        .http()
        .delete(format!("{}/mcp", gateway.url))
        .bearer_auth(SLOW_KEY)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(ended.status().is_success(), "{}", ended.status());
    let _ = tokio::time::timeout(Duration::from_secs(5), post).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "calls after the session ended reached the API"
    );
}

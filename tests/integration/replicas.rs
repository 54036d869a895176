//! Several replicas on one Redis, with real parts (redis-server, haproxy, the built binary): a
//! session opened on one replica is used on the others, limits hold across them, cancels reach
//! the replica running the call, a killed replica or Redis costs only what it held, and the
//! Python SDK works through a round-robin load balancer.

use crate::gateway_fixture::{SLOW_KEY, hanging_api, read_events, until_abandoned};
use crate::replicas_fixture::Cluster;
use crate::sandbox_fixture::TestSandbox;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// A raw MCP client for one key, aimed at any replica per request.
struct Client {
    http: reqwest::Client,
    key: String,
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Client {
    fn new(key: &str) -> Client {
        trainar_mcp::install_tls_provider();
        Client {
            http: reqwest::Client::new(),
            key: key.to_string(),
        }
    }

    async fn post(&self, url: &str, session: Option<&str>, message: Value) -> Answer {
        let mut request = self
            .http
            .post(url)
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .timeout(Duration::from_secs(20))
            .body(message.to_string());
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// initialize on `base`; returns the session id.
    async fn initialize(&self, base: &str) -> String {
        let answer = self.post(&format!("{base}/mcp"), None, initialize()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.headers["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string()
    }

    async fn in_session(
        &self,
        base: &str,
        session: &str,
        id: i64,
        method: &str,
        params: Value,
    ) -> Answer {
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.post(&format!("{base}/mcp"), Some(session), message)
            .await
    }

    /// GET /sse on `base`: the stream and its POST endpoint (as an absolute path).
    async fn open_stream(&self, base: &str) -> (reqwest::Response, String) {
        let mut stream = self
            .http
            .get(format!("{base}/sse"))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        let endpoint = read_events(&mut stream, 1).await.remove(0);
        assert_eq!(endpoint.0, "endpoint");
        (stream, format!("/{}", endpoint.1.trim_start_matches('/')))
    }

    /// POST /messages on `base` for the stream's `endpoint`; returns the HTTP status.
    async fn message(&self, base: &str, endpoint: &str, message: Value) -> u16 {
        self.post(&format!("{base}{endpoint}"), None, message)
            .await
            .status
    }
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "replicas-test", "version": "1"}}})
}

/// Reads events from `stream` until the reply to request `id`; returns every message seen.
async fn until_reply(stream: &mut reqwest::Response, id: i64) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let (_, data) = read_events(stream, 1).await.remove(0);
        let message: Value = serde_json::from_str(&data).unwrap();
        let done = message["id"] == json!(id);
        seen.push(message);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_on_one_replica_is_used_on_the_others() {
    let sandbox = TestSandbox::demo().await;
    let cluster = Cluster::start(&sandbox.url, 3, &[]);
    let (a, b, c) = (cluster.url(0), cluster.url(1), cluster.url(2));
    let client = Client::new(&sandbox.admin);

    // Streamable HTTP: opened on A, used on B and C, ended on B for everyone.
    let session = client.initialize(a).await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(
        client
            .post(&format!("{b}/mcp"), Some(&session), initialized)
            .await
            .status,
        202
    );
    let listed = client
        .in_session(b, &session, 1, "tools/list", json!({}))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(
        !listed.body["result"]["tools"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let called = client
        .in_session(
            c,
            &session,
            2,
            "tools/call",
            json!({"name": "list_tasks", "arguments": {"limit": 2}}),
        )
        .await;
    assert_eq!(called.status, 200);
    assert_eq!(called.body["result"]["isError"], false, "{}", called.body);
    let deleted = client
        .http
        .delete(format!("{b}/mcp"))
        .bearer_auth(&sandbox.admin)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    for replica in [a, b, c] {
        let after = client
            .in_session(replica, &session, 3, "tools/list", json!({}))
            .await;
        assert_eq!(after.status, 404, "ended everywhere: {}", after.body);
    }
    let other_key = Client::new(&sandbox.key_with(&["read:tasks"]).await);
    let session = client.initialize(a).await;
    let stolen = other_key
        .in_session(b, &session, 1, "tools/list", json!({}))
        .await;
    assert_eq!(
        stolen.status, 404,
        "a session is bound to its key on every replica"
    );

    // Legacy SSE: the stream on A, the POSTs on B and C; replies, progress and log messages all
    // arrive on A's stream.
    let (mut stream, endpoint) = client.open_stream(a).await;
    assert_eq!(client.message(b, &endpoint, initialize()).await, 202);
    let reply = until_reply(&mut stream, 0).await;
    assert!(
        reply[0]["result"]["protocolVersion"].is_string(),
        "{reply:?}"
    );
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(client.message(c, &endpoint, initialized).await, 202);
    let set_level = json!({"jsonrpc": "2.0", "id": 1, "method": "logging/setLevel", "params": {"level": "info"}});
    assert_eq!(client.message(c, &endpoint, set_level).await, 202);
    until_reply(&mut stream, 1).await;
    let skills = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "list_skills", "arguments": {"status": "published", "limit": 1}}});
    assert_eq!(client.message(b, &endpoint, skills).await, 202);
    let skills = until_reply(&mut stream, 2).await;
    let skill = skills.last().unwrap()["result"]["structuredContent"]["data"][0].clone();
    let arguments = sample_arguments(&skill["input_schema"]);
    let execute = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "execute_skill", "_meta": {"progressToken": "p-1"},
        "arguments": {"skill_id": skill["id"], "dry_run": true, "arguments": arguments}}});
    assert_eq!(client.message(c, &endpoint, execute).await, 202);
    let seen = until_reply(&mut stream, 3).await;
    let methods: Vec<&str> = seen.iter().filter_map(|m| m["method"].as_str()).collect();
    assert!(methods.contains(&"notifications/progress"), "{seen:?}");
    assert!(
        methods.contains(&"notifications/message"),
        "the log level set on C holds on B: {seen:?}"
    );
    assert_eq!(seen.last().unwrap()["result"]["isError"], false, "{seen:?}");
}

/// Values for a skill's required arguments, enough to pass its input_schema.
fn sample_arguments(schema: &Value) -> Value {
    let mut arguments = serde_json::Map::new();
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap();
        let value = match schema["properties"][name]["type"].as_str() {
            Some("integer" | "number") => json!(1),
            Some("boolean") => json!(true),
            _ => json!("FL-7"),
        };
        arguments.insert(name.to_string(), value);
    }
    Value::Object(arguments)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_and_the_session_cap_hold_across_replicas() {
    let sandbox = TestSandbox::demo().await;
    let flags = ["--rate-limit-per-minute", "60", "--sessions-per-key", "2"];
    let cluster = Cluster::start(&sandbox.url, 3, &flags);
    // 60 a minute is a burst of 10: spread over three replicas, still 10 (not 30).
    let client = Client::new(&sandbox.key_with(&["read:tasks"]).await);
    let started = Instant::now();
    let mut admitted = 0;
    for n in 0..30 {
        let ping = json!({"jsonrpc": "2.0", "id": n, "method": "ping"});
        let answer = client
            .post(&format!("{}/mcp", cluster.url(n % 3)), None, ping)
            .await;
        match answer.status {
            200 => admitted += 1,
            429 => assert!(answer.headers.contains_key("retry-after")),
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    // One more request refills each second.
    let refilled = started.elapsed().as_secs() as i32;
    assert!(
        (10..=10 + refilled + 1).contains(&admitted),
        "{admitted} of 30 admitted in {refilled} s"
    );

    // Streams are never evicted: two on A and B fill the cap; C refuses a third.
    let streams = Client::new(&sandbox.key_with(&["read:users"]).await);
    let first = streams.open_stream(cluster.url(0)).await;
    let _second = streams.open_stream(cluster.url(1)).await;
    let third = streams
        .http
        .get(format!("{}/sse", cluster.url(2)))
        .bearer_auth(&streams.key)
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.text().await.unwrap().contains("too_many_sessions"));
    drop(first);
    let mut reopened = None;
    for _ in 0..50 {
        let response = streams
            .http
            .get(format!("{}/sse", cluster.url(2)))
            .bearer_auth(&streams.key)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reopened.is_some(),
        "a closed stream frees its place on every replica"
    );

    // Concurrent initializes on three replicas never leave more than the cap.
    let racer = Arc::new(Client::new(&sandbox.key_with(&["read:skills"]).await));
    let mut tasks = Vec::new();
    for n in 0..24 {
        let racer = racer.clone();
        let url = format!("{}/mcp", cluster.url(n % 3));
        tasks.push(tokio::spawn(async move {
            racer.post(&url, None, initialize()).await.status
        }));
    }
    for task in tasks {
        assert!(matches!(task.await.unwrap(), 200 | 429));
    }
    // How the gateway names a key in Redis: the SHA-256 of the secret, never the secret.
    let fingerprint = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(racer.key.as_bytes()))
    };
    let held: usize = redis_query(
        &cluster.redis.url(),
        redis::cmd("ZCARD").arg(format!("trainar:key-sessions:{fingerprint}")),
    )
    .await;
    assert!(held <= 2, "{held} sessions held with a cap of 2");
}

async fn redis_query<T: redis::FromRedisValue>(url: &str, command: &redis::Cmd) -> T {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    command.query_async(&mut connection).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_replica_running_the_call() {
    let abandoned = Arc::new(AtomicBool::new(false));
    let api = hanging_api(abandoned.clone()).await;
    let cluster = Cluster::start(&api, 2, &[]);
    let client = Arc::new(Client::new(SLOW_KEY));
    let session = client.initialize(cluster.url(0)).await;
    let call = {
        let (client, url, session) = (client.clone(), cluster.url(0).to_string(), session.clone());
        tokio::spawn(async move {
            client
                .in_session(
                    &url,
                    &session,
                    5,
                    "tools/call",
                    json!({"name": "get_task", "arguments": {"task_id": "tsk_0000000000000000"}}),
                )
                .await
                .status
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 5, "reason": "user"}});
    let answer = client
        .post(&format!("{}/mcp", cluster.url(1)), Some(&session), cancel)
        .await;
    assert_eq!(answer.status, 202);
    assert!(
        until_abandoned(&abandoned).await,
        "the upstream request was abandoned on replica A"
    );
    assert_eq!(
        call.await.unwrap(),
        202,
        "a cancelled request gets no reply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_takes_only_its_own_streams() {
    let sandbox = TestSandbox::demo().await;
    let mut cluster = Cluster::start(&sandbox.url, 3, &[]);
    let client = Client::new(&sandbox.admin);
    let (mut doomed_stream, doomed_endpoint) = client.open_stream(cluster.url(0)).await;
    let (mut surviving_stream, surviving_endpoint) = client.open_stream(cluster.url(1)).await;
    let streamable = client.initialize(cluster.url(0)).await;

    cluster.replicas[0].kill();
    let ended = tokio::time::timeout(Duration::from_secs(5), doomed_stream.chunk()).await;
    assert!(
        matches!(ended, Ok(Ok(None)) | Ok(Err(_))),
        "the killed replica's stream ends"
    );
    // Its sessions are gone once its heartbeat lapses (5 s): the next POST is 404.
    let (b, c) = (cluster.url(1).to_string(), cluster.url(2).to_string());
    let mut status = 0;
    for _ in 0..80 {
        status = client.message(&c, &doomed_endpoint, initialize()).await;
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 404, "a session whose stream died is unknown");
    // Sessions held elsewhere go on.
    assert_eq!(
        client.message(&c, &surviving_endpoint, initialize()).await,
        202
    );
    assert!(until_reply(&mut surviving_stream, 0).await[0]["result"].is_object());
    let listed = client
        .in_session(&b, &streamable, 1, "tools/list", json!({}))
        .await;
    assert_eq!(
        listed.status, 200,
        "a Streamable HTTP session outlives the replica that opened it"
    );
    let fresh = client.initialize(&c).await;
    assert_eq!(
        client
            .in_session(&b, &fresh, 1, "ping", json!({}))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_gives_503_then_recovers_by_itself() {
    let sandbox = TestSandbox::demo().await;
    let mut cluster = Cluster::start(&sandbox.url, 2, &[]);
    let client = Client::new(&sandbox.admin);
    let session = client.initialize(cluster.url(0)).await;

    cluster.redis.kill();
    let started = Instant::now();
    let refused = client
        .in_session(cluster.url(1), &session, 1, "tools/list", json!({}))
        .await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused promptly, not hung"
    );
    let opening = client
        .post(&format!("{}/mcp", cluster.url(0)), None, initialize())
        .await;
    assert_eq!(opening.status, 503);
    assert!(
        opening.body.to_string().contains("2026-07-28"),
        "the 503 names the way out"
    );

    // The stateless era needs no Redis.
    let stateless = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}}});
    let answer = client
        .http
        .post(format!("{}/mcp", cluster.url(1)))
        .bearer_auth(&sandbox.admin)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .body(stateless.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let ready: Value = reqwest::get(format!("{}/readyz", cluster.url(0)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["redis"], "unreachable", "{ready}");

    cluster.redis.restart();
    let mut recovered = false;
    for _ in 0..100 {
        let answer = client
            .post(&format!("{}/mcp", cluster.url(1)), None, initialize())
            .await;
        if answer.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "sessions work again without restarting a gateway"
    );
    let ready: Value = reqwest::get(format!("{}/readyz", cluster.url(0)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["redis"], "reachable", "{ready}");
    // The restarted Redis is empty: the old session is unknown, and the client starts over.
    let lost = client
        .in_session(cluster.url(0), &session, 2, "tools/list", json!({}))
        .await;
    assert_eq!(lost.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_works_through_a_round_robin_load_balancer() {
    let sandbox = TestSandbox::demo().await;
    let reader = sandbox.key_with(&["read:tasks"]).await;
    let cluster = Cluster::balanced(&sandbox.url, &["--tools-page-size", "20"]);
    let balancer = cluster.balancer.clone().unwrap();
    // No stdio here ("-"): it has no replicas.
    let args = [balancer.as_str(), &sandbox.admin, &reader, "-", "-"];
    let stdout = crate::mcp_clients::run_python("mcp_clients.py", &args).await;
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

//! `TestGateway`: the real gateway on a loopback port in front of a real sandbox (or any
//! upstream), plus a raw MCP-over-HTTP client for protocol-level assertions.

use crate::sandbox_fixture::TestSandbox;
use axum::Router;
use axum::routing::get;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use trainar_mcp::gateway::{Gateway, GatewayConfig};
use trainar_mcp::server;

pub struct TestGateway {
    pub url: String,
    pub sandbox: Option<TestSandbox>,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// What one raw HTTP exchange returned.
pub struct Exchange {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestGateway {
    /// A gateway in front of a fresh demo sandbox, with `configure` applied to the defaults.
    pub async fn demo(configure: impl FnOnce(&mut GatewayConfig)) -> TestGateway {
        let sandbox = TestSandbox::demo().await;
        let url = sandbox.url.clone();
        let mut gateway = TestGateway::in_front_of(&url, configure).await;
        gateway.sandbox = Some(sandbox);
        gateway
    }

    pub async fn in_front_of(
        upstream: &str,
        configure: impl FnOnce(&mut GatewayConfig),
    ) -> TestGateway {
        trainar_mcp::install_tls_provider();
        let mut config = GatewayConfig::default();
        configure(&mut config);
        let gateway = Gateway::build(upstream, config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(server::serve(listener, gateway, async {
            let _ = stopped.await;
        }));
        TestGateway {
            url,
            sandbox: None,
            http: reqwest::Client::new(),
            stop: Some(stop),
            served: Some(served),
        }
    }

    pub fn sandbox(&self) -> &TestSandbox {
        self.sandbox.as_ref().expect("a demo gateway has a sandbox")
    }

    pub fn admin(&self) -> String {
        self.sandbox().admin.clone()
    }

    /// Triggers graceful shutdown and waits until the server has stopped.
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.begin_shutdown();
        self.finish_shutdown().await
    }

    /// Triggers graceful shutdown (the server drains, then stops).
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the server has stopped.
    pub async fn finish_shutdown(&mut self) -> std::io::Result<()> {
        match self.served.take() {
            Some(served) => served.await.unwrap(),
            None => Ok(()),
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// GET /readyz: its status and JSON body.
    pub async fn readiness(&self) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}/readyz", self.url))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// GET `path` as `key` (streams stay open until the response is dropped).
    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// Sends `notifications/cancelled` for request `id` of `session`; returns the HTTP status.
    pub async fn cancel(&self, key: &str, session: &str, id: i64) -> u16 {
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": id, "reason": "user"}});
        self.post(Some(key), Some(session), cancel, &[])
            .await
            .status
    }

    /// POST /mcp with `message`, as `key`, in `session` (if any), with extra headers.
    pub async fn post(
        &self,
        key: Option<&str>,
        session: Option<&str>,
        message: Value,
        extra: &[(&str, &str)],
    ) -> Exchange {
        self.post_raw(key, session, message.to_string(), extra, "/mcp")
            .await
    }

    pub async fn post_raw(
        &self,
        key: Option<&str>,
        session: Option<&str>,
        body: String,
        extra: &[(&str, &str)],
        path: &str,
    ) -> Exchange {
        let mut request = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Exchange {
            status,
            headers,
            body,
        }
    }

    /// initialize + notifications/initialized; returns the session id.
    pub async fn initialize(&self, key: &str, path: &str) -> String {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
        let reply = self
            .post_raw(Some(key), None, init.to_string(), &[], path)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let session = reply
            .headers
            .get("mcp-session-id")
            .expect("a session id")
            .to_str()
            .unwrap()
            .to_string();
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(
            self.post(Some(key), Some(&session), initialized, &[])
                .await
                .status,
            202
        );
        session
    }

    /// One request in `session`; returns the JSON-RPC reply.
    pub async fn request(&self, key: &str, session: &str, method: &str, params: Value) -> Value {
        let message = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        let reply = self.post(Some(key), Some(session), message, &[]).await;
        assert_eq!(reply.status, 200, "{method}: {}", reply.body);
        reply.body
    }

    pub async fn call_tool(&self, key: &str, session: &str, name: &str, arguments: Value) -> Value {
        self.request(
            key,
            session,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
        .await["result"]
            .clone()
    }
}

/// The text content of a tools/call result.
pub fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect()
}

/// An API whose introspection answers at once and whose every other operation hangs; it records
/// whether a hanging request was abandoned by the gateway.
pub async fn hanging_api(abandoned: Arc<AtomicBool>) -> String {
    hanging_api_seeing(abandoned, Arc::default()).await
}

/// `hanging_api`, also recording in `arrived` that a hanging request reached it (a test that
/// cancels at once must first know there is a request to abandon: a call cancelled while its
/// upstream connection is still being opened never reaches the API).
pub async fn hanging_api_seeing(abandoned: Arc<AtomicBool>, arrived: Arc<AtomicBool>) -> String {
    hanging_api_counting(abandoned, arrived, Arc::default()).await
}

/// `hanging_api_seeing`, also counting in `arrivals` the hanging requests that reached it.
pub async fn hanging_api_counting(
    abandoned: Arc<AtomicBool>,
    arrived: Arc<AtomicBool>,
    arrivals: Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    struct Abandoned(Arc<AtomicBool>);
    impl Drop for Abandoned {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let app = Router::new()
        .route(
            "/v1/api-keys/current",
            // As the API: a request without a key is refused (the gateway's readiness probe).
            get(|headers: axum::http::HeaderMap| async move {
                if !headers.contains_key("authorization") {
                    return (
                        axum::http::StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"error": {"code": "unauthorized", "message": "no key"}})),
                    );
                }
                (axum::http::StatusCode::OK, axum::Json(json!({"id": "key_0123456789ab", "tenant_id": "ten_0123456789ab", "tenant_name": "Slow",
                    "name": "k", "scopes": ["read:tasks", "execute:skills"], "prefix": "tak_AAAAAAAA", "expires_at": null})))
            }),
        )
        .fallback(move || {
            arrivals.fetch_add(1, Ordering::SeqCst);
            arrived.store(true, Ordering::SeqCst);
            let guard = Abandoned(abandoned.clone());
            async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(guard);
                "never"
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

pub const SLOW_KEY: &str = "tak_AAAAAAAAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Reads SSE events (`event`, `data`) from a streaming response until `count` have arrived.
pub async fn read_events(response: &mut reqwest::Response, count: usize) -> Vec<(String, String)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .expect("an event in time")
            .unwrap();
        let Some(chunk) = chunk else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = (String::from("message"), String::new());
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event.0 = name.trim().to_string();
                } else if let Some(data) = line.strip_prefix("data:") {
                    event.1.push_str(data.trim_start());
                }
            }
            if !event.1.is_empty() {
                events.push(event);
            }
        }
    }
    events
}

/// Waits (up to 2 s) for the hanging API to see its request abandoned.
pub async fn until_abandoned(abandoned: &AtomicBool) -> bool {
    until_set(abandoned).await
}

/// Waits (up to 2 s) for `flag` to be set.
pub async fn until_set(flag: &AtomicBool) -> bool {
    for _ in 0..100 {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

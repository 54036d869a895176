//! Operating the gateway (issue 13): Prometheus metrics scraped by a real Prometheus, W3C trace
//! context from the client through the gateway into the API, and the audit trail.
//!
//! Everything runs as separate processes, as in production: the sandbox (`trainar-mcp sandbox`),
//! a recording hop in this test that forwards to it (to see the upstream request's headers, and
//! to make one call slow), and the gateway (`trainar-mcp serve`) with `--metrics-listen` and
//! `--audit-log`. Each process's metrics are its own, so counts are exact.

use crate::common::{KillOnDrop, binary, eventually, line_with, repo_root};
use crate::replicas_fixture::free_port;
use crate::sandbox_fixture::fresh_dir;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ADMIN_KEY: &str = "tak_OpsAdmin00000000000000000000000000000000";
/// A task id the recording hop answers slowly, past the gateway's call timeout.
const SLOW_TASK: &str = "tsk_slowslowslowslow";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// What the recording hop saw of one upstream request.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

struct Observed {
    dir: PathBuf,
    sandbox_url: String,
    gateway_url: String,
    metrics_url: String,
    gateway_log: PathBuf,
    sandbox_log: PathBuf,
    audit_log: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    http: reqwest::Client,
    gateway: KillOnDrop,
    _sandbox: KillOnDrop,
}

impl Observed {
    /// Sandbox, recording hop and gateway; `audit_log` overrides the audit file (e.g. /dev/full).
    async fn start(audit_log: Option<&Path>) -> Observed {
        trainar_mcp::install_tls_provider();
        let dir = fresh_dir("ops");
        std::fs::create_dir_all(&dir).unwrap();
        let sandbox_log = dir.join("sandbox.log");
        let (sandbox, sandbox_url) = spawn_printing_url(
            binary()
                .args(["sandbox", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir.join("api"))
                .env("TRAINAR_SANDBOX_ADMIN_KEY", ADMIN_KEY)
                .env("RUST_LOG", "info")
                .stderr(std::fs::File::create(&sandbox_log).unwrap()),
            "TrainAR sandbox API listening on ",
        );
        let sandbox_url = sandbox_url.trim_end_matches("/v1").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hop_url = recording_hop(sandbox_url.clone(), seen.clone()).await;
        let audit_log = audit_log.map_or_else(|| dir.join("audit.log"), Path::to_path_buf);
        let gateway_log = dir.join("gateway.log");
        let metrics_port = free_port();
        let (gateway, gateway_url) = spawn_printing_url(
            binary()
                .args(["serve", "--listen", "127.0.0.1:0", "--upstream", &hop_url])
                .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
                .arg("--audit-log")
                .arg(&audit_log)
                .args(["--call-timeout-secs", "1", "--auth-cache-secs", "1"])
                .env("RUST_LOG", "info")
                .stderr(std::fs::File::create(&gateway_log).unwrap()),
            "trainar-mcp listening on ",
        );
        Observed {
            dir,
            sandbox_url: sandbox_url.clone(),
            gateway_url,
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            gateway_log,
            sandbox_log,
            audit_log,
            seen,
            http: reqwest::Client::new(),
            gateway,
            _sandbox: sandbox,
        }
    }

    /// A key of the sandbox's tenant holding exactly `scopes`.
    async fn key_with(&self, scopes: &[&str]) -> String {
        let created: Value = self
            .http
            .post(format!("{}/v1/api-keys", self.sandbox_url))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"name": "ops test", "scopes": scopes}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["key"]
            .as_str()
            .unwrap_or_else(|| panic!("the sandbox created a key: {created}"))
            .to_string()
    }

    async fn post(
        &self,
        key: &str,
        session: Option<&str>,
        body: Value,
        trace: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/mcp", self.gateway_url))
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(trace) = trace {
            request = request.header("traceparent", trace);
        }
        request.send().await.unwrap()
    }

    async fn initialize(&self, key: &str) -> String {
        let response = self
            .post(
                key,
                None,
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "ops", "version": "1"}}}),
                None,
            )
            .await;
        assert_eq!(response.status(), 200);
        response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// One tools/call; returns the result.
    async fn call(
        &self,
        key: &str,
        session: &str,
        tool: &str,
        arguments: Value,
        trace: Option<&str>,
    ) -> Value {
        let reply: Value = self
            .post(
                key,
                Some(session),
                json!({"jsonrpc": "2.0", "id": next_id(), "method": "tools/call",
                       "params": {"name": tool, "arguments": arguments}}),
                trace,
            )
            .await
            .json()
            .await
            .unwrap();
        reply["result"].clone()
    }

    /// `get_task` of `task` as the admin, with `trace` as the HTTP request's `traceparent`.
    async fn get_task(&self, session: &str, task: &str, trace: Option<&str>) -> Value {
        let arguments = json!({"task_id": task});
        self.call(ADMIN_KEY, session, "get_task", arguments, trace)
            .await
    }

    async fn first_task(&self, key: &str, session: &str) -> String {
        let listed = self
            .call(key, session, "list_tasks", json!({"limit": 1}), None)
            .await;
        listed["structuredContent"]["data"][0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn metrics(&self) -> String {
        self.http
            .get(&self.metrics_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A JSON-RPC id no other call of this process uses (calls in one session run concurrently).
fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Starts `command` with stdout piped and returns it with the URL it prints after `prefix`.
fn spawn_printing_url(command: &mut Command, prefix: &str) -> (KillOnDrop, String) {
    let mut child = KillOnDrop(command.stdout(Stdio::piped()).spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the process prints its URL").unwrap();
        if let Some(rest) = line.strip_prefix(prefix) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, url)
}

/// An HTTP hop in front of the sandbox that records each request's trace headers, answers
/// `SLOW_TASK` after 2.5 s, and forwards everything else as it came.
async fn recording_hop(sandbox: String, seen: Arc<Mutex<Vec<Seen>>>) -> String {
    #[derive(Clone)]
    struct Hop {
        sandbox: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        http: reqwest::Client,
    }
    async fn forward(
        State(hop): State<Hop>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        hop.seen.lock().unwrap().push(Seen {
            path: uri.path().to_string(),
            traceparent: text("traceparent"),
            tracestate: text("tracestate"),
        });
        if uri.path().ends_with(SLOW_TASK) {
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        let mut request = hop
            .http
            .request(method, format!("{}{}", hop.sandbox, uri))
            .body(body);
        for name in [
            "authorization",
            "content-type",
            "idempotency-key",
            "traceparent",
            "tracestate",
        ] {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value);
            }
        }
        match request.send().await {
            Ok(answer) => {
                let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
                let body = answer.bytes().await.unwrap_or_default();
                (status, [("content-type", "application/json")], body).into_response()
            }
            Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        }
    }
    let hop = Hop {
        sandbox,
        seen,
        http: reqwest::Client::new(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(forward).with_state(hop);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Waits until `path` has at least `count` lines.
async fn lines_reach(path: &Path, count: usize) {
    eventually(Duration::from_secs(10), || async {
        let lines = lines_in(path);
        (lines >= count)
            .then_some(())
            .ok_or_else(|| format!("{} has {lines} lines, expected {count}", path.display()))
    })
    .await
}

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

fn which(program: &str) -> PathBuf {
    ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!("{program} is not installed: apt-get install prometheus (.ci/run does)")
        })
}

/// A Prometheus server scraping `target` (host:port) every second, in its own temp dir.
struct Prometheus {
    url: String,
    http: reqwest::Client,
    _process: KillOnDrop,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: trainar\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let process = KillOnDrop(
            Command::new(which("prometheus"))
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
                .spawn()
                .unwrap(),
        );
        Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _process: process,
        }
    }

    /// The value of an instant PromQL query that yields one number (None: no data yet).
    async fn number(&self, query: &str) -> Option<f64> {
        let answer: Value = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }

    /// Waits until `query` yields `expected` (Prometheus has scraped what happened).
    async fn until(&self, query: &str, expected: f64) {
        eventually(Duration::from_secs(60), || async {
            let value = self.number(query).await;
            (value == Some(expected))
                .then_some(())
                .ok_or_else(|| format!("{query} is {value:?} in Prometheus, expected {expected}"))
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counts_exactly_the_calls_that_were_made() {
    let ops = Observed::start(None).await;
    let prometheus = Prometheus::start(
        &ops.dir,
        ops.metrics_url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics"),
    );
    let admin = ops.initialize(ADMIN_KEY).await;
    let task = ops.first_task(ADMIN_KEY, &admin).await;
    // 1 ok above; then each kind of call, with the words its result must hold.
    let reader = ops.key_with(&["read:tasks"]).await;
    let limited = ops.initialize(&reader).await;
    let get = |task_id: &str| json!({"task_id": task_id});
    let sequence: Vec<(&str, &str, &str, Value, &str, usize)> = vec![
        (
            ADMIN_KEY,
            &admin,
            "get_task",
            get(&task),
            "\"isError\":false",
            4,
        ),
        (
            &reader,
            &limited,
            "list_users",
            json!({}),
            "Permission denied",
            3,
        ),
        (
            ADMIN_KEY,
            &admin,
            "list_tasks",
            json!({"limit": "many"}),
            "Invalid arguments",
            2,
        ),
        (
            ADMIN_KEY,
            &admin,
            "get_task",
            get("tsk_doesnotexist0000"),
            "404",
            1,
        ),
        (
            ADMIN_KEY,
            &admin,
            "get_task",
            get(SLOW_TASK),
            "timed out",
            1,
        ),
    ];
    for (key, session, tool, arguments, expected, times) in sequence {
        for _ in 0..times {
            let result = ops.call(key, session, tool, arguments.clone(), None).await;
            assert!(result.to_string().contains(expected), "{tool}: {result}");
        }
    }

    let calls = |outcome: &str| format!("sum(trainar_tool_calls_total{{outcome=\"{outcome}\"}})");
    prometheus
        .until("sum(trainar_tool_calls_total)", 12.0)
        .await;
    // Upstream legs: 5 ok + 1 404 answered; the timeout got no answer. Nothing was sent for
    // the scope denials and the invalid arguments.
    let expected = [
        (calls("ok"), 5.0),
        (calls("scope_denied"), 3.0),
        (calls("invalid_arguments"), 2.0),
        (calls("upstream_4xx"), 1.0),
        (calls("timeout"), 1.0),
        (
            r#"sum(trainar_tool_calls_total{tool="get_task",transport="streamable",version="2025-06-18"})"#.into(),
            6.0,
        ),
        (r#"sum(trainar_upstream_responses_total{class="2xx"})"#.into(), 5.0),
        (r#"sum(trainar_upstream_responses_total{class="4xx"})"#.into(), 1.0),
        (r#"sum(trainar_upstream_responses_total{class="error"})"#.into(), 1.0),
        ("sum(trainar_tool_call_duration_seconds_count)".into(), 12.0),
        ("sum(trainar_sessions_open)".into(), 2.0),
        (r#"sum(trainar_key_lookups_total{result="miss_ok"})"#.into(), 2.0),
        ("trainar_tool_calls_in_flight".into(), 0.0),
        ("count(trainar_build_info)".into(), 1.0),
    ];
    for (query, value) in expected {
        assert_eq!(prometheus.number(&query).await, Some(value), "{query}");
    }

    // The exposition passes promtool's own check, and never names a key.
    let exposition = ops.metrics().await;
    assert!(!exposition.contains("tak_"), "{exposition}");
    let mut promtool = Command::new(which("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_serves_only_metrics() {
    let ops = Observed::start(None).await;
    let other = ops.metrics_url.replace("/metrics", "/mcp");
    assert_eq!(ops.http.get(&other).send().await.unwrap().status(), 404);
    let metrics = ops.http.get(&ops.metrics_url).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("trainar_build_info{version=\""), "{text}");
    // And the public listener does not serve them.
    let public = ops
        .http
        .get(format!("{}/metrics", ops.gateway_url))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_runs_from_the_client_through_the_gateway_into_the_api() {
    let ops = Observed::start(None).await;
    let session = ops.initialize(ADMIN_KEY).await;
    let task = ops.first_task(ADMIN_KEY, &session).await;
    ops.seen.lock().unwrap().clear();
    let result = ops.get_task(&session, &task, Some(TRACEPARENT)).await;
    assert_eq!(result["isError"], false, "{result}");
    let upstream = ops.seen.lock().unwrap().clone();
    let sent = upstream
        .iter()
        .find(|s| s.path.ends_with(&task))
        .expect("the call reached the API");
    let traceparent = sent
        .traceparent
        .as_deref()
        .expect("the upstream request carries traceparent");
    assert!(
        traceparent.starts_with(&format!("00-{TRACE_ID}-")),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "the gateway's own span is the parent: {traceparent}"
    );
    assert!(traceparent.ends_with("-01"));
    line_with(
        &ops.gateway_log,
        &["tools/call", "get_task", &format!("trace_id={TRACE_ID}")],
    )
    .await;
    line_with(
        &ops.sandbox_log,
        &[
            "sandbox request",
            "get_task",
            &format!("trace_id={TRACE_ID}"),
        ],
    )
    .await;
    line_with(
        &ops.audit_log,
        &["\"get_task\"", &format!("\"trace_id\":\"{TRACE_ID}\"")],
    )
    .await;

    // From params._meta, for clients that put it there (it wins over the HTTP header).
    let from_meta = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let reply: Value = ops
        .post(
            ADMIN_KEY,
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "get_task", "arguments": {"task_id": task},
                       "_meta": {"traceparent": from_meta, "tracestate": "vendor=abc"}}}),
            Some(TRACEPARENT),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["result"]["isError"], false, "{reply}");
    let last = ops.seen.lock().unwrap().last().cloned().unwrap();
    assert!(
        last.traceparent
            .unwrap()
            .starts_with("00-0af7651916cd43dd8448eb211c80319c-")
    );
    assert_eq!(last.tracestate.as_deref(), Some("vendor=abc"));

    // Without any context the gateway starts a trace, and the API sees it.
    ops.get_task(&session, &task, None).await;
    let started = ops.seen.lock().unwrap().last().cloned().unwrap();
    let started = started.traceparent.expect("a new trace is passed on");
    let trace_id = &started[3..35];
    assert_ne!(trace_id, TRACE_ID);
    line_with(
        &ops.gateway_log,
        &["tools/call", &format!("trace_id={trace_id}")],
    )
    .await;
    line_with(
        &ops.sandbox_log,
        &["sandbox request", &format!("trace_id={trace_id}")],
    )
    .await;

    // A malformed traceparent is ignored (a new trace), never an error.
    let result = ops
        .get_task(&session, &task, Some("00-zz-not-a-trace"))
        .await;
    assert_eq!(result["isError"], false, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_has_every_call_once_survives_rotation_and_holds_no_secret() {
    let ops = Arc::new(Observed::start(None).await);
    let session = ops.initialize(ADMIN_KEY).await;
    let task = ops.first_task(ADMIN_KEY, &session).await;
    let concurrently = |count: usize| {
        let calls: Vec<_> = (0..count)
            .map(|_| {
                let (ops, session, task) = (ops.clone(), session.clone(), task.clone());
                tokio::spawn(async move { ops.get_task(&session, &task, None).await })
            })
            .collect();
        async move {
            for call in calls {
                assert_eq!(call.await.unwrap()["isError"], false);
            }
        }
    };
    concurrently(40).await;
    let rotated = ops.dir.join("audit.log.1");
    lines_reach(&ops.audit_log, 41).await;
    // logrotate: move the file, then SIGHUP.
    std::fs::rename(&ops.audit_log, &rotated).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &ops.gateway.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    line_with(&ops.gateway_log, &["SIGHUP: reopening the audit log"]).await;
    concurrently(20).await;
    lines_reach(&ops.audit_log, 20).await;
    assert_eq!(
        lines_in(&rotated),
        41,
        "nothing after the rotation went to the old file"
    );
    assert_eq!(lines_in(&ops.audit_log), 20, "and nothing twice");
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&ops.audit_log).unwrap();
    for line in old.lines().chain(new.lines()) {
        let record: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        for field in [
            "time",
            "key_id",
            "tenant_id",
            "tool",
            "arguments",
            "outcome",
            "upstream_status",
            "duration_ms",
            "trace_id",
        ] {
            assert!(record.get(field).is_some(), "{field} missing: {line}");
        }
        assert_eq!(record["outcome"], "ok", "{line}");
        assert!(
            record["key_id"].as_str().unwrap().starts_with("key_"),
            "{line}"
        );
        assert_eq!(record["trace_id"].as_str().unwrap().len(), 32, "{line}");
    }
    let get_task: Vec<Value> = new
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(get_task.iter().all(|r| r["tool"] == "get_task"
        && r["arguments"] == json!(["task_id"])
        && r["upstream_status"] == 200));
    assert!(!new.contains(&task), "argument values are never recorded");
    for file in [&rotated, &ops.audit_log, &ops.gateway_log, &ops.sandbox_log] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(!text.contains("tak_"), "a secret in {}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_audit_log_is_loud_and_counted_but_calls_go_on() {
    let ops = Observed::start(Some(Path::new("/dev/full"))).await;
    let session = ops.initialize(ADMIN_KEY).await;
    let task = ops.first_task(ADMIN_KEY, &session).await;
    for _ in 0..3 {
        let result = ops.get_task(&session, &task, None).await;
        assert_eq!(result["isError"], false, "{result}");
    }
    line_with(&ops.gateway_log, &["ERROR", "cannot write the audit log"]).await;
    eventually(Duration::from_secs(10), || async {
        let metrics = ops.metrics().await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("trainar_audit_write_failures_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|failures| *failures >= 1.0)
            .map(|_| ())
            .ok_or_else(|| format!("no audit failure counted:\n{metrics}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_of_the_dashboard_names_an_exported_metric() {
    let ops = Observed::start(None).await;
    let session = ops.initialize(ADMIN_KEY).await;
    ops.first_task(ADMIN_KEY, &session).await;
    let exposition = ops.metrics().await;
    let exported: std::collections::BTreeSet<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/grafana/trainar-mcp.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    collect_exprs(&dashboard, &mut queries);
    assert!(
        queries.len() >= 8,
        "the dashboard has its panels: {queries:?}"
    );
    for query in &queries {
        let names: Vec<&str> = query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("trainar_"))
            .collect();
        assert!(
            !names.is_empty(),
            "a query that names no trainar metric: {query}"
        );
        for name in names {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| exported.contains(base))
                .unwrap_or(name);
            assert!(
                exported.contains(base) && trainar_mcp::telemetry::ALL.contains(&base),
                "{name} (in {query}) is not an exported metric; exported: {exported:?}"
            );
        }
    }
}

fn collect_exprs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => into.push(expr.clone()),
                    _ => collect_exprs(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, into)),
        _ => {}
    }
}

//! Shared test helpers: the built binary, the repository root, a recording loopback API, and
//! waiting for a line in a file.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `trainar-mcp` binary that cargo built for these tests.
pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trainar-mcp"))
}

/// One request as the recording server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub body: serde_json::Value,
    /// The client's port: equal ports mean one reused connection.
    pub peer: SocketAddr,
}

/// What the recording server answers: a status, a content type and a body.
#[derive(Clone)]
pub struct Canned {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<Vec<Recorded>>>,
    answer: Arc<Mutex<Canned>>,
}

/// A loopback HTTP server that records every request and answers with the current `Canned`.
pub struct RecordingServer {
    pub url: String,
    seen: Arc<Mutex<Vec<Recorded>>>,
    answer: Arc<Mutex<Canned>>,
}

impl RecordingServer {
    pub async fn start() -> RecordingServer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(Canned {
            status: StatusCode::OK,
            content_type: "application/json",
            body: "{}".into(),
        }));
        let recorder = Recorder {
            seen: seen.clone(),
            answer: answer.clone(),
        };
        let app = Router::new().fallback(record).with_state(recorder);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        RecordingServer { url, seen, answer }
    }

    pub fn answer(&self, status: StatusCode, content_type: &'static str, body: impl Into<String>) {
        *self.answer.lock().unwrap() = Canned {
            status,
            content_type,
            body: body.into(),
        };
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the server saw a request")
    }
}

async fn record(
    State(recorder): State<Recorder>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| String::from_utf8_lossy(&body).into())
    };
    recorder.seen.lock().unwrap().push(Recorded {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(String::from),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        body,
        peer,
    });
    let canned = recorder.answer.lock().unwrap().clone();
    (
        canned.status,
        [("content-type", canned.content_type)],
        canned.body,
    )
        .into_response()
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so a failing assertion
/// never leaves a server running after the test.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// Kills the process now (SIGKILL on Unix) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `probe` every 100 ms until it yields Ok, or fails with its last Err after `limit`.
pub async fn eventually<T, F: std::future::Future<Output = Result<T, String>>>(
    limit: Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(why) => assert!(Instant::now() < deadline, "{why}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `path` holds a line with every one of `needles`; returns that line.
pub async fn line_with(path: &Path, needles: &[&str]) -> String {
    eventually(Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(String::from)
            .ok_or_else(|| format!("no line of {} holds {needles:?}:\n{text}", path.display()))
    })
    .await
}

//! Real MCP clients against a real `serve`: the official Python SDK (mcp 2.x) over SSE and
//! Streamable HTTP (legacy and auto modes), and the binary started exactly as README says.

use crate::common::{binary, repo_root};
use crate::gateway_fixture::TestGateway;
use crate::sandbox_fixture::fresh_dir;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

/// The Python with the `mcp` package: $TRAINAR_TEST_PYTHON, or the repo's .venv (which
/// `scripts/test` creates).
fn python() -> PathBuf {
    if let Ok(path) = std::env::var("TRAINAR_TEST_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = repo_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "the Python MCP client is not installed: run `scripts/test` (it creates .venv with mcp==2.3.0), \
         or point TRAINAR_TEST_PYTHON at a Python that has it"
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_works_over_every_transport() {
    let gateway = TestGateway::demo(|config| config.core.page_size = 20).await;
    let reader = gateway.sandbox().key_with(&["read:tasks"]).await;
    let script = repo_root().join("tests/python/mcp_clients.py");
    let output = tokio::process::Command::new(python())
        .arg(&script)
        .args([&gateway.url, &gateway.admin(), &reader])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[tokio::test]
async fn serve_runs_as_the_readme_says_and_completes_a_tool_call() {
    trainar_mcp::install_tls_provider();
    // README: `cargo run -- serve`, i.e. `trainar-mcp serve` in a fresh directory (its default
    // data dir is ./trainar-data). Port 8080 may be taken here, so only the port differs.
    let workdir = fresh_dir("serve");
    std::fs::create_dir_all(&workdir).unwrap();
    let mut child = binary()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(&workdir)
        .env_remove("TRAINAR_SANDBOX_ADMIN_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut key) = (None, None);
    while url.is_none() || key.is_none() {
        let line = lines
            .next()
            .expect("serve prints its URL and the demo key")
            .unwrap();
        if let Some(rest) = line.strip_prefix("trainar-mcp listening on ") {
            url = Some(rest.trim().to_string());
        }
        if line.trim_start().starts_with("tak_") {
            key = Some(line.trim().to_string());
        }
    }
    let (url, key) = (url.unwrap(), key.unwrap());
    assert!(workdir.join("trainar-data/sandbox.sqlite3").exists());

    let http = reqwest::Client::new();
    let post = |session: Option<String>, body: Value| {
        let mut request = http
            .post(format!("{url}/mcp"))
            .bearer_auth(&key)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let init = post(None, json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}})).await.unwrap();
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_tasks", "arguments": {"status": "open"}}});
    let reply: Value = post(Some(session), call)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["result"]["isError"], false, "{reply}");
    assert!(
        !reply["result"]["structuredContent"]["data"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the demo tenant has open tasks"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

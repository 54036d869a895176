//! `--upstream` as a new user gets it wrong, and an HTTPS upstream: a URL without a scheme is
//! refused at start, one ending in `/v1` (as the sandbox's banner prints it) works, an upstream
//! where nothing listens is named in a warning at start; the sandbox behind HAProxy terminating
//! TLS with certificates from a test CA made here works once the CA is trusted
//! (`--upstream-ca-file`), and untrusted, expired and wrong-host certificates each fail with a
//! message that says which, and how to fix it.

use crate::common::{KillOnDrop, binary};
use crate::gateway_fixture::{TestGateway, text_of};
use crate::replicas_fixture::free_port;
use crate::sandbox_fixture::{TestSandbox, fresh_dir};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, date_time_ymd};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};

struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names`, valid over `years`, as one PEM (cert + key) for HAProxy.
    fn server_pem(&self, names: &[&str], years: (i32, i32)) -> String {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_before = date_time_ymd(years.0, 1, 1);
        params.not_after = date_time_ymd(years.1, 1, 1);
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        format!("{}{}", certificate.pem(), key.serialize_pem())
    }
}

/// HAProxy terminating TLS with `pem` and passing plain HTTP to `upstream`.
fn tls_terminator(dir: &Path, pem: &str, upstream: &str) -> (KillOnDrop, String) {
    std::fs::create_dir_all(dir).unwrap();
    let pem_path = dir.join("server.pem");
    std::fs::write(&pem_path, pem).unwrap();
    let port = free_port();
    let config = format!(
        "defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
         frontend tls\n  bind 127.0.0.1:{port} ssl crt {}\n  default_backend api\n\
         backend api\n  server sandbox {}\n",
        pem_path.display(),
        upstream.trim_start_matches("http://")
    );
    let config_path = dir.join("haproxy.cfg");
    std::fs::write(&config_path, config).unwrap();
    let haproxy = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("haproxy is installed (apt-get install haproxy)");
    let process = Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    (KillOnDrop(process), format!("https://localhost:{port}"))
}

/// An initialize as the sandbox's admin: the key must be checked through the upstream.
async fn initialize(gateway: &TestGateway, admin: &str) -> crate::gateway_fixture::Exchange {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    gateway
        .post_raw(Some(admin), None, init.to_string(), &[], "/mcp")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_works_once_its_ca_is_trusted_and_each_failure_says_why() {
    let sandbox = TestSandbox::demo().await;
    let ca = TestCa::new();
    let trusting = |config: &mut trainar_mcp::gateway::GatewayConfig| {
        config.upstream.extra_ca_pem = Some(ca.pem.clone().into_bytes());
    };
    let valid = ca.server_pem(&["localhost"], (2020, 2100));
    let (_valid_tls, valid_url) = tls_terminator(&fresh_dir("tls-valid"), &valid, &sandbox.url);
    let trusted = TestGateway::in_front_of(&valid_url, trusting).await;
    let session = trusted.initialize(&sandbox.admin, "/mcp").await;
    let listed = trusted
        .call_tool(&sandbox.admin, &session, "list_tasks", json!({"limit": 1}))
        .await;
    assert_eq!(listed["isError"], false, "{}", text_of(&listed));

    let untrusted = TestGateway::in_front_of(&valid_url, |_| {}).await;
    let refused = initialize(&untrusted, &sandbox.admin).await;
    assert_eq!(refused.status, 503);
    let message = refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("unknown authority") && message.contains("--upstream-ca-file"),
        "{message}"
    );
    assert!(
        message.contains(&valid_url),
        "the message names the upstream: {message}"
    );

    let expired = ca.server_pem(&["localhost"], (2020, 2021));
    let (_expired_tls, expired_url) =
        tls_terminator(&fresh_dir("tls-expired"), &expired, &sandbox.url);
    let gateway = TestGateway::in_front_of(&expired_url, trusting).await;
    let refused = initialize(&gateway, &sandbox.admin).await;
    assert_eq!(refused.status, 503);
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("has expired"), "{message}");

    let elsewhere = ca.server_pem(&["api.example.invalid"], (2020, 2100));
    let (_elsewhere_tls, elsewhere_url) =
        tls_terminator(&fresh_dir("tls-host"), &elsewhere, &sandbox.url);
    let gateway = TestGateway::in_front_of(&elsewhere_url, trusting).await;
    let refused = initialize(&gateway, &sandbox.admin).await;
    assert_eq!(refused.status, 503);
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("not valid for the host name"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_mistakes_are_caught_at_start_or_forgiven() {
    let no_scheme = binary()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:8081",
        ])
        .output()
        .unwrap();
    assert!(!no_scheme.status.success());
    let said = String::from_utf8_lossy(&no_scheme.stderr);
    assert!(
        said.contains("has no scheme") && said.contains("https://"),
        "{said}"
    );

    // Nothing listens there: the gateway starts, and says so naming the URL.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut child = KillOnDrop(
        binary()
            .args(["serve", "--listen", "127.0.0.1:0", "--upstream", &nowhere])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = std::io::BufReader::new(child.0.stderr.take().unwrap());
    let mut warning = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut warning).unwrap();
    assert!(
        warning.contains("warning")
            && warning.contains(&nowhere)
            && warning.contains("unreachable"),
        "{warning}"
    );
    child.kill();

    // The sandbox's own banner URL, with /v1: the same API.
    let sandbox = TestSandbox::demo().await;
    let gateway = TestGateway::in_front_of(&format!("{}/v1", sandbox.url), |_| {}).await;
    let refused = initialize(&gateway, &sandbox.admin).await;
    assert_eq!(
        refused.status, 503,
        "TestGateway takes the URL as given (the CLI strips /v1)"
    );
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("base URL"),
        "a /v1 too many is named: {message}"
    );
    let stripped = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--upstream"])
        .arg(format!("{}/v1/", sandbox.url))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(stripped);
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(child.0.stdout.take().unwrap()));
    let banner: Vec<String> = (&mut lines).take(3).map(Result::unwrap).collect();
    assert!(
        banner
            .iter()
            .any(|l| l.trim() == format!("upstream: {}", sandbox.url)),
        "/v1 is taken off: {banner:?}"
    );
}

/// A CONNECT-only HTTP proxy on loopback: tunnels to where it is asked and records each
/// destination; anything but CONNECT gets 405.
async fn connect_proxy() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let tunnels = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut client = BufReader::new(socket);
                let mut request_line = String::new();
                client.read_line(&mut request_line).await.ok()?;
                loop {
                    let mut header = String::new();
                    client.read_line(&mut header).await.ok()?;
                    if header == "\r\n" || header.is_empty() {
                        break;
                    }
                }
                let mut client = client.into_inner();
                let Some(destination) = request_line.strip_prefix("CONNECT ") else {
                    let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                    return None;
                };
                let destination = destination.split_whitespace().next()?.to_string();
                seen.lock().unwrap().push(destination.clone());
                let mut api = tokio::net::TcpStream::connect(&destination).await.ok()?;
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .ok()?;
                tokio::io::copy_bidirectional(&mut client, &mut api)
                    .await
                    .ok()
            });
        }
    });
    (url, tunnels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_is_reached_through_the_proxy_the_environment_names() {
    let sandbox = TestSandbox::demo().await;
    let (proxy, tunnels) = connect_proxy().await;
    let mut gateway = KillOnDrop(
        binary()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                &sandbox.url,
            ])
            .env("HTTP_PROXY", &proxy)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = gateway.0.stdout.take().unwrap();
    let url = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        loop {
            let line = lines.next().expect("serve prints its URL").unwrap();
            if let Some(url) = line.strip_prefix("trainar-mcp listening on ") {
                std::thread::spawn(move || lines.for_each(drop));
                break url.trim().to_string();
            }
        }
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value, session: Option<String>| {
        let mut request = http
            .post(format!("{url}/mcp"))
            .bearer_auth(&sandbox.admin)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let init = post(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}), None)
        .await
        .unwrap();
    assert_eq!(init.status(), 200, "the key was checked through the proxy");
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let reply: serde_json::Value = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "list_tasks", "arguments": {"limit": 1}}}),
        Some(session),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(reply["result"]["isError"], false, "{reply}");
    let api = sandbox.url.trim_start_matches("http://").to_string();
    let tunnels = tunnels.lock().unwrap().clone();
    assert!(
        !tunnels.is_empty() && tunnels.iter().all(|t| *t == api),
        "every connection to the API went through the proxy: {tunnels:?}"
    );
    gateway.kill();
}

//! `TestSandbox`: a real sandbox on a loopback port with its own data dir, and a small client.

use serde_json::{Value, json};
use std::path::PathBuf;
use trainar_mcp::sandbox::{Config, Sandbox};

/// The admin key every test sandbox is created with.
pub const ADMIN_KEY: &str = "tak_TestAdmin0000000000000000000000000000000";

pub struct TestSandbox {
    pub url: String,
    pub data_dir: PathBuf,
    pub admin: String,
    /// What it was opened with; `restart` reopens with the same (demo seeding aside).
    pub config: Config,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

/// A fresh, unique directory under the system temp dir.
pub fn fresh_dir(label: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("trainar-{label}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

impl TestSandbox {
    /// A sandbox seeded with the demo tenant.
    pub async fn demo() -> TestSandbox {
        TestSandbox::open(fresh_dir("sandbox"), true).await
    }

    /// A sandbox with only the tenant and its admin key.
    pub async fn empty() -> TestSandbox {
        TestSandbox::open(fresh_dir("sandbox"), false).await
    }

    /// A sandbox with only the tenant, whose operator allows webhooks to loopback and private
    /// addresses (`--allow-private-webhooks`): for tests that deliver to a local receiver.
    pub async fn allowing_private_webhooks() -> TestSandbox {
        TestSandbox::open_with(fresh_dir("sandbox"), false, |config| {
            config.allow_private_webhooks = true
        })
        .await
    }

    pub async fn open(data_dir: PathBuf, demo: bool) -> TestSandbox {
        TestSandbox::open_with(data_dir, demo, |_| {}).await
    }

    /// A sandbox with the test defaults, then `configure` applied.
    pub async fn open_with(
        data_dir: PathBuf,
        demo: bool,
        configure: impl FnOnce(&mut Config),
    ) -> TestSandbox {
        let mut config = Config::new(&data_dir);
        config.demo_seed = demo;
        config.admin_key = Some(ADMIN_KEY.to_string());
        config.max_body_bytes = 2 * 1024 * 1024;
        configure(&mut config);
        TestSandbox::start(config).await
    }

    async fn start(config: Config) -> TestSandbox {
        trainar_mcp::install_tls_provider();
        let data_dir = config.data_dir.clone();
        let kept = config.clone();
        let (sandbox, _) = Sandbox::open(config).expect("the sandbox opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            sandbox
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        TestSandbox {
            url,
            data_dir,
            admin: ADMIN_KEY.to_string(),
            config: kept,
            http: reqwest::Client::new(),
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// Stops this sandbox and opens a new one on the same data dir, with the same configuration.
    pub async fn restart(self) -> TestSandbox {
        self.restart_with(|_| {}).await
    }

    /// Like `restart`, with `configure` applied to the configuration first (an operator's change).
    pub async fn restart_with(mut self, configure: impl FnOnce(&mut Config)) -> TestSandbox {
        self.stop().await;
        let mut config = self.config.clone();
        config.demo_seed = false;
        configure(&mut config);
        TestSandbox::start(config).await
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = served.await;
        }
    }

    /// `METHOD path` (with its query) as `key`; returns the status and the JSON body (Null if none).
    pub async fn call(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the sandbox answers");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        (status, body)
    }

    pub async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        self.call(key, "GET", path, None).await
    }

    /// Like `call`, but panics unless the status is `expected`, printing the body.
    pub async fn expect(
        &self,
        expected: u16,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let (status, body) = self.call(key, method, path, body).await;
        assert_eq!(status, expected, "{method} {path}: {body}");
        body
    }

    /// Requests as the admin key, each asserting its status: see `KeyHolder`.
    pub fn as_admin(&self) -> KeyHolder<'_> {
        self.as_key(&self.admin)
    }

    /// Requests as `key`, each asserting its status: see `KeyHolder`.
    pub fn as_key<'a>(&'a self, key: &'a str) -> KeyHolder<'a> {
        KeyHolder { sandbox: self, key }
    }

    /// A new key of the admin's tenant holding exactly `scopes`.
    pub async fn key_with(&self, scopes: &[&str]) -> String {
        let body = json!({"name": "test key", "scopes": scopes});
        let created = self
            .expect(201, &self.admin, "POST", "/v1/api-keys", Some(body))
            .await;
        created["key"].as_str().unwrap().to_string()
    }

    /// A second tenant of the same sandbox, returning its admin key.
    pub fn other_tenant(&self, name: &str) -> String {
        let config = Config::new(&self.data_dir);
        trainar_mcp::sandbox::create_tenant(&config, name)
            .unwrap()
            .1
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Every item of every page of the list at `path` (with or without a query), read as `key`
    /// at `limit` per page, in order; asserts each page respects the limit.
    pub async fn all_pages(&self, key: &str, path: &str, limit: usize) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let separator = if path.contains('?') { '&' } else { '?' };
            let url = match &cursor {
                Some(c) => format!("{path}{separator}limit={limit}&cursor={c}"),
                None => format!("{path}{separator}limit={limit}"),
            };
            let page = self.expect(200, key, "GET", &url, None).await;
            assert!(
                items(&page).len() <= limit,
                "{url}: more than {limit} items"
            );
            all.extend(items(&page).iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return all,
            }
        }
    }

    /// Runs one SQL statement on the sandbox's database beside the running sandbox (WAL lets
    /// both in), for a state the API cannot produce: a period that ended while nobody looked, a
    /// fault. Returns the number of rows changed.
    pub fn sql(&self, sql: &str, params: impl rusqlite::Params) -> usize {
        self.database().execute(sql, params).expect("the SQL runs")
    }

    /// The first column of the first row of a query on the sandbox's database, as text.
    pub fn sql_text(&self, sql: &str, params: impl rusqlite::Params) -> String {
        self.database()
            .query_row(sql, params, |row| row.get(0))
            .expect("the query answers")
    }

    fn database(&self) -> rusqlite::Connection {
        let database = rusqlite::Connection::open(self.data_dir.join("sandbox.sqlite3")).unwrap();
        database
            .busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        database
    }
}

/// One key's requests, with the status each must answer given first and asserted (the body is
/// printed when it differs). `TestSandbox::expect` with the key and the method bound: a call then
/// fits on a line, so a test reads as its requests and what they must answer.
#[derive(Clone, Copy)]
pub struct KeyHolder<'a> {
    sandbox: &'a TestSandbox,
    key: &'a str,
}

impl KeyHolder<'_> {
    pub async fn get(&self, expected: u16, path: &str) -> Value {
        self.sandbox
            .expect(expected, self.key, "GET", path, None)
            .await
    }

    pub async fn delete(&self, expected: u16, path: &str) -> Value {
        self.sandbox
            .expect(expected, self.key, "DELETE", path, None)
            .await
    }

    pub async fn post(&self, expected: u16, path: &str, body: Value) -> Value {
        self.sandbox
            .expect(expected, self.key, "POST", path, Some(body))
            .await
    }

    pub async fn patch(&self, expected: u16, path: &str, body: Value) -> Value {
        self.sandbox
            .expect(expected, self.key, "PATCH", path, Some(body))
            .await
    }

    pub async fn put(&self, expected: u16, path: &str, body: Value) -> Value {
        self.sandbox
            .expect(expected, self.key, "PUT", path, Some(body))
            .await
    }
}

/// The `data` array of a list page.
pub fn items(page: &Value) -> &Vec<Value> {
    page["data"]
        .as_array()
        .expect("a list page has a data array")
}

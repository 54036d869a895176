//! What the harness starts and cleans up: a temp dir, the embedded sandbox (in this process, on
//! its own runtime), the gateway binary (a child process, killed on drop), the build script.

use crate::http::{self, Conn, EventStream};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Result<TempDir, String> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "trainar-bench-{label}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The sandbox, serving on 127.0.0.1 from its own runtime (two workers), until dropped.
pub struct SandboxHandle {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl SandboxHandle {
    /// A fresh demo sandbox in `data_dir` whose admin key is `admin_key`. Call outside any
    /// async runtime (it owns one).
    pub fn start(data_dir: &Path, admin_key: &str) -> Result<SandboxHandle, String> {
        trainar_mcp::install_tls_provider();
        let mut config = trainar_mcp::sandbox::Config::new(data_dir);
        config.demo_seed = true;
        config.admin_key = Some(admin_key.to_string());
        // The bench measures throughput from one tenant: no per-tenant budget in the way.
        config.limits = trainar_mcp::sandbox::limits::Limits::per_second(1e9, 1e9);
        let (sandbox, _) = trainar_mcp::sandbox::Sandbox::open(config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sandbox")
            .enable_all()
            .build()
            .map_err(|e| format!("the sandbox runtime: {e}"))?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    let shutdown = async {
                        let _ = stopped.await;
                    };
                    if let Err(e) = sandbox.serve(listener, shutdown).await {
                        eprintln!("the sandbox stopped: {e}");
                    }
                }
                Err(e) => eprintln!("the sandbox cannot listen: {e}"),
            }
        });
        Ok(SandboxHandle {
            addr,
            stop: Some(stop),
            runtime: Some(runtime),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// The gateway binary, serving on an ephemeral loopback port; killed on drop.
pub struct Gateway {
    child: tokio::process::Child,
    pub pid: u32,
    pub addr: SocketAddr,
    /// From spawn to the first `GET /readyz` answered 200.
    pub ready_after: Duration,
}

impl Gateway {
    /// Spawns `exe serve --upstream …` in front of `upstream` (stderr, the log, into `log`) and
    /// waits until `/readyz` answers 200 (at most 30 s).
    pub async fn spawn(
        exe: &Path,
        upstream: &str,
        log: &Path,
        extra: &[&str],
    ) -> Result<Gateway, String> {
        let log = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = tokio::process::Command::new(exe);
        command
            .args(["serve", "--upstream", upstream, "--listen", "127.0.0.1:0"])
            .args(["--sessions-per-key", "20000"])
            .args(["--rate-limit-per-minute", "100000000"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        // Only the flags above configure it; the log level is the default (info) unless RUST_LOG.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TRAINAR_") {
                command.env_remove(name);
            }
        }
        command.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let pid = child.id().ok_or("the gateway exited at once")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = started + Duration::from_secs(30);
        let url = tokio::time::timeout_at(deadline.into(), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("trainar-mcp listening on ") {
                    return Ok(url.trim().to_string());
                }
            }
            Err("the gateway exited before printing its URL (see its log)".to_string())
        })
        .await
        .map_err(|_| "the gateway printed no URL within 30 s".to_string())??;
        // The rest of the banner: read it, so the child never writes into a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr: SocketAddr = url
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("not a loopback URL: {url}"))?;
        let readyz = http::head("GET", "/readyz", addr, &[]);
        loop {
            if Instant::now() > deadline {
                return Err("/readyz did not answer 200 within 30 s".into());
            }
            if let Ok(mut conn) = Conn::connect(addr).await {
                while let Ok(reply) = conn.send(&readyz, b"").await {
                    if reply.status == 200 {
                        return Ok(Gateway {
                            child,
                            pid,
                            addr,
                            ready_after: started.elapsed(),
                        });
                    }
                    if Instant::now() > deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// VmRSS from /proc/<pid>/status, in bytes.
    pub fn rss(&self) -> Option<u64> {
        rss_of(self.pid)
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Opens idle SSE sessions until `streams` holds `target` (64 handshakes in flight), reading each
/// one's endpoint event so it is established. Stops early at `deadline` or on a refusal.
pub async fn open_idle_streams(
    addr: SocketAddr,
    key: &str,
    streams: &mut Vec<EventStream>,
    target: usize,
    deadline: Instant,
) -> Result<(), String> {
    let bearer = format!("Bearer {key}");
    let head = http::head(
        "GET",
        "/sse",
        addr,
        &[
            ("authorization", bearer.as_str()),
            ("accept", "text/event-stream"),
        ],
    );
    let head = std::sync::Arc::new(head);
    let mut pending = tokio::task::JoinSet::new();
    let mut launched = streams.len();
    let mut failure = None;
    while streams.len() < target {
        while launched < target && pending.len() < 64 && failure.is_none() {
            let head = head.clone();
            pending.spawn(async move {
                let mut stream = EventStream::open(addr, &head).await?;
                let event = stream.next_event().await?;
                if event.name != "endpoint" {
                    return Err(std::io::Error::other(format!(
                        "first event {:?}",
                        event.name
                    )));
                }
                Ok(stream)
            });
            launched += 1;
        }
        let next = tokio::time::timeout_at(deadline.into(), pending.join_next()).await;
        match next {
            Err(_) => {
                failure.get_or_insert_with(|| "the time limit was reached".to_string());
                break;
            }
            Ok(None) => break,
            Ok(Some(Ok(Ok(stream)))) => streams.push(stream),
            Ok(Some(Ok(Err(e)))) => {
                failure.get_or_insert_with(|| e.to_string());
            }
            Ok(Some(Err(e))) => {
                failure.get_or_insert_with(|| e.to_string());
            }
        }
    }
    pending.abort_all();
    match failure {
        Some(failure) => Err(format!(
            "{} of {target} streams opened: {failure}",
            streams.len()
        )),
        None => Ok(()),
    }
}

/// Two runs of the crate's compiled build script against one fresh OUT_DIR.
pub struct BuildScriptRuns {
    pub script: PathBuf,
    pub first: Duration,
    pub second: Duration,
    pub files: usize,
    /// No file was written (created or modified) by the second run.
    pub rewrote_nothing: bool,
}

/// The newest `target/*/build/trainar-mcp-*/build-script-*` next to the gateway binary.
pub fn find_build_script(exe: &Path) -> Option<PathBuf> {
    let target = exe.parent()?.parent()?;
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for profile in std::fs::read_dir(target).ok()?.flatten() {
        let Ok(builds) = std::fs::read_dir(profile.path().join("build")) else {
            continue;
        };
        for build in builds.flatten() {
            if !build
                .file_name()
                .to_string_lossy()
                .starts_with("trainar-mcp-")
            {
                continue;
            }
            // `build-script-build` (build.rs); any other name a `build = …` key would give it.
            let Ok(files) = std::fs::read_dir(build.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                let Some(stem) = name.strip_prefix("build-script-") else {
                    continue;
                };
                if stem.contains('.') {
                    continue;
                }
                let Ok(modified) = file.metadata().and_then(|m| m.modified()) else {
                    continue;
                };
                if newest.as_ref().is_none_or(|(at, _)| modified > *at) {
                    newest = Some((modified, file.path()));
                }
            }
        }
    }
    newest.map(|(_, script)| script)
}

type Snapshot = Vec<(String, Option<SystemTime>, u64)>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut files: Snapshot = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            Some((
                entry.file_name().to_string_lossy().into_owned(),
                meta.modified().ok(),
                meta.len(),
            ))
        })
        .collect();
    files.sort();
    files
}

/// Runs `script` twice with OUT_DIR = `out_dir` and the crate root as working directory.
pub fn time_build_script(script: &Path, out_dir: &Path) -> Result<BuildScriptRuns, String> {
    let run = || -> Result<Duration, String> {
        let started = Instant::now();
        let output = std::process::Command::new(script)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("OUT_DIR", out_dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let elapsed = started.elapsed();
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!(
                "{} failed: {}",
                output.status,
                stderr.lines().next().unwrap_or_default()
            ));
        }
        Ok(elapsed)
    };
    std::fs::create_dir_all(out_dir).map_err(|e| e.to_string())?;
    let first = run()?;
    let before = snapshot(out_dir);
    // Past the file system's timestamp granularity, so that a rewrite would show.
    std::thread::sleep(Duration::from_millis(20));
    let second = run()?;
    let after = snapshot(out_dir);
    Ok(BuildScriptRuns {
        script: script.to_path_buf(),
        first,
        second,
        files: after.len(),
        rewrote_nothing: before == after,
    })
}

/// CPU time spent so far by the gateway process, this process's sandbox threads and its load
/// threads (from /proc, in clock ticks of 10 ms: Linux's USER_HZ).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    pub gateway: Duration,
    pub sandbox: Duration,
    pub load: Duration,
}

impl CpuTimes {
    pub fn now(gateway_pid: Option<u32>) -> CpuTimes {
        let mut times = CpuTimes {
            gateway: gateway_pid
                .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
                .and_then(|stat| ticks(&stat).map(|(_, t)| t))
                .unwrap_or_default(),
            ..CpuTimes::default()
        };
        for task in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            match ticks(&stat) {
                Some((name, t)) if name.starts_with("sandbox") => times.sandbox += t,
                Some((name, t)) if name.starts_with("load") => times.load += t,
                _ => {}
            }
        }
        times
    }

    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            gateway: self.gateway.saturating_sub(earlier.gateway),
            sandbox: self.sandbox.saturating_sub(earlier.sandbox),
            load: self.load.saturating_sub(earlier.load),
        }
    }
}

/// (comm, utime + stime) from a /proc stat line.
fn ticks(stat: &str) -> Option<(&str, Duration)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = &stat[open + 1..close];
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the comm: state is field 3, utime field 14, stime field 15 (1-based, man 5 proc).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, Duration::from_millis((utime + stime) * 10)))
}

/// A helper process (redis-server, haproxy, this bench binary as a forwarder) listening on a port of 127.0.0.1, killed on drop.
struct Service {
    child: std::process::Child,
}

impl Service {
    /// Spawns `command` and waits up to 5 s for `port` to accept.
    fn start(
        mut command: std::process::Command,
        port: u16,
        install: &str,
    ) -> Result<Service, String> {
        let name = command.get_program().to_string_lossy().into_owned();
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{name}: {e} ({install})"))?;
        let mut service = Service { child };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(service);
            }
            if let Ok(Some(status)) = service.child.try_wait() {
                return Err(format!("{name} exited at start: {status}"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(format!("{name} did not listen within 5 s"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// A `redis-server` of its own on a free loopback port, keeping nothing on disk; killed on drop.
pub struct RedisHandle {
    _service: Service,
    pub url: String,
}

impl RedisHandle {
    /// An error when redis-server is not installed (the Redis rows then say so).
    pub fn start(dir: &Path) -> Result<RedisHandle, String> {
        let port = free_port()?;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let mut command = std::process::Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir);
        Ok(RedisHandle {
            _service: Service::start(command, port, "apt-get install redis-server")?,
            url: format!("redis://127.0.0.1:{port}"),
        })
    }
}

/// A second hop in front of one server that does nothing but parse and forward, on a free loopback
/// port; killed on drop. Two kinds: HAProxy, the floor under what any gateway's second hop can
/// cost, and this bench binary again as a forwarder on the gateway's own stack (`forwarder.rs`).
pub struct Hop {
    service: Service,
    pub addr: SocketAddr,
}

impl Hop {
    /// HAProxy in HTTP mode.
    pub fn haproxy(dir: &Path, server: SocketAddr) -> Result<Hop, String> {
        let port = free_port()?;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        // Keep-alive on both sides and server connections shared between clients, as a
        // production proxy runs; no logging. Threads: one per core (HAProxy's default).
        let config = [
            "global".to_string(),
            "    maxconn 4000".into(),
            "defaults".into(),
            "    mode http".into(),
            "    option http-keep-alive".into(),
            "    http-reuse always".into(),
            "    timeout connect 2s".into(),
            "    timeout client 60s".into(),
            "    timeout server 60s".into(),
            "frontend bench".into(),
            format!("    bind 127.0.0.1:{port}"),
            "    default_backend api".into(),
            "backend api".into(),
            format!("    server sandbox {server}"),
            String::new(),
        ]
        .join("\n");
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
        // Debian puts it in /usr/sbin, which a user's PATH may lack.
        let installed = Path::new("/usr/sbin/haproxy");
        let mut command = std::process::Command::new(if installed.exists() {
            installed
        } else {
            Path::new("haproxy")
        });
        command.arg("-db").arg("-f").arg(&path);
        Hop::start(command, port, "apt-get install haproxy")
    }

    /// axum + hyper-util, forwarding only: this bench binary with `--forward-only`.
    pub fn axum(server: SocketAddr) -> Result<Hop, String> {
        let port = free_port()?;
        let exe = std::env::current_exe().map_err(|e| format!("the bench's own binary: {e}"))?;
        let mut command = std::process::Command::new(exe);
        command
            .arg(crate::forwarder::FLAG)
            .arg(SocketAddr::from(([127, 0, 0, 1], port)).to_string())
            .arg(server.to_string());
        Hop::start(command, port, "the bench binary itself")
    }

    fn start(command: std::process::Command, port: u16, install: &str) -> Result<Hop, String> {
        Ok(Hop {
            service: Service::start(command, port, install)?,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    pub fn pid(&self) -> u32 {
        self.service.child.id()
    }
}

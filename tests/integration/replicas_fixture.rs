//! `Cluster`: real parts for the multi-replica tests. Its own `redis-server` on a free port in a
//! temp dir (so a test can kill and restart it), N `trainar-mcp serve --redis` replicas as child
//! processes (so a test can SIGKILL one), all in front of one API, and optionally `haproxy` with
//! deploy/haproxy.cfg in round-robin mode in front of three of them.

use crate::common::{KillOnDrop, binary, repo_root};
use crate::sandbox_fixture::fresh_dir;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    process: Option<KillOnDrop>,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = fresh_dir("redis");
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Redis {
            port: free_port(),
            dir,
            process: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: nothing is saved (the server keeps no snapshot anyway).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts it (again) on the same port, empty.
    pub fn restart(&mut self) {
        let program = which("redis-server");
        let process = Command::new(program)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.process = Some(KillOnDrop(process));
        wait_for_port(self.port);
    }
}

/// One `trainar-mcp serve --redis` replica.
pub struct Replica {
    pub url: String,
    pub address: String,
    process: KillOnDrop,
}

impl Replica {
    /// SIGKILL: no graceful shutdown, no goodbye to Redis.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

pub struct Cluster {
    pub redis: Redis,
    pub replicas: Vec<Replica>,
    /// The load balancer's URL, when there is one.
    pub balancer: Option<String>,
    _haproxy: Option<KillOnDrop>,
}

impl Cluster {
    /// `count` replicas in front of `upstream`, each started with `flags`.
    pub fn start(upstream: &str, count: usize, flags: &[&str]) -> Cluster {
        let redis = Redis::start();
        let replicas = (0..count)
            .map(|_| start_replica(upstream, &redis.url(), flags))
            .collect();
        Cluster {
            redis,
            replicas,
            balancer: None,
            _haproxy: None,
        }
    }

    /// Three replicas behind HAProxy (deploy/haproxy.cfg: round-robin, no stickiness).
    pub fn balanced(upstream: &str, flags: &[&str]) -> Cluster {
        let mut cluster = Cluster::start(upstream, 3, flags);
        let port = free_port();
        let mut haproxy = Command::new(which("haproxy"));
        haproxy
            .arg("-db")
            .arg("-f")
            .arg(repo_root().join("deploy/haproxy.cfg"))
            .env("LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (n, replica) in cluster.replicas.iter().enumerate() {
            haproxy.env(format!("GATEWAY_{}", n + 1), &replica.address);
        }
        cluster._haproxy = Some(KillOnDrop(haproxy.spawn().expect("haproxy starts")));
        wait_for_port(port);
        cluster.balancer = Some(format!("http://127.0.0.1:{port}"));
        cluster
    }

    pub fn url(&self, replica: usize) -> &str {
        &self.replicas[replica].url
    }
}

fn start_replica(upstream: &str, redis: &str, flags: &[&str]) -> Replica {
    let mut process = KillOnDrop(
        binary()
            .args(["serve", "--listen", "127.0.0.1:0", "--upstream", upstream])
            .args(["--redis", redis])
            .args(flags)
            .stdout(Stdio::piped())
            // TRAINAR_TEST_REPLICA_LOG=debug shows the replicas' logs (RUST_LOG's syntax).
            .env(
                "RUST_LOG",
                std::env::var("TRAINAR_TEST_REPLICA_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stderr(match std::env::var_os("TRAINAR_TEST_REPLICA_LOG") {
                Some(_) => Stdio::inherit(),
                None => Stdio::null(),
            })
            .spawn()
            .unwrap(),
    );
    let stdout = process.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve prints the URL it listens on")
            .unwrap();
        if let Some(url) = line.strip_prefix("trainar-mcp listening on ") {
            break url.trim().to_string();
        }
    };
    // Keep reading so the replica never blocks on a full stdout pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let address = url.trim_start_matches("http://").to_string();
    Replica {
        url,
        address,
        process,
    }
}

/// The program's path, or a failure that says how to install it (CI does: `.ci/run`).
fn which(program: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
        let path = PathBuf::from(dir).join(program);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "{program} is not installed; the multi-replica tests need it: \
         apt-get install redis-server haproxy (scripts/test does this when run as root)"
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on port {port} after 5 s");
}

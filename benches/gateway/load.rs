//! The clients (direct REST, MCP Streamable HTTP, MCP legacy SSE, the stateless era) and the two
//! load loops: sequential latency at concurrency 1, and calls/s over a fixed window at
//! concurrency N. Every call is checked (status, `isError: false`, the reply's id), so an error
//! can never pass for a fast call; loops are bounded in calls and in time.

use crate::http::{self, Conn, EventStream};
use crate::procs::CpuTimes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where things are and who calls.
#[derive(Clone)]
pub struct Env {
    pub sandbox: SocketAddr,
    pub gateway: SocketAddr,
    pub admin: String,
    /// A demo task every get_task reads.
    pub task_id: String,
    /// The gateway process, for its CPU time.
    pub gateway_pid: Option<u32>,
    /// Legacy SSE only: POST /messages to this replica while the stream stays on `gateway`.
    pub sse_posts: Option<SocketAddr>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Via {
    /// `GET /v1/tasks/{id}` / `POST /v1/tasks` straight to the sandbox.
    Direct,
    /// `POST /mcp` in an initialized session, JSON responses.
    Streamable,
    /// `GET /sse` + `POST /messages`, the reply read from the stream.
    Sse,
    /// `POST /mcp` without a session, `MCP-Protocol-Version: 2026-07-28`.
    Stateless,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    GetTask,
    CreateTask,
    ListTools,
    /// MCP `ping`: the gateway's own round trip, no upstream call.
    Ping,
}

pub const NEWEST_STATEFUL: &str = "2025-11-25";
pub const STATELESS_ERA: &str = "2026-07-28";

/// One caller with its connection(s) and, for MCP, its session.
pub enum Client {
    Direct {
        conn: Conn,
        get: String,
        create: String,
    },
    Mcp {
        conn: Conn,
        head: String,
        /// 2026-07-28: no session; the envelope rides in every body (get_task only).
        stateless: bool,
        /// The session's id (handshake eras), for other connections to join.
        session: Option<String>,
    },
    Sse {
        stream: Box<EventStream>,
        post: Conn,
        head: String,
    },
}

fn rpc(op: Op, id: u64, task_id: &str) -> String {
    match op {
        Op::GetTask => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"get_task","arguments":{{"task_id":"{task_id}"}}}}}}"#
        ),
        Op::CreateTask => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"create_task","arguments":{{"title":"bench task {id}"}}}}}}"#
        ),
        Op::ListTools => {
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{}}}}"#)
        }
        Op::Ping => format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#),
    }
}

/// The 2026-07-28 envelope every request of that era carries in `params._meta`.
pub const ENVELOPE: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"trainar-bench","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}"#;

fn with_envelope(message: &str) -> String {
    message.replacen(r#""params":{"#, &format!(r#""params":{{{ENVELOPE},"#), 1)
}

fn initialize(version: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{version}","capabilities":{{}},"clientInfo":{{"name":"trainar-bench","version":"1"}}}}}}"#
    )
}

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// What a successful reply to `op` must contain.
fn success_marker(op: Op) -> &'static [u8] {
    match op {
        Op::ListTools => br#""tools":["#,
        Op::Ping => br#""result":{}"#,
        Op::GetTask | Op::CreateTask => br#""isError":false"#,
    }
}

fn io_error(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Client {
    /// A new connection to the gateway in `session` (Streamable HTTP), as an agent that runs
    /// parallel tool calls in one session does.
    pub async fn join(env: &Env, session: &str) -> Result<Client, String> {
        let conn = Conn::connect(env.gateway)
            .await
            .map_err(io_error("connect to the gateway"))?;
        let bearer = format!("Bearer {}", env.admin);
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-session-id", session),
            ("mcp-protocol-version", NEWEST_STATEFUL),
        ];
        Ok(Client::Mcp {
            conn,
            head: http::head("POST", "/mcp", env.gateway, &headers),
            stateless: false,
            session: Some(session.to_string()),
        })
    }

    /// Connects and, for MCP, initializes a session as `key`.
    pub async fn open(env: &Env, via: Via, key: &str) -> Result<Client, String> {
        let bearer = format!("Bearer {key}");
        match via {
            Via::Direct => {
                let conn = Conn::connect(env.sandbox)
                    .await
                    .map_err(io_error("connect to the sandbox"))?;
                let auth = [("authorization", bearer.as_str())];
                let path = format!("/v1/tasks/{}", env.task_id);
                let get = http::head("GET", &path, env.sandbox, &auth);
                let create = http::head(
                    "POST",
                    "/v1/tasks",
                    env.sandbox,
                    &[auth[0], ("content-type", "application/json")],
                );
                Ok(Client::Direct { conn, get, create })
            }
            Via::Streamable | Via::Stateless => {
                let mut conn = Conn::connect(env.gateway)
                    .await
                    .map_err(io_error("connect to the gateway"))?;
                let base = [
                    ("authorization", bearer.as_str()),
                    ("content-type", "application/json"),
                    ("accept", "application/json, text/event-stream"),
                ];
                if via == Via::Stateless {
                    let mut headers = base.to_vec();
                    headers.extend([
                        ("mcp-protocol-version", STATELESS_ERA),
                        ("mcp-method", "tools/call"),
                        ("mcp-name", "get_task"),
                    ]);
                    let head = http::head("POST", "/mcp", env.gateway, &headers);
                    return Ok(Client::Mcp {
                        conn,
                        head,
                        stateless: true,
                        session: None,
                    });
                }
                let init_head = http::head("POST", "/mcp", env.gateway, &base);
                let reply = conn
                    .send(&init_head, initialize(NEWEST_STATEFUL).as_bytes())
                    .await
                    .map_err(io_error("initialize"))?;
                let Some(session) = reply.session.clone().filter(|_| reply.status == 200) else {
                    return Err(format!(
                        "initialize answered {}: {}",
                        reply.status,
                        reply.text()
                    ));
                };
                let mut headers = base.to_vec();
                headers.push(("mcp-session-id", session.as_str()));
                headers.push(("mcp-protocol-version", NEWEST_STATEFUL));
                let head = http::head("POST", "/mcp", env.gateway, &headers);
                let reply = conn
                    .send(&head, INITIALIZED.as_bytes())
                    .await
                    .map_err(io_error("notifications/initialized"))?;
                if reply.status != 202 {
                    return Err(format!(
                        "notifications/initialized answered {}: {}",
                        reply.status,
                        reply.text()
                    ));
                }
                Ok(Client::Mcp {
                    conn,
                    head,
                    stateless: false,
                    session: Some(session),
                })
            }
            Via::Sse => {
                let open = http::head(
                    "GET",
                    "/sse",
                    env.gateway,
                    &[
                        ("authorization", bearer.as_str()),
                        ("accept", "text/event-stream"),
                    ],
                );
                let mut stream = EventStream::open(env.gateway, &open)
                    .await
                    .map_err(io_error("GET /sse"))?;
                let endpoint = stream
                    .next_event()
                    .await
                    .map_err(io_error("the endpoint event"))?;
                if endpoint.name != "endpoint" {
                    return Err(format!(
                        "the first event is {:?}, not endpoint",
                        endpoint.name
                    ));
                }
                let path = endpoint_path(&endpoint.data);
                let posts = env.sse_posts.unwrap_or(env.gateway);
                let mut post = Conn::connect(posts)
                    .await
                    .map_err(io_error("connect to the gateway"))?;
                let head = http::head(
                    "POST",
                    &path,
                    posts,
                    &[
                        ("authorization", bearer.as_str()),
                        ("content-type", "application/json"),
                    ],
                );
                let accepted = post
                    .send(&head, initialize("2024-11-05").as_bytes())
                    .await
                    .map_err(io_error("POST initialize"))?;
                if accepted.status != 202 {
                    return Err(format!(
                        "POST initialize answered {}: {}",
                        accepted.status,
                        accepted.text()
                    ));
                }
                let reply = stream
                    .next_event()
                    .await
                    .map_err(io_error("the initialize reply"))?;
                if !reply.data.contains(r#""protocolVersion""#) {
                    return Err(format!("initialize replied {}", reply.data));
                }
                let accepted = post
                    .send(&head, INITIALIZED.as_bytes())
                    .await
                    .map_err(io_error("POST notifications/initialized"))?;
                if accepted.status != 202 {
                    return Err(format!(
                        "notifications/initialized answered {}",
                        accepted.status
                    ));
                }
                Ok(Client::Sse {
                    stream: Box::new(stream),
                    post,
                    head,
                })
            }
        }
    }

    /// One call of `op` (`seq` makes ids and titles unique); the reply's body (for SSE, the
    /// event's data).
    pub async fn call(&mut self, op: Op, seq: u64, task_id: &str) -> Result<Vec<u8>, String> {
        match self {
            Client::Direct { conn, get, create } => {
                let (reply, expected) = match op {
                    Op::GetTask => (conn.send(get, b"").await, 200),
                    Op::CreateTask => {
                        let body = format!(r#"{{"title":"bench task {seq}"}}"#);
                        (conn.send(create, body.as_bytes()).await, 201)
                    }
                    Op::ListTools | Op::Ping => return Err("MCP only".into()),
                };
                let reply = reply.map_err(io_error("request"))?;
                if reply.status != expected {
                    return Err(format!("HTTP {}: {}", reply.status, reply.text()));
                }
                Ok(reply.body)
            }
            Client::Mcp {
                conn,
                head,
                stateless,
                ..
            } => {
                let body = match (*stateless, op) {
                    (false, _) => rpc(op, seq, task_id),
                    (true, Op::GetTask) => with_envelope(&rpc(op, seq, task_id)),
                    (true, _) => return Err("the stateless client calls get_task only".into()),
                };
                let reply = conn
                    .send(head, body.as_bytes())
                    .await
                    .map_err(io_error("request"))?;
                if reply.status != 200 || !reply.contains(success_marker(op)) {
                    return Err(format!("HTTP {}: {}", reply.status, reply.text()));
                }
                Ok(reply.body)
            }
            Client::Sse { stream, post, head } => {
                let accepted = post
                    .send(head, rpc(op, seq, task_id).as_bytes())
                    .await
                    .map_err(io_error("POST /messages"))?;
                if accepted.status != 202 {
                    return Err(format!("HTTP {}: {}", accepted.status, accepted.text()));
                }
                let reply = stream.next_event().await.map_err(io_error("the stream"))?;
                let id = format!(r#""id":{seq},"#);
                let data = reply.data.as_bytes();
                if reply.name != "message"
                    || !http::contains(data, id.as_bytes())
                    || !http::contains(data, success_marker(op))
                {
                    return Err(format!("{} event: {}", reply.name, reply.data));
                }
                Ok(reply.data.into_bytes())
            }
        }
    }
}

/// The path to POST to, from the endpoint event (relative to /sse, absolute, or a full URL).
fn endpoint_path(endpoint: &str) -> String {
    if let Some(rest) = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
    {
        return rest
            .find('/')
            .map(|i| rest[i..].to_string())
            .unwrap_or_else(|| "/".into());
    }
    if endpoint.starts_with('/') {
        endpoint.to_string()
    } else {
        format!("/{endpoint}")
    }
}

/// Latency at concurrency 1.
#[derive(Clone, Debug)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub calls: usize,
    /// The last reply's body (for SSE, the event's data).
    pub last_reply: Vec<u8>,
}

/// Throughput at concurrency N.
#[derive(Clone, Debug)]
pub struct Rate {
    pub per_second: f64,
    pub calls: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// CPU time spent during the window by the gateway, the sandbox and the load generator.
    pub cpu: CpuTimes,
}

impl Rate {
    /// CPU time per counted call, of (gateway, sandbox, load generator).
    pub fn cpu_per_call(&self) -> Option<(Duration, Duration, Duration)> {
        let calls = u32::try_from(self.calls).ok().filter(|n| *n > 0)?;
        Some((
            self.cpu.gateway / calls,
            self.cpu.sandbox / calls,
            self.cpu.load / calls,
        ))
    }
}

/// How many calls and how long each loop may take.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub warmup_calls: usize,
    pub latency_calls: usize,
    pub latency_cap: Duration,
    pub warmup: Duration,
    pub window: Duration,
}

/// `warmup_calls`, then up to `latency_calls` sequential calls (within `latency_cap`).
pub async fn latency(
    env: &Env,
    via: Via,
    op: Op,
    key: &str,
    plan: &Plan,
) -> Result<Latency, String> {
    let mut client = Client::open(env, via, key).await?;
    let mut seq = 1_000_000;
    for _ in 0..plan.warmup_calls {
        seq += 1;
        client.call(op, seq, &env.task_id).await?;
    }
    let deadline = Instant::now() + plan.latency_cap;
    let mut samples = Vec::with_capacity(plan.latency_calls);
    let mut last_reply = Vec::new();
    while samples.len() < plan.latency_calls && Instant::now() < deadline {
        seq += 1;
        let started = Instant::now();
        last_reply = client.call(op, seq, &env.task_id).await?;
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    Ok(Latency {
        p50: percentile(&samples, 50.0),
        p99: percentile(&samples, 99.0),
        calls: samples.len(),
        last_reply,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Calls per second with `concurrency` callers, each on its own keep-alive connection(s) and
/// session, counted over `plan.window` after `plan.warmup`.
pub async fn throughput(
    env: &Arc<Env>,
    via: Via,
    op: Op,
    concurrency: usize,
    plan: &Plan,
) -> Result<Rate, String> {
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        clients.push(Client::open(env, via, &env.admin).await?);
    }
    drive(env, via, op, clients, plan).await
}

/// Like `throughput` over Streamable HTTP, but every connection calls in ONE session.
pub async fn throughput_in_one_session(
    env: &Arc<Env>,
    op: Op,
    concurrency: usize,
    plan: &Plan,
) -> Result<Rate, String> {
    let first = Client::open(env, Via::Streamable, &env.admin).await?;
    let Client::Mcp {
        session: Some(session),
        ..
    } = &first
    else {
        return Err("initialize gave no session".into());
    };
    let session = session.clone();
    let mut clients = vec![first];
    for _ in 1..concurrency {
        clients.push(Client::join(env, &session).await?);
    }
    drive(env, Via::Streamable, op, clients, plan).await
}

/// Runs `clients` (one task each) for the plan's window; counts the calls that end within it.
async fn drive(
    env: &Arc<Env>,
    via: Via,
    op: Op,
    clients: Vec<Client>,
    plan: &Plan,
) -> Result<Rate, String> {
    let concurrency = clients.len().max(1);
    let started = Instant::now();
    let counting_from = started + plan.warmup;
    let until = counting_from + plan.window;
    // A bound on calls too, far above what a window can hold on loopback.
    let max_calls_per_caller: u64 = 2_000_000 / concurrency as u64;
    let gateway_pid = env.gateway_pid;
    let meter = tokio::spawn(async move {
        tokio::time::sleep_until(counting_from.into()).await;
        let before = CpuTimes::now(gateway_pid);
        tokio::time::sleep_until(until.into()).await;
        CpuTimes::now(gateway_pid).since(&before)
    });
    let workers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(index, mut client)| {
            let env = env.clone();
            tokio::spawn(async move {
                let mut counted = 0u64;
                let mut errors = 0u64;
                let mut first_error = None;
                let mut seq = (index as u64 + 1) * 10_000_000;
                let mut made = 0u64;
                while Instant::now() < until && made < max_calls_per_caller {
                    seq += 1;
                    made += 1;
                    match client.call(op, seq, &env.task_id).await {
                        Ok(_) => {
                            let done = Instant::now();
                            if done >= counting_from && done < until {
                                counted += 1;
                            }
                        }
                        Err(error) => {
                            errors += 1;
                            first_error.get_or_insert(error);
                            // The connection may be unusable now: start over with a new one.
                            match Client::open(&env, via, &env.admin).await {
                                Ok(fresh) => client = fresh,
                                Err(_) => break,
                            }
                            if errors >= 100 {
                                break;
                            }
                        }
                    }
                }
                (counted, errors, first_error)
            })
        })
        .collect();
    let mut rate = Rate {
        per_second: 0.0,
        calls: 0,
        errors: 0,
        first_error: None,
        cpu: CpuTimes::default(),
    };
    for worker in workers {
        let (counted, errors, first_error) = worker
            .await
            .map_err(|e| format!("a load worker failed: {e}"))?;
        rate.calls += counted;
        rate.errors += errors;
        if rate.first_error.is_none() {
            rate.first_error = first_error;
        }
    }
    rate.per_second = rate.calls as f64 / plan.window.as_secs_f64();
    rate.cpu = meter.await.unwrap_or_default();
    Ok(rate)
}

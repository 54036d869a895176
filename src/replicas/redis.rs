//! Sessions and per-key limits in Redis, shared by every replica (`serve --redis`).
//!
//! What lives where (ARCHITECTURE.md, "Several replicas", says why):
//! - Redis: each handshake session as a hash (key fingerprint, version, selection, log level, the
//!   replica holding its SSE stream, calls in flight) with the idle timeout as its TTL; each key's
//!   sessions as a sorted set by last use; each key's GCRA rate bucket; each replica's heartbeat.
//!   Every decision that must hold across replicas (rate, cap, lookup) is one Lua script: one
//!   round trip, atomic.
//! - This process: the session objects its requests are using (calls in flight, for cancelling),
//!   and the SSE streams it holds.
//! - Pub/sub: a replica answering a `POST /messages` for a stream held elsewhere publishes the
//!   reply, progress and log messages to the holder's inbox channel; cancels and session ends are
//!   broadcast. Fire-and-forget messages go through one ordered outbox, pipelined.

use crate::mcp::jsonrpc::Reply;
use crate::mcp::selection::Selection;
use crate::mcp::session::{LogLevel, Outbound, Relay, Session, SessionRecord};
use crate::rate_limiter::{RateLimiter, burst};
use crate::replicas::{Limits, Refusal};
use crate::sync::lock;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pin_project_lite::pin_project! {
    /// A Redis exchange, polled inside the runtime context of `home` (the process's runtime).
    ///
    /// Why: the connection manager connects on first use and reconnects after a failed command,
    /// starting the new connection and its driver with `tokio::spawn` in the context of whatever
    /// polls that command; and commands run in request handlers, on lanes. Started there, the
    /// replica link lived on one lane: every exchange, the beat and the outbox included, waited
    /// behind that lane's connections, and the link died with the lane.
    struct AtHome<'a, F> {
        home: Option<&'a tokio::runtime::Handle>,
        #[pin]
        work: F,
    }
}

impl<F: Future> Future for AtHome<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let this = self.project();
        let _inside = this.home.map(|home| home.enter());
        this.work.poll(cx)
    }
}

const REPLICA_PREFIX: &str = "trainar:replica:";
const SESSION_PREFIX: &str = "trainar:session:";
const BROADCAST: &str = "trainar:all";
/// A replica that has not renewed its heartbeat for this long is dead, and its streams with it.
const HEARTBEAT_TTL: Duration = Duration::from_secs(5);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How often an unreachable Redis is tried again.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// Fire-and-forget messages waiting for Redis; beyond that they are dropped (and logged).
const OUTBOX: usize = 16_384;

fn session_key(id: &str) -> String {
    format!("{SESSION_PREFIX}{id}")
}

fn index_prefix() -> &'static str {
    "trainar:key-sessions:"
}

fn index_key(fingerprint: &str) -> String {
    format!("{}{fingerprint}", index_prefix())
}

fn rate_key(fingerprint: &str) -> String {
    format!("trainar:key-rate:{fingerprint}")
}

fn inbox(replica: &str) -> String {
    format!("trainar:to:{replica}")
}

/// The Lua scripts, each with the shared functions prepended.
struct Scripts {
    rate: redis::Script,
    admit: redis::Script,
    open: redis::Script,
    end: redis::Script,
    end_key: redis::Script,
    save: redis::Script,
    heartbeat: redis::Script,
    /// Sent inside outbox pipelines as plain EVAL (a pipeline cannot fall back from EVALSHA to
    /// loading the script); neither needs the shared functions.
    finish: &'static str,
    end_text: &'static str,
}

impl Scripts {
    fn load() -> Scripts {
        let with_common =
            |body: &str| redis::Script::new(&format!("{}\n{body}", include_str!("lua/common.lua")));
        Scripts {
            rate: with_common(include_str!("lua/rate.lua")),
            admit: with_common(include_str!("lua/admit.lua")),
            open: with_common(include_str!("lua/open.lua")),
            end: with_common(include_str!("lua/end.lua")),
            end_key: with_common(include_str!("lua/end_key.lua")),
            save: with_common(include_str!("lua/save.lua")),
            heartbeat: with_common(include_str!("lua/heartbeat.lua")),
            finish: include_str!("lua/finish.lua"),
            end_text: include_str!("lua/end.lua"),
        }
    }
}

/// A message for Redis that nobody waits for, in the order it was queued.
enum Outgoing {
    Publish {
        channel: String,
        payload: String,
    },
    /// A tool call of the session finished.
    Finish {
        session_id: String,
    },
    /// A stream held here closed: the session ends everywhere.
    End {
        session_id: String,
        fingerprint: String,
    },
}

/// What this process holds of a shared session.
enum Held {
    /// Its SSE stream is here: kept until the stream closes.
    Stream(Arc<Session>),
    /// Requests here are using it (kept only while they do, for cancelling).
    Visit(Weak<Session>),
}

impl Held {
    fn session(&self) -> Option<Arc<Session>> {
        match self {
            Held::Stream(session) => Some(session.clone()),
            Held::Visit(session) => session.upgrade(),
        }
    }
}

#[derive(Default)]
struct Live {
    sessions: HashMap<String, Held>,
    /// Dead visits are swept when the map grows past this.
    sweep_at: usize,
}

pub struct RedisState {
    /// The runtime the link lives on: the one `new` ran on, the process's (see `AtHome`).
    home: Option<tokio::runtime::Handle>,
    /// This replica's name among the others (random per process).
    replica: String,
    client: redis::Client,
    manager: ConnectionManager,
    scripts: Scripts,
    limits: Limits,
    /// The rate limit while Redis is unreachable (per replica, so at most N × replicas).
    fallback: RateLimiter,
    timeout: Duration,
    /// Whether the last exchange with Redis worked; while not, handshake requests are refused
    /// at once instead of each waiting for the timeout.
    up: AtomicBool,
    live: Mutex<Live>,
    outbox: mpsc::Sender<Outgoing>,
    outbox_receiver: Mutex<Option<mpsc::Receiver<Outgoing>>>,
}

/// Counts a call in flight in Redis while it lives (a session with calls in flight is never
/// evicted to make room under the cap).
pub struct CallGuard {
    state: Arc<RedisState>,
    session_id: String,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.state.queue(Outgoing::Finish {
            session_id: std::mem::take(&mut self.session_id),
        });
    }
}

/// A URL fit for logs: no password.
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl RedisState {
    /// Connects lazily: a gateway starts (and serves the stateless era) while Redis is down.
    pub fn new(url: &str, timeout: Duration, limits: Limits) -> Result<Arc<RedisState>, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("invalid --redis URL {}: {e}", redacted(url)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| format!("cannot use Redis at {}: {e}", redacted(url)))?;
        let (outbox, outbox_receiver) = mpsc::channel(OUTBOX);
        Ok(Arc::new(RedisState {
            home: tokio::runtime::Handle::try_current().ok(),
            replica: crate::mcp::session::new_session_id()[..16].to_string(),
            client,
            manager,
            scripts: Scripts::load(),
            fallback: RateLimiter::new(limits.requests_per_minute),
            limits,
            timeout,
            up: AtomicBool::new(false),
            live: Mutex::default(),
            outbox,
            outbox_receiver: Mutex::new(Some(outbox_receiver)),
        }))
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    fn interval_ms(&self) -> f64 {
        60_000.0 / f64::from(self.limits.requests_per_minute.max(1))
    }

    fn burst(&self) -> f64 {
        burst(f64::from(self.limits.requests_per_minute.max(1)))
    }

    /// Runs one exchange with Redis, bounded by the timeout; a failure marks Redis down.
    async fn exchange<T>(
        &self,
        work: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Refusal> {
        let work = AtHome {
            home: self.home.as_ref(),
            work,
        };
        let reason = match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => format!("Redis failed: {e}"),
            Err(_) => format!(
                "Redis did not answer within {} ms",
                self.timeout.as_millis()
            ),
        };
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(%reason, "Redis is unreachable: handshake-era requests get 503 until it returns");
        }
        Err(Refusal::Unavailable { reason })
    }

    fn unavailable(&self) -> Refusal {
        Refusal::Unavailable {
            reason: "Redis is unreachable".into(),
        }
    }

    /// The per-key rate for a request without a session; while Redis is unreachable each replica
    /// limits on its own rather than refusing the stateless era too.
    pub async fn rate(&self, fingerprint: &str, cost: u32) -> Result<(), Refusal> {
        let local = || {
            self.fallback
                .check(fingerprint, cost)
                .map_err(|retry_after| Refusal::RateLimited { retry_after })
        };
        if !self.is_up() {
            return local();
        }
        let mut connection = self.manager.clone();
        let mut invocation = self.scripts.rate.key(rate_key(fingerprint));
        invocation
            .arg(self.interval_ms())
            .arg(self.burst())
            .arg(cost);
        match self
            .exchange(invocation.invoke_async::<Vec<String>>(&mut connection))
            .await
        {
            Ok(reply) => limited(&reply).map_or(Ok(()), Err),
            Err(_) => local(),
        }
    }

    /// The rate limit and session `id` of the key, in one round trip.
    pub async fn admit(
        self: &Arc<Self>,
        fingerprint: &str,
        id: &str,
        call: bool,
        cost: u32,
    ) -> Result<(Arc<Session>, Option<CallGuard>), Refusal> {
        if !self.is_up() {
            return Err(self.unavailable());
        }
        let call_ms = if call {
            // Calls are bounded by the call timeout; a replica that died mid-call stops
            // counting once it could no longer be running.
            (self.limits.call_timeout + Duration::from_secs(5)).as_millis()
        } else {
            0
        };
        let mut connection = self.manager.clone();
        let mut invocation = self.scripts.admit.key(rate_key(fingerprint));
        invocation
            .key(session_key(id))
            .key(index_key(fingerprint))
            .arg(self.interval_ms())
            .arg(self.burst())
            .arg(fingerprint)
            .arg(id)
            .arg(self.limits.idle_timeout.as_millis() as u64)
            .arg(call_ms as u64)
            .arg(REPLICA_PREFIX)
            .arg(cost);
        let reply: Vec<String> = self
            .exchange(invocation.invoke_async(&mut connection))
            .await?;
        if let Some(refusal) = limited(&reply) {
            return Err(refusal);
        }
        let [status, version, selection, log, owner] = reply.as_slice() else {
            return Err(Refusal::UnknownSession);
        };
        if status != "ok" {
            return Err(Refusal::UnknownSession);
        }
        let record = SessionRecord {
            id: id.to_string(),
            key_fingerprint: fingerprint.to_string(),
            selection: serde_json::from_str(selection).unwrap_or_else(|_| Selection {
                // A record this build cannot read offers nothing rather than everything.
                tools: Some(Default::default()),
                ..Selection::default()
            }),
            protocol_version: version.clone(),
            log_level: LogLevel::parse(log),
        };
        let session = self.hold(record, owner);
        let guard = call.then(|| CallGuard {
            state: self.clone(),
            session_id: id.to_string(),
        });
        Ok((session, guard))
    }

    /// The object requests here share for a session (so a cancel finds the call it names).
    fn hold(self: &Arc<Self>, record: SessionRecord, owner: &str) -> Arc<Session> {
        let mut live = lock(&self.live);
        if let Some(session) = live.sessions.get(&record.id).and_then(Held::session) {
            session.refresh_log_level(record.log_level);
            return session;
        }
        let outbound = if owner.is_empty() || owner == self.replica {
            // Here but not held: the stream has just closed.
            Outbound::Closed
        } else {
            Outbound::Remote(owner.to_string())
        };
        let id = record.id.clone();
        let session = Arc::new(Session::shared(record, outbound, self.clone()));
        live.sessions
            .insert(id, Held::Visit(Arc::downgrade(&session)));
        if live.sessions.len() > live.sweep_at {
            live.sessions.retain(|_, held| held.session().is_some());
            live.sweep_at = (live.sessions.len() * 2).max(1024);
        }
        session
    }

    /// Stores a new session if its key has room (evicting the key's idlest quiet session at the
    /// cap); a session with a stream in this process is held here.
    pub async fn open(
        self: &Arc<Self>,
        session: Session,
        rate: bool,
    ) -> Result<Arc<Session>, Refusal> {
        if !self.is_up() {
            return Err(self.unavailable());
        }
        let record = session.record();
        let streams_here = session.streams_here();
        let selection = serde_json::to_string(&record.selection).unwrap_or_default();
        let mut connection = self.manager.clone();
        let mut invocation = self.scripts.open.key(rate_key(&record.key_fingerprint));
        invocation
            .key(session_key(&record.id))
            .key(index_key(&record.key_fingerprint))
            .arg(self.interval_ms())
            .arg(if rate { self.burst() } else { 0.0 })
            .arg(&record.key_fingerprint)
            .arg(&record.id)
            .arg(self.limits.idle_timeout.as_millis() as u64)
            .arg(self.limits.sessions_per_key)
            .arg(&record.protocol_version)
            .arg(selection)
            .arg(record.log_level.map_or("", LogLevel::as_str))
            .arg(if streams_here {
                self.replica.as_str()
            } else {
                ""
            })
            .arg(REPLICA_PREFIX)
            .arg(SESSION_PREFIX)
            .arg(BROADCAST);
        let reply: Vec<String> = self
            .exchange(invocation.invoke_async(&mut connection))
            .await?;
        if let Some(refusal) = limited(&reply) {
            return Err(refusal);
        }
        match reply.as_slice() {
            [status, evicted] if status == "ok" => {
                if !evicted.is_empty() {
                    tracing::info!("session evicted for a new one");
                }
            }
            [status, held] if status == "full" => {
                return Err(Refusal::SessionCap {
                    held: held.parse().unwrap_or(self.limits.sessions_per_key),
                });
            }
            _ => return Err(self.unavailable()),
        }
        let session = Arc::new(session.with_relay(self.clone()));
        let held = if streams_here {
            Held::Stream(session.clone())
        } else {
            Held::Visit(Arc::downgrade(&session))
        };
        lock(&self.live).sessions.insert(record.id, held);
        Ok(session)
    }

    /// Ends session `id` of the key everywhere (DELETE). False when the key has no such session.
    pub async fn end(&self, id: &str, fingerprint: &str) -> Result<bool, Refusal> {
        if !self.is_up() {
            return Err(self.unavailable());
        }
        let mut connection = self.manager.clone();
        let mut invocation = self.scripts.end.key(session_key(id));
        invocation
            .key(index_key(fingerprint))
            .arg(fingerprint)
            .arg(id)
            .arg(BROADCAST);
        let ended: i64 = self
            .exchange(invocation.invoke_async(&mut connection))
            .await?;
        if ended == 1 {
            self.close_here(id);
        }
        Ok(ended == 1)
    }

    /// Ends every session of the key with `fingerprint`, on every replica.
    pub async fn end_key(&self, fingerprint: &str) -> Result<usize, Refusal> {
        let mut connection = self.manager.clone();
        let mut invocation = self.scripts.end_key.key(index_key(fingerprint));
        invocation.arg(SESSION_PREFIX).arg(BROADCAST);
        self.exchange(invocation.invoke_async(&mut connection))
            .await
    }

    /// Closes what this process holds of session `id` (its stream, its calls).
    fn close_here(&self, id: &str) {
        let held = lock(&self.live).sessions.remove(id);
        if let Some(session) = held.as_ref().and_then(Held::session) {
            session.close();
        }
    }

    /// The stream held here closed (the client left, or stopped reading): the session ends.
    pub fn stream_closed(&self, session: &Session) {
        self.close_here(&session.id);
        session.close();
        self.queue(Outgoing::End {
            session_id: session.id.clone(),
            fingerprint: session.key_fingerprint.clone(),
        });
    }

    fn queue(&self, message: Outgoing) {
        if self.outbox.try_send(message).is_err() {
            tracing::warn!("the Redis outbox is full; a message for another replica was dropped");
        }
    }

    /// Background work, until aborted: the outbox, the inbox, the heartbeat.
    pub fn start(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(receiver) = lock(&self.outbox_receiver).take() {
            tasks.push(tokio::spawn(self.clone().send_outbox(receiver)));
        }
        tasks.push(tokio::spawn(self.clone().listen()));
        tasks.push(tokio::spawn(self.clone().beat()));
        tasks
    }

    /// Sends queued messages in order, as many per round trip as have queued up.
    async fn send_outbox(self: Arc<Self>, mut receiver: mpsc::Receiver<Outgoing>) {
        let idle_ms = self.limits.idle_timeout.as_millis() as u64;
        let mut batch = Vec::new();
        while receiver.recv_many(&mut batch, 256).await > 0 {
            if !self.is_up() {
                batch.clear();
                continue;
            }
            let mut pipe = redis::pipe();
            for message in batch.drain(..) {
                match message {
                    Outgoing::Publish { channel, payload } => {
                        pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                    }
                    Outgoing::Finish { session_id } => {
                        pipe.cmd("EVAL")
                            .arg(self.scripts.finish)
                            .arg(1)
                            .arg(session_key(&session_id))
                            .arg(idle_ms)
                            .ignore();
                    }
                    Outgoing::End {
                        session_id,
                        fingerprint,
                    } => {
                        pipe.cmd("EVAL")
                            .arg(self.scripts.end_text)
                            .arg(2)
                            .arg(session_key(&session_id))
                            .arg(index_key(&fingerprint))
                            .arg(&fingerprint)
                            .arg(&session_id)
                            .arg(BROADCAST)
                            .ignore();
                    }
                }
            }
            let mut connection = self.manager.clone();
            let _ = self.exchange(pipe.query_async::<()>(&mut connection)).await;
        }
    }

    /// Receives this replica's inbox and the broadcasts, reconnecting whenever the connection
    /// drops (messages sent meanwhile are lost: their sessions' clients time out or retry).
    async fn listen(self: Arc<Self>) {
        loop {
            let subscribed = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub
                    .subscribe(&[inbox(&self.replica), BROADCAST.to_string()])
                    .await?;
                redis::RedisResult::Ok(pubsub)
            };
            if let Ok(Ok(mut pubsub)) = tokio::time::timeout(self.timeout, subscribed).await {
                let mut messages = std::pin::pin!(pubsub.on_message());
                while let Some(message) = std::future::poll_fn(|cx| {
                    futures_core::Stream::poll_next(messages.as_mut(), cx)
                })
                .await
                {
                    self.received(message.get_channel_name(), message.get_payload_bytes());
                }
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// One message from another replica: `d <session> <message>` for a stream held here,
    /// `c <session> <request id>` to cancel a call, `x <session>` when a session ended.
    fn received(&self, channel: &str, payload: &[u8]) {
        let Ok(payload) = std::str::from_utf8(payload) else {
            return;
        };
        let mut parts = payload.splitn(3, ' ');
        let (Some(kind), Some(id)) = (parts.next(), parts.next()) else {
            return;
        };
        let rest = parts.next().unwrap_or_default();
        match kind {
            "d" if channel != BROADCAST => {
                let held = lock(&self.live).sessions.get(id).and_then(Held::session);
                if let Some(session) = held
                    && session.streams_here()
                    && !session.send(Reply::relayed(rest.to_string()))
                {
                    self.stream_closed(&session);
                }
            }
            "c" => {
                let held = lock(&self.live).sessions.get(id).and_then(Held::session);
                if let (Some(session), Ok(request_id)) = (held, serde_json::from_str::<Value>(rest))
                {
                    session.cancel_here(&request_id);
                }
            }
            "x" => self.close_here(id),
            _ => {}
        }
    }

    /// Renews this replica's heartbeat and the TTL of the streams it holds; ends the streams
    /// whose sessions are gone from Redis (ended elsewhere, or Redis lost them).
    async fn beat(self: Arc<Self>) {
        let heartbeat_ms = HEARTBEAT_TTL.as_millis() as u64;
        let idle_ms = self.limits.idle_timeout.as_millis() as u64;
        loop {
            let streams: Vec<Arc<Session>> = lock(&self.live)
                .sessions
                .values()
                .filter_map(|held| match held {
                    Held::Stream(session) => Some(session.clone()),
                    Held::Visit(_) => None,
                })
                .collect();
            let mut invocation = self
                .scripts
                .heartbeat
                .key(format!("{REPLICA_PREFIX}{}", self.replica));
            for session in &streams {
                invocation.key(session_key(&session.id));
            }
            invocation
                .arg(heartbeat_ms)
                .arg(idle_ms)
                .arg(index_prefix());
            let mut connection = self.manager.clone();
            // A failure marks Redis down (in `exchange`); only the heartbeat marks it up again.
            if let Ok(gone) = self
                .exchange(invocation.invoke_async::<Vec<usize>>(&mut connection))
                .await
            {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(replica = %self.replica, "Redis is reachable");
                }
                for position in gone {
                    if let Some(session) = position.checked_sub(1).and_then(|i| streams.get(i)) {
                        self.close_here(&session.id);
                    }
                }
            }
            let pause = if self.is_up() {
                HEARTBEAT_EVERY
            } else {
                PROBE_EVERY
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// Shutting down: every stream held here ends (and its session with it: the client
    /// reconnects to another replica), the heartbeat is withdrawn, calls here are cancelled.
    /// Sessions without a stream stay in Redis for the other replicas.
    pub async fn drain(&self) {
        let held: Vec<(String, Held)> = lock(&self.live).sessions.drain().collect();
        let mut pipe = redis::pipe();
        for (id, held) in held {
            if let Some(session) = held.session() {
                if session.streams_here() {
                    pipe.cmd("DEL").arg(session_key(&id)).ignore();
                    pipe.cmd("ZREM")
                        .arg(index_key(&session.key_fingerprint))
                        .arg(&id)
                        .ignore();
                }
                session.close();
            }
        }
        pipe.cmd("DEL")
            .arg(format!("{REPLICA_PREFIX}{}", self.replica))
            .ignore();
        let mut connection = self.manager.clone();
        let _ = self.exchange(pipe.query_async::<()>(&mut connection)).await;
    }
}

impl Relay for RedisState {
    fn deliver(&self, owner: &str, session_id: &str, message: Reply) {
        self.queue(Outgoing::Publish {
            channel: inbox(owner),
            payload: format!("d {session_id} {}", message.as_str()),
        });
    }

    fn cancel(&self, session_id: &str, request_id: &Value) {
        self.queue(Outgoing::Publish {
            channel: BROADCAST.into(),
            payload: format!("c {session_id} {request_id}"),
        });
    }

    fn save<'a>(
        &'a self,
        session_id: &'a str,
        field: &'static str,
        value: String,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let mut connection = self.manager.clone();
            let mut invocation = self.scripts.save.key(session_key(session_id));
            invocation.arg(field).arg(value);
            self.exchange(invocation.invoke_async::<i64>(&mut connection))
                .await
                .map(|_| ())
                .map_err(|refusal| match refusal {
                    Refusal::Unavailable { reason } => reason,
                    _ => "Redis refused".into(),
                })
        })
    }
}

/// `{'limited', ms}` → the refusal, with whole seconds to wait (at least one).
fn limited(reply: &[String]) -> Option<Refusal> {
    match reply {
        [status, wait_ms] if status == "limited" => {
            let ms: u64 = wait_ms.parse().unwrap_or(1000);
            Some(Refusal::RateLimited {
                retry_after: ms.div_ceil(1000).max(1),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `redis-server` of the test's own on a free loopback port, killed when dropped.
    struct Server {
        process: std::process::Child,
        port: u16,
    }

    impl Server {
        async fn start() -> Server {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let process = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                // Nothing is written: no snapshots, no append-only file.
                .args(["--save", "", "--appendonly", "no"])
                .current_dir(std::env::temp_dir())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect(
                    "redis-server is installed (apt-get install redis-server; scripts/test does)",
                );
            for _ in 0..200 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Server { process, port }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_connection_a_lane_makes_lives_on_the_process_runtime() {
        let server = Server::start().await;
        let url = format!("redis://127.0.0.1:{}/", server.port);
        let redis = RedisState::new(&url, Duration::from_secs(2), Limits::default()).unwrap();
        redis.up.store(true, Ordering::Relaxed);
        let lanes = crate::lanes::Lanes::start(1).unwrap();
        let (done, finished) = tokio::sync::oneshot::channel();
        let on_lane = redis.clone();
        // The manager connects on first use: here, from a request handler's lane.
        lanes.spawn(|| {
            Some(async move {
                let _ = done.send(on_lane.end_key("fingerprint").await);
            })
        });
        assert!(finished.await.unwrap().is_ok(), "Redis answered");
        assert!(redis.is_up());
        // The handler's own task ends just after it sends; a driver left there stays while the
        // connection is open.
        for _ in 0..100 {
            if lanes.alive_tasks() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            lanes.alive_tasks(),
            0,
            "the connection's driver was left on the lane"
        );
        lanes.stop().await;
        assert!(
            redis.end_key("fingerprint").await.is_ok(),
            "the link outlives the lane"
        );
    }
}

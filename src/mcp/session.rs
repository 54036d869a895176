//! Sessions of the handshake eras, and the one seam they are kept behind (`SessionStore`).
//!
//! A session is bound to the key that created it (by the key's SHA-256, never the key itself): the
//! same id presented with another key is unknown. Replacing `MemorySessionStore` with a shared
//! store is what running several replicas takes.

use crate::mcp::envelope::MODERN_VERSIONS;
use crate::mcp::jsonrpc::Reply;
use crate::mcp::selection::Selection;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

pub struct Session {
    pub id: String,
    /// SHA-256 of the key that created the session.
    pub key_fingerprint: String,
    pub selection: Selection,
    /// The negotiated protocol version, set by `initialize` (or by the 2026-07-28 envelope of
    /// the one request a stateless session lives for).
    protocol_version: Mutex<String>,
    /// Cancels an in-flight request: its JSON-RPC id (as JSON text) → the sender that aborts it.
    in_flight: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// Where server-to-client messages go (the legacy SSE stream); None when there is no stream
    /// or it was closed. Bounded: a client that stops reading is dropped, not buffered for.
    outbound: Mutex<Option<mpsc::Sender<Reply>>>,
    last_seen: Mutex<Instant>,
    /// The least severe level the client wants as `notifications/message`; None: no log.
    log_level: Mutex<Option<LogLevel>>,
}

/// The syslog severities MCP logging uses, least severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    pub const ALL: [LogLevel; 8] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Notice,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Alert,
        LogLevel::Emergency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Alert => "alert",
            LogLevel::Emergency => "emergency",
        }
    }

    pub fn parse(name: &str) -> Option<LogLevel> {
        LogLevel::ALL
            .into_iter()
            .find(|level| level.as_str() == name)
    }
}

impl Session {
    pub fn new(
        key_fingerprint: &str,
        selection: Selection,
        outbound: Option<mpsc::Sender<Reply>>,
    ) -> Session {
        Session::new_with_id(new_session_id(), key_fingerprint, selection, outbound)
    }

    fn new_with_id(
        id: String,
        key_fingerprint: &str,
        selection: Selection,
        outbound: Option<mpsc::Sender<Reply>>,
    ) -> Session {
        Session {
            id,
            key_fingerprint: key_fingerprint.to_string(),
            selection,
            protocol_version: Mutex::new(String::new()),
            in_flight: Mutex::new(HashMap::new()),
            outbound: Mutex::new(outbound),
            last_seen: Mutex::new(Instant::now()),
            log_level: Mutex::new(None),
        }
    }

    /// A session that answers one request and is never stored (the 2026-07-28 era, and
    /// handshake-era requests that need none): it has no id, so no random bytes are drawn for it.
    pub fn for_one_request(key_fingerprint: &str, selection: Selection, version: &str) -> Session {
        let session = Session::new_with_id(String::new(), key_fingerprint, selection, None);
        session.set_protocol_version(version);
        session
    }

    pub fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    pub fn idle_for(&self) -> Duration {
        lock(&self.last_seen).elapsed()
    }

    pub fn set_log_level(&self, level: LogLevel) {
        *lock(&self.log_level) = Some(level);
    }

    /// Whether the client asked for messages at `level` (logging/setLevel, or the 2026-07-28
    /// per-request `io.modelcontextprotocol/logLevel`).
    pub fn wants_log(&self, level: LogLevel) -> bool {
        lock(&self.log_level).is_some_and(|least| level >= least)
    }

    pub fn protocol_version(&self) -> String {
        lock(&self.protocol_version).clone()
    }

    pub fn set_protocol_version(&self, version: &str) {
        *lock(&self.protocol_version) = version.to_string();
    }

    /// Whether this session serves the stateless era (it then lives for one request).
    pub fn is_modern(&self) -> bool {
        MODERN_VERSIONS.contains(&lock(&self.protocol_version).as_str())
    }

    /// Registers a cancellable request; the receiver fires when `cancel` is called for its id.
    pub fn start_request(&self, id: &Value) -> oneshot::Receiver<()> {
        let (cancel, cancelled) = oneshot::channel();
        lock(&self.in_flight).insert(id.to_string(), cancel);
        cancelled
    }

    pub fn finish_request(&self, id: &Value) {
        lock(&self.in_flight).remove(&id.to_string());
    }

    pub fn cancel(&self, id: &Value) -> bool {
        match lock(&self.in_flight).remove(&id.to_string()) {
            Some(cancel) => cancel.send(()).is_ok(),
            None => false,
        }
    }

    pub fn has_stream(&self) -> bool {
        lock(&self.outbound).is_some()
    }

    /// Whether a request of this session is being answered.
    pub fn is_busy(&self) -> bool {
        !lock(&self.in_flight).is_empty()
    }

    /// Queues a message on the stream. A full queue means the client stopped reading: the stream
    /// is closed and false returned, so the caller can drop the session.
    pub fn send(&self, message: Reply) -> bool {
        let mut outbound = lock(&self.outbound);
        let Some(sender) = outbound.as_ref() else {
            return false;
        };
        if sender.try_send(message).is_ok() {
            return true;
        }
        *outbound = None;
        false
    }

    /// Ends the stream (its receiver sees the end) and cancels everything in flight.
    pub fn close(&self) {
        lock(&self.outbound).take();
        for (_, cancel) in lock(&self.in_flight).drain() {
            let _ = cancel.send(());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where the notifications about one request (progress, log messages) go.
#[derive(Clone, Debug, Default)]
pub enum Notify {
    /// Nowhere: the request is answered with one JSON object.
    #[default]
    Nowhere,
    /// The session's own stream (legacy SSE, stdio).
    Session,
    /// This request's response stream (Streamable HTTP answering with `text/event-stream`).
    Stream(mpsc::Sender<Reply>),
}

impl Notify {
    /// Whether a notification sent now could reach the client.
    pub fn is_open(&self, session: &Session) -> bool {
        match self {
            Notify::Nowhere => false,
            Notify::Session => session.has_stream(),
            Notify::Stream(sender) => !sender.is_closed(),
        }
    }

    /// Sends `message`. Notifications are advisory: one that finds a response stream's queue
    /// full is dropped rather than waited for (the session's stream drops its client instead).
    pub fn send(&self, session: &Session, message: Reply) {
        match self {
            Notify::Nowhere => {}
            Notify::Session => {
                session.send(message);
            }
            Notify::Stream(sender) => {
                let _ = sender.try_send(message);
            }
        }
    }
}

/// 128 random bits, hex: unguessable, visible ASCII.
fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where sessions live. Every method is quick and synchronous.
pub trait SessionStore: Send + Sync {
    fn insert(&self, session: Arc<Session>);
    /// The session `id`, if it exists and belongs to the key with `key_fingerprint`.
    fn get(&self, id: &str, key_fingerprint: &str) -> Option<Arc<Session>>;
    fn remove(&self, id: &str) -> Option<Arc<Session>>;
    fn count_for_key(&self, key_fingerprint: &str) -> usize;
    /// Removes and returns the key's longest-idle session that is neither streaming nor busy
    /// (a Streamable HTTP session between requests), to make room under the per-key cap.
    fn evict_idlest(&self, key_fingerprint: &str) -> Option<Arc<Session>>;
    /// Removes and returns the sessions idle for longer than `idle`.
    fn remove_idle(&self, idle: Duration) -> Vec<Arc<Session>>;
    fn drain(&self) -> Vec<Arc<Session>>;
}

/// Sessions in memory, indexed by id and by key (so per-key counting does not scan them all).
#[derive(Default)]
pub struct MemorySessionStore {
    sessions: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    by_id: HashMap<String, Arc<Session>>,
    /// Key fingerprint → the ids of its sessions.
    by_key: HashMap<String, Vec<String>>,
}

impl Sessions {
    fn remove(&mut self, id: &str) -> Option<Arc<Session>> {
        let session = self.by_id.remove(id)?;
        if let Some(ids) = self.by_key.get_mut(&session.key_fingerprint) {
            ids.retain(|other| other != id);
            if ids.is_empty() {
                self.by_key.remove(&session.key_fingerprint);
            }
        }
        Some(session)
    }
}

impl SessionStore for MemorySessionStore {
    fn insert(&self, session: Arc<Session>) {
        let mut sessions = lock(&self.sessions);
        sessions
            .by_key
            .entry(session.key_fingerprint.clone())
            .or_default()
            .push(session.id.clone());
        sessions.by_id.insert(session.id.clone(), session);
    }

    fn get(&self, id: &str, key_fingerprint: &str) -> Option<Arc<Session>> {
        lock(&self.sessions)
            .by_id
            .get(id)
            .filter(|s| s.key_fingerprint == key_fingerprint)
            .cloned()
    }

    fn remove(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).remove(id)
    }

    fn count_for_key(&self, key_fingerprint: &str) -> usize {
        lock(&self.sessions)
            .by_key
            .get(key_fingerprint)
            .map_or(0, Vec::len)
    }

    fn evict_idlest(&self, key_fingerprint: &str) -> Option<Arc<Session>> {
        let mut sessions = lock(&self.sessions);
        let idlest = sessions
            .by_key
            .get(key_fingerprint)?
            .iter()
            .filter_map(|id| sessions.by_id.get(id))
            .filter(|s| !s.has_stream() && !s.is_busy())
            .max_by_key(|s| s.idle_for())?
            .id
            .clone();
        sessions.remove(&idlest)
    }

    fn remove_idle(&self, idle: Duration) -> Vec<Arc<Session>> {
        let mut sessions = lock(&self.sessions);
        let expired: Vec<String> = sessions
            .by_id
            .values()
            .filter(|s| !s.has_stream() && s.idle_for() > idle)
            .map(|s| s.id.clone())
            .collect();
        expired
            .iter()
            .filter_map(|id| sessions.remove(id))
            .collect()
    }

    fn drain(&self) -> Vec<Arc<Session>> {
        let mut sessions = lock(&self.sessions);
        sessions.by_key.clear();
        sessions.by_id.drain().map(|(_, s)| s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_client_that_stops_reading_is_dropped_not_buffered() {
        let (sender, _receiver) = mpsc::channel(2);
        let session = Session::new("fp", Selection::default(), Some(sender));
        let message = |n: i64| Reply::raw_success(&json!(n), "{}");
        assert!(session.send(message(1)) && session.send(message(2)));
        assert!(
            !session.send(message(3)),
            "the third message finds the queue full"
        );
        assert!(!session.has_stream(), "and the stream is closed");
        assert!(!session.send(message(4)));
    }

    #[test]
    fn sessions_are_found_only_with_their_key() {
        let store = MemorySessionStore::default();
        let session = Arc::new(Session::new("key-a", Selection::default(), None));
        store.insert(session.clone());
        assert!(store.get(&session.id, "key-a").is_some());
        assert!(store.get(&session.id, "key-b").is_none());
        assert_eq!(store.count_for_key("key-a"), 1);
    }

    #[test]
    fn the_idlest_quiet_session_of_the_key_is_evicted() {
        let store = MemorySessionStore::default();
        let (sender, _receiver) = mpsc::channel(2);
        let streaming = Arc::new(Session::new("key-a", Selection::default(), Some(sender)));
        let oldest = Arc::new(Session::new("key-a", Selection::default(), None));
        let busy = Arc::new(Session::new("key-a", Selection::default(), None));
        let newest = Arc::new(Session::new("key-a", Selection::default(), None));
        let other_key = Arc::new(Session::new("key-b", Selection::default(), None));
        for session in [&streaming, &oldest, &busy, &newest, &other_key] {
            store.insert(session.clone());
            std::thread::sleep(Duration::from_millis(2));
        }
        let _in_flight = busy.start_request(&json!(1));
        newest.touch();
        assert_eq!(store.count_for_key("key-a"), 4);
        assert_eq!(store.evict_idlest("key-a").unwrap().id, oldest.id);
        assert_eq!(store.evict_idlest("key-a").unwrap().id, newest.id);
        assert!(
            store.evict_idlest("key-a").is_none(),
            "streaming and busy sessions stay"
        );
        assert_eq!(store.count_for_key("key-a"), 2);
        assert_eq!(store.count_for_key("key-b"), 1);
        store.remove(&busy.id);
        store.remove(&streaming.id);
        assert_eq!(store.count_for_key("key-a"), 0);
    }

    #[test]
    fn cancelling_fires_the_in_flight_receiver() {
        let session = Session::new("fp", Selection::default(), None);
        let mut cancelled = session.start_request(&json!(9));
        assert!(session.cancel(&json!(9)));
        assert!(cancelled.try_recv().is_ok());
        assert!(!session.cancel(&json!(9)), "a request is cancelled once");
    }
}

//! Sessions of the handshake eras: what one client's conversation holds (its key, version,
//! selection, log level), its calls in flight, and where its server-to-client messages go.
//!
//! A session is bound to the key that created it (by the key's SHA-256, never the key itself): the
//! same id presented with another key is unknown. Where sessions are kept, in this process or in
//! Redis for several replicas, is `replicas`' business; a session held elsewhere reaches the
//! other replicas through a `Relay`.

use crate::mcp::jsonrpc::Reply;
use crate::mcp::selection::Selection;
use crate::mcp::versions::MODERN_VERSIONS;
use crate::sync::{FastMap, lock};
use crate::telemetry::{Held, Transport};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
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
    /// Cancels an in-flight request: its JSON-RPC id (as JSON text) → the call's number (see
    /// `InFlightCall`) and the sender that aborts it.
    in_flight: Mutex<FastMap<String, (u64, oneshot::Sender<()>)>>,
    /// The number the next call gets.
    next_call: std::sync::atomic::AtomicU64,
    /// Set by `close`: the session has ended (a batch stops at its next item).
    closed: std::sync::atomic::AtomicBool,
    /// Where server-to-client messages go (the legacy SSE stream).
    outbound: Mutex<Outbound>,
    last_seen: Mutex<Instant>,
    /// The least severe level the client wants as `notifications/message`; None: no log.
    log_level: Mutex<Option<LogLevel>>,
    /// The other replicas, when sessions are shared (None: this process is the only one).
    relay: Option<Arc<dyn Relay>>,
    /// The transport that opened the session here, and the gauge that counts it as open while it
    /// lives (see `opened_by`).
    opened_by: Option<(Transport, Held)>,
}

/// Where a session's server-to-client messages go.
pub enum Outbound {
    /// No stream, or it was closed.
    Closed,
    /// A stream in this process. Bounded: a client that stops reading is dropped, not buffered for.
    Local(mpsc::Sender<Reply>),
    /// A stream held by the replica named here; messages travel through the session's relay.
    Remote(String),
}

/// What a session shared between replicas asks of the others. Implemented by `replicas`, so
/// that the protocol core never sees how replicas talk.
pub trait Relay: Send + Sync {
    /// Queues `message` for the stream of session `session_id`, held by replica `owner`, in order.
    fn deliver(&self, owner: &str, session_id: &str, message: Reply);
    /// Asks every replica to cancel request `request_id` of session `session_id`.
    fn cancel(&self, session_id: &str, request_id: &Value);
    /// Records one field of the session (`log`, `version`) where every replica reads it.
    fn save<'a>(
        &'a self,
        session_id: &'a str,
        field: &'static str,
        value: String,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
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
        let outbound = outbound.map_or(Outbound::Closed, Outbound::Local);
        Session::new_with_id(new_session_id(), key_fingerprint, selection, outbound)
    }

    fn new_with_id(
        id: String,
        key_fingerprint: &str,
        selection: Selection,
        outbound: Outbound,
    ) -> Session {
        Session {
            id,
            key_fingerprint: key_fingerprint.to_string(),
            selection,
            protocol_version: Mutex::new(String::new()),
            in_flight: Mutex::new(FastMap::default()),
            next_call: std::sync::atomic::AtomicU64::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
            outbound: Mutex::new(outbound),
            last_seen: Mutex::new(Instant::now()),
            log_level: Mutex::new(None),
            relay: None,
            opened_by: None,
        }
    }

    /// A session shared between replicas, as read back from where they keep it.
    pub fn shared(record: SessionRecord, outbound: Outbound, relay: Arc<dyn Relay>) -> Session {
        let mut session = Session::new_with_id(
            record.id,
            &record.key_fingerprint,
            record.selection,
            outbound,
        );
        session.set_protocol_version(&record.protocol_version);
        *lock(&session.log_level) = record.log_level;
        session.relay = Some(relay);
        session
    }

    /// The same session, counted in the metrics as opened by `transport` and open while held in
    /// this process (a session read back from Redis for one request is not).
    pub fn opened_by(mut self, transport: Transport) -> Session {
        self.opened_by = Some((transport, Held::session(transport)));
        self
    }

    pub fn transport(&self) -> Option<Transport> {
        self.opened_by.as_ref().map(|(transport, _)| *transport)
    }

    /// The same session, now shared with the other replicas through `relay`.
    pub fn with_relay(mut self, relay: Arc<dyn Relay>) -> Session {
        self.relay = Some(relay);
        self
    }

    /// What other replicas need to know of this session (see `shared`).
    pub fn record(&self) -> SessionRecord {
        SessionRecord {
            id: self.id.clone(),
            key_fingerprint: self.key_fingerprint.clone(),
            selection: self.selection.clone(),
            protocol_version: self.protocol_version(),
            log_level: *lock(&self.log_level),
        }
    }

    /// Takes the log level another replica recorded (the one that answered logging/setLevel).
    pub fn refresh_log_level(&self, level: Option<LogLevel>) {
        *lock(&self.log_level) = level;
    }

    /// A session that answers one request and is never stored (the 2026-07-28 era, and
    /// handshake-era requests that need none): it has no id, so no random bytes are drawn for it.
    pub fn for_one_request(key_fingerprint: &str, selection: Selection, version: &str) -> Session {
        let session =
            Session::new_with_id(String::new(), key_fingerprint, selection, Outbound::Closed);
        session.set_protocol_version(version);
        session
    }

    pub fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    pub fn idle_for(&self) -> Duration {
        lock(&self.last_seen).elapsed()
    }

    /// Sets the level, and records it for the other replicas when sessions are shared.
    pub async fn set_log_level(&self, level: LogLevel) -> Result<(), String> {
        if let Some(relay) = &self.relay {
            relay.save(&self.id, "log", level.as_str().into()).await?;
        }
        *lock(&self.log_level) = Some(level);
        Ok(())
    }

    /// Records the negotiated version for the other replicas, when sessions are shared (a legacy
    /// SSE session exists before its `initialize`, which any replica may answer).
    pub async fn share_protocol_version(&self) -> Result<(), String> {
        match &self.relay {
            Some(relay) => {
                relay
                    .save(&self.id, "version", self.protocol_version())
                    .await
            }
            None => Ok(()),
        }
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

    /// Registers request `id` as in flight until the returned call is dropped; its `cancelled`
    /// fires if it is cancelled. None when a request with the same id is in flight already (a
    /// second one must not displace it: the first would be cancelled unanswered).
    pub fn start_request(&self, id: &Value) -> Option<InFlightCall<'_>> {
        let (cancel, cancelled) = oneshot::channel();
        let key = id.to_string();
        let number = self
            .next_call
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match lock(&self.in_flight).entry(key.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => None,
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert((number, cancel));
                Some(InFlightCall {
                    session: self,
                    key,
                    number,
                    cancelled,
                })
            }
        }
    }

    /// Cancels request `id` here, or, when sessions are shared and it runs on no call here, on
    /// whichever replica runs it.
    pub fn cancel(&self, id: &Value) -> bool {
        if self.cancel_here(id) {
            return true;
        }
        if let Some(relay) = &self.relay {
            relay.cancel(&self.id, id);
        }
        false
    }

    /// Cancels request `id` if this process runs it.
    pub fn cancel_here(&self, id: &Value) -> bool {
        match lock(&self.in_flight).remove(&id.to_string()) {
            Some((_, cancel)) => cancel.send(()).is_ok(),
            None => false,
        }
    }

    pub fn has_stream(&self) -> bool {
        !matches!(*lock(&self.outbound), Outbound::Closed)
    }

    /// Whether this process holds the session's stream.
    pub fn streams_here(&self) -> bool {
        matches!(*lock(&self.outbound), Outbound::Local(_))
    }

    /// Whether a request of this session is being answered.
    pub fn is_busy(&self) -> bool {
        !lock(&self.in_flight).is_empty()
    }

    /// Queues a message on the stream. A full queue means the client stopped reading: the stream
    /// is closed and false returned, so the caller can drop the session. A stream held by another
    /// replica is handed to the relay (that replica drops a client that stopped reading).
    pub fn send(&self, message: Reply) -> bool {
        let mut outbound = lock(&self.outbound);
        match &*outbound {
            Outbound::Closed => false,
            Outbound::Local(sender) => {
                match sender.try_send(message) {
                    Ok(()) => return true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        crate::telemetry::record_slow_client_dropped();
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
                *outbound = Outbound::Closed;
                false
            }
            Outbound::Remote(owner) => match &self.relay {
                Some(relay) => {
                    relay.deliver(owner, &self.id, message);
                    true
                }
                None => false,
            },
        }
    }

    /// Whether the session has ended (`close`).
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ends the stream (its receiver sees the end) and cancels everything in flight.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        *lock(&self.outbound) = Outbound::Closed;
        for (_, (_, cancel)) in lock(&self.in_flight).drain() {
            let _ = cancel.send(());
        }
    }
}

/// A request registered as in flight (`Session::start_request`). Dropping it, answered or given
/// up (its client gone, its task aborted), takes it off the session, so that its id may be used
/// again and the session may go idle.
pub struct InFlightCall<'a> {
    session: &'a Session,
    key: String,
    number: u64,
    /// Fires if the request is cancelled (or its session closed).
    pub cancelled: oneshot::Receiver<()>,
}

impl Drop for InFlightCall<'_> {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.session.in_flight);
        // This call's entry only: a cancel may have taken it off, and a new request the id since.
        if in_flight
            .get(&self.key)
            .is_some_and(|(number, _)| *number == self.number)
        {
            in_flight.remove(&self.key);
        }
    }
}

/// A session as replicas share it: everything but what lives only in one process (calls in
/// flight, the stream itself).
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    pub key_fingerprint: String,
    pub selection: Selection,
    pub protocol_version: String,
    pub log_level: Option<LogLevel>,
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
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    fn a_call_given_up_frees_its_id_and_only_its_own() {
        let session = Session::new("fp", Selection::default(), None);
        let first = session.start_request(&json!(7)).unwrap();
        assert!(session.start_request(&json!(7)).is_none(), "taken");
        drop(first);
        assert!(!session.is_busy(), "dropped, it is off the session");
        let cancelled = session.start_request(&json!(7)).unwrap();
        assert!(session.cancel(&json!(7)));
        let next = session.start_request(&json!(7)).unwrap();
        drop(cancelled);
        assert!(
            session.is_busy(),
            "the cancelled call's end left the new one alone"
        );
        assert!(session.start_request(&json!(7)).is_none());
        drop(next);
        assert!(!session.is_busy());
    }

    #[test]
    fn cancelling_fires_the_in_flight_receiver() {
        let session = Session::new("fp", Selection::default(), None);
        let mut call = session.start_request(&json!(9)).unwrap();
        assert!(session.cancel(&json!(9)));
        assert!(call.cancelled.try_recv().is_ok());
        assert!(!session.cancel(&json!(9)), "a request is cancelled once");
    }
}

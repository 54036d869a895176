//! What the replicas of one deployment share: handshake sessions, the per-key rate limit and
//! session cap, and the way to a session's SSE stream and to its calls in flight.
//!
//! Without `--redis` all of it lives in this process (`local`), and the embedded default needs no
//! service. With it, in Redis (`redis`), so that any replica answers any request. The transports
//! see only `Replicas`; which one is behind it changes nothing they do.

pub mod local;
pub mod redis;

use self::local::LocalState;
use self::redis::{CallGuard, RedisState};
use crate::mcp::session::Session;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The limits replicas enforce together.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Concurrent sessions one key may hold.
    pub sessions_per_key: usize,
    /// Requests per minute one key may make.
    pub requests_per_minute: u32,
    /// Sessions without activity for this long are ended.
    pub idle_timeout: Duration,
    /// How long one tool call may take (a call older than that is no longer in flight).
    pub call_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            sessions_per_key: 16,
            requests_per_minute: 600,
            idle_timeout: Duration::from_secs(30 * 60),
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// Where to share state: a Redis URL (`redis://` or `rediss://`, with password and db), and how
/// long one exchange with it may take before the request is refused with 503.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub url: String,
    pub timeout: Duration,
}

/// Why a request is not admitted.
#[derive(Debug)]
pub enum Refusal {
    RateLimited {
        retry_after: u64,
    },
    /// Every session of the key is streaming or busy.
    SessionCap {
        held: usize,
    },
    /// No such session for this key (ended, expired, or its stream's replica died).
    UnknownSession,
    /// The shared store cannot be reached; the client may retry.
    Unavailable {
        reason: String,
    },
    /// This gateway is draining before it stops, and the session would hold a stream here or
    /// end with this process (`Gateway::open_session`); the client may retry, and a load
    /// balancer sends it to another replica.
    ShuttingDown,
}

pub enum Replicas {
    // One per process, behind an Arc: its size does not matter.
    Local(Box<LocalState>),
    Redis(Arc<RedisState>),
}

/// A request admitted within a session. While it lives, a tool call counts as in flight for the
/// other replicas (a busy session is not evicted to make room).
pub struct Admitted {
    pub session: Arc<Session>,
    _call: Option<CallGuard>,
}

impl Replicas {
    pub fn new(limits: Limits, redis: Option<&RedisOptions>) -> Result<Replicas, String> {
        Ok(match redis {
            None => Replicas::Local(Box::new(LocalState::new(limits))),
            Some(options) => {
                Replicas::Redis(RedisState::new(&options.url, options.timeout, limits)?)
            }
        })
    }

    /// The per-key rate for a request that needs no session (the stateless era).
    pub async fn rate(&self, fingerprint: &str) -> Result<(), Refusal> {
        match self {
            Replicas::Local(local) => local.rate(fingerprint, 1),
            Replicas::Redis(redis) => redis.rate(fingerprint, 1).await,
        }
    }

    /// The per-key rate, then session `id` of the key. `call`: the request calls a tool; `cost`:
    /// how many messages it carries (each message of a batch counts).
    pub async fn admit(
        &self,
        fingerprint: &str,
        id: &str,
        call: bool,
        cost: u32,
    ) -> Result<Admitted, Refusal> {
        match self {
            Replicas::Local(local) => {
                local.rate(fingerprint, cost)?;
                let session = local.get(id, fingerprint).ok_or(Refusal::UnknownSession)?;
                Ok(Admitted {
                    session,
                    _call: None,
                })
            }
            Replicas::Redis(redis) => {
                let (session, call) = redis.admit(fingerprint, id, call, cost).await?;
                Ok(Admitted {
                    session,
                    _call: call,
                })
            }
        }
    }

    /// Stores a new session (and, with `rate`, counts the request that opens it). At the per-key
    /// cap the key's longest-idle session that is neither streaming nor busy makes way: clients
    /// that never DELETE their sessions (the Inspector) would otherwise be locked out until idle
    /// expiry; the evicted session's next request gets 404, which tells its client to start over.
    pub async fn open(&self, session: Session, rate: bool) -> Result<Arc<Session>, Refusal> {
        match self {
            Replicas::Local(local) => {
                if rate {
                    local.rate(&session.key_fingerprint, 1)?;
                }
                let session = Arc::new(session);
                if let Some(evicted) = local.open(session.clone())? {
                    evicted.close();
                    tracing::info!(
                        idle_secs = evicted.idle_for().as_secs(),
                        "session evicted for a new one"
                    );
                }
                Ok(session)
            }
            Replicas::Redis(redis) => redis.open(session, rate).await,
        }
    }

    /// Ends session `id` of the key on every replica. False when the key has no such session.
    pub async fn end(&self, id: &str, fingerprint: &str) -> Result<bool, Refusal> {
        match self {
            Replicas::Local(local) => Ok(match local.get(id, fingerprint) {
                Some(session) => {
                    local.remove(id);
                    session.close();
                    true
                }
                None => false,
            }),
            Replicas::Redis(redis) => redis.end(id, fingerprint).await,
        }
    }

    /// Ends every session of the key with `fingerprint` on every replica (the API refused the
    /// key: revoked or expired); their streams close and their calls are cancelled.
    pub async fn end_key(&self, fingerprint: &str) -> Result<usize, Refusal> {
        match self {
            Replicas::Local(local) => {
                let ended = local.remove_key(fingerprint);
                for session in &ended {
                    session.close();
                }
                Ok(ended.len())
            }
            Replicas::Redis(redis) => redis.end_key(fingerprint).await,
        }
    }

    /// The session's stream closed here (the client left or stopped reading): it ends.
    pub fn stream_closed(&self, session: &Session) {
        match self {
            Replicas::Local(local) => {
                local.remove(&session.id);
                session.close();
            }
            Replicas::Redis(redis) => redis.stream_closed(session),
        }
    }

    /// Starts the background work: idle expiry in process; with Redis, the heartbeat (which also
    /// keeps held streams' sessions alive and ends those gone from Redis), the inbox and outbox.
    pub fn start(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        match &**self {
            Replicas::Local(local) => {
                let period = (local.idle_timeout() / 4)
                    .clamp(Duration::from_millis(100), Duration::from_secs(30));
                let this = self.clone();
                vec![tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(period).await;
                        if let Replicas::Local(local) = &*this {
                            for session in local.remove_idle() {
                                session.close();
                            }
                        }
                    }
                })]
            }
            Replicas::Redis(redis) => redis.start(),
        }
    }

    /// Shutting down: this replica's sessions end here (streams close, calls are cancelled).
    pub async fn drain(&self) {
        match self {
            Replicas::Local(local) => {
                for session in local.drain() {
                    session.close();
                }
            }
            Replicas::Redis(redis) => redis.drain().await,
        }
    }

    /// With Redis: whether it answered last time. None without Redis.
    /// Whether sessions are shared with other replicas (through Redis).
    pub fn shared(&self) -> bool {
        matches!(self, Replicas::Redis(_))
    }

    pub fn redis_reachable(&self) -> Option<bool> {
        match self {
            Replicas::Local(_) => None,
            Replicas::Redis(redis) => Some(redis.is_up()),
        }
    }
}

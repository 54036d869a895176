//! Sessions and per-key limits in this process: what one replica alone needs (the default, with
//! no service to run). Counting a key's sessions and inserting a new one are one step under one
//! lock, so concurrent `initialize` requests cannot pass the cap together.

use crate::mcp::session::Session;
use crate::rate_limiter::RateLimiter;
use crate::replicas::{Limits, Refusal};
use crate::sync::{FastMap, lock};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct LocalState {
    sessions: Mutex<Sessions>,
    limiter: RateLimiter,
    limits: Limits,
}

#[derive(Default)]
struct Sessions {
    by_id: FastMap<String, Arc<Session>>,
    /// Key fingerprint → the ids of its sessions (so per-key counting does not scan them all).
    by_key: FastMap<String, Vec<String>>,
}

impl Sessions {
    fn insert(&mut self, session: Arc<Session>) {
        self.by_key
            .entry(session.key_fingerprint.clone())
            .or_default()
            .push(session.id.clone());
        self.by_id.insert(session.id.clone(), session);
    }

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

    fn count_for_key(&self, fingerprint: &str) -> usize {
        self.by_key.get(fingerprint).map_or(0, Vec::len)
    }

    /// The key's longest-idle session that is neither streaming nor busy.
    fn idlest_quiet(&self, fingerprint: &str) -> Option<String> {
        Some(
            self.by_key
                .get(fingerprint)?
                .iter()
                .filter_map(|id| self.by_id.get(id))
                .filter(|s| !s.has_stream() && !s.is_busy())
                .max_by_key(|s| s.idle_for())?
                .id
                .clone(),
        )
    }
}

impl LocalState {
    pub fn new(limits: Limits) -> LocalState {
        LocalState {
            sessions: Mutex::default(),
            limiter: RateLimiter::new(limits.requests_per_minute),
            limits,
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        self.limits.idle_timeout
    }

    pub fn rate(&self, fingerprint: &str, cost: u32) -> Result<(), Refusal> {
        self.limiter
            .check(fingerprint, cost)
            .map_err(|retry_after| Refusal::RateLimited { retry_after })
    }

    pub fn get(&self, id: &str, fingerprint: &str) -> Option<Arc<Session>> {
        lock(&self.sessions)
            .by_id
            .get(id)
            .filter(|s| s.key_fingerprint == fingerprint)
            .cloned()
    }

    /// Inserts `session` if its key has room; at the cap the key's idlest quiet session makes way
    /// (and is returned, to be closed).
    pub fn open(&self, session: Arc<Session>) -> Result<Option<Arc<Session>>, Refusal> {
        let mut sessions = lock(&self.sessions);
        let fingerprint = &session.key_fingerprint;
        let mut evicted = None;
        if sessions.count_for_key(fingerprint) >= self.limits.sessions_per_key {
            let Some(idlest) = sessions.idlest_quiet(fingerprint) else {
                return Err(Refusal::SessionCap {
                    held: self.limits.sessions_per_key,
                });
            };
            evicted = sessions.remove(&idlest);
        }
        sessions.insert(session);
        Ok(evicted)
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).remove(id)
    }

    /// Removes every session of the key with `fingerprint`.
    pub fn remove_key(&self, fingerprint: &str) -> Vec<Arc<Session>> {
        let mut sessions = lock(&self.sessions);
        let ids = sessions
            .by_key
            .get(fingerprint)
            .cloned()
            .unwrap_or_default();
        ids.iter().filter_map(|id| sessions.remove(id)).collect()
    }

    /// Removes the sessions idle for longer than the idle timeout, unless streaming or busy.
    pub fn remove_idle(&self) -> Vec<Arc<Session>> {
        let mut sessions = lock(&self.sessions);
        let idle = self.limits.idle_timeout;
        let expired: Vec<String> = sessions
            .by_id
            .values()
            .filter(|s| !s.has_stream() && !s.is_busy() && s.idle_for() > idle)
            .map(|s| s.id.clone())
            .collect();
        expired
            .iter()
            .filter_map(|id| sessions.remove(id))
            .collect()
    }

    pub fn drain(&self) -> Vec<Arc<Session>> {
        let mut sessions = lock(&self.sessions);
        sessions.by_key.clear();
        sessions.by_id.drain().map(|(_, s)| s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::selection::Selection;
    use serde_json::json;
    use tokio::sync::mpsc;

    fn limits(sessions_per_key: usize) -> Limits {
        Limits {
            sessions_per_key,
            ..Limits::default()
        }
    }

    #[test]
    fn sessions_are_found_only_with_their_key() {
        let state = LocalState::new(limits(4));
        let session = Arc::new(Session::new("key-a", Selection::default(), None));
        state.open(session.clone()).unwrap();
        assert!(state.get(&session.id, "key-a").is_some());
        assert!(state.get(&session.id, "key-b").is_none());
    }

    #[test]
    fn at_the_cap_the_idlest_quiet_session_of_the_key_makes_way() {
        let state = LocalState::new(limits(3));
        let (sender, _receiver) = mpsc::channel(2);
        let streaming = Arc::new(Session::new("key-a", Selection::default(), Some(sender)));
        let oldest = Arc::new(Session::new("key-a", Selection::default(), None));
        let busy = Arc::new(Session::new("key-a", Selection::default(), None));
        for session in [&streaming, &oldest, &busy] {
            assert!(state.open(session.clone()).unwrap().is_none());
            std::thread::sleep(Duration::from_millis(2));
        }
        let _in_flight = busy.start_request(&json!(1)).unwrap();
        let other_key = Arc::new(Session::new("key-b", Selection::default(), None));
        assert!(state.open(other_key).unwrap().is_none(), "keys count apart");
        let newest = Arc::new(Session::new("key-a", Selection::default(), None));
        let evicted = state.open(newest.clone()).unwrap().unwrap();
        assert_eq!(evicted.id, oldest.id);
        let _also_in_flight = newest.start_request(&json!(2)).unwrap();
        let refused = state.open(Arc::new(Session::new("key-a", Selection::default(), None)));
        assert!(
            refused.is_err_and(|r| matches!(r, Refusal::SessionCap { held: 3 })),
            "every session of the key is streaming or busy"
        );
    }
}

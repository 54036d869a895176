//! The one way this crate, gateway and sandbox alike, takes a `std::sync::Mutex`: a holder that
//! panicked leaves plain data (maps, counters, queues, a connection) that is still sound to use,
//! so a poisoned lock is taken as it is rather than turned into a second panic. A leaf.

use std::sync::{Mutex, MutexGuard};

/// The hash map for state looked up on every request (sessions, keys, limits, calls in flight):
/// foldhash, seeded per process, hashes a short key in a fraction of the time std's SipHash takes
/// (SipHash lookups were about 1.5k of the gateway's instructions per `get_task`). Its keys are
/// session ids, key fingerprints and the like, and a seed the client cannot learn keeps
/// collisions from being chosen.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

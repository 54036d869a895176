//! The one way this crate, gateway and sandbox alike, takes a `std::sync::Mutex`: a holder that
//! panicked leaves plain data (maps, counters, queues, a connection) that is still sound to use,
//! so a poisoned lock is taken as it is rather than turned into a second panic. A leaf.

use std::sync::{Mutex, MutexGuard};

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

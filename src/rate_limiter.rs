//! A token bucket per key, in this process: the rate limit of a replica alone
//! (`replicas::local`), the Redis limiter's fallback while Redis is unreachable
//! (`replicas::redis`), and the throttle on failed key lookups (`auth`). A leaf: it knows nothing
//! of sessions, keys or HTTP.

use crate::sync::{FastMap, lock};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket per key: `per_minute` requests a minute, bursts up to a sixth of that. Also the
/// fallback of the Redis limiter while Redis is unreachable.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<FastMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        let per_minute = f64::from(per_minute.max(1));
        RateLimiter {
            per_second: per_minute / 60.0,
            burst: burst(per_minute),
            buckets: Mutex::new(FastMap::default()),
        }
    }

    /// Whether a token is there, without taking it (Err: seconds until one is).
    pub fn peek(&self, key: &str) -> Result<(), u64> {
        let buckets = lock(&self.buckets);
        let Some((tokens, at)) = buckets.get(key) else {
            return Ok(());
        };
        let tokens = (tokens + at.elapsed().as_secs_f64() * self.per_second).min(self.burst);
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(((1.0 - tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }

    /// Takes `cost` tokens, or says how many seconds until they are available.
    pub fn check(&self, key: &str, cost: u32) -> Result<(), u64> {
        let cost = f64::from(cost.max(1));
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        if buckets.len() > 100_000 {
            buckets.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(600));
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= cost {
            *tokens -= cost;
            Ok(())
        } else {
            Err(((cost - *tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}

/// How many requests a key may make at once: a sixth of its minute (both limiters use it).
pub fn burst(per_minute: f64) -> f64 {
    (per_minute / 6.0).max(1.0).floor()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limiter_allows_a_burst_then_says_when_to_retry() {
        let limiter = RateLimiter::new(60);
        let allowed = (0..20).filter(|_| limiter.check("k", 1).is_ok()).count();
        assert_eq!(allowed, 10);
        assert!(limiter.check("k", 1).unwrap_err() >= 1);
        assert!(limiter.check("other", 1).is_ok());
    }
}

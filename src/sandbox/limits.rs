//! Fairness between tenants: a per-tenant budget of requests and of server time, and a per-tenant
//! lane for the CPU work a tenant controls (its own schemas).
//!
//! Each tenant has two token buckets. Every request takes one request token; every request's
//! work (the time its handler runs, holding the writer or a reader, and the time its tenant-defined
//! checks run) is charged afterwards to the time bucket, which may go negative. A request finding
//! either bucket empty is refused with 429, `Retry-After` saying when it would be admitted, before
//! it touches the database. So a tenant's burst spends its own budget, not the others' time.
//!
//! A tenant also holds at most all the read connections but one, so its reads never take every
//! read connection from the others.
//!
//! Work that a tenant shapes (compiling and running its skill's `input_schema`) runs in that
//! tenant's lane: one at a time per tenant, outside the database's lock, so a tenant's heavy
//! checks occupy at most one core and never the writer.
//!
//! Knows nothing of HTTP beyond `ApiError`; `mod.rs` calls `admit` and `charge`.

use crate::sandbox::error::ApiError;
use crate::sync::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The budget every tenant gets (`Config::limits`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Requests per second, sustained.
    pub requests_per_second: f64,
    /// Requests that may arrive at once after a quiet spell.
    pub request_burst: f64,
    /// Milliseconds of server work per second, sustained: 250 lets one tenant keep the sandbox
    /// busy at most a quarter of the time on average.
    pub work_ms_per_second: f64,
    /// Milliseconds of server work that may be spent at once after a quiet spell.
    pub work_burst_ms: f64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::per_second(100.0, 250.0)
    }
}

impl Limits {
    /// The given sustained rates, with bursts of 5 seconds' worth of requests and 12 seconds'
    /// worth of work (at the defaults: 500 requests, 3 s of work). Rates are at least 1 (a zero
    /// rate would never refill).
    pub fn per_second(requests: f64, work_ms: f64) -> Limits {
        let requests = requests.max(1.0);
        let work_ms = work_ms.max(1.0);
        Limits {
            requests_per_second: requests,
            request_burst: requests * 5.0,
            work_ms_per_second: work_ms,
            work_burst_ms: work_ms * 12.0,
        }
    }
}

/// Every tenant's buckets, created on the tenant's first request.
pub struct Budgets {
    limits: Limits,
    /// How many read connections one tenant may hold at once.
    reads_per_tenant: usize,
    /// Tenants are few and long-lived (each made by an operator), so the map is never pruned.
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
}

/// One tenant's state.
struct Tenant {
    /// Both buckets behind one std mutex: each update is a few arithmetic operations.
    buckets: Mutex<Buckets>,
    /// The tenant's lane for CPU work it controls: one permit, so one such job at a time.
    lane: Arc<tokio::sync::Semaphore>,
    /// The read connections the tenant may hold at once: fewer than there are, so that the
    /// tenant's reads never take them all.
    reads: Arc<tokio::sync::Semaphore>,
}

struct Buckets {
    requests: f64,
    work_ms: f64,
    refilled_at: Instant,
}

impl Budgets {
    pub fn new(limits: Limits, reads_per_tenant: usize) -> Budgets {
        Budgets {
            limits,
            reads_per_tenant,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    fn tenant(&self, tenant_id: &str) -> Arc<Tenant> {
        let mut tenants = lock(&self.tenants);
        tenants
            .entry(tenant_id.to_string())
            .or_insert_with(|| {
                Arc::new(Tenant {
                    buckets: Mutex::new(Buckets {
                        requests: self.limits.request_burst,
                        work_ms: self.limits.work_burst_ms,
                        refilled_at: Instant::now(),
                    }),
                    lane: Arc::new(tokio::sync::Semaphore::new(1)),
                    reads: Arc::new(tokio::sync::Semaphore::new(self.reads_per_tenant)),
                })
            })
            .clone()
    }

    /// Takes one request token of `tenant_id`, or refuses with 429 and when to come back.
    pub fn admit(&self, tenant_id: &str) -> Result<(), ApiError> {
        let tenant = self.tenant(tenant_id);
        let mut buckets = lock(&tenant.buckets);
        self.refill(&mut buckets);
        if buckets.work_ms < 0.0 {
            let wait = -buckets.work_ms / self.limits.work_ms_per_second;
            return Err(ApiError::rate_limited(
                format!(
                    "this tenant has used its share of the sandbox's time ({} ms per second, bursts up to {} ms); retry after the Retry-After header's seconds",
                    self.limits.work_ms_per_second, self.limits.work_burst_ms
                ),
                seconds(wait),
            ));
        }
        if buckets.requests < 1.0 {
            let wait = (1.0 - buckets.requests) / self.limits.requests_per_second;
            return Err(ApiError::rate_limited(
                format!(
                    "this tenant is over its request budget ({} per second, bursts up to {}); retry after the Retry-After header's seconds",
                    self.limits.requests_per_second, self.limits.request_burst
                ),
                seconds(wait),
            ));
        }
        buckets.requests -= 1.0;
        Ok(())
    }

    /// Charges `spent` of server work to `tenant_id`'s time bucket.
    pub fn charge(&self, tenant_id: &str, spent: Duration) {
        let tenant = self.tenant(tenant_id);
        let mut buckets = lock(&tenant.buckets);
        self.refill(&mut buckets);
        buckets.work_ms -= spent.as_secs_f64() * 1000.0;
    }

    /// The tenant's lane: hold the permit while running work the tenant shapes.
    pub async fn lane(&self, tenant_id: &str) -> tokio::sync::OwnedSemaphorePermit {
        let lane = self.tenant(tenant_id).lane.clone();
        lane.acquire_owned()
            .await
            .expect("a tenant's lane is never closed")
    }

    /// A permit for the tenant to hold one more read connection, if it holds fewer than it may.
    pub fn try_reading(&self, tenant_id: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.tenant(tenant_id)
            .reads
            .clone()
            .try_acquire_owned()
            .ok()
    }

    /// Waits until the tenant may hold one more read connection (its other reads end quickly:
    /// each is bounded by `db::READ_TIME_LIMIT`).
    pub async fn reading(&self, tenant_id: &str) -> tokio::sync::OwnedSemaphorePermit {
        let reads = self.tenant(tenant_id).reads.clone();
        reads
            .acquire_owned()
            .await
            .expect("a tenant's read permits are never closed")
    }

    fn refill(&self, buckets: &mut Buckets) {
        let now = Instant::now();
        let elapsed = now.duration_since(buckets.refilled_at).as_secs_f64();
        buckets.refilled_at = now;
        buckets.requests = (buckets.requests + elapsed * self.limits.requests_per_second)
            .min(self.limits.request_burst);
        buckets.work_ms = (buckets.work_ms + elapsed * self.limits.work_ms_per_second)
            .min(self.limits.work_burst_ms);
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
fn seconds(wait: f64) -> u64 {
    (wait.ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_spends_its_tokens_then_is_refused_with_a_wait() {
        let budgets = Budgets::new(
            Limits {
                requests_per_second: 1.0,
                request_burst: 3.0,
                work_ms_per_second: 100.0,
                work_burst_ms: 100.0,
            },
            3,
        );
        for _ in 0..3 {
            budgets.admit("a").unwrap();
        }
        let refused = budgets.admit("a").unwrap_err();
        assert_eq!(refused.status.as_u16(), 429);
        assert_eq!(refused.retry_after, Some(1));
        // Another tenant is untouched.
        budgets.admit("b").unwrap();
        // Work beyond the time bucket refuses the next request for as long as it overdrew.
        budgets.charge("b", Duration::from_millis(400));
        let refused = budgets.admit("b").unwrap_err();
        assert_eq!(refused.retry_after, Some(3));
        assert!(refused.message.contains("share of the sandbox's time"));
    }
}

//! Who is calling: `Authorization: Bearer tak_…` resolved through the API's own key
//! introspection (`get_current_api_key`), cached briefly.
//!
//! The gateway holds no key database: the REST API is the authority, so a revoked key stops
//! working here within the cache's TTL. Failed lookups are cached for a much shorter time, so a
//! flood of bad keys cannot hammer the API, yet a key that just became valid is not refused long.

use crate::api_key::ApiKey;
use crate::generated::api::Operation;
use crate::rate_limiter::RateLimiter;
use crate::scopes::ScopeSet;
use crate::sync::lock;
use crate::telemetry;
use crate::upstream::{DispatchError, Upstream};
use serde_json::Map;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An authenticated caller.
#[derive(Debug)]
pub struct Principal {
    pub key: ApiKey,
    pub key_id: String,
    pub tenant_id: String,
    /// The scopes as granted, in the API's words (for messages).
    pub scope_names: Vec<String>,
    pub scopes: ScopeSet,
    /// SHA-256 of the secret: what sessions, limits and the cache are keyed by.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No usable `Authorization: Bearer tak_…` header (or a key in the URL).
    Missing(String),
    /// The API does not accept the key (unknown, revoked, expired).
    Rejected(String),
    /// The API could not be asked; not the caller's fault (503).
    Unavailable(String),
    /// This client address sent too many unknown keys lately; retry after this many seconds.
    Throttled(u64),
}

impl AuthFailure {
    pub fn message(&self) -> String {
        match self {
            AuthFailure::Missing(m) | AuthFailure::Rejected(m) | AuthFailure::Unavailable(m) => {
                m.clone()
            }
            AuthFailure::Throttled(retry_after) => {
                format!("too many unknown API keys from this address; retry in {retry_after} s")
            }
        }
    }
}

pub struct Authenticator {
    upstream: Upstream,
    ttl: Duration,
    failure_ttl: Duration,
    /// fingerprint → (when it was looked up, the principal). Valid keys only: a flood of bad
    /// keys can never evict them.
    accepted: Mutex<HashMap<String, (Instant, Arc<Principal>)>>,
    /// fingerprint → (when it was looked up, why it was refused); bounded on its own.
    refused: Mutex<HashMap<String, (Instant, AuthFailure)>>,
    /// Introspections of keys the API then refused, per client address: past the budget, a new
    /// unknown key from that address is refused here without asking the API.
    failures: RateLimiter,
}

/// Each cache holds at most this many entries: past it, expired entries go first, then the
/// least recently looked-up valid key, or every refused one.
const CACHE_LIMIT: usize = 10_000;
/// Refused keys one client address may have looked up, per minute (a sixth of it at once).
const FAILED_LOOKUPS_PER_MINUTE: u32 = 60;

impl Authenticator {
    pub fn new(upstream: Upstream, ttl: Duration) -> Authenticator {
        Authenticator {
            upstream,
            ttl,
            failure_ttl: ttl.min(Duration::from_secs(2)),
            accepted: Mutex::default(),
            refused: Mutex::default(),
            failures: RateLimiter::new(FAILED_LOOKUPS_PER_MINUTE),
        }
    }

    /// How long a resolved key is trusted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether `key` is still accepted (through the cache: at most one introspection per key and
    /// TTL, however many streams ask). Unreachable counts as accepted: an outage of the API must
    /// not end every open stream.
    pub async fn still_accepted(&self, key: &ApiKey) -> bool {
        !matches!(
            self.resolve(key.clone()).await,
            Err(AuthFailure::Rejected(_))
        )
    }

    /// Drops what is cached for the key with `fingerprint` (the API just refused it).
    pub fn forget(&self, fingerprint: &str) {
        lock(&self.accepted).remove(fingerprint);
    }

    /// Resolves an `Authorization` header value sent from `client` (its address, when known).
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Arc<Principal>, AuthFailure> {
        let header = authorization
            .ok_or_else(|| AuthFailure::Missing("send `Authorization: Bearer tak_…`".into()))?;
        let secret = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                AuthFailure::Missing("the Authorization header must be `Bearer tak_…`".into())
            })?;
        let key = ApiKey::parse(secret).map_err(|e| AuthFailure::Missing(e.to_string()))?;
        let fingerprint = fingerprint(&key);
        if let Some(cached) = self.cached(&fingerprint) {
            telemetry::record_key_lookup("hit");
            return cached;
        }
        // Only lookups cost the API anything; an address that keeps sending unknown keys is
        // stopped here (cached keys, valid or not, still answer above).
        if let Some(client) = client
            && let Err(retry_after) = self.failures.peek(&client.to_string())
        {
            telemetry::record_key_lookup("throttled");
            return Err(AuthFailure::Throttled(retry_after));
        }
        let result = self.look_up(key, fingerprint.clone()).await;
        if let (Some(client), Err(AuthFailure::Rejected(_))) = (client, &result) {
            let _ = self.failures.check(&client.to_string(), 1);
        }
        self.remember(fingerprint, &result);
        result
    }

    async fn resolve(&self, key: ApiKey) -> Result<Arc<Principal>, AuthFailure> {
        let fingerprint = fingerprint(&key);
        if let Some(cached) = self.cached(&fingerprint) {
            return cached;
        }
        let result = self.look_up(key, fingerprint.clone()).await;
        self.remember(fingerprint, &result);
        result
    }

    fn remember(&self, fingerprint: String, result: &Result<Arc<Principal>, AuthFailure>) {
        let now = Instant::now();
        match result {
            Ok(principal) => {
                let mut accepted = lock(&self.accepted);
                if accepted.len() >= CACHE_LIMIT {
                    accepted.retain(|_, (at, _)| at.elapsed() < self.ttl);
                }
                if accepted.len() >= CACHE_LIMIT
                    && let Some(oldest) = accepted
                        .iter()
                        .min_by_key(|(_, (at, _))| *at)
                        .map(|(fingerprint, _)| fingerprint.clone())
                {
                    accepted.remove(&oldest);
                }
                accepted.insert(fingerprint, (now, principal.clone()));
            }
            // Not the key's fault: asked again next time.
            Err(AuthFailure::Unavailable(_) | AuthFailure::Throttled(_)) => {}
            Err(failure) => {
                let mut refused = lock(&self.refused);
                if refused.len() >= CACHE_LIMIT {
                    refused.retain(|_, (at, _)| at.elapsed() < self.failure_ttl);
                    if refused.len() >= CACHE_LIMIT {
                        refused.clear();
                    }
                }
                refused.insert(fingerprint, (now, failure.clone()));
            }
        }
    }

    fn cached(&self, fingerprint: &str) -> Option<Result<Arc<Principal>, AuthFailure>> {
        if let Some((at, principal)) = lock(&self.accepted).get(fingerprint)
            && at.elapsed() < self.ttl
        {
            return Some(Ok(principal.clone()));
        }
        let refused = lock(&self.refused);
        let (at, failure) = refused.get(fingerprint)?;
        (at.elapsed() < self.failure_ttl).then(|| Err(failure.clone()))
    }

    /// Asks the API (a cache miss), counted by how it ended.
    async fn look_up(
        &self,
        key: ApiKey,
        fingerprint: String,
    ) -> Result<Arc<Principal>, AuthFailure> {
        let started = Instant::now();
        let result = self.introspect(key, fingerprint).await;
        telemetry::record_key_introspection(started.elapsed());
        telemetry::record_key_lookup(match &result {
            Ok(_) => "miss_ok",
            Err(AuthFailure::Unavailable(_)) => "failed",
            Err(_) => "miss_refused",
        });
        result
    }

    async fn introspect(
        &self,
        key: ApiKey,
        fingerprint: String,
    ) -> Result<Arc<Principal>, AuthFailure> {
        match self
            .upstream
            .call(&key, Operation::GetCurrentApiKey, Map::new(), None)
            .await
        {
            Ok(me) => {
                let Ok(me) = serde_json::from_str::<serde_json::Value>(me.get()) else {
                    return Err(AuthFailure::Unavailable(
                        "key introspection answered with something that is not JSON".into(),
                    ));
                };
                let scope_names: Vec<String> = me["scopes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect();
                Ok(Arc::new(Principal {
                    scopes: ScopeSet::from_names(scope_names.iter().map(String::as_str)),
                    scope_names,
                    key_id: me["id"].as_str().unwrap_or_default().to_string(),
                    tenant_id: me["tenant_id"].as_str().unwrap_or_default().to_string(),
                    key,
                    fingerprint,
                }))
            }
            Err(DispatchError::Upstream {
                status: 401,
                message,
                ..
            }) => Err(AuthFailure::Rejected(message)),
            Err(DispatchError::Upstream { status: 404, .. }) => Err(AuthFailure::Unavailable(
                "key introspection (/v1/api-keys/current) answered 404: is --upstream the \
                 API's base URL?"
                    .into(),
            )),
            Err(DispatchError::Upstream {
                status, message, ..
            }) => Err(AuthFailure::Unavailable(format!(
                "the API answered {status} to key introspection: {message}"
            ))),
            Err(other) => Err(AuthFailure::Unavailable(other.to_string())),
        }
    }
}

/// SHA-256 of the secret, hex: identifies a key without holding it.
fn fingerprint(key: &ApiKey) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(key.expose_secret().as_bytes()))
}

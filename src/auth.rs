//! Who is calling: `Authorization: Bearer tak_…` resolved through the API's own key
//! introspection (`get_current_api_key`), cached briefly.
//!
//! The gateway holds no key database: the REST API is the authority, so a revoked key stops
//! working here within the cache's TTL. Failed lookups are cached for a much shorter time, so a
//! flood of bad keys cannot hammer the API, yet a key that just became valid is not refused long.

use crate::api_key::ApiKey;
use crate::generated::api::Operation;
use crate::scopes::ScopeSet;
use crate::upstream::{DispatchError, Upstream};
use serde_json::Map;
use std::collections::HashMap;
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
}

impl AuthFailure {
    pub fn message(&self) -> &str {
        match self {
            AuthFailure::Missing(m) | AuthFailure::Rejected(m) | AuthFailure::Unavailable(m) => m,
        }
    }
}

type Cached = (Instant, Result<Arc<Principal>, AuthFailure>);

pub struct Authenticator {
    upstream: Upstream,
    ttl: Duration,
    failure_ttl: Duration,
    /// fingerprint → (when it was looked up, what the API said).
    cache: Mutex<HashMap<String, Cached>>,
}

/// The cache never holds more entries than this; past it, expired entries are swept first, then
/// everything (a burst of distinct bad keys must not grow memory).
const CACHE_LIMIT: usize = 10_000;

impl Authenticator {
    pub fn new(upstream: Upstream, ttl: Duration) -> Authenticator {
        Authenticator {
            upstream,
            ttl,
            failure_ttl: ttl.min(Duration::from_secs(2)),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves an `Authorization` header value.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
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
            return cached;
        }
        let result = self.look_up(key, fingerprint.clone()).await;
        if !matches!(result, Err(AuthFailure::Unavailable(_))) {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHE_LIMIT {
                let (ttl, failure_ttl) = (self.ttl, self.failure_ttl);
                cache.retain(|_, (at, r)| at.elapsed() < if r.is_ok() { ttl } else { failure_ttl });
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
            }
            cache.insert(fingerprint, (Instant::now(), result.clone()));
        }
        result
    }

    fn cached(&self, fingerprint: &str) -> Option<Result<Arc<Principal>, AuthFailure>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (at, result) = cache.get(fingerprint)?;
        let ttl = if result.is_ok() {
            self.ttl
        } else {
            self.failure_ttl
        };
        (at.elapsed() < ttl).then(|| result.clone())
    }

    async fn look_up(
        &self,
        key: ApiKey,
        fingerprint: String,
    ) -> Result<Arc<Principal>, AuthFailure> {
        match self
            .upstream
            .call(&key, Operation::GetCurrentApiKey, Map::new())
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

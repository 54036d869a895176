//! Who is calling: `Authorization: Bearer tak_…` resolved through the API's own key
//! introspection (`get_current_api_key`), or an OAuth access token (`tat_`) exchanged for an API
//! token at the authorization server and resolved through the API's token introspection
//! (`introspect_oauth_token`); either cached briefly.
//!
//! The gateway holds no key database: the REST API is the authority, so a revoked key stops
//! working here within the cache's TTL. Failed lookups are cached for a much shorter time, so a
//! flood of bad keys cannot hammer the API, yet a key that just became valid is not refused long.

use crate::api_key::{ACCESS_TOKEN_PREFIX, ApiKey, REFRESH_TOKEN_PREFIX};
use crate::generated::api::Operation;
use crate::oauth::{AuthorizationServer, ExchangeError};
use crate::rate_limiter::RateLimiter;
use crate::scopes::ScopeSet;
use crate::sync::{FastMap, lock};
use crate::telemetry;
use crate::upstream::{DispatchError, Upstream};
use serde_json::{Map, Value, json};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An authenticated caller: a key's, or an OAuth grant's.
#[derive(Debug)]
pub struct Principal {
    /// What goes upstream: the caller's key, or the API token exchanged for its access token.
    pub key: ApiKey,
    /// The key's id, or the OAuth grant's (`grt_…`).
    pub key_id: String,
    pub tenant_id: String,
    /// The scopes as granted, in the API's words (for messages).
    pub scope_names: Vec<String>,
    pub scopes: ScopeSet,
    /// SHA-256 of the secret (of the grant id, for a token, so that a session outlives the
    /// refresh of its access token): what sessions and limits are keyed by.
    pub fingerprint: String,
    /// For an access token: the resource it was issued for (RFC 8707), which the gateway checks
    /// against its own URL on every request.
    pub audience: Option<String>,
    /// For an access token: when it expires (the cache never keeps it longer).
    pub expires: Option<Instant>,
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
    /// Where access tokens are exchanged; without one, only `tak_` keys are accepted.
    authorization_server: Option<AuthorizationServer>,
    ttl: Duration,
    failure_ttl: Duration,
    /// The secret → (when it was looked up, the principal). Valid keys only: a flood of bad
    /// keys can never evict them. Keyed by the secret itself, which the principal holds anyway:
    /// hashing it on every request (SHA-256, then hex) cost about 6 k instructions; its
    /// fingerprint is computed once, on a miss.
    accepted: Mutex<FastMap<String, (Instant, Arc<Principal>)>>,
    /// The secret → (when it was looked up, why it was refused); bounded on its own.
    refused: Mutex<FastMap<String, (Instant, AuthFailure)>>,
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
            authorization_server: None,
            ttl,
            failure_ttl: ttl.min(Duration::from_secs(2)),
            accepted: Mutex::default(),
            refused: Mutex::default(),
            failures: RateLimiter::new(FAILED_LOOKUPS_PER_MINUTE),
        }
    }

    /// Accepts OAuth access tokens too, exchanging them at `server`.
    pub fn with_authorization_server(mut self, server: AuthorizationServer) -> Authenticator {
        self.authorization_server = Some(server);
        self
    }

    /// How long a resolved key is trusted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether `key` is still accepted (through the cache: at most one introspection per key and
    /// TTL, however many streams ask). Unreachable counts as accepted: an outage of the API must
    /// not end every open stream.
    /// An API token (a stream opened with an access token) is asked about directly: it stays
    /// accepted while it is active, which ends with its grant or its expiry.
    pub async fn still_accepted(&self, key: &ApiKey) -> bool {
        if key.is_access_token() {
            return !matches!(
                self.introspect(key, key.expose_secret()).await,
                Err(AuthFailure::Rejected(_))
            );
        }
        !matches!(
            self.resolve(key.clone()).await,
            Err(AuthFailure::Rejected(_))
        )
    }

    /// Drops what is cached for the principal with `fingerprint` (the API just refused it).
    pub fn forget(&self, fingerprint: &str) {
        // A scan: this is rare (a key revoked mid-call), and entries are keyed by secret.
        lock(&self.accepted).retain(|_, (_, principal)| principal.fingerprint != fingerprint);
    }

    /// Resolves an `Authorization` header value sent from `client` (its address, when known).
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Arc<Principal>, AuthFailure> {
        let header = authorization.ok_or_else(|| {
            AuthFailure::Missing(
                "send `Authorization: Bearer` with a `tak_` API key or an OAuth access token"
                    .into(),
            )
        })?;
        let secret = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                AuthFailure::Missing("the Authorization header must be `Bearer tak_…`".into())
            })?;
        // A secret in the cache was parsed when it was put there (and the lookup is cheaper).
        if let Some(cached) = self.cached(secret) {
            telemetry::record_key_lookup("hit");
            return cached;
        }
        if secret.starts_with(REFRESH_TOKEN_PREFIX) {
            return Err(AuthFailure::Rejected(
                "a refresh token is not an access token: refresh it at the token endpoint and \
                 send the access token"
                    .into(),
            ));
        }
        let key = if secret.starts_with(ACCESS_TOKEN_PREFIX) {
            ApiKey::parse_access_token(secret)
        } else {
            ApiKey::parse(secret)
        }
        .map_err(|e| AuthFailure::Missing(e.to_string()))?;
        // Only lookups cost the API anything; an address that keeps sending unknown keys is
        // stopped here (cached keys, valid or not, still answer above).
        if let Some(client) = client
            && let Err(retry_after) = self.failures.peek(&client.to_string())
        {
            telemetry::record_key_lookup("throttled");
            return Err(AuthFailure::Throttled(retry_after));
        }
        let secret = key.expose_secret().to_string();
        let result = self.look_up(key).await;
        if let (Some(client), Err(AuthFailure::Rejected(_))) = (client, &result) {
            let _ = self.failures.check(&client.to_string(), 1);
        }
        self.remember(secret, &result);
        result
    }

    async fn resolve(&self, key: ApiKey) -> Result<Arc<Principal>, AuthFailure> {
        if let Some(cached) = self.cached(key.expose_secret()) {
            return cached;
        }
        let secret = key.expose_secret().to_string();
        let result = self.look_up(key).await;
        self.remember(secret, &result);
        result
    }

    fn remember(&self, secret: String, result: &Result<Arc<Principal>, AuthFailure>) {
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
                        .map(|(secret, _)| secret.clone())
                {
                    accepted.remove(&oldest);
                }
                accepted.insert(secret, (now, principal.clone()));
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
                refused.insert(secret, (now, failure.clone()));
            }
        }
    }

    fn cached(&self, secret: &str) -> Option<Result<Arc<Principal>, AuthFailure>> {
        if let Some((at, principal)) = lock(&self.accepted).get(secret)
            && at.elapsed() < self.ttl
            && principal
                .expires
                .is_none_or(|expires| expires > Instant::now())
        {
            return Some(Ok(principal.clone()));
        }
        let refused = lock(&self.refused);
        let (at, failure) = refused.get(secret)?;
        (at.elapsed() < self.failure_ttl).then(|| Err(failure.clone()))
    }

    /// Asks the API (a cache miss) about a key or an access token, counted by how it ended.
    async fn look_up(&self, key: ApiKey) -> Result<Arc<Principal>, AuthFailure> {
        let started = Instant::now();
        let result = if key.is_access_token() {
            self.look_up_token(key).await
        } else {
            let fingerprint = fingerprint(&key);
            self.introspect_key(key, fingerprint).await
        };
        telemetry::record_key_introspection(started.elapsed());
        telemetry::record_key_lookup(match &result {
            Ok(_) => "miss_ok",
            Err(AuthFailure::Unavailable(_)) => "failed",
            Err(_) => "miss_refused",
        });
        result
    }

    async fn introspect_key(
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
                    audience: None,
                    expires: None,
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

impl Authenticator {
    /// An access token: exchanged for an API token (which the gateway then calls with), and
    /// introspected with it for its audience, scopes, grant and tenant.
    async fn look_up_token(&self, token: ApiKey) -> Result<Arc<Principal>, AuthFailure> {
        let Some(server) = &self.authorization_server else {
            return Err(AuthFailure::Rejected(
                "this server accepts only `tak_` API keys: it has no authorization server".into(),
            ));
        };
        let exchanged = server
            .exchange(token.expose_secret(), self.upstream.base_url())
            .await
            .map_err(|e| match e {
                ExchangeError::Refused(message) => AuthFailure::Rejected(message),
                ExchangeError::Unavailable(message) => AuthFailure::Unavailable(message),
            })?;
        let api_token = ApiKey::parse_access_token(&exchanged.access_token).map_err(|_| {
            AuthFailure::Unavailable("token exchange answered with something not a token".into())
        })?;
        let answer = self.introspect(&api_token, token.expose_secret()).await?;
        let remaining = seconds_left(
            answer["exp"].as_i64(),
            chrono::Utc::now().timestamp(),
            exchanged.expires_in,
        );
        let grant_id = answer["grant_id"].as_str().unwrap_or_default().to_string();
        let scope_names: Vec<String> = answer["scope"]
            .as_str()
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect();
        Ok(Arc::new(Principal {
            scopes: ScopeSet::from_names(scope_names.iter().map(String::as_str)),
            scope_names,
            tenant_id: answer["tenant_id"].as_str().unwrap_or_default().to_string(),
            fingerprint: grant_fingerprint(&grant_id),
            key_id: grant_id,
            key: api_token,
            audience: Some(answer["aud"].as_str().unwrap_or_default().to_string()),
            // The client's token's own expiry (the API token may outlast it).
            expires: Some(Instant::now() + Duration::from_secs(remaining)),
        }))
    }

    /// RFC 7662's answer for `token`, asked as `credential`; an inactive token is `Rejected`.
    async fn introspect(&self, credential: &ApiKey, token: &str) -> Result<Value, AuthFailure> {
        let mut arguments = Map::new();
        arguments.insert("token".into(), json!(token));
        match self
            .upstream
            .call(credential, Operation::IntrospectOauthToken, arguments, None)
            .await
        {
            Ok(answer) => {
                let answer: Value = serde_json::from_str(answer.get()).map_err(|_| {
                    AuthFailure::Unavailable(
                        "token introspection answered with something that is not JSON".into(),
                    )
                })?;
                if answer["active"] != true {
                    return Err(AuthFailure::Rejected(
                        "the access token is not active (expired, revoked or unknown)".into(),
                    ));
                }
                Ok(answer)
            }
            Err(DispatchError::Upstream {
                status: 401,
                message,
                ..
            }) => Err(AuthFailure::Rejected(message)),
            Err(DispatchError::Upstream {
                status, message, ..
            }) => Err(AuthFailure::Unavailable(format!(
                "the API answered {status} to token introspection: {message}"
            ))),
            Err(other) => Err(AuthFailure::Unavailable(other.to_string())),
        }
    }
}

/// What a grant's sessions and limits are keyed by: its id, hashed like a key's secret.
fn grant_fingerprint(grant_id: &str) -> String {
    use sha2::Digest;
    format!(
        "{:x}",
        sha2::Sha256::digest(format!("oauth-grant:{grant_id}").as_bytes())
    )
}

/// SHA-256 of the secret, hex: identifies a key without holding it.
fn fingerprint(key: &ApiKey) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(key.expose_secret().as_bytes()))
}

/// How long an exchanged API token may be trusted: until its `exp` (none: not at all), and no
/// longer than the exchange said (`expires_in`, which the authorization server chooses, so any
/// u64 may come).
fn seconds_left(exp: Option<i64>, now: i64, expires_in: u64) -> u64 {
    let until_exp = exp.map_or(0, |exp| exp.saturating_sub(now)).max(0);
    (until_exp as u64).min(expires_in)
}

#[cfg(test)]
mod tests {
    use super::seconds_left;

    #[test]
    fn an_exchanged_tokens_lifetime_is_its_exp_capped_by_expires_in_whatever_they_say() {
        assert_eq!(seconds_left(Some(1_000 + 300), 1_000, 60), 60);
        assert_eq!(seconds_left(Some(1_000 + 30), 1_000, 60), 30);
        assert_eq!(seconds_left(Some(1_000 + 30), 1_000, u64::MAX), 30);
        assert_eq!(seconds_left(Some(500), 1_000, 60), 0, "expired");
        assert_eq!(seconds_left(None, 1_000, 60), 0);
        assert_eq!(
            seconds_left(Some(i64::MAX), i64::MIN, u64::MAX),
            i64::MAX as u64
        );
    }
}

//! The credential the gateway sends the API: a `tak_` API key, or an OAuth access token (`tat_`)
//! issued for the API (see `oauth`); a secret that is parsed once and can only be shown redacted.
//!
//! `Debug` and `Display` print the public prefix (`tak_AbCd1234…`), never the rest, so a key that
//! ends up in a log line or an error message leaks nothing.

use axum::http::HeaderValue;
use std::fmt;
use std::sync::OnceLock;

/// Length of the public prefix: `tak_` and 8 characters, as the API's `prefix` field shows it.
const PREFIX_LEN: usize = 12;
/// OAuth access tokens of TrainAR's authorization server; refresh tokens are `tar_`.
pub const ACCESS_TOKEN_PREFIX: &str = "tat_";
pub const REFRESH_TOKEN_PREFIX: &str = "tar_";

#[derive(Clone)]
pub struct ApiKey {
    secret: String,
    /// `Bearer <secret>` as a sensitive header value, made on first use: a key is cached with
    /// its principal, so its calls after the first reuse it.
    authorization: OnceLock<HeaderValue>,
}

impl PartialEq for ApiKey {
    fn eq(&self, other: &ApiKey) -> bool {
        self.secret == other.secret
    }
}

impl Eq for ApiKey {}

impl std::hash::Hash for ApiKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.secret.hash(state);
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiKeyError {
    #[error("an API key starts with `tak_`")]
    MissingPrefix,
    #[error("an API key is `tak_` followed by 8 to 200 letters and digits")]
    Malformed,
}

impl ApiKey {
    pub fn parse(secret: &str) -> Result<ApiKey, ApiKeyError> {
        let rest = secret
            .strip_prefix("tak_")
            .ok_or(ApiKeyError::MissingPrefix)?;
        if !(8..=200).contains(&rest.len()) || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ApiKeyError::Malformed);
        }
        Ok(ApiKey::new(secret))
    }

    /// An OAuth access token (`tat_` and 8 to 200 letters and digits), shown and kept like a key.
    pub fn parse_access_token(secret: &str) -> Result<ApiKey, ApiKeyError> {
        let rest = secret
            .strip_prefix(ACCESS_TOKEN_PREFIX)
            .ok_or(ApiKeyError::MissingPrefix)?;
        if !(8..=200).contains(&rest.len()) || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ApiKeyError::Malformed);
        }
        Ok(ApiKey::new(secret))
    }

    fn new(secret: &str) -> ApiKey {
        ApiKey {
            secret: secret.to_string(),
            authorization: OnceLock::new(),
        }
    }

    /// `Authorization: Bearer <secret>` for the upstream, marked sensitive so that neither
    /// reqwest nor hyper ever prints it.
    pub fn authorization(&self) -> HeaderValue {
        self.authorization
            .get_or_init(|| {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", self.secret))
                    .expect("a parsed key is visible ASCII");
                value.set_sensitive(true);
                value
            })
            .clone()
    }

    /// Whether this is an OAuth access token rather than a `tak_` key.
    pub fn is_access_token(&self) -> bool {
        self.secret.starts_with(ACCESS_TOKEN_PREFIX)
    }

    /// The whole secret, for what must see it: the key cache, the lookup at the API and the
    /// fingerprint (the upstream header comes from `authorization`).
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    /// The public prefix, safe to log and to show.
    pub fn prefix(&self) -> &str {
        &self.secret[..PREFIX_LEN]
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.prefix())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", self.prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let key = ApiKey::parse("tak_AbCd1234SECRETSECRETSECRET").unwrap();
        assert_eq!(key.prefix(), "tak_AbCd1234");
        assert!(!format!("{key:?} {key}").contains("SECRET"));
    }

    #[test]
    fn rejects_bad_keys() {
        assert_eq!(
            ApiKey::parse("sk_123456789"),
            Err(ApiKeyError::MissingPrefix)
        );
        assert_eq!(ApiKey::parse("tak_short"), Err(ApiKeyError::Malformed));
        assert_eq!(
            ApiKey::parse("tak_has space inside"),
            Err(ApiKeyError::Malformed)
        );
    }
}

//! The `MetaGraph` port: the Graph API calls the platform makes, their typed results,
//! and Meta's errors classified by code and subcode (never by message text or HTTP
//! status, which vary).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::number::{PhoneNumberId, Profile, WabaId};

/// A business integration system-user token. Never printed.
#[derive(Clone)]
pub struct AccessToken(SecretString);

impl AccessToken {
    pub fn new(s: impl Into<String>) -> Self {
        Self(SecretString::from(s.into()))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([REDACTED])")
    }
}

/// The 30-second, single-use code from Embedded Signup. Never printed.
#[derive(Clone)]
pub struct AuthCode(SecretString);

impl AuthCode {
    /// Any non-empty printable string of at most 2048 bytes.
    pub fn parse(s: &str) -> Option<Self> {
        (!s.is_empty() && s.len() <= 2048 && s.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| Self(SecretString::from(s.to_owned())))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for AuthCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthCode([REDACTED])")
    }
}

/// How a Graph API failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphErrorKind {
    /// Token invalid, expired or revoked (190, 102).
    TokenInvalid,
    /// Permission or access (10, 200–299, 3).
    Permission,
    /// The object does not exist or the id is of the wrong type (100/33).
    NotFound,
    /// Rate limited; stop calling until `retry_after` when Meta says.
    Throttled,
    /// Worth retrying with backoff (1, 2, 131000, 131016, 133004, 5xx, timeouts).
    Transient,
    /// Blocked by policy (368).
    Policy,
    /// Anything else: a request Meta refused as invalid.
    Other,
}

/// A Graph API failure. `message` is Meta's text or ours, never a token or URL query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("graph error {kind:?} (code {code:?}, subcode {subcode:?}): {message}")]
pub struct GraphError {
    pub kind: GraphErrorKind,
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    pub message: String,
    /// From the usage headers, when Meta throttled us.
    pub retry_after: Option<Duration>,
}

impl GraphError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: GraphErrorKind::Transient,
            code: None,
            subcode: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Classifies Meta's error body by code and subcode.
    pub fn classify(code: i64, subcode: Option<i64>, is_transient: bool) -> GraphErrorKind {
        use GraphErrorKind::*;
        match code {
            190 | 102 => TokenInvalid,
            4 | 17 | 32 | 613 | 80007 | 80008 | 130429 | 131056 | 133016 => Throttled,
            _ if is_transient => Transient,
            1 | 2 | 131000 | 131016 | 133004 => Transient,
            10 | 3 | 200..=299 => Permission,
            100 if subcode == Some(33) => NotFound,
            803 => NotFound,
            368 => Policy,
            _ => Other,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            GraphErrorKind::Transient | GraphErrorKind::Throttled
        )
    }
}

/// One entry of `debug_token`'s `granular_scopes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GranularScope {
    pub scope: String,
    /// `None`: the scope applies to every asset the token can reach.
    #[serde(default)]
    pub target_ids: Option<Vec<String>>,
}

/// What `debug_token` says of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    pub app_id: String,
    pub is_valid: bool,
    /// `None` when Meta says 0 (does not expire).
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    pub granular_scopes: Vec<GranularScope>,
}

pub const WABA_SCOPES: [&str; 2] = [
    "whatsapp_business_management",
    "whatsapp_business_messaging",
];

impl TokenFacts {
    /// Whether the token reaches this WABA, by membership in the granular scopes'
    /// targets (their order is not stable).
    pub fn covers_waba(&self, waba: &WabaId) -> bool {
        self.granular_scopes
            .iter()
            .filter(|g| g.scope == WABA_SCOPES[0])
            .any(|g| match &g.target_ids {
                None => true,
                Some(ids) => ids.iter().any(|id| id == waba.as_str()),
            })
    }
}

/// One number listed under a WABA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WabaNumber {
    pub id: PhoneNumberId,
    pub profile: Profile,
}

/// `health_status.can_send_message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanSend {
    Available,
    Limited,
    Blocked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagingHealth {
    pub can_send: CanSend,
    /// Meta's explanations (error descriptions, additional info), for the message.
    pub details: Vec<String>,
}

/// The Graph API calls the platform makes.
#[async_trait]
pub trait MetaGraph: Send + Sync + fmt::Debug {
    /// Exchanges the Embedded Signup code. Never retried: the code is single-use.
    async fn exchange_code(&self, code: &AuthCode) -> Result<AccessToken, GraphError>;
    async fn debug_token(&self, token: &AccessToken) -> Result<TokenFacts, GraphError>;
    async fn waba_numbers(
        &self,
        token: &AccessToken,
        waba: &WabaId,
    ) -> Result<Vec<WabaNumber>, GraphError>;
    async fn subscribe_app(&self, token: &AccessToken, waba: &WabaId) -> Result<(), GraphError>;
    /// The ids of the apps subscribed to the WABA's webhooks.
    async fn subscribed_apps(
        &self,
        token: &AccessToken,
        waba: &WabaId,
    ) -> Result<Vec<String>, GraphError>;
    async fn unsubscribe_app(&self, token: &AccessToken, waba: &WabaId) -> Result<(), GraphError>;
    async fn register(
        &self,
        token: &AccessToken,
        phone: &PhoneNumberId,
        pin: &str,
    ) -> Result<(), GraphError>;
    async fn profile(
        &self,
        token: &AccessToken,
        phone: &PhoneNumberId,
    ) -> Result<Profile, GraphError>;
    async fn health(
        &self,
        token: &AccessToken,
        phone: &PhoneNumberId,
    ) -> Result<MessagingHealth, GraphError>;
    /// Our Meta app's id (to find ourselves in `subscribed_apps` and check tokens).
    fn app_id(&self) -> &str;
}

#[cfg(test)]
mod tests {
    use super::*;
    use GraphErrorKind::*;

    #[test]
    fn classification_follows_codes() {
        assert_eq!(GraphError::classify(190, Some(463), false), TokenInvalid);
        assert_eq!(GraphError::classify(102, None, false), TokenInvalid);
        assert_eq!(GraphError::classify(100, Some(33), false), NotFound);
        assert_eq!(GraphError::classify(100, None, false), Other);
        assert_eq!(GraphError::classify(133016, None, false), Throttled);
        assert_eq!(GraphError::classify(80008, None, false), Throttled);
        assert_eq!(GraphError::classify(131000, None, false), Transient);
        assert_eq!(GraphError::classify(999, None, true), Transient);
        assert_eq!(GraphError::classify(200, None, false), Permission);
        assert_eq!(GraphError::classify(368, None, false), Policy);
    }

    #[test]
    fn waba_coverage_is_by_membership() {
        let waba = WabaId::parse("222").unwrap();
        let facts = |targets: Option<Vec<&str>>| TokenFacts {
            app_id: "1".into(),
            is_valid: true,
            expires_at: None,
            scopes: vec![],
            granular_scopes: vec![GranularScope {
                scope: "whatsapp_business_management".into(),
                target_ids: targets.map(|t| t.into_iter().map(String::from).collect()),
            }],
        };
        assert!(facts(Some(vec!["111", "222"])).covers_waba(&waba));
        assert!(facts(Some(vec!["222", "111"])).covers_waba(&waba));
        assert!(!facts(Some(vec!["111"])).covers_waba(&waba));
        assert!(facts(None).covers_waba(&waba));
        assert!(!format!("{:?}", AccessToken::new("EAAGsecret")).contains("EAAG"));
    }
}

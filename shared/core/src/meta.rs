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
    /// Meta refused *our* app's credentials (a rotated or mis-set app secret: the
    /// exchange's `code 1`/`101`, a 190 on `debug_token`'s app access token). Nothing
    /// about the owner's number follows from it; an operator must fix the secret.
    AppCredentials,
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
    /// Meta's `error_data.details` (e.g. how long to wait after error 133008).
    pub details: Option<String>,
}

impl GraphError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: GraphErrorKind::Transient,
            code: None,
            subcode: None,
            message: message.into(),
            retry_after: None,
            details: None,
        }
    }

    /// An error of `kind` with no code from Meta (a shape we could not use, ...).
    pub fn of_kind(kind: GraphErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            ..Self::transient(message)
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
    /// The WABA the owner just shared, when the page could not say: the first target of
    /// `whatsapp_business_management` (Meta lists the most recently onboarded first).
    /// `None` when the scope names no targets (a token reaching every asset).
    pub fn shared_waba(&self) -> Option<WabaId> {
        self.granular_scopes
            .iter()
            .filter(|g| g.scope == WABA_SCOPES[0])
            .find_map(|g| {
                g.target_ids
                    .as_ref()?
                    .iter()
                    .find_map(|id| WabaId::parse(id))
            })
    }

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

/// `health_status.can_send_message`, best first (so `max` is the worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CanSend {
    Available,
    Limited,
    Blocked,
}

impl CanSend {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "AVAILABLE" => Some(Self::Available),
            "LIMITED" => Some(Self::Limited),
            "BLOCKED" => Some(Self::Blocked),
            _ => None,
        }
    }
}

/// One of Meta's errors on a health entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthIssue {
    pub code: Option<i64>,
    pub description: String,
}

/// What Meta says of one entity behind the number (PHONE_NUMBER, WABA, BUSINESS, APP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityHealth {
    pub entity_type: String,
    /// `can_send_message`; `None` when the entity does not say.
    pub can_send: Option<CanSend>,
    /// Errors listed on the entity. Entities also carry calling fields
    /// (`can_receive_call_sip`) whose errors share this list: those are no messaging
    /// evidence, see [`MessagingHealth::verdict`].
    pub errors: Vec<HealthIssue>,
    pub additional_info: Vec<String>,
}

/// `health_status` as Meta reports it: the aggregate and each entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagingHealth {
    /// Meta's aggregate `can_send_message`; not trusted when entities are given (Meta's
    /// own sample says BLOCKED for a number whose only problem is SIP calling).
    pub can_send: CanSend,
    pub entities: Vec<EntityHealth>,
}

/// The entities whose state decides whether a number can send (Meta also reports a
/// MESSAGE_TEMPLATE entity when asked about a template: not the number's health).
pub const NUMBER_ENTITIES: [&str; 4] = ["PHONE_NUMBER", "WABA", "BUSINESS", "APP"];

/// Error codes Meta uses for calling (SIP) problems: never messaging evidence.
fn is_calling_error(code: Option<i64>) -> bool {
    code.is_some_and(|c| (138_000..139_000).contains(&c))
}

impl MessagingHealth {
    /// Whether the number can send messages, worked out from each entity's
    /// `can_send_message` (the worst wins), and a message naming the entities that
    /// limit or block it with Meta's error codes. Errors on an entity that can send,
    /// and calling errors, say nothing about messaging and are left out.
    pub fn verdict(&self) -> (CanSend, String) {
        let rated: Vec<(&EntityHealth, CanSend)> = self
            .entities
            .iter()
            .filter(|e| NUMBER_ENTITIES.contains(&e.entity_type.as_str()))
            .filter_map(|e| e.can_send.map(|c| (e, c)))
            .collect();
        if rated.is_empty() {
            return (self.can_send, String::new());
        }
        let worst = rated
            .iter()
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(CanSend::Available);
        let parts: Vec<String> = rated
            .iter()
            .filter(|(_, c)| *c == worst && worst != CanSend::Available)
            .map(|(e, _)| {
                let mut notes: Vec<String> = e
                    .errors
                    .iter()
                    .filter(|i| !is_calling_error(i.code))
                    .map(|i| match i.code {
                        Some(code) => format!("{code} {}", i.description),
                        None => i.description.clone(),
                    })
                    .collect();
                notes.extend(e.additional_info.iter().cloned());
                if notes.is_empty() {
                    e.entity_type.clone()
                } else {
                    format!("{}: {}", e.entity_type, notes.join("; "))
                }
            })
            .collect();
        (worst, parts.join(" | "))
    }
}

/// What the WABA itself says (`GET /{waba}?fields=account_review_status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WabaInfo {
    /// `APPROVED`, `PENDING` or `REJECTED`.
    pub account_review_status: Option<String>,
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
    /// Counts against the same 10-per-72-h budget as `register`.
    async fn deregister(
        &self,
        token: &AccessToken,
        phone: &PhoneNumberId,
    ) -> Result<(), GraphError>;
    async fn waba_info(&self, token: &AccessToken, waba: &WabaId) -> Result<WabaInfo, GraphError>;
    async fn profile(
        &self,
        token: &AccessToken,
        phone: &PhoneNumberId,
    ) -> Result<Profile, GraphError>;
    /// The number's profile and its `health_status` in one call (the same node's
    /// fields): a health check spends one of Meta's rate-limited calls on both. A
    /// failed call fails both parts; a part of the answer we cannot use fails alone.
    async fn profile_and_health(
        &self,
        token: &AccessToken,
        phone: &PhoneNumberId,
    ) -> (
        Result<Profile, GraphError>,
        Result<MessagingHealth, GraphError>,
    );
    /// Our Meta app's id (to find ourselves in `subscribed_apps` and check tokens).
    fn app_id(&self) -> &str;
    /// The app secret, which Meta signs its webhook deliveries with.
    async fn app_secret(&self) -> Result<secrecy::SecretString, GraphError>;
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

    fn entity(kind: &str, can: &str, errors: &[(i64, &str)]) -> EntityHealth {
        EntityHealth {
            entity_type: kind.into(),
            can_send: CanSend::parse(can),
            errors: errors
                .iter()
                .map(|(c, d)| HealthIssue {
                    code: Some(*c),
                    description: (*d).into(),
                })
                .collect(),
            additional_info: vec![],
        }
    }

    #[test]
    fn the_verdict_comes_from_the_entities_not_calling_errors() {
        // Meta's SIP sample: aggregate BLOCKED, every entity can send.
        let sip = MessagingHealth {
            can_send: CanSend::Blocked,
            entities: vec![
                entity("PHONE_NUMBER", "AVAILABLE", &[(138024, "SIP not enabled")]),
                entity("WABA", "AVAILABLE", &[]),
                entity("BUSINESS", "AVAILABLE", &[]),
                entity("APP", "AVAILABLE", &[(138025, "no SIP server")]),
            ],
        };
        assert_eq!(sip.verdict().0, CanSend::Available);
        let waba_blocked = MessagingHealth {
            can_send: CanSend::Blocked,
            entities: vec![
                entity("PHONE_NUMBER", "LIMITED", &[]),
                entity(
                    "WABA",
                    "BLOCKED",
                    &[(141010, "The Business has been restricted.")],
                ),
            ],
        };
        let (can, message) = waba_blocked.verdict();
        assert_eq!(can, CanSend::Blocked);
        assert_eq!(message, "WABA: 141010 The Business has been restricted.");
        let no_entities = MessagingHealth {
            can_send: CanSend::Limited,
            entities: vec![],
        };
        assert_eq!(no_entities.verdict().0, CanSend::Limited);
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

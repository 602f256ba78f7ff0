//! Signup sessions: what a partner asked for when it minted a token (redirect URL,
//! metadata, lifetime), and what became of it.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::app::{RedirectOrigin, check_scheme};
use crate::ids::{AppId, SecretHash, SessionId};

pub const MAX_REDIRECT_URL_LEN: usize = 2048;
pub const MAX_METADATA_BYTES: usize = 4096;
pub const MAX_METADATA_DEPTH: usize = 5;

/// Why a partner's input was refused; the HTTP layer maps each to its error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("redirectUrl: its origin is not one of the App's allowed redirect origins")]
    RedirectNotAllowed,
}

fn invalid(field: &'static str, message: impl Into<String>) -> SessionError {
    SessionError::Invalid {
        field,
        message: message.into(),
    }
}

/// Where the number owner lands after signup: absolute `https` (plain `http` only for a
/// local host), at most 2048 characters, no credentials, and on one of the App's allowed
/// origins when it has any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectUrl(Url);

impl RedirectUrl {
    pub fn parse(s: &str, allowed: &[RedirectOrigin]) -> Result<Self, SessionError> {
        let url = Self::parse_unchecked_origin(s, true).map_err(|m| invalid("redirectUrl", m))?;
        if !allowed.is_empty() && !allowed.contains(&RedirectOrigin::of(&url.0)) {
            return Err(SessionError::RedirectNotAllowed);
        }
        Ok(url)
    }

    fn parse_unchecked_origin(s: &str, limit: bool) -> Result<Self, String> {
        if limit && s.len() > MAX_REDIRECT_URL_LEN {
            return Err(format!("must be at most {MAX_REDIRECT_URL_LEN} characters"));
        }
        let url = Url::parse(s).map_err(|_| "must be an absolute https URL".to_owned())?;
        // Parsing percent-encodes what needs it: the limit holds for what is stored.
        if limit && url.as_str().len() > MAX_REDIRECT_URL_LEN {
            return Err(format!(
                "must be at most {MAX_REDIRECT_URL_LEN} characters once percent-encoded"
            ));
        }
        check_scheme(&url)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain credentials".into());
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// This URL with extra query parameters, for sending the owner back to the partner.
    pub fn with_query(&self, pairs: &[(&str, &str)]) -> Url {
        let mut url = self.0.clone();
        url.query_pairs_mut().extend_pairs(pairs);
        url
    }
}

impl TryFrom<String> for RedirectUrl {
    type Error = String;
    /// For reading back stored values: the allow-list was checked when it was written.
    fn try_from(s: String) -> Result<Self, String> {
        // Nor its length: an older version limited only the raw input.
        Self::parse_unchecked_origin(&s, false)
    }
}

impl From<RedirectUrl> for String {
    fn from(u: RedirectUrl) -> String {
        u.0.into()
    }
}

/// The partner's own data about a signup, echoed back untouched: a JSON object of at
/// most 4 KiB serialized and at most 5 levels deep (the object itself is level 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(try_from = "Value", into = "Value")]
pub struct Metadata(serde_json::Map<String, Value>);

impl Metadata {
    pub fn parse(value: Value) -> Result<Self, SessionError> {
        let Value::Object(map) = value else {
            return Err(invalid("metadata", "must be a JSON object"));
        };
        if depth_of(&Value::Object(map.clone())) > MAX_METADATA_DEPTH {
            return Err(invalid(
                "metadata",
                format!("must be nested at most {MAX_METADATA_DEPTH} levels deep"),
            ));
        }
        let size = serde_json::to_vec(&map)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_METADATA_BYTES {
            return Err(invalid(
                "metadata",
                format!("must be at most {MAX_METADATA_BYTES} bytes serialized"),
            ));
        }
        Ok(Self(map))
    }

    pub fn as_map(&self) -> &serde_json::Map<String, Value> {
        &self.0
    }

    /// The number a dashboard Reconnect bound this signup to (`{"reconnect": id}`, set
    /// by the dashboard): finishing with another number is refused.
    pub fn reconnect_target(&self) -> Option<&str> {
        self.0.get(RECONNECT_KEY).and_then(Value::as_str)
    }
}

/// The metadata key a dashboard Reconnect binds its signup session with.
pub const RECONNECT_KEY: &str = "reconnect";

fn depth_of(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth_of).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

impl TryFrom<Value> for Metadata {
    type Error = SessionError;
    fn try_from(v: Value) -> Result<Self, SessionError> {
        Self::parse(v)
    }
}

impl From<Metadata> for Value {
    fn from(m: Metadata) -> Value {
        Value::Object(m.0)
    }
}

/// How long a signup token stays usable: 300 s to 30 days, 24 h when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiresIn(i64);

impl ExpiresIn {
    pub const MIN: i64 = 300;
    pub const MAX: i64 = 2_592_000;
    pub const DEFAULT: i64 = 86_400;

    pub fn parse(seconds: Option<i64>) -> Result<Self, SessionError> {
        match seconds.unwrap_or(Self::DEFAULT) {
            s @ Self::MIN..=Self::MAX => Ok(Self(s)),
            _ => Err(invalid(
                "expiresIn",
                format!("must be an integer from {} to {}", Self::MIN, Self::MAX),
            )),
        }
    }

    pub fn duration(self) -> Duration {
        Duration::seconds(self.0)
    }
}

/// Where a session stands. `Expired` is never stored: it is what an unfinished session
/// past its `expires_at` reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Pending,
    Completing,
    Completed,
    Failed,
    /// Meta says the owner finished its flow, but our callback never arrived (window
    /// closed, network lost): the owner opens the same link once more.
    Interrupted,
    Expired,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completing => "completing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Completing,
            Self::Completed,
            Self::Failed,
            Self::Interrupted,
            Self::Expired,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A failed completion's cause, as shown to the partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFailure {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AbandonEvent {
    Cancel,
    Error,
    /// Meta's flow finished in the browser (the page reports it before posting the
    /// code): if the callback never arrives, Meta's `PARTNER_ADDED` finds the session
    /// by this WABA.
    Finish,
}

/// A number owner leaving Meta's flow without finishing (kept for the funnel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Abandon {
    pub at: DateTime<Utc>,
    pub event: AbandonEvent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_session_id: Option<String>,
    /// The WABA Meta's flow finished with (`Finish` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waba_id: Option<crate::number::WabaId>,
}

/// One signup link minted by a partner, found by its token's hash or by its id.
#[derive(Debug, Clone, PartialEq)]
pub struct SignupSession {
    pub id: SessionId,
    pub app_id: AppId,
    pub token_hash: SecretHash,
    /// The stored status; read [`SignupSession::status_at`] for what a caller sees.
    pub status: SessionStatus,
    pub redirect_url: RedirectUrl,
    pub metadata: Metadata,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub phone_number_id: Option<String>,
    pub error: Option<SessionFailure>,
    pub abandons: Vec<Abandon>,
}

impl SignupSession {
    /// The WABA of the last finish the page reported (what an interrupted signup names).
    pub fn finished_waba(&self) -> Option<&crate::number::WabaId> {
        self.abandons
            .iter()
            .rev()
            .find(|a| a.event == AbandonEvent::Finish)
            .and_then(|a| a.waba_id.as_ref())
    }

    /// The status as of `now`: an unfinished session (a failed one included) past its
    /// expiry is `Expired`, since
    /// store-side expiry (DynamoDB TTL) is lazy and must not be relied on.
    pub fn status_at(&self, now: DateTime<Utc>) -> SessionStatus {
        match self.status {
            SessionStatus::Pending
            | SessionStatus::Completing
            | SessionStatus::Failed
            | SessionStatus::Interrupted
                if now >= self.expires_at =>
            {
                SessionStatus::Expired
            }
            s => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn origins(list: &[&str]) -> Vec<RedirectOrigin> {
        list.iter()
            .map(|o| RedirectOrigin::parse(o).expect("origin"))
            .collect()
    }

    #[test]
    fn redirect_urls_accepted() {
        for good in [
            "https://partner.example/onboarding/done",
            "https://partner.example:8443/x?y=1#z",
            "http://localhost:3000/done",
            "http://127.0.0.1/done",
            "http://[::1]:8080/",
        ] {
            assert!(RedirectUrl::parse(good, &[]).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_redirect_url_is_limited_once_percent_encoded() {
        // 724 spaces pass the raw length check and become 2,172 characters of %20.
        let spaced = format!("https://partner.example/a{}b", " ".repeat(724));
        assert!(spaced.len() <= MAX_REDIRECT_URL_LEN);
        assert!(RedirectUrl::parse(&spaced, &[]).is_err());
        // What was accepted always reads back.
        let ok = RedirectUrl::parse(
            &format!("https://partner.example/a{}b", " ".repeat(600)),
            &[],
        )
        .unwrap();
        assert!(RedirectUrl::try_from(ok.as_str().to_owned()).is_ok());
        // What an older version stored past the limit still reads back.
        let stored = format!("https://partner.example/a{}b", "%20".repeat(724));
        assert!(RedirectUrl::try_from(stored).is_ok());
    }

    #[test]
    fn redirect_urls_refused() {
        let long = format!("https://partner.example/{}", "a".repeat(2048));
        for bad in [
            "",
            "/relative/path",
            "partner.example/done",
            "javascript:alert(1)",
            "data:text/html,hi",
            "http://partner.example/done",
            "https://user:pass@partner.example/done",
            "https://user@partner.example/done",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    RedirectUrl::parse(bad, &[]),
                    Err(SessionError::Invalid {
                        field: "redirectUrl",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn redirect_origin_allow_list() {
        let allowed = origins(&["https://partner.example", "http://localhost:3000"]);
        assert!(RedirectUrl::parse("https://partner.example/a", &allowed).is_ok());
        assert!(RedirectUrl::parse("http://localhost:3000/b", &allowed).is_ok());
        for off in [
            "https://evil.example/a",
            "https://partner.example:8443/a",
            "https://sub.partner.example/a",
            "http://localhost:3001/b",
        ] {
            assert_eq!(
                RedirectUrl::parse(off, &allowed),
                Err(SessionError::RedirectNotAllowed),
                "{off}"
            );
        }
    }

    #[test]
    fn metadata_limits() {
        assert!(Metadata::parse(json!({"partnerId": "p_123"})).is_ok());
        assert!(Metadata::parse(json!({"a": {"b": {"c": {"d": {"e": 1}}}}})).is_ok());
        for bad in [
            json!([1, 2]),
            json!("s"),
            json!(3),
            json!(null),
            json!({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}),
            json!({"a": [[[[[1]]]]]}),
            json!({"big": "x".repeat(4096)}),
        ] {
            assert!(
                matches!(
                    Metadata::parse(bad.clone()),
                    Err(SessionError::Invalid {
                        field: "metadata",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_unfinished_session_past_its_expiry_reads_as_expired() {
        let now = Utc::now();
        let mut s = SignupSession {
            id: crate::ids::SessionId::generate(),
            app_id: crate::ids::AppId::generate(),
            token_hash: crate::ids::SignupToken::generate().hash(),
            status: SessionStatus::Failed,
            redirect_url: RedirectUrl::parse("https://partner.example/done", &[]).unwrap(),
            metadata: Metadata::default(),
            created_at: now - Duration::days(2),
            expires_at: now - Duration::days(1),
            completed_at: None,
            phone_number_id: None,
            error: None,
            abandons: vec![],
        };
        for status in [
            SessionStatus::Pending,
            SessionStatus::Completing,
            SessionStatus::Failed,
            SessionStatus::Interrupted,
        ] {
            s.status = status;
            assert_eq!(s.status_at(now), SessionStatus::Expired, "{status:?}");
        }
        s.status = SessionStatus::Completed;
        assert_eq!(s.status_at(now), SessionStatus::Completed);
    }

    #[test]
    fn expires_in_bounds() {
        assert_eq!(ExpiresIn::parse(None), Ok(ExpiresIn(86_400)));
        assert!(ExpiresIn::parse(Some(300)).is_ok());
        assert!(ExpiresIn::parse(Some(2_592_000)).is_ok());
        for bad in [299, 2_592_001, 0, -1] {
            assert!(ExpiresIn::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}

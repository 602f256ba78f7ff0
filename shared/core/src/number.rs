//! WhatsApp Business numbers connected to an App: Meta's identifiers, the health model
//! (status + machine-readable reason), setup progress and what we know of the token.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::Sealed;
use crate::ids::{AppId, SessionId};
use crate::session::Metadata;

macro_rules! meta_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Meta's ids are decimal digits; 1 to 32 of them.
            pub fn parse(s: &str) -> Option<Self> {
                ((1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        $crate::ids::id_string_impls!($name);
    };
}

meta_id!(
    /// Meta's id of a phone number (`phone_number_id`); unique across the platform.
    PhoneNumberId
);
meta_id!(
    /// A WhatsApp Business Account.
    WabaId
);
meta_id!(
    /// A Meta business portfolio.
    BusinessId
);

/// Where a number stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Setup has not finished.
    Pending,
    Healthy,
    Degraded,
    Down,
    /// The partner removed it.
    Removed,
}

impl HealthStatus {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Healthy,
        Self::Degraded,
        Self::Down,
        Self::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Down => "down",
            Self::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Why a number has the status it has; machine-readable, stable across releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthReason {
    SetupPending,
    SetupFailed,
    RegistrationDeferred,
    NamePendingReview,
    TokenInvalid,
    TokenExpiring,
    MetaBlocked,
    MetaLimited,
    NotConnected,
    WebhookUnsubscribed,
    CheckFailing,
    NumberNotFound,
    PartnerRemoved,
    /// Meta rates the number's quality RED.
    QualityLow,
    /// Meta declined the display name.
    NameDeclined,
    /// Meta rejected the WhatsApp Business Account in review.
    AccountRejected,
    /// Registration refused: the number has a two-step verification PIN set elsewhere
    /// (133005); the owner must turn it off, then the App asks for a new attempt.
    TwoStepPinMismatch,
    /// Registration refused: the number must be verified first (133006).
    NumberUnverified,
    /// The business removed our access (Meta's `PARTNER_REMOVED`, account deleted or
    /// offboarded): the number must be connected again through a new signup.
    AccessRemoved,
    /// Meta restricted or flagged the account (violation, restriction, scheduled disable).
    AccountRestricted,
}

impl HealthReason {
    pub const ALL: [Self; 20] = [
        Self::SetupPending,
        Self::SetupFailed,
        Self::RegistrationDeferred,
        Self::NamePendingReview,
        Self::TokenInvalid,
        Self::TokenExpiring,
        Self::MetaBlocked,
        Self::MetaLimited,
        Self::NotConnected,
        Self::WebhookUnsubscribed,
        Self::CheckFailing,
        Self::NumberNotFound,
        Self::PartnerRemoved,
        Self::QualityLow,
        Self::NameDeclined,
        Self::AccountRejected,
        Self::TwoStepPinMismatch,
        Self::NumberUnverified,
        Self::AccessRemoved,
        Self::AccountRestricted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SetupPending => "setup_pending",
            Self::SetupFailed => "setup_failed",
            Self::RegistrationDeferred => "registration_deferred",
            Self::NamePendingReview => "name_pending_review",
            Self::TokenInvalid => "token_invalid",
            Self::TokenExpiring => "token_expiring",
            Self::MetaBlocked => "meta_blocked",
            Self::MetaLimited => "meta_limited",
            Self::NotConnected => "not_connected",
            Self::WebhookUnsubscribed => "webhook_unsubscribed",
            Self::CheckFailing => "check_failing",
            Self::NumberNotFound => "number_not_found",
            Self::PartnerRemoved => "partner_removed",
            Self::QualityLow => "quality_low",
            Self::NameDeclined => "name_declined",
            Self::AccountRejected => "account_rejected",
            Self::TwoStepPinMismatch => "two_step_pin_mismatch",
            Self::NumberUnverified => "number_unverified",
            Self::AccessRemoved => "access_removed",
            Self::AccountRestricted => "account_restricted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The number's current health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: HealthStatus,
    pub reason: Option<HealthReason>,
    pub message: Option<String>,
    /// When the status last changed.
    pub since: DateTime<Utc>,
    pub last_checked_at: Option<DateTime<Utc>>,
    pub next_check_at: Option<DateTime<Utc>>,
    /// Transient check failures in a row (three make a number `degraded`).
    #[serde(default)]
    pub consecutive_failures: u32,
}

/// How long a setup may go without progress before the sweep re-drives it.
pub const SETUP_STALL: chrono::Duration = chrono::Duration::minutes(10);

impl Health {
    /// A number whose setup has just been queued; if the setup makes no progress, the
    /// sweep finds it due after [`SETUP_STALL`] and queues it again.
    pub fn pending(now: DateTime<Utc>) -> Self {
        Self {
            status: HealthStatus::Pending,
            reason: Some(HealthReason::SetupPending),
            message: Some("setup is in progress".into()),
            since: now,
            last_checked_at: None,
            next_check_at: Some(now + SETUP_STALL),
            consecutive_failures: 0,
        }
    }
}

/// Progress of the post-signup steps; each is skipped when already done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetupState {
    pub webhook_subscribed: bool,
    pub registered: bool,
    pub profile_read: bool,
    pub completed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Registration attempts (Meta allows 10 per number per 72 h).
    #[serde(default)]
    pub register_attempts: Vec<DateTime<Utc>>,
    /// Do not try the deferred step again before this time.
    pub retry_after: Option<DateTime<Utc>>,
    /// A worker is running the setup until then; duplicates wait (at-least-once
    /// delivery must not make Meta calls twice).
    #[serde(default)]
    pub lease_until: Option<DateTime<Utc>>,
    /// Registration waits for the owner (Meta's error code, e.g. 133005): no register
    /// call is made until the App asks for a new attempt (`POST .../setup`).
    #[serde(default)]
    pub owner_action: Option<i64>,
    /// A WhatsApp Business app number (coexistence): never registered by us.
    #[serde(default)]
    pub coexistence: bool,
}

/// What `debug_token` said about the business token (never the token itself).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
}

/// What Meta's profile of the number says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub display_phone_number: Option<String>,
    pub verified_name: Option<String>,
    pub quality_rating: Option<String>,
    pub status: Option<String>,
    pub name_status: Option<String>,
    pub platform_type: Option<String>,
    /// `VERIFIED`, `NOT_VERIFIED`, `EXPIRED`, ...
    #[serde(default)]
    pub code_verification_status: Option<String>,
}

/// A connected number, owned by one App. Serialized whole as the stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Number {
    pub phone_number_id: PhoneNumberId,
    pub app_id: AppId,
    pub waba_id: WabaId,
    pub business_id: Option<BusinessId>,
    pub profile: Profile,
    pub health: Health,
    pub setup: SetupState,
    pub token: TokenInfo,
    /// The business token, envelope-encrypted; `None` once the number is removed.
    pub sealed_token: Option<Sealed>,
    /// The registration PIN, envelope-encrypted, once one was generated.
    pub sealed_pin: Option<Sealed>,
    /// The tokens pending teardowns unsubscribe WABAs with, by WABA (the removed
    /// number's, or the old WABA's after a move): kept sealed on the record, never in a
    /// queue message, and each dropped as soon as its WABA's teardown is done.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub teardown_tokens: std::collections::BTreeMap<WabaId, Sealed>,
    pub session_id: SessionId,
    pub metadata: Metadata,
    pub connected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Incremented by every write; writes are conditional on the version read.
    pub version: u64,
}

/// RFC 3339 in UTC with millisecond precision, as every time in the API is written.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Number {
    /// The number as API.md shows it (never its token or PIN): API responses and events.
    pub fn api_view(&self) -> serde_json::Value {
        let n = self;
        serde_json::json!({
            "phoneNumberId": n.phone_number_id,
            "appId": n.app_id,
            "wabaId": n.waba_id,
            "businessId": n.business_id,
            "displayPhoneNumber": n.profile.display_phone_number,
            "verifiedName": n.profile.verified_name,
            "qualityRating": n.profile.quality_rating,
            "health": {
                "status": n.health.status.as_str(),
                "reason": n.health.reason.map(|r| r.as_str()),
                "message": n.health.message,
                "since": rfc3339(n.health.since),
                "lastCheckedAt": n.health.last_checked_at.map(rfc3339),
                "nextCheckAt": n.health.next_check_at.map(rfc3339),
            },
            "setup": {
                "webhookSubscribed": n.setup.webhook_subscribed,
                "registered": n.setup.registered,
                "completedAt": n.setup.completed_at.map(rfc3339),
                "lastError": n.setup.last_error,
                "retryAfter": n.setup.retry_after.map(rfc3339),
                "waitingForOwner": n.setup.owner_action.is_some(),
                "coexistence": n.setup.coexistence,
            },
            "token": {
                "expiresAt": n.token.expires_at.map(rfc3339),
                "scopes": n.token.scopes,
            },
            "sessionId": n.session_id,
            "metadata": serde_json::Value::from(n.metadata.clone()),
            "connectedAt": rfc3339(n.connected_at),
            "updatedAt": rfc3339(n.updated_at),
        })
    }

    /// Not removed: counts for the WABA's webhook subscription and for ownership.
    pub fn is_live(&self) -> bool {
        self.health.status != HealthStatus::Removed
    }

    /// The next revision of this record: a copy at `version + 1`, stamped `now`, to be
    /// saved over `self.version`.
    pub fn revision(&self, now: DateTime<Utc>) -> Number {
        let mut next = self.clone();
        next.version = self.version + 1;
        next.updated_at = now;
        next
    }
}

/// One change of a number's health status, kept as its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthEvent {
    pub at: DateTime<Utc>,
    pub from: HealthStatus,
    pub to: HealthStatus,
    pub reason: Option<HealthReason>,
    pub message: Option<String>,
}

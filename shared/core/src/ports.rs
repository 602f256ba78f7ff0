//! The storage ports. Each has a DynamoDB and an embedded implementation, and both pass
//! the same contract suite (`tests/`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::app::{App, AppKeyRecord, Slug};
use crate::crypto::Sealed;
use crate::events::{Endpoint, Event, EventType};
use crate::ids::{AppId, KeyId, SecretHash, SessionId};
use crate::number::{HealthEvent, HealthStatus, Number, PhoneNumberId, WabaId};
use crate::session::{Abandon, SessionFailure, SessionStatus, SignupSession};
use crate::webhooks::InboundChange;

/// What can go wrong in a store. Messages name the kind of failure, never stored values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write (e.g. the slug is taken).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The write refers to something that does not exist (e.g. a key for an unknown App).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The store could not be reached or answered with an error.
    #[error("store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored record could not be read back into the domain (corrupt or foreign data).
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

#[async_trait]
pub trait AppStore: Send + Sync + std::fmt::Debug {
    /// Stores a new App with its first key. `Conflict` when the slug or id is taken.
    async fn create_app(
        &self,
        app: &App,
        key: &AppKeyRecord,
        key_hash: &SecretHash,
    ) -> Result<(), StoreError>;
    async fn app(&self, id: &AppId) -> Result<Option<App>, StoreError>;
    async fn app_by_slug(&self, slug: &Slug) -> Result<Option<App>, StoreError>;
    /// Every App, oldest first (an operator's listing, not a request path).
    async fn list_apps(&self) -> Result<Vec<App>, StoreError>;
    /// Rewrites an existing App's name, redirect origins and rate limit (and the copies
    /// its keys carry), in one transaction; `NotFound` for an unknown App.
    async fn update_app(&self, app: &App) -> Result<(), StoreError>;
    /// Adds a key to an existing App (`NotFound` otherwise).
    async fn add_key(&self, key: &AppKeyRecord, key_hash: &SecretHash) -> Result<(), StoreError>;
    /// The App holding a live (not revoked) key with this hash, and that key's id.
    async fn live_key(&self, key_hash: &SecretHash) -> Result<Option<(App, KeyId)>, StoreError>;
    /// The App holding a live (not revoked) key with this hash.
    async fn app_for_key(&self, key_hash: &SecretHash) -> Result<Option<App>, StoreError> {
        Ok(self.live_key(key_hash).await?.map(|(app, _)| app))
    }
    /// The App's keys, oldest first, revoked ones included.
    async fn list_keys(&self, app: &AppId) -> Result<Vec<AppKeyRecord>, StoreError>;
    /// Revokes one key of the App; `false` when the App has no such key. Revoking twice
    /// keeps the first revocation time.
    async fn revoke_key(
        &self,
        app: &AppId,
        key: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// What an attempt to claim a session for completion found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This caller holds the claim until its lease ends.
    Won(Box<SignupSession>),
    NotFound,
    Expired,
    /// Already completed.
    Used,
    /// Another completion holds an unexpired claim.
    Held,
}

impl Claim {
    /// Why a session cannot be claimed at `now` (`None`: it can). `lease_over` says
    /// whether a `completing` session's claim has run out.
    pub fn refusal(s: &SignupSession, now: DateTime<Utc>, lease_over: bool) -> Option<Self> {
        match s.status_at(now) {
            SessionStatus::Expired => Some(Self::Expired),
            SessionStatus::Completed => Some(Self::Used),
            SessionStatus::Completing if !lease_over => Some(Self::Held),
            _ => None,
        }
    }
}

/// How a claimed completion ends when it does not complete.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// `Pending` (retry freely) or `Failed` (the last attempt failed; retry allowed).
    pub status: SessionStatus,
    pub error: Option<SessionFailure>,
}

/// One transaction that completes a signup: the session, the number record, the
/// platform-wide ownership of the phone number, and the health history entry.
#[derive(Debug, Clone)]
pub struct SignupCompletion {
    pub session_id: SessionId,
    pub claim_id: String,
    pub completed_at: DateTime<Utc>,
    /// The number as it is to be stored (its `version` is the new version).
    pub number: Number,
    /// The version this completion read (`None`: the App had no record of the number).
    pub expected_version: Option<u64>,
    /// The WABA the number was in before, when it moved (its membership there ends).
    pub previous_waba: Option<WabaId>,
    pub history: Option<HealthEvent>,
}

/// Why a completion transaction was refused.
#[derive(Debug, thiserror::Error)]
pub enum CompletionError {
    #[error("the claim on the session was lost")]
    ClaimLost,
    #[error("the number belongs to another App")]
    OwnedByAnotherApp,
    #[error("the number record changed meanwhile")]
    NumberChanged,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Stores a new session; `Conflict` if its id or token hash already exists.
    async fn insert_session(&self, session: &SignupSession) -> Result<(), StoreError>;
    async fn session(&self, id: &SessionId) -> Result<Option<SignupSession>, StoreError>;
    async fn session_by_token(
        &self,
        token_hash: &SecretHash,
    ) -> Result<Option<SignupSession>, StoreError>;
    /// Claims the session with this token for completion: one winner among concurrent
    /// callers. A `pending` or `failed` session, or a `completing` one whose lease has
    /// ended, can be claimed while it has not expired.
    async fn claim_session(
        &self,
        token_hash: &SecretHash,
        claim_id: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError>;
    /// Gives a claim back without completing; `false` if the claim was no longer held.
    async fn release_claim(
        &self,
        id: &SessionId,
        claim_id: &str,
        release: &Release,
    ) -> Result<bool, StoreError>;
    /// Appends an abandon event to an unfinished session; `false` if the session is
    /// completed or holds too many events already (the funnel keeps the first 100).
    async fn record_abandon(&self, id: &SessionId, abandon: &Abandon) -> Result<bool, StoreError>;
    /// Records Meta's flow finishing in the browser with `waba` (a `Finish` funnel event
    /// appended like an abandon, and the session findable by the WABA); `false` when the
    /// session is completed or its funnel is full.
    async fn record_finish(
        &self,
        session: &SignupSession,
        finish: &Abandon,
        waba: &WabaId,
    ) -> Result<bool, StoreError>;
    /// Sessions whose page reported a finish with this WABA, oldest first.
    async fn sessions_finished_with(&self, waba: &WabaId) -> Result<Vec<SessionId>, StoreError>;
    /// Marks a `pending` or `failed` session `interrupted`; `false` when it is in any
    /// other state (completing, completed) or unknown.
    async fn mark_interrupted(&self, id: &SessionId) -> Result<bool, StoreError>;
    /// The App's sessions created since `since`, newest first, at most `limit`.
    async fn recent_sessions(
        &self,
        app: &AppId,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<SignupSession>, StoreError>;
}

/// The most abandon events kept per session.
pub const MAX_ABANDONS: usize = 100;

/// Why a versioned write of a number was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The record is no longer at the version read: a newer write won.
    #[error("the number record changed meanwhile")]
    Changed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of an App's numbers, in phone-number-id order.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberPage {
    pub numbers: Vec<Number>,
    /// Where the next page starts (the last id of this one), if there may be more.
    pub next_after: Option<PhoneNumberId>,
}

impl NumberPage {
    /// A page from a read of up to `limit + 1` numbers: the extra one only says that
    /// another page exists.
    pub fn from_overfetch(mut numbers: Vec<Number>, limit: usize) -> Self {
        let more = numbers.len() > limit;
        numbers.truncate(limit);
        let next_after = more
            .then(|| numbers.last().map(|n| n.phone_number_id.clone()))
            .flatten();
        Self {
            numbers,
            next_after,
        }
    }
}

/// A number whose health check is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueNumber {
    pub app_id: AppId,
    pub phone_number_id: PhoneNumberId,
    pub due_at: DateTime<Utc>,
}

#[async_trait]
pub trait NumberStore: Send + Sync + std::fmt::Debug {
    /// The App's record of the number (including a removed one).
    async fn number(
        &self,
        app: &AppId,
        phone: &PhoneNumberId,
    ) -> Result<Option<Number>, StoreError>;
    /// The App that currently owns the phone number platform-wide.
    async fn number_owner(&self, phone: &PhoneNumberId) -> Result<Option<AppId>, StoreError>;
    /// Completes a signup in one transaction (see [`SignupCompletion`]).
    async fn complete_signup(&self, completion: &SignupCompletion) -> Result<(), CompletionError>;
    /// Writes `number` (whose `version` is `expected_version + 1`) only over the version
    /// read, with its history entry in the same transaction.
    async fn save_number(
        &self,
        number: &Number,
        expected_version: u64,
        history: Option<&HealthEvent>,
    ) -> Result<(), WriteError>;
    /// Writes the removed record (token and PIN already dropped) and, in the same
    /// transaction, releases the platform-wide ownership and the WABA membership.
    async fn remove_number(
        &self,
        removed: &Number,
        expected_version: u64,
        history: &HealthEvent,
    ) -> Result<(), WriteError>;
    /// A page of the App's numbers (removed ones included), optionally of one status.
    async fn list_numbers(
        &self,
        app: &AppId,
        status: Option<HealthStatus>,
        limit: usize,
        after: Option<&PhoneNumberId>,
    ) -> Result<NumberPage, StoreError>;
    /// The live (not removed) numbers of a WABA, across every App.
    async fn live_numbers_in_waba(
        &self,
        waba: &WabaId,
    ) -> Result<Vec<(AppId, PhoneNumberId)>, StoreError>;
    /// The number's health history, newest first.
    async fn history(
        &self,
        app: &AppId,
        phone: &PhoneNumberId,
        limit: usize,
    ) -> Result<Vec<HealthEvent>, StoreError>;
    /// Numbers whose next check is due at `now`, stalest first.
    async fn due_numbers(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueNumber>, StoreError>;
}

/// Everything the request handlers need from storage.
/// A dashboard login link, stored by its token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLink {
    pub token_hash: SecretHash,
    pub app_id: AppId,
    /// The app key that minted it (None: an operator's link); its session lasts only
    /// while that key is live.
    pub minted_by: Option<KeyId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What using a login link found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkUse {
    /// First use, unexpired: the link is now spent.
    Signed(LoginLink),
    NotFound,
    Used,
    Expired,
}

/// A signed-in dashboard session, stored by its cookie's hash.
#[derive(Clone, PartialEq, Eq)]
pub struct DashboardSession {
    pub cookie_hash: SecretHash,
    pub app_id: AppId,
    /// Every state-changing request must carry it (form field or header).
    pub csrf: String,
    /// The app key whose login link opened it (None: an operator's link).
    pub minted_by: Option<KeyId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The CSRF token is a secret of the session: debug output shows it redacted.
impl std::fmt::Debug for DashboardSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardSession")
            .field("cookie_hash", &self.cookie_hash)
            .field("app_id", &self.app_id)
            .field("csrf", &"[redacted]")
            .field("minted_by", &self.minted_by)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Login links and dashboard sessions.
#[async_trait]
pub trait DashboardStore: Send + Sync + std::fmt::Debug {
    async fn insert_login_link(&self, link: &LoginLink) -> Result<(), StoreError>;
    /// Spends the link: of concurrent uses, exactly one gets `Signed`.
    async fn use_login_link(
        &self,
        token_hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<LinkUse, StoreError>;
    async fn insert_dashboard_session(&self, session: &DashboardSession) -> Result<(), StoreError>;
    async fn dashboard_session(
        &self,
        cookie_hash: &SecretHash,
    ) -> Result<Option<DashboardSession>, StoreError>;
    async fn end_dashboard_session(&self, cookie_hash: &SecretHash) -> Result<(), StoreError>;
}

/// What became of a received Meta change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOutcome {
    /// Acted on (or known to need nothing).
    Done,
    /// Names no WABA, number or session of ours: kept for the operator.
    Unmatched,
}

impl ChangeOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Unmatched => "unmatched",
        }
    }
}

/// A received change and, once processed, its outcome.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredChange {
    pub change: InboundChange,
    pub outcome: Option<ChangeOutcome>,
    pub note: Option<String>,
    pub settled_at: Option<DateTime<Utc>>,
}

/// How long received changes are kept (Meta retries for up to 7 days: a redelivery
/// within this is recognised and not processed again).
pub const INBOX_RETENTION: chrono::Duration = chrono::Duration::days(30);

/// Meta's webhook changes as received.
#[async_trait]
pub trait InboxStore: Send + Sync + std::fmt::Debug {
    /// Stores a received change; `false` when a change with its id is already stored
    /// (a redelivery).
    async fn insert_change(&self, change: &InboundChange) -> Result<bool, StoreError>;
    async fn change(&self, id: &str) -> Result<Option<StoredChange>, StoreError>;
    /// Records what became of the change.
    async fn settle_change(
        &self,
        id: &str,
        outcome: ChangeOutcome,
        note: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Changes kept for the operator, newest first.
    async fn unmatched_changes(&self, limit: usize) -> Result<Vec<StoredChange>, StoreError>;
}

/// One page of an App's events, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Where the next page starts (events older than this id), if there may be more.
    pub next_before: Option<String>,
}

impl EventPage {
    /// A page from a read of up to `limit + 1` events: the extra one only says that
    /// another page exists.
    pub fn from_overfetch(mut events: Vec<Event>, limit: usize) -> Self {
        let more = events.len() > limit;
        events.truncate(limit);
        let next_before = more.then(|| events.last().map(|e| e.id.clone())).flatten();
        Self {
            events,
            next_before,
        }
    }
}

/// Partner endpoints and their events.
#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// Creates or replaces the App's endpoint.
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError>;
    async fn endpoint(&self, app: &AppId) -> Result<Option<Endpoint>, StoreError>;
    /// `false` when the App had none.
    async fn delete_endpoint(&self, app: &AppId) -> Result<bool, StoreError>;
    /// Sets or clears the endpoint's failing flag only (nothing else of the endpoint is
    /// written; an endpoint removed meanwhile stays removed).
    async fn set_endpoint_failing(
        &self,
        app: &AppId,
        since: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// Stores a new event; `false` when an event with its id exists (emitted before).
    async fn insert_event(&self, event: &Event) -> Result<bool, StoreError>;
    async fn event(&self, app: &AppId, id: &str) -> Result<Option<Event>, StoreError>;
    /// Replaces an event's delivery state (status, attempts, next attempt).
    async fn save_delivery(&self, event: &Event) -> Result<(), StoreError>;
    /// The App's unexpired events, newest first, optionally of one type, older than
    /// `before` (an event id) when given.
    async fn list_events(
        &self,
        app: &AppId,
        kind: Option<EventType>,
        limit: usize,
        before: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<EventPage, StoreError>;
}

/// Request counters for rate limits: fixed windows, shared by every instance.
#[async_trait]
pub trait RateCounter: Send + Sync + std::fmt::Debug {
    /// Counts one request in `bucket`'s window starting at `window_start`; the count in
    /// that window so far, this one included. Windows are forgotten after `expires_at`.
    async fn count_request(
        &self,
        bucket: &str,
        window_start: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

/// What a request under an `Idempotency-Key` found.
#[derive(Debug, Clone, PartialEq)]
pub enum IdemClaim {
    /// First use (or the key expired, or an earlier run died): run the request.
    Run,
    /// A request with this key is running now.
    InProgress,
    /// The same key with a different request.
    Reused,
    /// Done before: answer with its stored response.
    Replay { status: u16, body: Sealed },
}

/// Idempotency keys: per App, by the key's hash, for 24 hours.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug {
    /// Claims the key for a request whose fingerprint is `request_hash`: of concurrent
    /// callers one gets `Run`. A `Run` claim lasts until `lease_until` (a run that dies
    /// frees the key then); the record lasts until `expires_at`.
    async fn claim_idempotency(
        &self,
        app: &AppId,
        key_hash: &SecretHash,
        request_hash: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<IdemClaim, StoreError>;
    /// Stores the response of a run (sealed: it may carry a token).
    async fn finish_idempotency(
        &self,
        app: &AppId,
        key_hash: &SecretHash,
        status: u16,
        body: &Sealed,
    ) -> Result<(), StoreError>;
    /// Forgets a run that failed on our side (5xx): the same key may be retried.
    async fn release_idempotency(
        &self,
        app: &AppId,
        key_hash: &SecretHash,
    ) -> Result<(), StoreError>;
}

pub trait Store:
    AppStore
    + SessionStore
    + NumberStore
    + DashboardStore
    + InboxStore
    + EventStore
    + IdempotencyStore
    + RateCounter
    + std::fmt::Debug
{
}
impl<
    T: AppStore
        + SessionStore
        + NumberStore
        + DashboardStore
        + InboxStore
        + EventStore
        + IdempotencyStore
        + RateCounter
        + std::fmt::Debug,
> Store for T
{
}

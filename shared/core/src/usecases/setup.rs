//! RunSetup: the slow post-signup steps, run by the webhook-setup worker, each recorded
//! on the number so a redelivered or repeated job skips what is done:
//! 1. subscribe our app to the WABA's webhooks;
//! 2. register the number for Cloud API with a 6-digit PIN from the CSPRNG, sealed and
//!    stored before the call so retries reuse it (skipped for WhatsApp Business app
//!    numbers and when the profile shows the number registered already; deferred, not
//!    failed, while Meta's 10-per-72-h budget is spent). Meta's registration errors
//!    each get their own outcome (`registration_outcome`): the owner must act
//!    (133005, 133006: no further call until the App asks again), wait as long as Meta
//!    says (133008, 133009, 133015, 133016), or deregister first (133000);
//! 3. read the profile; 4. link the number to its App and run the first health check.
//!
//! Also Teardown (after a removal). The job dispatcher both workers share is in
//! `usecases::jobs`.

use chrono::{DateTime, Duration, Utc};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::crypto::{Envelope, Sealed, SecretBinding, SecretPurpose};
use crate::ids::AppId;
use crate::meta::{AccessToken, GraphError, GraphErrorKind, MetaGraph};
use crate::number::{HealthReason, HealthStatus, Number, PhoneNumberId, WabaId};
use crate::ports::{EventStore, InboxStore, NumberStore, SessionStore, StoreError, WriteError};
use crate::queue::JobQueue;
use crate::usecases::events::{DeliveryDeps, Emitter, EventSender};
use crate::usecases::health::{
    CheckDeps, CheckError, HealthPolicy, check_number, open_token, set_health,
};

/// Meta's registration budget per number.
pub const REGISTRATIONS_PER_WINDOW: usize = 10;
pub const REGISTRATION_WINDOW: Duration = Duration::hours(72);
/// Meta: a number must be registered within 14 days of signup.
pub const REGISTRATION_DEADLINE: Duration = Duration::days(14);
/// How long one delivery holds the setup of a number (longer than a worker runs).
pub const SETUP_LEASE: Duration = Duration::minutes(2);

/// Everything the workers talk to.
#[derive(Debug, Clone, Copy)]
pub struct WorkerDeps<'a> {
    pub store: &'a dyn NumberStore,
    pub sessions: &'a dyn SessionStore,
    pub inbox: &'a dyn InboxStore,
    pub events: &'a dyn EventStore,
    pub sender: &'a dyn EventSender,
    pub graph: &'a dyn MetaGraph,
    pub envelope: &'a Envelope,
    pub queue: &'a dyn JobQueue,
    /// Where partner-event deliveries are queued.
    pub events_queue: &'a dyn JobQueue,
    pub clock: &'a dyn Clock,
    pub policy: &'a HealthPolicy,
}

impl<'a> WorkerDeps<'a> {
    pub fn check(&self) -> CheckDeps<'a> {
        CheckDeps {
            store: self.store,
            graph: self.graph,
            envelope: self.envelope,
            clock: self.clock,
            policy: self.policy,
            emitter: self.emitter(),
        }
    }

    pub fn emitter(&self) -> Emitter<'a> {
        Emitter {
            store: self.events,
            queue: self.events_queue,
        }
    }

    pub fn delivery(&self) -> DeliveryDeps<'a> {
        DeliveryDeps {
            store: self.events,
            queue: self.events_queue,
            sender: self.sender,
            envelope: self.envelope,
            clock: self.clock,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupOutcome {
    /// Setup finished; the first health check gave this status.
    Completed(HealthStatus),
    /// A step must wait until then (the number says why); the sweep re-drives it.
    Deferred {
        until: DateTime<Utc>,
        reason: HealthReason,
    },
    /// The number is down; setup stops.
    Down(HealthReason),
    /// Registration waits for the owner to act (the number is degraded with why).
    OwnerAction(HealthReason),
    /// Nothing to do: removed, already set up, or unknown.
    Skipped,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Worth another delivery (transient Meta failure, throttling, a concurrent write).
    #[error("{0}")]
    Retry(String),
    /// Another delivery holds the setup's lease until then: not a failure of this
    /// job (it is queued again for then, and no retry is spent).
    #[error("another delivery is running this setup until {0}")]
    Busy(DateTime<Utc>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<WriteError> for SetupError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Changed => Self::Retry("the number changed meanwhile".into()),
            WriteError::Store(e) => Self::Store(e),
        }
    }
}

impl From<CheckError> for SetupError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Store(e) => Self::Store(e),
            e => Self::Retry(e.to_string()),
        }
    }
}

/// Stores a step's progress over the version read; returns the stored number.
async fn save(
    store: &dyn NumberStore,
    number: &Number,
    now: DateTime<Utc>,
) -> Result<Number, SetupError> {
    let next = number.revision(now);
    store.save_number(&next, number.version, None).await?;
    Ok(next)
}

fn pin_binding(n: &Number) -> SecretBinding<'_> {
    SecretBinding {
        purpose: SecretPurpose::RegistrationPin,
        app_id: &n.app_id,
        phone_number_id: &n.phone_number_id,
    }
}

/// Six decimal digits from the OS CSPRNG (uniform: base62 characters that are digits).
fn new_pin() -> String {
    let mut pin = String::with_capacity(6);
    while pin.len() < 6 {
        pin.extend(
            crate::random::base62(32)
                .chars()
                .filter(char::is_ascii_digit)
                .take(6 - pin.len()),
        );
    }
    pin
}

/// Records why a step failed and decides: down (stop), or retry later.
async fn failed(
    deps: WorkerDeps<'_>,
    n: &Number,
    step: &str,
    e: GraphError,
) -> Result<SetupOutcome, SetupError> {
    let now = deps.clock.now();
    let (reason, message) = match e.kind {
        GraphErrorKind::TokenInvalid | GraphErrorKind::Permission => (
            HealthReason::TokenInvalid,
            "Meta refused the business token during setup; the owner must connect the number again",
        ),
        GraphErrorKind::NotFound => (
            HealthReason::NumberNotFound,
            "Meta no longer knows this number or its WhatsApp Business Account",
        ),
        GraphErrorKind::AppCredentials => {
            tracing::error!(phone_number_id = %n.phone_number_id, step, "Meta refused our app credentials during setup");
            let mut recorded = n.clone();
            recorded.setup.lease_until = None;
            recorded.setup.last_error = Some(format!("{step}: {}", e.message));
            save(deps.store, &recorded, now).await?;
            return Err(SetupError::Retry(format!(
                "{step}: Meta refused this platform's app credentials"
            )));
        }
        _ => {
            let mut recorded = n.clone();
            recorded.setup.lease_until = None;
            recorded.setup.last_error = Some(format!("{step}: {}", e.message));
            save(deps.store, &recorded, now).await?;
            return Err(SetupError::Retry(format!("{step}: {}", e.message)));
        }
    };
    let mut stopped = n.clone();
    stopped.setup.lease_until = None;
    stopped.setup.last_error = Some(format!("{step}: {}", e.message));
    set_health(
        deps.store,
        deps.emitter(),
        deps.policy,
        &stopped,
        HealthStatus::Down,
        reason,
        message,
        now,
    )
    .await?;
    warn!(phone_number_id = %n.phone_number_id, step, reason = reason.as_str(), "setup stopped: number down");
    Ok(SetupOutcome::Down(reason))
}

/// Waits until `until` (kept on the number; the sweep re-drives the setup then).
async fn defer(
    deps: WorkerDeps<'_>,
    n: &Number,
    until: DateTime<Utc>,
    reason: HealthReason,
    message: String,
) -> Result<SetupOutcome, SetupError> {
    let mut waiting = n.clone();
    waiting.setup.lease_until = None;
    waiting.setup.retry_after = Some(until);
    let deadline = n.connected_at + REGISTRATION_DEADLINE;
    let message = if !n.setup.registered && until > deadline {
        format!(
            "{message}. Meta requires registration within 14 days of signup (by {}): after that the owner must run Embedded Signup again",
            deadline.format("%Y-%m-%d")
        )
    } else {
        message
    };
    waiting.health.reason = Some(reason);
    waiting.health.message = Some(message);
    waiting.health.next_check_at = Some(until);
    save(deps.store, &waiting, deps.clock.now()).await?;
    info!(phone_number_id = %n.phone_number_id, reason = reason.as_str(), until = %until, "setup deferred");
    Ok(SetupOutcome::Deferred { until, reason })
}

#[tracing::instrument(skip_all, fields(app_id = %app, phone_number_id = %phone))]
pub async fn run_setup(
    deps: WorkerDeps<'_>,
    app: &AppId,
    phone: &PhoneNumberId,
) -> Result<SetupOutcome, SetupError> {
    let Some(mut n) = deps.store.number(app, phone).await? else {
        return Ok(SetupOutcome::Skipped);
    };
    if !n.is_live() || (n.setup.completed_at.is_some() && n.health.status != HealthStatus::Pending)
    {
        return Ok(SetupOutcome::Skipped);
    }
    let now = deps.clock.now();
    if n.setup.owner_action.is_some() {
        // Waiting for the owner; only the App's request (`request_setup`) clears it.
        return Ok(SetupOutcome::Skipped);
    }
    if let Some(until) = n.setup.retry_after.filter(|u| *u > now) {
        let reason = n
            .health
            .reason
            .unwrap_or(HealthReason::RegistrationDeferred);
        return Ok(SetupOutcome::Deferred { until, reason });
    }
    if let Some(until) = n.setup.lease_until.filter(|l| *l > now) {
        return Err(SetupError::Busy(until));
    }
    let token = match open_token(deps.envelope, &n).await {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(SetupOutcome::Skipped),
        Err(e) => return Err(SetupError::Retry(format!("opening the token: {e}"))),
    };
    // Take the lease: of two concurrent deliveries, one writes it, the other retries.
    let lease = now + SETUP_LEASE;
    n.setup.lease_until = Some(lease);
    n = save(deps.store, &n, now).await?;
    let result = steps(deps, n, &token, now).await;
    if result.is_err() {
        // Every exit gives the lease back: a redelivery must not wait for it to run out.
        release_lease(deps, app, phone, lease).await;
    }
    result
}

/// Gives back the lease `lease` if the number still holds it (best effort: it also
/// runs out by itself).
async fn release_lease(
    deps: WorkerDeps<'_>,
    app: &AppId,
    phone: &PhoneNumberId,
    lease: DateTime<Utc>,
) {
    patch_number(
        deps,
        app,
        phone,
        "setup lease not released; it runs out by itself",
        |n| {
            let ours = n.setup.lease_until == Some(lease);
            n.setup.lease_until = None;
            ours
        },
    )
    .await;
}

/// Rewrites the number with `change` over the version read (again if a concurrent write
/// won), best effort: `change` says whether there was anything to do; a store failure
/// is logged with `failed`.
async fn patch_number(
    deps: WorkerDeps<'_>,
    app: &AppId,
    phone: &PhoneNumberId,
    failed: &str,
    change: impl Fn(&mut Number) -> bool,
) {
    for _ in 0..3 {
        let Ok(Some(n)) = deps.store.number(app, phone).await else {
            return;
        };
        let mut next = n.revision(deps.clock.now());
        if !change(&mut next) {
            return;
        }
        match deps.store.save_number(&next, n.version, None).await {
            Ok(()) => return,
            Err(WriteError::Changed) => continue,
            Err(WriteError::Store(e)) => {
                warn!(phone_number_id = %phone, error = %e, "{failed}");
                return;
            }
        }
    }
}

/// The steps after the lease is taken.
async fn steps(
    deps: WorkerDeps<'_>,
    mut n: Number,
    token: &AccessToken,
    now: DateTime<Utc>,
) -> Result<SetupOutcome, SetupError> {
    let (app, phone) = (n.app_id.clone(), n.phone_number_id.clone());

    if !n.setup.webhook_subscribed {
        if let Err(e) = deps.graph.subscribe_app(token, &n.waba_id).await {
            return failed(deps, &n, "subscribe webhooks", e).await;
        }
        n.setup.webhook_subscribed = true;
        n = save(deps.store, &n, now).await?;
    }
    if !n.setup.registered {
        match register(deps, n, token, now).await? {
            Ok(registered) => n = registered,
            Err(outcome) => return Ok(outcome),
        }
    }

    n.setup.profile_read = true;
    n.setup.lease_until = None;
    n.setup.completed_at = Some(now);
    n.setup.last_error = None;
    n.setup.retry_after = None;
    let n = save(deps.store, &n, now).await?;
    let completed_at = n.setup.completed_at.unwrap_or(now);
    let checked = check_number(deps.check(), n).await?;
    let status = checked.number.health.status;
    info!(phone_number_id = %phone, app_id = %app, status = status.as_str(), "setup completed");
    deps.emitter()
        .emit(crate::events::Event::new(
            app.clone(),
            crate::events::EventType::NumberConnected,
            &format!("{phone}#{}", completed_at.timestamp_millis()),
            completed_at,
            serde_json::json!({ "number": checked.number.api_view() }),
        ))
        .await
        .map_err(|e| SetupError::Retry(format!("number.connected: {e}")))?;
    Ok(SetupOutcome::Completed(status))
}

/// Step 2; `Err(outcome)` when setup stops or waits here.
async fn register(
    deps: WorkerDeps<'_>,
    mut n: Number,
    token: &AccessToken,
    now: DateTime<Utc>,
) -> Result<Result<Number, SetupOutcome>, SetupError> {
    let profile = match deps.graph.profile(token, &n.phone_number_id).await {
        Ok(p) => p,
        Err(e) => return failed(deps, &n, "read profile", e).await.map(Err),
    };
    n.profile = profile.clone();
    let registered_already = profile
        .platform_type
        .as_deref()
        .is_some_and(|p| p != "NOT_APPLICABLE");
    if n.setup.coexistence || registered_already {
        // A WhatsApp Business app (coexistence) number, which Meta says not to
        // register, or one registered for Cloud API already. A display name still in
        // review does not hold registration back: names are reviewed while in use.
        n.setup.registered = true;
        return Ok(Ok(save(deps.store, &n, now).await?));
    }
    n.setup
        .register_attempts
        .retain(|t| now - *t < REGISTRATION_WINDOW);
    if let Some(until) = budget_wait(&n, 1, now) {
        let msg =
            "Meta's registration budget (10 per 72 hours) is spent; registration waits".to_owned();
        return defer(deps, &n, until, HealthReason::RegistrationDeferred, msg)
            .await
            .map(Err);
    }
    let pin = match &n.sealed_pin {
        Some(sealed) => deps
            .envelope
            .open_string(pin_binding(&n), sealed)
            .await
            .map_err(|e| SetupError::Retry(format!("opening the PIN: {e}")))?,
        None => {
            let pin = new_pin();
            let sealed = deps
                .envelope
                .seal(pin_binding(&n), pin.as_bytes())
                .await
                .map_err(|e| SetupError::Retry(format!("sealing the PIN: {e}")))?;
            n.sealed_pin = Some(sealed);
            pin.into()
        }
    };
    // The PIN and the attempt are stored before the call: a retry reuses the PIN and
    // counts against the same budget Meta counts.
    n.setup.register_attempts.push(now);
    let mut n = save(deps.store, &n, now).await?;
    let pin = secrecy::ExposeSecret::expose_secret(&pin).to_owned();
    let mut result = deps.graph.register(token, &n.phone_number_id, &pin).await;
    if result.as_ref().err().and_then(|e| e.code) == Some(133_000) {
        // A previous deregistration did not complete: deregister, then register again
        // (both count against the budget, so both are recorded first, and only when
        // the budget has room for both).
        if let Some(until) = budget_wait(&n, 2, now) {
            let msg = "Meta refused registration (133000: a previous deregistration did not complete); deregistering and registering again waits for Meta's budget of 10 per 72 hours".to_owned();
            return defer(deps, &n, until, HealthReason::RegistrationDeferred, msg)
                .await
                .map(Err);
        }
        n.setup.register_attempts.push(now);
        n.setup.register_attempts.push(now);
        n = save(deps.store, &n, now).await?;
        result = match deps.graph.deregister(token, &n.phone_number_id).await {
            Ok(()) => deps.graph.register(token, &n.phone_number_id, &pin).await,
            Err(e) => Err(e),
        };
    }
    match result {
        Ok(()) => {
            let mut done = n;
            done.setup.registered = true;
            done.setup.retry_after = None;
            Ok(Ok(save(deps.store, &done, now).await?))
        }
        Err(e) => match registration_outcome(&e, now) {
            RegistrationOutcome::OwnerAction { reason, message } => {
                owner_must_act(deps, &n, &e, reason, message).await.map(Err)
            }
            RegistrationOutcome::Wait { until, message } => {
                defer(deps, &n, until, HealthReason::RegistrationDeferred, message)
                    .await
                    .map(Err)
            }
            RegistrationOutcome::Other => failed(deps, &n, "register", e).await.map(Err),
        },
    }
}

/// When `needed` more register/deregister calls fit in Meta's 10 per 72 h: `None` now,
/// else when the oldest recorded attempt leaves the window.
fn budget_wait(n: &Number, needed: usize, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let used = &n.setup.register_attempts;
    (used.len() + needed > REGISTRATIONS_PER_WINDOW)
        .then(|| used.iter().min().copied().unwrap_or(now) + REGISTRATION_WINDOW)
}

/// What a refused registration calls for (META.md's registration table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationOutcome {
    /// The owner must act; no register call until the App asks for a new attempt.
    OwnerAction {
        reason: HealthReason,
        message: &'static str,
    },
    /// Try again no earlier than `until`.
    Wait {
        until: DateTime<Utc>,
        message: String,
    },
    /// Not a registration error: the usual handling (down, or retry).
    Other,
}

pub const PIN_MISMATCH_MESSAGE: &str = "Meta refused registration (133005): this number already has a two-step verification PIN, set with another provider or app. The owner must turn off two-step verification for the number in WhatsApp Manager (Phone numbers > the number > Two-step verification), then the App asks for a new attempt (POST /v1/numbers/{id}/setup)";
pub const UNVERIFIED_MESSAGE: &str = "Meta refused registration (133006): the phone number is not verified. The owner must verify it in WhatsApp Manager (Phone numbers > the number > Verify), then the App asks for a new attempt (POST /v1/numbers/{id}/setup)";

/// Meta's wait after too many PIN guesses (133008) is in the error details; when it
/// cannot be read, this long.
pub const PIN_GUESS_WAIT: Duration = Duration::hours(24);

/// The longest wait read from Meta's details (a bound against text we misread).
pub const MAX_META_WAIT: Duration = Duration::days(7);

/// A wait written in Meta's details ("... try again in 12 hours", "after 30 minutes"),
/// at most [`MAX_META_WAIT`].
fn wait_in(details: &str) -> Option<Duration> {
    let words: Vec<&str> = details
        .split(|c: char| c.is_whitespace() || c == ',' || c == '.')
        .filter(|w| !w.is_empty())
        .collect();
    words.windows(2).find_map(|w| {
        let n: i64 = w[0].parse().ok()?;
        let unit = w[1].to_ascii_lowercase();
        let per = if unit.starts_with("sec") {
            Duration::seconds(1)
        } else if unit.starts_with("min") {
            Duration::minutes(1)
        } else if unit.starts_with("hour") || unit.starts_with("hr") {
            Duration::hours(1)
        } else if unit.starts_with("day") {
            Duration::days(1)
        } else {
            return None;
        };
        let n = i32::try_from(n.min(1_000_000)).ok()?;
        Some((per * n).min(MAX_META_WAIT))
    })
}

/// The outcome of Meta's refusal `e` of a register call made at `now`.
pub fn registration_outcome(e: &GraphError, now: DateTime<Utc>) -> RegistrationOutcome {
    let wait = |d: Duration, what: &str| RegistrationOutcome::Wait {
        until: now + d,
        message: format!(
            "{what}; registration waits until {}",
            (now + d).to_rfc3339()
        ),
    };
    match e.code {
        Some(133_005) => RegistrationOutcome::OwnerAction {
            reason: HealthReason::TwoStepPinMismatch,
            message: PIN_MISMATCH_MESSAGE,
        },
        Some(133_006) => RegistrationOutcome::OwnerAction {
            reason: HealthReason::NumberUnverified,
            message: UNVERIFIED_MESSAGE,
        },
        Some(133_008) => {
            let d = e
                .details
                .as_deref()
                .and_then(wait_in)
                .unwrap_or(PIN_GUESS_WAIT);
            wait(d, "Meta saw too many PIN attempts for this number (133008)")
        }
        Some(133_009) => wait(
            Duration::minutes(5),
            "Meta says the PIN was entered too quickly (133009)",
        ),
        Some(133_015) => wait(
            Duration::minutes(5),
            "the number was recently deleted and Meta has not finished (133015)",
        ),
        Some(133_016) => wait(
            REGISTRATION_WINDOW,
            "Meta blocked registration of this number for 72 hours: too many register/deregister attempts (133016)",
        ),
        _ => RegistrationOutcome::Other,
    }
}

/// Registration waits for the owner: the number is `degraded` with what to do, and no
/// register call is made until the App asks again.
async fn owner_must_act(
    deps: WorkerDeps<'_>,
    n: &Number,
    e: &GraphError,
    reason: HealthReason,
    message: &str,
) -> Result<SetupOutcome, SetupError> {
    let mut waiting = n.clone();
    waiting.setup.lease_until = None;
    waiting.setup.owner_action = e.code;
    waiting.setup.last_error = Some(format!("register: {}", e.message));
    let message = message.replace("{id}", n.phone_number_id.as_str());
    set_health(
        deps.store,
        deps.emitter(),
        deps.policy,
        &waiting,
        HealthStatus::Degraded,
        reason,
        &message,
        deps.clock.now(),
    )
    .await?;
    warn!(phone_number_id = %n.phone_number_id, code = ?e.code, reason = reason.as_str(), "registration waits for the owner");
    Ok(SetupOutcome::OwnerAction(reason))
}

/// After a removal: unsubscribes the WABA's webhooks when no live number of it remains.
#[tracing::instrument(skip_all, fields(app_id = %app, waba_id = %waba, phone_number_id = %phone))]
pub async fn teardown(
    deps: WorkerDeps<'_>,
    app: &AppId,
    waba: &WabaId,
    phone: &PhoneNumberId,
    sealed_token: Option<&str>,
    removed_version: Option<u64>,
) -> Result<(), SetupError> {
    let result = teardown_steps(deps, app, waba, phone, sealed_token, removed_version).await;
    if result.is_ok() {
        drop_teardown_token(deps, app, waba, phone).await;
    }
    result
}

/// The teardown is done: its token leaves the record.
async fn drop_teardown_token(
    deps: WorkerDeps<'_>,
    app: &AppId,
    waba: &WabaId,
    phone: &PhoneNumberId,
) {
    patch_number(
        deps,
        app,
        phone,
        "the teardown's token stays on the record",
        |n| n.teardown_tokens.remove(waba).is_some(),
    )
    .await;
}

async fn teardown_steps(
    deps: WorkerDeps<'_>,
    app: &AppId,
    waba: &WabaId,
    phone: &PhoneNumberId,
    sealed_token: Option<&str>,
    removed_version: Option<u64>,
) -> Result<(), SetupError> {
    let current = deps.store.number(app, phone).await?;
    if let Some(n) = &current
        && n.is_live()
        && n.waba_id == *waba
        && removed_version.is_some_and(|v| n.version >= v)
    {
        // Removed, then connected again (same WABA) before this ran: the live number
        // keeps the subscription; nothing to do.
        info!(waba_id = %waba, "teardown: the number was connected again meanwhile");
        return Ok(());
    }
    if current
        .as_ref()
        .is_some_and(|n| n.is_live() && n.waba_id == *waba)
    {
        // The removal (or the move to another WABA) has not committed (yet): try again
        // later; if it never does, the message ends in the dead-letter queue and the
        // WABA stays subscribed.
        return Err(SetupError::Retry("the number is not removed".into()));
    }
    if !deps.store.live_numbers_in_waba(waba).await?.is_empty() {
        info!(waba_id = %waba, "teardown: another live number keeps the subscription");
        return Ok(());
    }
    // The token is on the record (or, in messages of earlier versions, in the job).
    let sealed = match sealed_token {
        Some(s) => Sealed::decode(s).ok(),
        None => current
            .as_ref()
            .and_then(|n| n.teardown_tokens.get(waba).cloned()),
    };
    let Some(sealed) = sealed else {
        warn!(waba_id = %waba, "teardown: no token to unsubscribe with; nothing to do");
        return Ok(());
    };
    let binding = SecretBinding {
        purpose: SecretPurpose::BusinessToken,
        app_id: app,
        phone_number_id: phone,
    };
    let token = match deps.envelope.open_string(binding, &sealed).await {
        Ok(t) => AccessToken::new(secrecy::ExposeSecret::expose_secret(&t).to_owned()),
        Err(crate::crypto::CryptoError::Unavailable(e)) => {
            return Err(SetupError::Retry(format!("key service: {e}")));
        }
        Err(e) => {
            warn!(waba_id = %waba, error = %e, "teardown: the token does not open; nothing to do");
            return Ok(());
        }
    };
    match deps.graph.unsubscribe_app(&token, waba).await {
        Ok(()) => {
            info!(waba_id = %waba, "webhooks unsubscribed: no live number of the WABA remains");
            Ok(())
        }
        Err(e) if e.is_retryable() => Err(SetupError::Retry(format!("unsubscribe: {}", e.message))),
        Err(e) => {
            info!(waba_id = %waba, kind = ?e.kind, "teardown: Meta refused; our access is gone already");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: i64, details: Option<&str>) -> GraphError {
        GraphError {
            kind: GraphError::classify(code, None, false),
            code: Some(code),
            details: details.map(str::to_owned),
            ..GraphError::transient("register")
        }
    }

    #[test]
    fn each_registration_error_gets_its_outcome() {
        let now = Utc::now();
        let wait = |code: i64, details: Option<&str>| match registration_outcome(
            &refused(code, details),
            now,
        ) {
            RegistrationOutcome::Wait { until, .. } => until - now,
            other => panic!("{code}: {other:?}"),
        };
        for (code, reason) in [
            (133_005, HealthReason::TwoStepPinMismatch),
            (133_006, HealthReason::NumberUnverified),
        ] {
            assert!(matches!(
                registration_outcome(&refused(code, None), now),
                RegistrationOutcome::OwnerAction { reason: r, .. } if r == reason
            ));
        }
        assert_eq!(wait(133_016, None), Duration::hours(72));
        assert_eq!(wait(133_015, None), Duration::minutes(5));
        assert_eq!(wait(133_009, None), Duration::minutes(5));
        assert_eq!(
            wait(
                133_008,
                Some(
                    "Too many two-step verification PIN guesses for this phone number. Try again in 12 hours."
                )
            ),
            Duration::hours(12)
        );
        assert_eq!(wait(133_008, Some("try later")), PIN_GUESS_WAIT);
        assert_eq!(
            registration_outcome(&refused(2, None), now),
            RegistrationOutcome::Other
        );
        assert_eq!(
            registration_outcome(&refused(133_000, None), now),
            RegistrationOutcome::Other,
            "133000 is handled before: deregister, then register"
        );
    }

    #[test]
    fn waits_are_read_from_metas_details() {
        assert_eq!(
            wait_in("Try again in 30 minutes"),
            Some(Duration::minutes(30))
        );
        assert_eq!(wait_in("retry after 2 days."), Some(Duration::days(2)));
        assert_eq!(wait_in("wait 45 seconds"), Some(Duration::seconds(45)));
        assert_eq!(wait_in("no number here"), None);
        assert_eq!(wait_in("try again in 100000000 days"), Some(MAX_META_WAIT));
    }
}

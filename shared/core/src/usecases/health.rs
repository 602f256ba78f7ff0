//! CheckHealth: what Meta says of a number now, turned into healthy / degraded / down
//! with a machine-readable reason. Shared by the setup worker, the on-demand route and
//! the sweep.
//!
//! Evidence, worst first: a token Meta calls invalid (or a permission loss) is `down`;
//! a number Meta no longer knows is `down`; `BLOCKED` is `down`. Then `degraded`:
//! `LIMITED`, a token expiring within 7 days, a lost webhook subscription (re-subscribed
//! once first), a number not `CONNECTED`. Transient failures and throttling never mark a
//! number down; three in a row make it `degraded` (`check_failing`). Right after setup a
//! grace period keeps lagging Meta data (not yet connected, subscription not yet visible)
//! from degrading a fresh number. The write is conditional on the version read, so a
//! slow check never overwrites a newer result.

use chrono::{DateTime, Duration, Utc};
use futures_util::future::join4;
use tracing::info;

use crate::clock::Clock;
use crate::crypto::{Envelope, SecretBinding, SecretPurpose};
use crate::ids::AppId;
use crate::meta::{
    AccessToken, CanSend, GraphError, GraphErrorKind, MessagingHealth, MetaGraph, TokenFacts,
    WabaInfo,
};
use crate::number::{
    Health, HealthEvent, HealthReason, HealthStatus, Number, PhoneNumberId, Profile,
};
use crate::ports::{NumberStore, StoreError, WriteError};

/// When numbers are checked and what counts as what.
#[derive(Debug, Clone, Copy)]
pub struct HealthPolicy {
    /// After setup completes, lagging Meta data does not degrade the number.
    pub grace: Duration,
    /// A token expiring sooner than this degrades the number.
    pub expiring_within: Duration,
    /// Transient check failures in a row that make a number `degraded`.
    pub failures_to_degrade: u32,
    pub healthy_every: Duration,
    pub degraded_every: Duration,
    pub down_every: Duration,
    /// How soon a pending number (setup unfinished) is looked at again.
    pub pending_every: Duration,
    /// How soon a check that failed transiently is tried again.
    pub failing_every: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            grace: Duration::minutes(15),
            expiring_within: Duration::days(7),
            failures_to_degrade: 3,
            healthy_every: Duration::hours(1),
            degraded_every: Duration::minutes(15),
            down_every: Duration::hours(6),
            pending_every: Duration::minutes(10),
            failing_every: Duration::minutes(5),
        }
    }
}

impl HealthPolicy {
    /// When a number in `status` is checked next: hourly (±10 % jitter, so numbers
    /// connected together spread out) when healthy, 15 min degraded, 6 h down.
    pub fn next_check(&self, status: HealthStatus, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match status {
            HealthStatus::Healthy => {
                let base = self.healthy_every.num_milliseconds();
                let spread = base / 10;
                let jitter = jitter_ms(spread * 2) - spread;
                Some(now + Duration::milliseconds(base + jitter))
            }
            HealthStatus::Degraded => Some(now + self.degraded_every),
            HealthStatus::Down => Some(now + self.down_every),
            HealthStatus::Pending => Some(now + self.pending_every),
            HealthStatus::Removed => None,
        }
    }
}

fn jitter_ms(range: i64) -> i64 {
    if range <= 0 {
        return 0;
    }
    let r = crate::random::base62(8)
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(62).wrapping_add(u64::from(b)));
    i64::try_from(r % range.unsigned_abs()).unwrap_or(0)
}

/// Everything CheckHealth talks to.
#[derive(Debug, Clone, Copy)]
pub struct CheckDeps<'a> {
    pub store: &'a dyn NumberStore,
    pub graph: &'a dyn MetaGraph,
    pub envelope: &'a Envelope,
    pub clock: &'a dyn Clock,
    pub policy: &'a HealthPolicy,
    /// Tells the App of every status change (`number.health_changed`).
    pub emitter: crate::usecases::events::Emitter<'a>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("no such number")]
    NotFound,
    #[error("the number's token could not be opened")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a check found and did.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// The number as stored after the check (a newer record if this check lost a race).
    pub number: Number,
    /// The status change this check recorded, if any.
    pub changed: Option<HealthEvent>,
    /// Meta throttled calls for this number's WABA until then.
    pub throttled_until: Option<DateTime<Utc>>,
    /// The check's result was stored (false: a newer write won, or nothing to check).
    pub written: bool,
    /// Meta refused our app's credentials: the check says nothing of the number.
    pub our_credentials_rejected: bool,
}

/// The conclusion from one round of Meta's answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Decided {
        status: HealthStatus,
        reason: Option<HealthReason>,
        message: String,
    },
    /// No decision: Meta failed transiently (or throttled) this time.
    Inconclusive {
        message: String,
        throttled_until: Option<DateTime<Utc>>,
    },
    /// Meta refused *our* app's credentials: nothing is known of the number, and it is
    /// not the owner's fault. No status changes and no failure is counted.
    OurCredentials { message: String },
}

fn decided(status: HealthStatus, reason: HealthReason, message: impl Into<String>) -> Verdict {
    Verdict::Decided {
        status,
        reason: Some(reason),
        message: message.into(),
    }
}

/// Opens the number's business token.
pub async fn open_token(
    envelope: &Envelope,
    number: &Number,
) -> Result<Option<AccessToken>, crate::crypto::CryptoError> {
    let Some(sealed) = &number.sealed_token else {
        return Ok(None);
    };
    let binding = SecretBinding {
        purpose: SecretPurpose::BusinessToken,
        app_id: &number.app_id,
        phone_number_id: &number.phone_number_id,
    };
    let token = envelope.open_string(binding, sealed).await?;
    Ok(Some(AccessToken::new(
        secrecy::ExposeSecret::expose_secret(&token).to_owned(),
    )))
}

/// Everything one check learnt from Meta (all the I/O of a check).
#[derive(Debug, Clone)]
pub struct Evidence {
    pub facts: Result<TokenFacts, GraphError>,
    /// The number's health and profile come from one call: when it fails, both carry
    /// its error (a part of its answer we cannot use fails alone).
    pub health: Result<MessagingHealth, GraphError>,
    pub profile: Result<Profile, GraphError>,
    pub subscribed: Result<Vec<String>, GraphError>,
    pub waba: Result<WabaInfo, GraphError>,
    /// Our app was missing from the WABA's subscriptions and we subscribed again.
    pub resubscribed: Option<Result<(), GraphError>>,
    /// Our Meta app's id (to find ourselves among the subscriptions).
    pub app_id: String,
}

/// Asks Meta about the number (four calls, concurrently), and re-subscribes our app
/// once when the subscription is missing.
pub async fn gather(graph: &dyn MetaGraph, number: &Number, token: &AccessToken) -> Evidence {
    let phone = &number.phone_number_id;
    let (facts, (profile, health), subscribed, waba) = join4(
        graph.debug_token(token),
        graph.profile_and_health(token, phone),
        graph.subscribed_apps(token, &number.waba_id),
        graph.waba_info(token, &number.waba_id),
    )
    .await;
    let app_id = graph.app_id().to_owned();
    let resubscribed = match &subscribed {
        Ok(apps) if !apps.contains(&app_id) => {
            let result = graph.subscribe_app(token, &number.waba_id).await;
            if result.is_ok() {
                info!(phone_number_id = %number.phone_number_id, waba_id = %number.waba_id, "webhook subscription restored");
            }
            Some(result)
        }
        _ => None,
    };
    Evidence {
        facts,
        health,
        profile,
        subscribed,
        waba,
        resubscribed,
        app_id,
    }
}

/// The verdict from the evidence, worst first (pure: no I/O, no clock).
///
/// 1. Meta refused our app's credentials anywhere: `OurCredentials` (nobody's number
///    changes for our fault).
/// 2. `down`: token invalid or without permission, number or WABA gone, any entity
///    BLOCKED for messaging, WABA review REJECTED, a policy block.
/// 3. Inconclusive: any other failure (transient, throttled, unusable answers).
/// 4. `degraded`: an entity LIMITED, quality RED, display name DECLINED, token
///    expiring soon, subscription missing and not restored, number not CONNECTED (the
///    last two not within the grace period after setup).
/// 5. `healthy` (a display name in review is mentioned, not held against it).
pub fn verdict(
    e: &Evidence,
    number: &Number,
    policy: &HealthPolicy,
    now: DateTime<Utc>,
) -> Verdict {
    // The WABA read adds evidence; an answer we cannot use from it is no evidence.
    let waba_err = e
        .waba
        .as_ref()
        .err()
        .filter(|err| err.kind != GraphErrorKind::Other);
    let errors: Vec<&GraphError> = [
        e.facts.as_ref().err(),
        e.health.as_ref().err(),
        e.profile.as_ref().err(),
        e.subscribed.as_ref().err(),
        waba_err,
    ]
    .into_iter()
    .flatten()
    .collect();
    let any = |kind: GraphErrorKind| errors.iter().any(|err| err.kind == kind);

    if let Some(err) = errors
        .iter()
        .find(|err| err.kind == GraphErrorKind::AppCredentials)
    {
        return Verdict::OurCredentials {
            message: format!(
                "Meta refused this platform's app credentials: {}",
                err.message
            ),
        };
    }
    if any(GraphErrorKind::TokenInvalid) || e.facts.as_ref().is_ok_and(|f| !f.is_valid) {
        return decided(
            HealthStatus::Down,
            HealthReason::TokenInvalid,
            "Meta reports the business token is invalid, expired or revoked; the owner must connect the number again",
        );
    }
    if any(GraphErrorKind::Permission) {
        return decided(
            HealthStatus::Down,
            HealthReason::TokenInvalid,
            "the business token no longer has permission on this number; the owner must connect it again",
        );
    }
    if any(GraphErrorKind::NotFound) {
        return decided(
            HealthStatus::Down,
            HealthReason::NumberNotFound,
            "Meta no longer knows this number or its WhatsApp Business Account",
        );
    }
    let messaging = e.health.as_ref().ok().map(MessagingHealth::verdict);
    if let Some((CanSend::Blocked, why)) = &messaging {
        return decided(
            HealthStatus::Down,
            HealthReason::MetaBlocked,
            with_details("Meta blocks sending from this number", why),
        );
    }
    let review = e
        .waba
        .as_ref()
        .ok()
        .and_then(|w| w.account_review_status.as_deref());
    if review == Some("REJECTED") {
        return decided(
            HealthStatus::Down,
            HealthReason::AccountRejected,
            "Meta rejected the WhatsApp Business Account in review; the owner must appeal in WhatsApp Manager",
        );
    }
    if any(GraphErrorKind::Policy) {
        return decided(
            HealthStatus::Down,
            HealthReason::MetaBlocked,
            "Meta blocks this number for a policy reason",
        );
    }
    if let Some(err) = errors.first() {
        let throttled_until = errors
            .iter()
            .filter(|err| err.kind == GraphErrorKind::Throttled)
            .map(|err| {
                now + err
                    .retry_after
                    .and_then(|d| Duration::from_std(d).ok())
                    .unwrap_or(Duration::minutes(5))
            })
            .max();
        return Verdict::Inconclusive {
            message: format!("health check failed: {}", err.message),
            throttled_until,
        };
    }
    let (Ok(facts), Ok(profile), Some((can_send, why))) = (&e.facts, &e.profile, messaging) else {
        return Verdict::Inconclusive {
            message: "health check failed".into(),
            throttled_until: None,
        };
    };

    let fresh = number
        .setup
        .completed_at
        .is_none_or(|done| now - done < policy.grace);
    if can_send == CanSend::Limited {
        return decided(
            HealthStatus::Degraded,
            HealthReason::MetaLimited,
            with_details("Meta limits sending from this number", &why),
        );
    }
    if profile.quality_rating.as_deref() == Some("RED") {
        return decided(
            HealthStatus::Degraded,
            HealthReason::QualityLow,
            "Meta rates this number's quality RED: recipients block or report its messages; its messaging limit may drop",
        );
    }
    if profile.name_status.as_deref() == Some("DECLINED") {
        return decided(
            HealthStatus::Degraded,
            HealthReason::NameDeclined,
            "Meta declined the display name; the owner must submit a new one in WhatsApp Manager",
        );
    }
    if let Some(expires) = facts
        .expires_at
        .filter(|exp| *exp - now < policy.expiring_within)
    {
        return decided(
            HealthStatus::Degraded,
            HealthReason::TokenExpiring,
            format!(
                "the business token expires at {}; the owner should connect the number again",
                expires.to_rfc3339()
            ),
        );
    }
    if let Some(Err(err)) = &e.resubscribed
        && !fresh
    {
        return decided(
            HealthStatus::Degraded,
            HealthReason::WebhookUnsubscribed,
            format!(
                "the webhook subscription is missing and could not be restored: {}",
                err.message
            ),
        );
    }
    if profile.status.as_deref() != Some("CONNECTED") && !fresh {
        let status = profile.status.clone().unwrap_or_else(|| "unknown".into());
        return decided(
            HealthStatus::Degraded,
            HealthReason::NotConnected,
            format!("the number's status on Meta is {status}, not CONNECTED"),
        );
    }
    let message = if profile.name_status.as_deref() == Some("PENDING_REVIEW") {
        "the number can send messages; its display name is in Meta's review"
    } else {
        "the number can send messages"
    };
    Verdict::Decided {
        status: HealthStatus::Healthy,
        reason: None,
        message: message.into(),
    }
}

fn with_details(base: &str, details: &str) -> String {
    if details.is_empty() {
        base.to_owned()
    } else {
        format!("{base}: {details}")
    }
}

/// The number's health after a verdict, and the status change if there was one.
fn apply(
    number: &Number,
    verdict: &Verdict,
    policy: &HealthPolicy,
    now: DateTime<Utc>,
) -> (Health, Option<HealthEvent>) {
    let old = &number.health;
    // A number whose setup has not finished stays pending unless it is down.
    let setup_done = number.setup.completed_at.is_some();
    let (status, reason, message, failures) = match verdict {
        Verdict::Decided {
            status,
            reason,
            message,
        } => {
            if !setup_done && *status != HealthStatus::Down {
                if old.status == HealthStatus::Down {
                    // Down during setup, fine now: back to pending, so the sweep
                    // re-drives the setup.
                    (
                        HealthStatus::Pending,
                        Some(HealthReason::SetupPending),
                        Some("setup resumes: Meta no longer reports the problem".to_owned()),
                        0,
                    )
                } else {
                    // Setup decides until it finishes (pending, or waiting for the owner).
                    (old.status, old.reason, old.message.clone(), 0)
                }
            } else {
                (*status, *reason, Some(message.clone()), 0)
            }
        }
        Verdict::Inconclusive { message, .. } => {
            let failures = old.consecutive_failures + 1;
            if failures >= policy.failures_to_degrade && old.status == HealthStatus::Healthy {
                (
                    HealthStatus::Degraded,
                    Some(HealthReason::CheckFailing),
                    Some(format!(
                        "{failures} health checks in a row failed; last: {message}"
                    )),
                    failures,
                )
            } else {
                (old.status, old.reason, old.message.clone(), failures)
            }
        }
        Verdict::OurCredentials { .. } => (
            old.status,
            old.reason,
            old.message.clone(),
            old.consecutive_failures,
        ),
    };
    let next = match verdict {
        Verdict::Inconclusive {
            throttled_until, ..
        } => {
            let retry = now + policy.failing_every;
            Some(throttled_until.map_or(retry, |t| t.max(retry)))
        }
        Verdict::OurCredentials { .. } => Some(now + policy.failing_every),
        Verdict::Decided { .. } => policy.next_check(status, now),
    };
    let changed = (status != old.status).then(|| HealthEvent {
        at: now,
        from: old.status,
        to: status,
        reason,
        message: message.clone(),
    });
    let health = Health {
        status,
        reason,
        message,
        since: if changed.is_some() { now } else { old.since },
        last_checked_at: Some(now),
        next_check_at: next,
        consecutive_failures: failures,
    };
    (health, changed)
}

/// Checks one number now and stores the result (unless a newer write won).
pub async fn check_health(
    deps: CheckDeps<'_>,
    app: &AppId,
    phone: &PhoneNumberId,
) -> Result<CheckOutcome, CheckError> {
    let number = deps
        .store
        .number(app, phone)
        .await?
        .ok_or(CheckError::NotFound)?;
    check_number(deps, number).await
}

/// Checks a number already read (the version read is the one the write depends on):
/// [`evaluate`], then [`record`].
#[tracing::instrument(skip_all, fields(app_id = %number.app_id, phone_number_id = %number.phone_number_id))]
pub async fn check_number(deps: CheckDeps<'_>, number: Number) -> Result<CheckOutcome, CheckError> {
    let evaluation = evaluate(deps, number).await;
    record(deps, evaluation).await
}

/// A check's result before it is stored: what [`record`] writes.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The number as read (its version is the one the write depends on).
    number: Number,
    /// The record to store, or `None` when there was nothing to check (a removed
    /// number, no stored token).
    updated: Option<Number>,
    changed: Option<HealthEvent>,
    throttled_until: Option<DateTime<Utc>>,
    our_credentials_rejected: bool,
}

impl Evaluation {
    /// The number as read.
    pub fn number(&self) -> &Number {
        &self.number
    }

    /// Meta refused our app's credentials: the check says nothing of the number.
    pub fn our_credentials_rejected(&self) -> bool {
        self.our_credentials_rejected
    }

    /// Meta throttles calls for this number's WABA until then.
    pub fn throttled_until(&self) -> Option<DateTime<Utc>> {
        self.throttled_until
    }

    fn nothing(number: Number) -> Self {
        Self {
            number,
            updated: None,
            changed: None,
            throttled_until: None,
            our_credentials_rejected: false,
        }
    }
}

/// The reading half of a check: opens the token, asks Meta, and decides (no store
/// write). The sweep runs it in its Graph-bound slots and stores the results beside.
pub async fn evaluate(deps: CheckDeps<'_>, number: Number) -> Evaluation {
    if !number.is_live() {
        return Evaluation::nothing(number);
    }
    let now = deps.clock.now();
    let (verdict, evidence) = match open_token(deps.envelope, &number).await {
        Ok(Some(token)) => {
            let evidence = gather(deps.graph, &number, &token).await;
            (
                verdict(&evidence, &number, deps.policy, now),
                Some(evidence),
            )
        }
        Ok(None) => return Evaluation::nothing(number),
        Err(e) => {
            // The key service failed or the sealed token is damaged: a failed check like
            // any other (the next check moves on, three make the number degraded), never
            // an error that leaves the number due and blocks the sweep's queue.
            tracing::error!(
                metric = "TokenUnreadable",
                phone_number_id = %number.phone_number_id,
                error = %e,
                "the number's token could not be opened"
            );
            let verdict = Verdict::Inconclusive {
                message: "the stored business token could not be opened".into(),
                throttled_until: None,
            };
            (verdict, None)
        }
    };
    let (health, changed) = apply(&number, &verdict, deps.policy, now);
    let mut updated = number.revision(now);
    updated.health = health;
    if let Some(Ok(p)) = evidence.map(|e| e.profile) {
        updated.profile = p;
    }
    let (throttled_until, ours) = match &verdict {
        Verdict::Inconclusive {
            throttled_until, ..
        } => (*throttled_until, false),
        Verdict::OurCredentials { message } => {
            tracing::error!(phone_number_id = %number.phone_number_id, message, "Meta refused our app credentials; no number changes status");
            (None, true)
        }
        Verdict::Decided { .. } => (None, false),
    };
    Evaluation {
        number,
        updated: Some(updated),
        changed,
        throttled_until,
        our_credentials_rejected: ours,
    }
}

/// The writing half of a check: stores an [`Evaluation`] unless a newer write won, and
/// tells the App of a status change.
pub async fn record(deps: CheckDeps<'_>, e: Evaluation) -> Result<CheckOutcome, CheckError> {
    let Evaluation {
        number,
        updated,
        changed,
        throttled_until,
        our_credentials_rejected: ours,
    } = e;
    let Some(updated) = updated else {
        return Ok(CheckOutcome {
            number,
            changed: None,
            throttled_until: None,
            written: false,
            our_credentials_rejected: false,
        });
    };
    match deps
        .store
        .save_number(&updated, number.version, changed.as_ref())
        .await
    {
        Ok(()) => {
            if let Some(e) = &changed {
                info!(phone_number_id = %updated.phone_number_id, app_id = %updated.app_id, from = e.from.as_str(), to = e.to.as_str(), reason = ?e.reason.map(HealthReason::as_str), "health changed");
                deps.emitter.health_changed(&updated, e).await;
            }
            Ok(CheckOutcome {
                number: updated,
                changed,
                throttled_until,
                written: true,
                our_credentials_rejected: ours,
            })
        }
        Err(WriteError::Changed) => {
            // A newer write won; this (slower) result is dropped.
            let current = deps
                .store
                .number(&number.app_id, &number.phone_number_id)
                .await?
                .ok_or(CheckError::NotFound)?;
            Ok(CheckOutcome {
                number: current,
                changed: None,
                throttled_until,
                written: false,
                our_credentials_rejected: ours,
            })
        }
        Err(WriteError::Store(e)) => Err(e.into()),
    }
}

/// Sets a number's health outside a full check (e.g. setup finding the token revoked,
/// or a deferred registration), conditional on the version given.
#[allow(clippy::too_many_arguments)]
pub async fn set_health(
    store: &dyn NumberStore,
    emitter: crate::usecases::events::Emitter<'_>,
    policy: &HealthPolicy,
    number: &Number,
    status: HealthStatus,
    reason: HealthReason,
    message: &str,
    now: DateTime<Utc>,
) -> Result<Number, WriteError> {
    let old = &number.health;
    let changed = (status != old.status).then(|| HealthEvent {
        at: now,
        from: old.status,
        to: status,
        reason: Some(reason),
        message: Some(message.to_owned()),
    });
    let mut updated = number.revision(now);
    updated.health = Health {
        status,
        reason: Some(reason),
        message: Some(message.to_owned()),
        since: if changed.is_some() { now } else { old.since },
        last_checked_at: old.last_checked_at,
        next_check_at: policy.next_check(status, now),
        consecutive_failures: 0,
    };
    store
        .save_number(&updated, number.version, changed.as_ref())
        .await?;
    if let Some(e) = &changed {
        emitter.health_changed(&updated, e).await;
    }
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AppId, SessionId};
    use crate::meta::{EntityHealth, GranularScope, HealthIssue};
    use crate::number::{PhoneNumberId, SetupState, TokenInfo, WabaId};

    const APP: &str = "100";

    fn number(setup_done_ago: Option<Duration>, now: DateTime<Utc>) -> Number {
        Number {
            phone_number_id: PhoneNumberId::parse("1").unwrap(),
            app_id: AppId::generate(),
            waba_id: WabaId::parse("2").unwrap(),
            business_id: None,
            profile: Profile::default(),
            health: Health::pending(now),
            setup: SetupState {
                completed_at: setup_done_ago.map(|ago| now - ago),
                ..SetupState::default()
            },
            token: TokenInfo::default(),
            sealed_token: None,
            sealed_pin: None,
            teardown_tokens: Default::default(),
            session_id: SessionId::generate(),
            metadata: crate::session::Metadata::default(),
            connected_at: now,
            updated_at: now,
            version: 1,
        }
    }

    fn entity(kind: &str, can: &str, codes: &[i64]) -> EntityHealth {
        EntityHealth {
            entity_type: kind.into(),
            can_send: CanSend::parse(can),
            errors: codes
                .iter()
                .map(|c| HealthIssue {
                    code: Some(*c),
                    description: format!("error {c}"),
                })
                .collect(),
            additional_info: vec![],
        }
    }

    /// Evidence of a number Meta is happy with; each case changes one thing.
    fn good() -> Evidence {
        Evidence {
            facts: Ok(TokenFacts {
                app_id: APP.into(),
                is_valid: true,
                expires_at: None,
                scopes: vec![],
                granular_scopes: vec![GranularScope {
                    scope: "whatsapp_business_management".into(),
                    target_ids: Some(vec!["2".into()]),
                }],
            }),
            health: Ok(MessagingHealth {
                can_send: CanSend::Available,
                entities: vec![
                    entity("PHONE_NUMBER", "AVAILABLE", &[]),
                    entity("WABA", "AVAILABLE", &[]),
                    entity("BUSINESS", "AVAILABLE", &[]),
                    entity("APP", "AVAILABLE", &[]),
                ],
            }),
            profile: Ok(Profile {
                status: Some("CONNECTED".into()),
                quality_rating: Some("GREEN".into()),
                name_status: Some("APPROVED".into()),
                ..Profile::default()
            }),
            subscribed: Ok(vec![APP.into()]),
            waba: Ok(WabaInfo {
                account_review_status: Some("APPROVED".into()),
            }),
            resubscribed: None,
            app_id: APP.into(),
        }
    }

    fn err(kind: GraphErrorKind, code: i64) -> GraphError {
        GraphError {
            kind,
            code: Some(code),
            ..GraphError::transient("meta said no")
        }
    }

    #[test]
    fn the_verdict_table() {
        use HealthReason as R;
        use HealthStatus as S;
        let now = Utc::now();
        type Case = (&'static str, fn(&mut Evidence), Option<(S, Option<R>)>);
        let cases: Vec<Case> = vec![
            ("all good", |_| {}, Some((S::Healthy, None))),
            (
                "our app secret rejected, even beside a revoked token",
                |e| {
                    e.facts = Err(err(GraphErrorKind::AppCredentials, 190));
                    e.health = Err(err(GraphErrorKind::TokenInvalid, 190));
                },
                None,
            ),
            (
                "token revoked",
                |e| e.health = Err(err(GraphErrorKind::TokenInvalid, 190)),
                Some((S::Down, Some(R::TokenInvalid))),
            ),
            (
                "token not valid per debug_token",
                |e| {
                    if let Ok(f) = &mut e.facts {
                        f.is_valid = false;
                    }
                },
                Some((S::Down, Some(R::TokenInvalid))),
            ),
            (
                "WABA entity blocked",
                |e| {
                    if let Ok(h) = &mut e.health {
                        h.entities[1] = entity("WABA", "BLOCKED", &[131031]);
                    }
                },
                Some((S::Down, Some(R::MetaBlocked))),
            ),
            (
                "aggregate blocked by SIP calling only",
                |e| {
                    if let Ok(h) = &mut e.health {
                        h.can_send = CanSend::Blocked;
                        h.entities[0] = entity("PHONE_NUMBER", "AVAILABLE", &[138024]);
                    }
                },
                Some((S::Healthy, None)),
            ),
            (
                "WABA review rejected",
                |e| {
                    e.waba = Ok(WabaInfo {
                        account_review_status: Some("REJECTED".into()),
                    })
                },
                Some((S::Down, Some(R::AccountRejected))),
            ),
            (
                "a WABA read Meta cannot answer is no evidence",
                |e| e.waba = Err(err(GraphErrorKind::Other, 100)),
                Some((S::Healthy, None)),
            ),
            (
                "a transient failure is inconclusive",
                |e| e.profile = Err(err(GraphErrorKind::Transient, 2)),
                None,
            ),
            (
                "business limited",
                |e| {
                    if let Ok(h) = &mut e.health {
                        h.entities[2] = entity("BUSINESS", "LIMITED", &[]);
                    }
                },
                Some((S::Degraded, Some(R::MetaLimited))),
            ),
            (
                "quality red",
                |e| {
                    if let Ok(p) = &mut e.profile {
                        p.quality_rating = Some("RED".into());
                    }
                },
                Some((S::Degraded, Some(R::QualityLow))),
            ),
            (
                "name declined",
                |e| {
                    if let Ok(p) = &mut e.profile {
                        p.name_status = Some("DECLINED".into());
                    }
                },
                Some((S::Degraded, Some(R::NameDeclined))),
            ),
            (
                "name in review is only mentioned",
                |e| {
                    if let Ok(p) = &mut e.profile {
                        p.name_status = Some("PENDING_REVIEW".into());
                    }
                },
                Some((S::Healthy, None)),
            ),
            (
                "subscription lost and not restored",
                |e| {
                    e.subscribed = Ok(vec![]);
                    e.resubscribed = Some(Err(err(GraphErrorKind::Other, 100)));
                },
                Some((S::Degraded, Some(R::WebhookUnsubscribed))),
            ),
            (
                "subscription lost and restored",
                |e| {
                    e.subscribed = Ok(vec![]);
                    e.resubscribed = Some(Ok(()));
                },
                Some((S::Healthy, None)),
            ),
            (
                "not connected",
                |e| {
                    if let Ok(p) = &mut e.profile {
                        p.status = Some("PENDING".into());
                    }
                },
                Some((S::Degraded, Some(R::NotConnected))),
            ),
        ];
        let policy = HealthPolicy::default();
        let n = number(Some(Duration::hours(2)), now);
        for (name, change, want) in cases {
            let mut e = good();
            change(&mut e);
            let got = match verdict(&e, &n, &policy, now) {
                Verdict::Decided { status, reason, .. } => Some((status, reason)),
                Verdict::Inconclusive { .. } => None,
                Verdict::OurCredentials { .. } => {
                    assert_eq!(want, None, "{name}");
                    assert!(name.contains("our app secret"), "{name}");
                    continue;
                }
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_number_down_during_setup_resumes_setup_when_it_recovers() {
        let now = Utc::now();
        let policy = HealthPolicy::default();
        let mut n = number(None, now);
        n.health.status = HealthStatus::Down;
        let healthy = Verdict::Decided {
            status: HealthStatus::Healthy,
            reason: None,
            message: "fine".into(),
        };
        let (health, changed) = apply(&n, &healthy, &policy, now);
        assert_eq!(health.status, HealthStatus::Pending);
        assert_eq!(changed.map(|e| e.to), Some(HealthStatus::Pending));
        // Waiting for the owner (degraded): the check leaves it so.
        n.health.status = HealthStatus::Degraded;
        n.health.reason = Some(HealthReason::TwoStepPinMismatch);
        let (health, changed) = apply(&n, &healthy, &policy, now);
        assert_eq!((health.status, changed), (HealthStatus::Degraded, None));
    }

    #[test]
    fn our_credentials_change_nothing_and_count_no_failure() {
        let now = Utc::now();
        let policy = HealthPolicy::default();
        let mut n = number(Some(Duration::hours(2)), now);
        n.health.status = HealthStatus::Healthy;
        n.health.reason = None;
        n.health.consecutive_failures = 2;
        let v = Verdict::OurCredentials {
            message: "rejected".into(),
        };
        let (health, changed) = apply(&n, &v, &policy, now);
        assert_eq!(changed, None);
        assert_eq!(health.status, HealthStatus::Healthy);
        assert_eq!(
            health.consecutive_failures, 2,
            "not counted as a failed check"
        );
    }

    #[test]
    fn healthy_numbers_spread_their_next_check() {
        let p = HealthPolicy::default();
        let now = Utc::now();
        let nexts: Vec<_> = (0..50)
            .map(|_| p.next_check(HealthStatus::Healthy, now).unwrap())
            .collect();
        for n in &nexts {
            let d = *n - now;
            assert!(
                d >= Duration::minutes(54) && d <= Duration::minutes(66),
                "{d}"
            );
        }
        assert!(nexts.iter().any(|n| *n != nexts[0]), "jittered");
        assert_eq!(
            p.next_check(HealthStatus::Down, now),
            Some(now + Duration::hours(6))
        );
        assert_eq!(p.next_check(HealthStatus::Removed, now), None);
    }
}

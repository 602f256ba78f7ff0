//! The partner's view of its numbers: list, get, history, check now, remove
//! (RemoveNumber). An App never sees or touches another App's number: it is not found.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::Duration;
use tracing::{info, warn};

use crate::app::App;
use crate::clock::Clock;
use crate::number::{Health, HealthEvent, HealthReason, HealthStatus, Number, PhoneNumberId};
use crate::ports::{NumberPage, NumberStore, StoreError, WriteError};
use crate::queue::{Job, JobQueue};
use crate::usecases::health::{CheckDeps, CheckError, check_number};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum NumbersError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("number not found")]
    NotFound,
    #[error("the number was removed")]
    Removed,
    #[error("a dependency is unavailable")]
    Unavailable,
    #[error("setup of this number has finished; nothing to retry")]
    SetupComplete,
    /// Meta imposed a wait (e.g. 72 h after 133016); asking again changes nothing.
    #[error("Meta asked to wait until {0} before the next registration attempt")]
    MetaWait(chrono::DateTime<chrono::Utc>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, message: &str) -> NumbersError {
    NumbersError::Invalid {
        field,
        message: message.to_owned(),
    }
}

/// A list request as received.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub status: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// The cursor is opaque to partners: base64url of where the next page starts.
pub fn encode_cursor(after: &PhoneNumberId) -> String {
    B64.encode(format!("n1:{after}"))
}

pub fn decode_cursor(cursor: &str) -> Option<PhoneNumberId> {
    let bytes = B64.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    PhoneNumberId::parse(text.strip_prefix("n1:")?)
}

pub async fn list_numbers(
    store: &dyn NumberStore,
    app: &App,
    req: ListRequest,
) -> Result<NumberPage, NumbersError> {
    let status = req
        .status
        .filter(|s| !s.is_empty())
        .map(|s| {
            HealthStatus::parse(&s).ok_or_else(|| {
                invalid(
                    "status",
                    "must be pending, healthy, degraded, down or removed",
                )
            })
        })
        .transpose()?;
    let limit = match req.limit.filter(|l| !l.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| invalid("limit", "must be an integer from 1 to 100"))?,
    };
    let after = req
        .cursor
        .filter(|c| !c.is_empty())
        .map(|c| {
            decode_cursor(&c).ok_or_else(|| invalid("cursor", "is not a cursor this API returned"))
        })
        .transpose()?;
    Ok(store
        .list_numbers(&app.id, status, limit, after.as_ref())
        .await?)
}

pub async fn get_number(
    store: &dyn NumberStore,
    app: &App,
    phone: &str,
) -> Result<Number, NumbersError> {
    let phone = PhoneNumberId::parse(phone).ok_or(NumbersError::NotFound)?;
    store
        .number(&app.id, &phone)
        .await?
        .ok_or(NumbersError::NotFound)
}

pub async fn number_history(
    store: &dyn NumberStore,
    app: &App,
    phone: &str,
) -> Result<Vec<HealthEvent>, NumbersError> {
    let number = get_number(store, app, phone).await?;
    Ok(store.history(&app.id, &number.phone_number_id, 500).await?)
}

/// `POST /v1/numbers/{id}/health-check`: a check now.
#[tracing::instrument(skip_all, fields(app_id = %app.id, phone_number_id = %phone))]
pub async fn check_now(
    deps: CheckDeps<'_>,
    app: &App,
    phone: &str,
) -> Result<Number, NumbersError> {
    let number = get_number(deps.store, app, phone).await?;
    if !number.is_live() {
        return Err(NumbersError::Removed);
    }
    match check_number(deps, number).await {
        Ok(outcome) => Ok(outcome.number),
        Err(CheckError::NotFound) => Err(NumbersError::NotFound),
        Err(CheckError::Store(e)) => Err(e.into()),
        Err(CheckError::Crypto(e)) => {
            warn!(error = %e, "check now: the token did not open");
            Err(NumbersError::Unavailable)
        }
    }
}

/// `POST /v1/numbers/{id}/setup`: the owner has acted (e.g. turned off two-step
/// verification after Meta's 133005), so the App asks for a new setup attempt. Clears
/// the wait for the owner, puts the number back to `pending`, and queues the setup job.
/// Meta's own limits still hold: a wait Meta imposed (133016's 72 h, 133008, ...) is
/// refused until it ends, the local count of 10 registrations per 72 h stays, and a
/// delivery already running the setup keeps its lease.
#[tracing::instrument(skip_all, fields(app_id = %app.id, phone_number_id = %phone))]
pub async fn request_setup(
    store: &dyn NumberStore,
    queue: &dyn JobQueue,
    clock: &dyn Clock,
    app: &App,
    phone: &str,
) -> Result<Number, NumbersError> {
    for _ in 0..3 {
        let number = get_number(store, app, phone).await?;
        if !number.is_live() {
            return Err(NumbersError::Removed);
        }
        if number.setup.completed_at.is_some() && number.setup.owner_action.is_none() {
            return Err(NumbersError::SetupComplete);
        }
        let now = clock.now();
        if number.setup.owner_action.is_none()
            && let Some(until) = number.setup.retry_after.filter(|u| *u > now)
        {
            return Err(NumbersError::MetaWait(until));
        }
        // The lease stays: a delivery running this setup now keeps it to itself.
        let mut next = number.revision(now);
        next.setup.owner_action = None;
        next.setup.retry_after = None;
        let history = (number.health.status != HealthStatus::Pending).then(|| HealthEvent {
            at: now,
            from: number.health.status,
            to: HealthStatus::Pending,
            reason: Some(HealthReason::SetupPending),
            message: Some("the App asked for a new setup attempt".into()),
        });
        next.health = Health {
            since: if history.is_some() {
                now
            } else {
                number.health.since
            },
            last_checked_at: number.health.last_checked_at,
            ..Health::pending(now)
        };
        match store
            .save_number(&next, number.version, history.as_ref())
            .await
        {
            Ok(()) => {}
            Err(WriteError::Changed) => continue,
            Err(WriteError::Store(e)) => return Err(e.into()),
        }
        let job = Job::Setup {
            app_id: next.app_id.clone(),
            phone_number_id: next.phone_number_id.clone(),
        };
        if let Err(e) = queue.enqueue(&job).await {
            // Stored as pending: the sweep re-drives it after the stall time.
            warn!(phone_number_id = %next.phone_number_id, error = %e, "setup job not queued; the sweep will re-drive it");
        }
        info!(phone_number_id = %next.phone_number_id, app_id = %app.id, "setup requested again by the App");
        return Ok(next);
    }
    Err(NumbersError::Unavailable)
}

/// RemoveNumber: the token and PIN are destroyed at once, the number shows `removed`,
/// the phone number is free to be onboarded again, and, when no other live number of
/// the WABA remains, a teardown job unsubscribes the WABA's webhooks. The teardown job
/// is queued before the removal commits (it waits for the removal), so an acknowledged
/// removal never loses its teardown. Removing twice is not an error.
#[tracing::instrument(skip_all, fields(app_id = %app.id, phone_number_id = %phone))]
pub async fn remove_number(
    store: &dyn NumberStore,
    queue: &dyn JobQueue,
    emitter: crate::usecases::events::Emitter<'_>,
    clock: &dyn Clock,
    app: &App,
    phone: &str,
) -> Result<(), NumbersError> {
    for _ in 0..3 {
        let number = get_number(store, app, phone).await?;
        if !number.is_live() {
            return Ok(());
        }
        let others = store
            .live_numbers_in_waba(&number.waba_id)
            .await?
            .into_iter()
            .filter(|(_, p)| *p != number.phone_number_id)
            .count();
        if others == 0 && number.sealed_token.is_some() {
            let job = Job::Teardown {
                app_id: number.app_id.clone(),
                waba_id: number.waba_id.clone(),
                phone_number_id: number.phone_number_id.clone(),
                sealed_token: None,
                removed_version: Some(number.version + 1),
            };
            queue.enqueue(&job).await.map_err(|e| {
                warn!(error = %e, "teardown job not queued; nothing was removed");
                NumbersError::Unavailable
            })?;
        }
        let now = clock.now();
        let mut removed = number.revision(now);
        // The teardown's token stays (sealed) on the removed record until it is done.
        if others == 0
            && let Some(token) = &number.sealed_token
        {
            removed
                .teardown_tokens
                .insert(number.waba_id.clone(), token.clone());
        }
        removed.sealed_token = None;
        removed.sealed_pin = None;
        removed.health = Health {
            status: HealthStatus::Removed,
            reason: Some(HealthReason::PartnerRemoved),
            message: Some("removed by the partner".into()),
            since: now,
            last_checked_at: number.health.last_checked_at,
            next_check_at: None,
            consecutive_failures: 0,
        };
        let event = HealthEvent {
            at: now,
            from: number.health.status,
            to: HealthStatus::Removed,
            reason: Some(HealthReason::PartnerRemoved),
            message: Some("removed by the partner".into()),
        };
        match store.remove_number(&removed, number.version, &event).await {
            Ok(()) => {
                info!(app_id = %app.id, phone_number_id = %number.phone_number_id, teardown = others == 0, "number removed");
                emitter
                    .emit_logged(crate::events::Event::new(
                        app.id.clone(),
                        crate::events::EventType::NumberRemoved,
                        &format!("{}#{}", removed.phone_number_id, removed.version),
                        now,
                        serde_json::json!({
                            "phoneNumberId": removed.phone_number_id,
                            "wabaId": removed.waba_id,
                            "from": number.health.status.as_str(),
                        }),
                    ))
                    .await;
                return Ok(());
            }
            Err(WriteError::Changed) => continue,
            Err(WriteError::Store(e)) => return Err(e.into()),
        }
    }
    Err(NumbersError::Unavailable)
}

/// Pending setups that stalled (no progress for `after`), for the sweep to re-drive.
pub fn setup_stalled(number: &Number, now: chrono::DateTime<chrono::Utc>, after: Duration) -> bool {
    number.is_live()
        && number.health.status == HealthStatus::Pending
        && number.setup.retry_after.is_none_or(|r| r <= now)
        && now - number.updated_at >= after
}

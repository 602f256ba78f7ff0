//! Partner events: emitting them (stored, then a delivery job), delivering them (signed,
//! retried on the schedule, the endpoint flagged when one fails for good), the App's
//! endpoint (register, rotate, remove) and the event log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::crypto::{CryptoError, Envelope};
use crate::events::{
    Attempt, DeliveryStatus, Endpoint, EndpointUrl, Event, EventType, MAX_ATTEMPTS_KEPT,
    SECRET_OVERLAP, is_event_id, next_retry, signature_header,
};
use crate::ids::AppId;
use crate::number::{HealthEvent, Number};
use crate::ports::{EventPage, EventStore, StoreError};
use crate::queue::{Job, JobQueue};

/// What an endpoint answered (or why it did not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub status: Option<u16>,
    pub duration_ms: u64,
    /// The start of the response body, or why nothing was answered.
    pub detail: Option<String>,
}

impl SendResult {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Sends one signed event body to a partner endpoint: only to public addresses (unless
/// the host allows loopback, under `pipes dev`), no redirects followed, within
/// [`crate::events::DELIVERY_TIMEOUT`].
#[async_trait]
pub trait EventSender: Send + Sync + std::fmt::Debug {
    async fn send(&self, url: &EndpointUrl, signature: &str, body: Vec<u8>) -> SendResult;
}

/// Stores events and queues their delivery.
#[derive(Debug, Clone, Copy)]
pub struct Emitter<'a> {
    pub store: &'a dyn EventStore,
    pub queue: &'a dyn JobQueue,
}

impl Emitter<'_> {
    /// Stores the event (once: its id is derived from its cause) and queues a delivery.
    /// A failure is logged and returned; the caller's own write has already happened.
    pub async fn emit(&self, event: Event) -> Result<(), EmitError> {
        let inserted = self.store.insert_event(&event).await?;
        if !inserted {
            // Emitted before (a retried job). Queue it again only if its first attempt
            // never ran (an earlier failure to queue is repaired); never start a run
            // beside a running one.
            let existing = self.store.event(&event.app_id, &event.id).await?;
            if !existing.is_some_and(|e| {
                e.run == 0 && e.run_attempts == 0 && e.delivery == DeliveryStatus::Pending
            }) {
                return Ok(());
            }
        }
        let job = Job::Deliver {
            app_id: event.app_id.clone(),
            event_id: event.id.clone(),
            run: 0,
            attempt: 1,
            not_before: None,
        };
        self.queue.enqueue(&job).await.map_err(|e| {
            error!(event_id = %event.id, error = %e, "event stored but its delivery was not queued");
            EmitError::Queue
        })?;
        if inserted {
            info!(event_id = %event.id, app_id = %event.app_id, kind = event.kind.as_str(), "event emitted");
        }
        Ok(())
    }

    /// Emits and logs a failure instead of returning it (for callers whose own write is
    /// what the partner asked for).
    pub async fn emit_logged(&self, event: Event) {
        let id = event.id.clone();
        if let Err(e) = self.emit(event).await {
            error!(event_id = %id, error = %e, "event not emitted");
        }
    }

    /// `number.health_changed` for a stored status change of `number` (at its version).
    pub async fn health_changed(&self, number: &Number, change: &HealthEvent) {
        self.emit_logged(health_changed(number, change)).await;
    }
}

/// The `number.health_changed` event of a status change stored with `number`.
pub fn health_changed(number: &Number, change: &HealthEvent) -> Event {
    Event::new(
        number.app_id.clone(),
        EventType::NumberHealthChanged,
        &format!("{}#{}", number.phone_number_id, number.version),
        change.at,
        serde_json::json!({
            "phoneNumberId": number.phone_number_id,
            "wabaId": number.waba_id,
            "from": change.from.as_str(),
            "to": change.to.as_str(),
            "reason": change.reason.map(|r| r.as_str()),
            "message": change.message,
            "version": number.version,
        }),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the job queue is unavailable")]
    Queue,
}

/// Everything delivery talks to.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryDeps<'a> {
    pub store: &'a dyn EventStore,
    pub queue: &'a dyn JobQueue,
    pub sender: &'a dyn EventSender,
    pub envelope: &'a Envelope,
    pub clock: &'a dyn Clock,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the endpoint secret could not be opened")]
    Crypto(#[from] CryptoError),
    #[error("the job queue is unavailable")]
    Queue,
}

/// The longest a queued job may wait (SQS's `DelaySeconds` limit); longer waits hop.
pub const MAX_QUEUE_DELAY: chrono::Duration = chrono::Duration::minutes(15);

/// Runs one delivery attempt of an event: attempt `attempt` (from 1) of its run `run`
/// of the retry schedule (a redelivery starts the next run). A job of another run, or
/// out of sequence, is dropped: one event never has two runs going.
#[tracing::instrument(skip_all, fields(app_id = %app_id, event_id = %event_id, run, attempt))]
pub async fn deliver(
    deps: DeliveryDeps<'_>,
    app_id: &AppId,
    event_id: &str,
    run: u32,
    attempt: u32,
    not_before: Option<DateTime<Utc>>,
) -> Result<(), DeliveryError> {
    let now = deps.clock.now();
    let job = |attempt: u32, at: Option<DateTime<Utc>>| Job::Deliver {
        app_id: app_id.clone(),
        event_id: event_id.to_owned(),
        run,
        attempt,
        not_before: at,
    };
    if let Some(at) = not_before.filter(|at| *at > now) {
        // Not due yet (a wait longer than the queue's longest delay): hop again.
        return deps
            .queue
            .enqueue_at(&job(attempt, Some(at)), at.min(now + MAX_QUEUE_DELAY))
            .await
            .map_err(|_| DeliveryError::Queue);
    }
    let Some(mut event) = deps.store.event(app_id, event_id).await? else {
        return Ok(()); // expired or never stored
    };
    if event.run != run || event.delivery != DeliveryStatus::Pending {
        // A job of an older run, or the event is delivered, given up or unsendable.
        return Ok(());
    }
    if event.run_attempts >= attempt {
        // This attempt ran already. If its follow-up may not have been queued (the
        // queue failed after the attempt was recorded), queue it now.
        if event.run_attempts == attempt
            && let Some(at) = event.next_attempt_at
        {
            return deps
                .queue
                .enqueue_at(&job(attempt + 1, Some(at)), at.min(now + MAX_QUEUE_DELAY))
                .await
                .map_err(|_| DeliveryError::Queue);
        }
        return Ok(());
    }
    if event.run_attempts + 1 != attempt {
        return Ok(()); // out of sequence
    }
    let Some(endpoint) = deps.store.endpoint(app_id).await? else {
        event.delivery = DeliveryStatus::NoEndpoint;
        event.next_attempt_at = None;
        deps.store.save_delivery(&event).await?;
        return Ok(());
    };
    let secrets = signing_secrets(deps.envelope, &endpoint, now).await?;
    let body = serde_json::to_vec(&event.body()).unwrap_or_default();
    let keys: Vec<&[u8]> = secrets
        .iter()
        .map(|s| s.expose_secret().as_bytes())
        .collect();
    let signature = signature_header(&keys, now.timestamp(), &body);
    let result = deps.sender.send(&endpoint.url, &signature, body).await;
    event.attempts.push(Attempt {
        at: now,
        status: result.status,
        duration_ms: result.duration_ms,
        detail: result.detail.clone(),
    });
    let over = event.attempts.len().saturating_sub(MAX_ATTEMPTS_KEPT);
    event.attempts.drain(..over);
    event.run_attempts = attempt;
    if result.succeeded() {
        event.delivery = DeliveryStatus::Delivered;
        event.next_attempt_at = None;
        deps.store.save_delivery(&event).await?;
        if endpoint.failing_since.is_some() {
            deps.store.set_endpoint_failing(app_id, None).await?;
        }
        info!(status = ?result.status, ms = result.duration_ms, "event delivered");
        return Ok(());
    }
    match next_retry(attempt as usize, now) {
        Some(at) => {
            // Recorded first: if queueing fails, this job comes back and queues the
            // follow-up (above) instead of sending again.
            event.next_attempt_at = Some(at);
            deps.store.save_delivery(&event).await?;
            deps.queue
                .enqueue_at(&job(attempt + 1, Some(at)), at.min(now + MAX_QUEUE_DELAY))
                .await
                .map_err(|_| DeliveryError::Queue)?;
            warn!(status = ?result.status, detail = ?result.detail, next = %at, "event delivery failed; will retry");
        }
        None => {
            event.delivery = DeliveryStatus::Failed;
            event.next_attempt_at = None;
            deps.store.save_delivery(&event).await?;
            if endpoint.failing_since.is_none() {
                deps.store.set_endpoint_failing(app_id, Some(now)).await?;
            }
            // The metric filter in template.yaml raises the alarm on this line.
            error!(
                metric = "EventDeliveryFailed",
                "event delivery failed after every retry; endpoint flagged"
            );
        }
    }
    Ok(())
}

/// The secrets that sign now: the current one, and the previous one while it overlaps.
async fn signing_secrets(
    envelope: &Envelope,
    endpoint: &Endpoint,
    now: DateTime<Utc>,
) -> Result<Vec<SecretString>, CryptoError> {
    let mut out = vec![
        envelope
            .open_app_secret(&endpoint.app_id, &endpoint.secret)
            .await?,
    ];
    if let Some((old, until)) = &endpoint.previous
        && *until > now
    {
        out.push(envelope.open_app_secret(&endpoint.app_id, old).await?);
    }
    Ok(out)
}

/// What the endpoint routes can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("url: {0}")]
    InvalidUrl(String),
    #[error("no webhook endpoint is registered")]
    NoEndpoint,
    #[error("event not found")]
    EventNotFound,
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("the secret could not be sealed or opened")]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the job queue is unavailable")]
    Queue,
}

/// Everything the endpoint and event-log routes talk to.
#[derive(Debug, Clone, Copy)]
pub struct EndpointDeps<'a> {
    pub store: &'a dyn EventStore,
    pub queue: &'a dyn JobQueue,
    pub envelope: &'a Envelope,
    pub clock: &'a dyn Clock,
    /// `pipes dev`: plain http to localhost is allowed.
    pub allow_local_http: bool,
}

/// A new signing secret: `whsec_` and 32 random bytes, base64url.
fn new_secret() -> SecretString {
    SecretString::from(format!("whsec_{}", crate::random::base62(43)))
}

/// Registers (or replaces the URL of) the App's endpoint. A new endpoint gets a new
/// secret, returned once; changing the URL of an existing one keeps its secret (`None`).
pub async fn put_endpoint(
    deps: EndpointDeps<'_>,
    app: &AppId,
    url: &str,
) -> Result<(Endpoint, Option<SecretString>), EndpointError> {
    let url = EndpointUrl::parse(url, deps.allow_local_http).map_err(EndpointError::InvalidUrl)?;
    let now = deps.clock.now();
    if let Some(mut existing) = deps.store.endpoint(app).await? {
        existing.url = url;
        deps.store.put_endpoint(&existing).await?;
        return Ok((existing, None));
    }
    let secret = new_secret();
    let sealed = deps
        .envelope
        .seal_app_secret(app, secret.expose_secret().as_bytes())
        .await?;
    let endpoint = Endpoint {
        app_id: app.clone(),
        url,
        secret: sealed,
        previous: None,
        created_at: now,
        failing_since: None,
    };
    deps.store.put_endpoint(&endpoint).await?;
    info!(app_id = %app, "webhook endpoint registered");
    Ok((endpoint, Some(secret)))
}

/// A new secret; the old one keeps signing alongside for [`SECRET_OVERLAP`].
pub async fn rotate_secret(
    deps: EndpointDeps<'_>,
    app: &AppId,
) -> Result<(Endpoint, SecretString), EndpointError> {
    let mut endpoint = deps
        .store
        .endpoint(app)
        .await?
        .ok_or(EndpointError::NoEndpoint)?;
    let now = deps.clock.now();
    let secret = new_secret();
    let sealed = deps
        .envelope
        .seal_app_secret(app, secret.expose_secret().as_bytes())
        .await?;
    let old = std::mem::replace(&mut endpoint.secret, sealed);
    endpoint.previous = Some((old, now + SECRET_OVERLAP));
    deps.store.put_endpoint(&endpoint).await?;
    info!(app_id = %app, "webhook endpoint secret rotated");
    Ok((endpoint, secret))
}

/// Sends a `ping` (a new event, delivered like any other).
pub async fn send_ping(deps: EndpointDeps<'_>, app: &AppId) -> Result<Event, EndpointError> {
    if deps.store.endpoint(app).await?.is_none() {
        return Err(EndpointError::NoEndpoint);
    }
    let now = deps.clock.now();
    let event = Event::new(
        app.clone(),
        EventType::Ping,
        &format!("ping#{}", crate::random::base62(16)),
        now,
        serde_json::json!({}),
    );
    Emitter {
        store: deps.store,
        queue: deps.queue,
    }
    .emit(event.clone())
    .await
    .map_err(|e| match e {
        EmitError::Store(s) => EndpointError::Store(s),
        EmitError::Queue => EndpointError::Queue,
    })?;
    Ok(event)
}

/// Queues a new delivery of an event (a new run of the retry schedule).
pub async fn redeliver(
    deps: EndpointDeps<'_>,
    app: &AppId,
    id: &str,
) -> Result<Event, EndpointError> {
    let mut event = get_event(deps.store, app, id).await?;
    if deps.store.endpoint(app).await?.is_none() {
        return Err(EndpointError::NoEndpoint);
    }
    let now = deps.clock.now();
    event.delivery = DeliveryStatus::Pending;
    event.next_attempt_at = Some(now);
    event.run += 1;
    event.run_attempts = 0;
    deps.store.save_delivery(&event).await?;
    let job = Job::Deliver {
        app_id: app.clone(),
        event_id: event.id.clone(),
        run: event.run,
        attempt: 1,
        not_before: None,
    };
    deps.queue
        .enqueue(&job)
        .await
        .map_err(|_| EndpointError::Queue)?;
    Ok(event)
}

pub async fn get_event(
    store: &dyn EventStore,
    app: &AppId,
    id: &str,
) -> Result<Event, EndpointError> {
    if !is_event_id(id) {
        return Err(EndpointError::EventNotFound);
    }
    store
        .event(app, id)
        .await?
        .ok_or(EndpointError::EventNotFound)
}

pub const DEFAULT_EVENTS: usize = 20;
pub const MAX_EVENTS: usize = 100;

/// The event log, newest first.
pub async fn list_events(
    store: &dyn EventStore,
    clock: &dyn Clock,
    app: &AppId,
    kind: Option<&str>,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<EventPage, EndpointError> {
    let kind = match kind.filter(|k| !k.is_empty()) {
        None => None,
        Some(k) => Some(EventType::parse(k).ok_or_else(|| EndpointError::Invalid {
            field: "type",
            message: "unknown event type".into(),
        })?),
    };
    let limit = match limit {
        None => DEFAULT_EVENTS,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_EVENTS).contains(n))
            .ok_or_else(|| EndpointError::Invalid {
                field: "limit",
                message: format!("must be an integer from 1 to {MAX_EVENTS}"),
            })?,
    };
    let before = match cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) if is_event_id(c) => Some(c),
        Some(_) => {
            return Err(EndpointError::Invalid {
                field: "cursor",
                message: "not a cursor from a previous page".into(),
            });
        }
    };
    Ok(store
        .list_events(app, kind, limit, before, clock.now())
        .await?)
}

/// An event as the API shows it: the body sent, plus its delivery.
pub fn event_view(e: &Event, with_attempts: bool) -> Value {
    let mut v = e.body();
    v["delivery"] = serde_json::json!({
        "status": e.delivery.as_str(),
        "attempts": e.attempts.len(),
        "nextAttemptAt": e.next_attempt_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    });
    if with_attempts {
        v["attempts"] = e
            .attempts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "at": a.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "status": a.status,
                    "durationMs": a.duration_ms,
                    "detail": a.detail,
                })
            })
            .collect();
    }
    v
}

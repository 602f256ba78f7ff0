//! Meta's webhooks in: ReceiveDelivery (signature, store each change once, queue it,
//! acknowledge) and ProcessChange (the worker acts on one change, once).
//!
//! The interrupted-signup rule: a `PARTNER_ADDED` is matched to the signup sessions
//! whose hosted page reported Meta's flow finishing with that WABA (the page does so
//! before it posts the code), counting only a session's latest report and only reports
//! made within [`FINISH_REPORT_WINDOW`] before Meta's event. A completed one among them
//! means nothing is wrong. Otherwise, when they belong to one App, its newest unfinished
//! session is marked `interrupted`; when they belong to several Apps no App is told,
//! and when none reported the WABA the change is kept for the operator (unless a number
//! of ours is already in that WABA). The change is processed [`INTERRUPT_GRACE`] after
//! it arrives, so a callback that is merely slower than Meta's webhook completes first.

use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::events::{Event, EventType};
use crate::ids::AppId;
use crate::meta::MetaGraph;
use crate::number::{HealthReason, HealthStatus, Number, WabaId};
use crate::ports::{ChangeOutcome, InboxStore, StoreError, WriteError};
use crate::queue::{Job, JobQueue};
use crate::session::SessionStatus;
use crate::usecases::health::{CheckError, check_number, set_health};
use crate::usecases::setup::WorkerDeps;
use crate::webhooks::{
    Action, InboundChange, MAX_DELIVERY_BYTES, Target, classify, parse_delivery, signature_valid,
};

/// How long a `PARTNER_ADDED` waits before it is matched (the browser's callback,
/// which carries the code, normally arrives within seconds of Meta's webhook).
pub const INTERRUPT_GRACE: Duration = Duration::minutes(2);

/// Everything ReceiveDelivery talks to.
#[derive(Debug, Clone, Copy)]
pub struct ReceiveDeps<'a> {
    pub inbox: &'a dyn InboxStore,
    pub queue: &'a dyn JobQueue,
    pub graph: &'a dyn MetaGraph,
    pub clock: &'a dyn Clock,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("the delivery is larger than Meta sends")]
    TooLarge,
    #[error("the signature is missing or wrong")]
    BadSignature,
    /// The secret, the store or the queue failed: Meta will deliver again.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// What a delivery held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub changes: usize,
    /// Changes seen for the first time.
    pub new: usize,
}

/// Checks, stores and queues one delivery. Only an `Ok` is acknowledged to Meta; an
/// error makes Meta deliver again, and changes stored meanwhile are recognised by id.
#[tracing::instrument(skip_all, fields(bytes = body.len()))]
pub async fn receive_delivery(
    deps: ReceiveDeps<'_>,
    body: &[u8],
    signature: Option<&str>,
) -> Result<Received, ReceiveError> {
    if body.len() > MAX_DELIVERY_BYTES {
        return Err(ReceiveError::TooLarge);
    }
    let secret = deps
        .graph
        .app_secret()
        .await
        .map_err(|e| ReceiveError::Unavailable(format!("app secret: {e}")))?;
    if !signature_valid(secret.expose_secret().as_bytes(), body, signature) {
        warn!("Meta webhook refused: bad or missing signature");
        return Err(ReceiveError::BadSignature);
    }
    let now = deps.clock.now();
    let changes = match parse_delivery(body, now) {
        Ok(c) => c,
        Err(e) => {
            // Signed by Meta but not a shape we know: delivering it again would not help.
            warn!(error = %e, "signed Meta webhook not understood; acknowledged");
            return Ok(Received { changes: 0, new: 0 });
        }
    };
    let mut new = 0;
    for change in &changes {
        let fresh = deps
            .inbox
            .insert_change(change)
            .await
            .map_err(|e| ReceiveError::Unavailable(e.to_string()))?;
        let queue = if fresh {
            new += 1;
            true
        } else {
            // A redelivery: queue again unless it was processed (an earlier attempt
            // may have stored it and failed to queue it).
            deps.inbox
                .change(&change.id)
                .await
                .map_err(|e| ReceiveError::Unavailable(e.to_string()))?
                .is_some_and(|c| c.outcome.is_none())
        };
        if queue {
            let job = Job::Inbound {
                change_id: change.id.clone(),
            };
            let queued = if is_partner_added(change) {
                deps.queue.enqueue_at(&job, now + INTERRUPT_GRACE).await
            } else {
                deps.queue.enqueue(&job).await
            };
            queued.map_err(|e| ReceiveError::Unavailable(e.to_string()))?;
        }
    }
    info!(
        changes = changes.len(),
        new,
        fields = ?changes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
        "Meta webhook received"
    );
    Ok(Received {
        changes: changes.len(),
        new,
    })
}

fn is_partner_added(c: &InboundChange) -> bool {
    c.field == "account_update"
        && c.value.get("event").and_then(|e| e.as_str()) == Some("PARTNER_ADDED")
}

/// Acts on one stored change, once: a processed change is not processed again.
#[tracing::instrument(skip_all, fields(change_id = %change_id))]
pub async fn process_change(deps: WorkerDeps<'_>, change_id: &str) -> Result<(), StoreError> {
    let Some(stored) = deps.inbox.change(change_id).await? else {
        return Ok(());
    };
    if stored.outcome.is_some() {
        return Ok(());
    }
    let change = stored.change;
    let (outcome, note) = match classify(&change, deps.graph.app_id()) {
        None => (
            ChangeOutcome::Unmatched,
            "not a change we recognise".to_owned(),
        ),
        Some(action) => act(deps, &change, action).await?,
    };
    deps.inbox
        .settle_change(change_id, outcome, &note, deps.clock.now())
        .await?;
    info!(field = %change.field, outcome = outcome.as_str(), note, "Meta change processed");
    Ok(())
}

async fn act(
    deps: WorkerDeps<'_>,
    change: &InboundChange,
    action: Action,
) -> Result<(ChangeOutcome, String), StoreError> {
    let done = |note: String| Ok((ChangeOutcome::Done, note));
    let unmatched = |note: &str| Ok((ChangeOutcome::Unmatched, note.to_owned()));
    match action {
        Action::Nothing { why } => done(why),
        Action::PartnerAdded { waba } => partner_added(deps, &waba, change.happened_at()).await,
        Action::SetHealth {
            target,
            status,
            reason,
            message,
        } => {
            let numbers = resolve(deps, &target).await?;
            if numbers.is_empty() {
                return unmatched("no live number of ours");
            }
            let mut changed = 0;
            for n in numbers {
                if apply_health(deps, n, change.happened_at(), status, reason, &message).await? {
                    changed += 1;
                }
            }
            done(format!("{changed} number(s) set {}", status.as_str()))
        }
        Action::CheckNow { target } => {
            let numbers = resolve(deps, &target).await?;
            if numbers.is_empty() {
                return unmatched("no live number of ours");
            }
            for n in numbers {
                match check_number(deps.check(), n).await {
                    Ok(_) | Err(CheckError::NotFound) => {}
                    Err(CheckError::Store(e)) => return Err(e),
                    Err(e) => warn!(error = %e, "check after a Meta webhook failed"),
                }
            }
            done("checked".into())
        }
        Action::Forward { target } => {
            let numbers = resolve(deps, &target).await?;
            let mut apps: Vec<(AppId, Option<String>, WabaId)> = Vec::new();
            for n in &numbers {
                let phone =
                    matches!(target, Target::Phone(_)).then(|| n.phone_number_id.to_string());
                if !apps.iter().any(|(a, _, _)| *a == n.app_id) {
                    apps.push((n.app_id.clone(), phone, n.waba_id.clone()));
                }
            }
            if apps.is_empty() {
                return unmatched("no live number of ours");
            }
            for (app, phone, waba) in &apps {
                let event = Event::new(
                    app.clone(),
                    EventType::WhatsappWebhook,
                    &change.id,
                    change.received_at,
                    serde_json::json!({
                        "field": change.field,
                        "wabaId": waba,
                        "phoneNumberId": phone,
                        "value": change.value,
                    }),
                );
                deps.emitter()
                    .emit(event)
                    .await
                    .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
            }
            done(format!("forwarded to {} App(s)", apps.len()))
        }
    }
}

/// Sets one number's health from a webhook, unless the number's state is newer than
/// the change (an out-of-order delivery) or already says so. `true`: it changed.
async fn apply_health(
    deps: WorkerDeps<'_>,
    mut number: Number,
    happened_at: DateTime<Utc>,
    status: HealthStatus,
    reason: HealthReason,
    message: &str,
) -> Result<bool, StoreError> {
    for _ in 0..3 {
        // Meta's times are whole seconds: only a change from an earlier second than the
        // number's last status change is older than it.
        if !number.is_live()
            || happened_at.timestamp() < number.health.since.timestamp()
            || (number.health.status == status && number.health.reason == Some(reason))
        {
            return Ok(false);
        }
        match set_health(
            deps.store,
            deps.emitter(),
            deps.policy,
            &number,
            status,
            reason,
            message,
            deps.clock.now(),
        )
        .await
        {
            Ok(_) => return Ok(true),
            Err(WriteError::Changed) => {
                match deps
                    .store
                    .number(&number.app_id, &number.phone_number_id)
                    .await?
                {
                    Some(n) => number = n,
                    None => return Ok(false),
                }
            }
            Err(WriteError::Store(e)) => return Err(e),
        }
    }
    Err(StoreError::Conflict("the number kept changing"))
}

/// The live numbers a change is about.
async fn resolve(deps: WorkerDeps<'_>, target: &Target) -> Result<Vec<Number>, StoreError> {
    let ids = match target {
        Target::Waba(w) | Target::WabaPhone { waba: w, .. } => {
            deps.store.live_numbers_in_waba(w).await?
        }
        Target::Phone(p) => match deps.store.number_owner(p).await? {
            Some(app) => vec![(app, p.clone())],
            None => vec![],
        },
    };
    let mut out = Vec::with_capacity(ids.len());
    for (app, phone) in ids {
        if let Some(n) = deps.store.number(&app, &phone).await?
            && n.is_live()
        {
            out.push(n);
        }
    }
    if let Target::WabaPhone { display, .. } = target {
        let want = digits(display);
        out.retain(|n| {
            n.profile
                .display_phone_number
                .as_deref()
                .is_some_and(|d| digits(d) == want)
        });
    }
    Ok(out)
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// How long before Meta's `PARTNER_ADDED` a page's finish report may be to count.
pub const FINISH_REPORT_WINDOW: Duration = Duration::minutes(30);

/// PARTNER_ADDED: see the module's rule.
async fn partner_added(
    deps: WorkerDeps<'_>,
    waba: &WabaId,
    happened_at: DateTime<Utc>,
) -> Result<(ChangeOutcome, String), StoreError> {
    let now = deps.clock.now();
    let mut candidates = Vec::new();
    for id in deps.sessions.sessions_finished_with(waba).await? {
        let Some(s) = deps.sessions.session(&id).await? else {
            continue;
        };
        // Only a session whose latest report names this WABA, made shortly before
        // Meta's event, counts (an App cannot claim every WABA it ever named).
        let reported = s
            .abandons
            .iter()
            .rev()
            .find(|a| a.event == crate::session::AbandonEvent::Finish);
        let Some(report) = reported.filter(|r| r.waba_id.as_ref() == Some(waba)) else {
            continue;
        };
        if report.at < happened_at - FINISH_REPORT_WINDOW
            || report.at > happened_at + INTERRUPT_GRACE
        {
            continue;
        }
        match s.status_at(now) {
            SessionStatus::Completed | SessionStatus::Completing => {
                return Ok((ChangeOutcome::Done, "the signup completed".into()));
            }
            SessionStatus::Pending | SessionStatus::Failed | SessionStatus::Interrupted => {
                candidates.push(s)
            }
            SessionStatus::Expired => {}
        }
    }
    let Some(newest) = candidates.iter().max_by_key(|s| s.created_at) else {
        return Ok(if deps.store.live_numbers_in_waba(waba).await?.is_empty() {
            (
                ChangeOutcome::Unmatched,
                "no open signup of ours reported this WABA".into(),
            )
        } else {
            (
                ChangeOutcome::Done,
                "a number of ours is in this WABA".into(),
            )
        });
    };
    if candidates.iter().any(|s| s.app_id != newest.app_id) {
        // Ambiguous: no App is told (one App must not learn of another's signup).
        return Ok((
            ChangeOutcome::Unmatched,
            "signups of several Apps reported this WABA".into(),
        ));
    }
    if newest.status == SessionStatus::Interrupted
        || deps.sessions.mark_interrupted(&newest.id).await?
    {
        let event = Event::new(
            newest.app_id.clone(),
            EventType::SignupInterrupted,
            newest.id.as_str(),
            happened_at,
            serde_json::json!({
                "sessionId": newest.id,
                "wabaId": waba,
                "metadata": serde_json::Value::from(newest.metadata.clone()),
            }),
        );
        deps.emitter()
            .emit(event)
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        warn!(session_id = %newest.id, app_id = %newest.app_id, "signup interrupted: Meta finished, our callback never arrived");
        return Ok((
            ChangeOutcome::Done,
            format!("session {} interrupted", newest.id),
        ));
    }
    Ok((ChangeOutcome::Done, "the session moved on meanwhile".into()))
}

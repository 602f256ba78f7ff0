//! Sweep: checks the numbers that are due, stalest first, with bounded concurrency;
//! re-drives setups that stalled; leaves a throttled WABA alone until Meta's regain
//! time; stops cleanly before the deadline (the rest stays due for the next run); and
//! beyond what one run should do inline, fans the remaining due numbers out as check
//! jobs for the worker. Each due number is handled at most once per sweep.
//!
//! Circuit breaker: when Meta refuses *our* app's credentials (a rotated or mis-set app
//! secret), no number changes status, and the sweep stops calling Meta for the rest of
//! the run (`app_credentials_rejected`, metric `AppCredentialsRejected`): every other
//! check would fail the same way and spend the app's rate limit for nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream;
use tracing::{info, warn};

use crate::ids::AppId;
use crate::number::{HealthStatus, Number, PhoneNumberId, SETUP_STALL, WabaId};
use crate::ports::{DueNumber, StoreError};
use crate::queue::Job;
use crate::usecases::health::{CheckError, check_number};
use crate::usecases::setup::WorkerDeps;

#[derive(Debug, Clone, Copy)]
pub struct SweepConfig {
    /// Checks in flight at once.
    pub concurrency: usize,
    /// Due numbers read per store query.
    pub page: usize,
    /// Checks this run does itself; the due numbers beyond go out as check jobs.
    pub max_inline: usize,
    /// Numbers per fanned-out check job.
    pub fan_out_batch: usize,
    /// Stop starting new checks this long before the deadline.
    pub safety_margin: StdDuration,
    /// Also check numbers due within this much time (an operator's "check all now").
    pub horizon: chrono::Duration,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            page: 500,
            max_inline: 50_000,
            fan_out_batch: 50,
            safety_margin: StdDuration::from_secs(30),
            horizon: chrono::Duration::zero(),
        }
    }
}

/// What one sweep did (also emitted as metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub checked: usize,
    /// Numbers per status after their check.
    pub by_status: HashMap<&'static str, usize>,
    pub transitions: usize,
    pub became_down: usize,
    pub redriven: usize,
    pub throttled_skips: usize,
    pub fanned_out: usize,
    pub failed: usize,
    /// The deadline came before every due number was done.
    pub stopped_early: bool,
    /// Meta refused our app's credentials; the sweep stopped calling Meta.
    pub app_credentials_rejected: bool,
    pub duration_ms: u128,
}

#[derive(Default)]
struct Tally {
    report: SweepReport,
    /// WABA → until when Meta throttles it.
    throttled: HashMap<WabaId, DateTime<Utc>>,
}

enum Handled {
    Checked {
        status: HealthStatus,
        changed_to: Option<HealthStatus>,
        throttled: Option<(WabaId, DateTime<Utc>)>,
    },
    OurCredentialsRejected,
    Redriven,
    ThrottledSkip,
    Nothing,
}

/// Where the stream of due numbers stands.
#[derive(Default)]
struct Pager {
    /// Each due number is handled at most once per sweep.
    seen: HashSet<(AppId, PhoneNumberId)>,
    /// Checks started inline so far (beyond `max_inline`, due numbers fan out).
    inline: usize,
}

/// Moves a number's next check to `at` (a stale write is simply dropped).
async fn postpone(deps: WorkerDeps<'_>, n: &Number, at: DateTime<Utc>) -> Result<(), StoreError> {
    let mut next = n.revision(deps.clock.now());
    next.health.next_check_at = Some(at);
    match deps.store.save_number(&next, n.version, None).await {
        Ok(()) | Err(crate::ports::WriteError::Changed) => Ok(()),
        Err(crate::ports::WriteError::Store(e)) => Err(e),
    }
}

async fn handle(
    deps: WorkerDeps<'_>,
    due: &DueNumber,
    throttled: &HashMap<WabaId, DateTime<Utc>>,
    horizon: chrono::Duration,
) -> Result<Handled, CheckError> {
    let now = deps.clock.now();
    let Some(n) = deps.store.number(&due.app_id, &due.phone_number_id).await? else {
        return Ok(Handled::Nothing);
    };
    // Read from an eventually consistent index: skip what is no longer due.
    if !n.is_live() || n.health.next_check_at.is_none_or(|at| at > now + horizon) {
        return Ok(Handled::Nothing);
    }
    if n.health.status == HealthStatus::Pending && n.setup.completed_at.is_none() {
        // A setup that made no progress (or whose wait is over): queue it again.
        let job = Job::Setup {
            app_id: n.app_id.clone(),
            phone_number_id: n.phone_number_id.clone(),
        };
        if let Err(e) = deps.queue.enqueue(&job).await {
            warn!(phone_number_id = %n.phone_number_id, error = %e, "could not re-drive the setup");
            return Ok(Handled::Nothing);
        }
        postpone(deps, &n, now + SETUP_STALL).await?;
        return Ok(Handled::Redriven);
    }
    if let Some(until) = throttled.get(&n.waba_id).copied().filter(|u| *u > now) {
        postpone(deps, &n, until).await?;
        return Ok(Handled::ThrottledSkip);
    }
    let waba = n.waba_id.clone();
    let outcome = check_number(deps.check(), n).await?;
    if outcome.our_credentials_rejected {
        return Ok(Handled::OurCredentialsRejected);
    }
    Ok(Handled::Checked {
        status: outcome.number.health.status,
        changed_to: outcome.changed.map(|e| e.to),
        throttled: outcome.throttled_until.map(|t| (waba, t)),
    })
}

/// One sweep's shared state: what it runs with, what it found, and why it stopped.
struct Run<'a> {
    deps: WorkerDeps<'a>,
    cfg: SweepConfig,
    deadline: Option<Instant>,
    tally: Mutex<Tally>,
    failure: Mutex<Option<StoreError>>,
}

impl Run<'_> {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn near_deadline(&self) -> bool {
        self.deadline
            .is_some_and(|d| Instant::now() + self.cfg.safety_margin >= d)
    }

    fn breaker_open(&self) -> bool {
        self.tally().report.app_credentials_rejected
    }

    fn fail(&self, e: StoreError) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    /// The next page of due numbers not yet handled this sweep (those beyond
    /// `max_inline` fanned out); `None` ends the sweep.
    async fn next_page(&self, mut p: Pager) -> Option<(Vec<DueNumber>, Pager)> {
        if self.breaker_open() {
            return None;
        }
        if self.near_deadline() {
            self.tally().report.stopped_early = true;
            return None;
        }
        let now = self.deps.clock.now();
        let page = match self
            .deps
            .store
            .due_numbers(now + self.cfg.horizon, self.cfg.page)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                self.fail(e);
                return None;
            }
        };
        let mut due: Vec<DueNumber> = page
            .into_iter()
            .filter(|d| p.seen.insert((d.app_id.clone(), d.phone_number_id.clone())))
            .collect();
        if due.is_empty() {
            return None;
        }
        let room = self.cfg.max_inline.saturating_sub(p.inline);
        let beyond = due.split_off(due.len().min(room));
        p.inline += due.len();
        if !beyond.is_empty() {
            match fan_out(self.deps, &beyond, self.cfg.fan_out_batch).await {
                Ok(fanned) => self.tally().report.fanned_out += fanned,
                Err(e) => {
                    self.fail(e);
                    return None;
                }
            }
        }
        Some((due, p))
    }

    /// Handles one due number and counts what happened.
    async fn one(&self, d: DueNumber) {
        if self.breaker_open() {
            // Left due: checked again once the credentials are fixed.
            return;
        }
        if self.near_deadline() {
            // Left due (not marked seen in the store): the next run takes it.
            self.tally().report.stopped_early = true;
            return;
        }
        let throttled = self.tally().throttled.clone();
        let result = handle(self.deps, &d, &throttled, self.cfg.horizon).await;
        let mut t = self.tally();
        match result {
            Ok(Handled::Checked {
                status,
                changed_to,
                throttled,
            }) => {
                t.report.checked += 1;
                *t.report.by_status.entry(status.as_str()).or_default() += 1;
                if let Some(to) = changed_to {
                    t.report.transitions += 1;
                    if to == HealthStatus::Down {
                        t.report.became_down += 1;
                    }
                }
                if let Some((waba, until)) = throttled {
                    let entry = t.throttled.entry(waba).or_insert(until);
                    *entry = (*entry).max(until);
                }
            }
            Ok(Handled::OurCredentialsRejected) => {
                t.report.app_credentials_rejected = true;
            }
            Ok(Handled::Redriven) => t.report.redriven += 1,
            Ok(Handled::ThrottledSkip) => t.report.throttled_skips += 1,
            Ok(Handled::Nothing) => {}
            Err(e) => {
                t.report.failed += 1;
                warn!(phone_number_id = %d.phone_number_id, error = %e, "check failed");
            }
        }
    }
}

/// One sweep, until nothing is due or `deadline` (minus the safety margin) is near.
///
/// Due numbers come as one stream of pages, each read when the checks run short of
/// work: the checks in flight keep running while the next page is read, so no page
/// ends in a drain of idle slots.
#[tracing::instrument(skip_all)]
pub async fn sweep(
    deps: WorkerDeps<'_>,
    cfg: SweepConfig,
    deadline: Option<Instant>,
) -> Result<SweepReport, StoreError> {
    let started = Instant::now();
    let run = Run {
        deps,
        cfg,
        deadline,
        tally: Mutex::new(Tally::default()),
        failure: Mutex::new(None),
    };
    let run = &run;
    stream::unfold(Pager::default(), |p| run.next_page(p))
        .flat_map(stream::iter)
        .for_each_concurrent(cfg.concurrency, |d| run.one(d))
        .await;
    if let Some(e) = run.failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    let mut report = run.tally().report.clone();
    report.duration_ms = started.elapsed().as_millis();
    info!(
        checked = report.checked,
        transitions = report.transitions,
        redriven = report.redriven,
        fanned_out = report.fanned_out,
        stopped_early = report.stopped_early,
        app_credentials_rejected = report.app_credentials_rejected,
        duration_ms = report.duration_ms as u64,
        "sweep done"
    );
    Ok(report)
}

/// Queues check jobs for due numbers this run leaves to the worker; each is postponed
/// meanwhile so the next sweep does not queue it again.
async fn fan_out(
    deps: WorkerDeps<'_>,
    due: &[DueNumber],
    batch: usize,
) -> Result<usize, StoreError> {
    let now = deps.clock.now();
    let mut queued = 0;
    for chunk in due.chunks(batch.max(1)) {
        let job = Job::Check {
            numbers: chunk
                .iter()
                .map(|d| (d.app_id.clone(), d.phone_number_id.clone()))
                .collect(),
        };
        if let Err(e) = deps.queue.enqueue(&job).await {
            warn!(error = %e, "could not fan out checks; they stay due");
            continue;
        }
        for d in chunk {
            if let Some(n) = deps.store.number(&d.app_id, &d.phone_number_id).await? {
                postpone(deps, &n, now + SETUP_STALL).await?;
            }
        }
        queued += chunk.len();
    }
    Ok(queued)
}

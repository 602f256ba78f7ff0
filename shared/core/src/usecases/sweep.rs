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
use tokio::sync::Semaphore;
use tracing::{Instrument, info, warn};

use crate::ids::AppId;
use crate::number::{HealthStatus, Number, PhoneNumberId, SETUP_STALL, WabaId};
use crate::ports::{DueNumber, StoreError};
use crate::queue::Job;
use crate::usecases::health::{self, CheckError, Evaluation};
use crate::usecases::setup::WorkerDeps;

#[derive(Debug, Clone, Copy)]
pub struct SweepConfig {
    /// Checks in flight at once.
    pub concurrency: usize,
    /// Due numbers read per store query (at least 4 × `concurrency`, more than can be
    /// in flight).
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

/// What a slot found: a result to store, or a WABA Meta throttles (the number is
/// postponed to the regain time, outside the slot).
enum Slot {
    Evaluated(Box<Evaluation>),
    Throttled(Box<Number>, DateTime<Utc>),
}

/// Where a due number stands after its read.
enum Step {
    /// It needs a check: the number as read.
    Check(Box<Number>),
    /// Done without one.
    Done(Handled),
}

/// A due number's first stage, ahead of the checks: its current record, and what needs
/// no Graph call (no longer due, a stalled setup to re-drive).
async fn prepare(
    deps: WorkerDeps<'_>,
    due: &DueNumber,
    horizon: chrono::Duration,
) -> Result<Step, CheckError> {
    let now = deps.clock.now();
    let Some(n) = deps.store.number(&due.app_id, &due.phone_number_id).await? else {
        return Ok(Step::Done(Handled::Nothing));
    };
    // Read from an eventually consistent index: skip what is no longer due.
    if !n.is_live() || n.health.next_check_at.is_none_or(|at| at > now + horizon) {
        return Ok(Step::Done(Handled::Nothing));
    }
    if n.health.status == HealthStatus::Pending && n.setup.completed_at.is_none() {
        // A setup that made no progress (or whose wait is over): queue it again.
        let job = Job::Setup {
            app_id: n.app_id.clone(),
            phone_number_id: n.phone_number_id.clone(),
        };
        if let Err(e) = deps.queue.enqueue(&job).await {
            warn!(phone_number_id = %n.phone_number_id, error = %e, "could not re-drive the setup");
            return Ok(Step::Done(Handled::Nothing));
        }
        postpone(deps, &n, now + SETUP_STALL).await?;
        return Ok(Step::Done(Handled::Redriven));
    }
    Ok(Step::Check(Box::new(n)))
}

/// One sweep's shared state: what it runs with, what it found, and why it stopped.
struct Run<'a> {
    deps: WorkerDeps<'a>,
    cfg: SweepConfig,
    deadline: Option<Instant>,
    tally: Mutex<Tally>,
    failure: Mutex<Option<StoreError>>,
    /// Reads at once (stage 1).
    reads: Semaphore,
    /// The checks' slots: numbers waiting on Meta at once (stage 2).
    slots: Semaphore,
    /// Writes at once (stage 3).
    writes: Semaphore,
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
            .due_numbers(now + self.cfg.horizon, self.page_size())
            .await
        {
            Ok(page) => page,
            Err(e) => {
                self.fail(e);
                return None;
            }
        };
        let full = page.len() >= self.page_size();
        let mut due: Vec<DueNumber> = page
            .into_iter()
            .filter(|d| p.seen.insert((d.app_id.clone(), d.phone_number_id.clone())))
            .collect();
        if due.is_empty() {
            if full {
                // A whole page of numbers this run already handled and left due (failed
                // checks, skipped numbers): what lies beyond it waits for the next run.
                warn!(
                    page = self.page_size(),
                    "a page of due numbers held only numbers already handled"
                );
                self.tally().report.stopped_early = true;
            }
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

    /// Whether no new work should start (the breaker is open or the deadline near).
    fn stopping(&self) -> bool {
        if self.breaker_open() {
            // Left due: checked again once the credentials are fixed.
            return true;
        }
        if self.near_deadline() {
            // Left due (not marked seen in the store): the next run takes it.
            self.tally().report.stopped_early = true;
            return true;
        }
        false
    }

    fn width(&self) -> usize {
        self.cfg.concurrency.max(1)
    }

    /// One due number through the three stages; the semaphores are fair (first come,
    /// first served), so numbers keep the order of the stream.
    async fn one(&self, d: DueNumber) {
        let span = tracing::info_span!("check_number", app_id = %d.app_id, phone_number_id = %d.phone_number_id);
        async {
            let number = {
                let _read = self.reads.acquire().await;
                self.read(d).await
            };
            let Some(number) = number else { return };
            let slot = {
                let _slot = self.slots.acquire().await;
                self.evaluate(number).await
            };
            let Some(slot) = slot else { return };
            let _write = self.writes.acquire().await;
            match slot {
                Slot::Evaluated(evaluation) => self.record(evaluation).await,
                Slot::Throttled(n, until) => {
                    let result = postpone(self.deps, &n, until).await;
                    let result = result.map(|()| Handled::ThrottledSkip).map_err(Into::into);
                    self.count(&n.phone_number_id, result);
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Due numbers per store query: more than can be in flight (3 × concurrency), so a
    /// page holds numbers not yet handled for as long as any are due.
    fn page_size(&self) -> usize {
        self.cfg.page.max(4 * self.width())
    }

    /// Stage 1, reading ahead of the checks: the number as it is now, if it needs a
    /// check.
    async fn read(&self, d: DueNumber) -> Option<Number> {
        if self.stopping() {
            return None;
        }
        match prepare(self.deps, &d, self.cfg.horizon).await {
            Ok(Step::Check(n)) => Some(*n),
            Ok(Step::Done(handled)) => {
                self.count(&d.phone_number_id, Ok(handled));
                None
            }
            Err(e) => {
                self.count(&d.phone_number_id, Err(e));
                None
            }
        }
    }

    /// Stage 2, one of `concurrency` slots: Meta's answers and the verdict (a WABA Meta
    /// throttles is left alone until its regain time).
    async fn evaluate(&self, n: Number) -> Option<Slot> {
        if self.stopping() {
            return None;
        }
        let now = self.deps.clock.now();
        let throttled = self.tally().throttled.get(&n.waba_id).copied();
        if let Some(until) = throttled.filter(|u| *u > now) {
            return Some(Slot::Throttled(Box::new(n), until));
        }
        let waba = n.waba_id.clone();
        let evaluation = health::evaluate(self.deps.check(), n).await;
        // Known before the write: the numbers already waiting for a slot see it.
        let mut t = self.tally();
        if evaluation.our_credentials_rejected() {
            // Open the breaker: every other check would fail the same way.
            t.report.app_credentials_rejected = true;
        }
        if let Some(until) = evaluation.throttled_until() {
            let entry = t.throttled.entry(waba).or_insert(until);
            *entry = (*entry).max(until);
        }
        drop(t);
        Some(Slot::Evaluated(Box::new(evaluation)))
    }

    /// Stage 3, beside the slots: stores a check's result and counts it.
    async fn record(&self, evaluation: Box<Evaluation>) {
        let phone = evaluation.number().phone_number_id.clone();
        let result = health::record(self.deps.check(), *evaluation).await;
        let handled = result.map(|outcome| {
            if outcome.our_credentials_rejected {
                Handled::OurCredentialsRejected
            } else {
                Handled::Checked {
                    status: outcome.number.health.status,
                    changed_to: outcome.changed.map(|e| e.to),
                }
            }
        });
        self.count(&phone, handled);
    }

    /// Counts what happened to one due number.
    fn count(&self, phone: &PhoneNumberId, result: Result<Handled, CheckError>) {
        let mut t = self.tally();
        match result {
            Ok(Handled::Checked { status, changed_to }) => {
                t.report.checked += 1;
                *t.report.by_status.entry(status.as_str()).or_default() += 1;
                if let Some(to) = changed_to {
                    t.report.transitions += 1;
                    if to == HealthStatus::Down {
                        t.report.became_down += 1;
                    }
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
                warn!(phone_number_id = %phone, error = %e, "check failed");
            }
        }
    }
}

/// One sweep, until nothing is due or `deadline` (minus the safety margin) is near.
///
/// Due numbers come as one stream of pages, each read when the checks run short of
/// work: the checks in flight keep running while the next page is read, so no page
/// ends in a drain of idle slots. Each number then goes through three stages, so that
/// the `concurrency` slots hold only what a check needs Meta for: its read (up to
/// `concurrency` ahead of the slots), its token (a cached data key) with its Graph
/// calls and verdict (in a slot), and its write (up to `concurrency` beside the slots).
#[tracing::instrument(skip_all)]
pub async fn sweep(
    deps: WorkerDeps<'_>,
    cfg: SweepConfig,
    deadline: Option<Instant>,
) -> Result<SweepReport, StoreError> {
    let started = Instant::now();
    let width = cfg.concurrency.max(1);
    let run = Run {
        deps,
        cfg,
        deadline,
        tally: Mutex::new(Tally::default()),
        failure: Mutex::new(None),
        reads: Semaphore::new(width),
        slots: Semaphore::new(width),
        writes: Semaphore::new(width),
    };
    let run = &run;
    stream::unfold(Pager::default(), |p| run.next_page(p))
        .flat_map(stream::iter)
        .for_each_concurrent(3 * width, |d| run.one(d))
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

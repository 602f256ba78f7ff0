//! The in-process worker for `pipes dev`: takes jobs from the embedded store's job
//! table and runs them with the same handler as the SQS worker. Like SQS, a taken job
//! is hidden while it runs, comes back after a failure (with backoff), and after
//! `MAX_ATTEMPTS` deliveries is kept as dead (the local dead-letter queue).

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use pipes_core::StoreError;
use pipes_core::usecases::jobs::{JobFailure, handle_job};
use pipes_core::usecases::setup::WorkerDeps;
use tracing::{Instrument, info_span, warn};

use crate::EmbeddedStore;
use crate::embedded::Lane;

/// Deliveries before a job is dead (the template's SetupMaxReceiveCount default).
pub const MAX_ATTEMPTS: u32 = 5;
/// How long a taken job stays hidden (the SQS visibility timeout's counterpart).
pub const VISIBILITY: Duration = Duration::minutes(2);

fn backoff(attempt: u32) -> Duration {
    Duration::seconds(1i64 << attempt.min(6))
}

/// Runs every job of the work lane visible at `now` (up to `batch`); returns how many
/// were taken.
pub async fn run_once(
    store: &EmbeddedStore,
    deps: WorkerDeps<'_>,
    now: DateTime<Utc>,
    batch: usize,
) -> Result<usize, StoreError> {
    run_lane_once(store, Lane::Work, deps, now, batch).await
}

/// Runs every job of `lane` visible at `now` (up to `batch`).
pub async fn run_lane_once(
    store: &EmbeddedStore,
    lane: Lane,
    deps: WorkerDeps<'_>,
    now: DateTime<Utc>,
    batch: usize,
) -> Result<usize, StoreError> {
    let jobs = store
        .take_lane_jobs(lane, now, batch, now + VISIBILITY)
        .await?;
    for job in &jobs {
        let final_attempt = job.attempts >= MAX_ATTEMPTS;
        let span = info_span!("job", job_id = job.id, attempt = job.attempts);
        match handle_job(deps, &job.body, final_attempt)
            .instrument(span)
            .await
        {
            Ok(()) => store.ack_job(job.id).await?,
            Err(failure) => {
                let (message, dead) = match &failure {
                    JobFailure::Retry(m) => (m.clone(), final_attempt),
                    JobFailure::Malformed(m) => (m.clone(), true),
                };
                warn!(job_id = job.id, attempt = job.attempts, dead, error = %message, "job failed");
                store
                    .retry_job(job.id, now + backoff(job.attempts), &message, dead)
                    .await?;
            }
        }
    }
    Ok(jobs.len())
}

/// Polls the job table until the task is dropped.
pub async fn run(store: EmbeddedStore, deps: WorkerDeps<'_>, poll: StdDuration) {
    loop {
        let now = deps.clock.now();
        let work = run_once(&store, deps, now, 10).await;
        let events = run_lane_once(&store, Lane::Events, deps, now, 10).await;
        match work.and_then(|w| events.map(|e| w + e)) {
            Ok(0) => tokio::time::sleep(poll).await,
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "local worker: store failure");
                tokio::time::sleep(poll).await;
            }
        }
    }
}

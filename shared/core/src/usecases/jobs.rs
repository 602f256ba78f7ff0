//! The job dispatcher both workers share (the SQS batch handler and the local job
//! table's loop): runs one queued job (setup, teardown or a batch of checks) and says
//! whether it should be delivered again; the last failed delivery of a setup is
//! recorded on the number for the partner to see.

use tracing::warn;

use crate::ids::AppId;
use crate::number::{HealthReason, HealthStatus, PhoneNumberId};
use crate::queue::Job;
use crate::usecases::health::CheckError;
use crate::usecases::setup::{SetupError, WorkerDeps, run_setup, teardown};

/// Why a queued job was not done.
#[derive(Debug, thiserror::Error)]
pub enum JobFailure {
    /// Deliver again later.
    #[error("retry: {0}")]
    Retry(String),
    /// Not a job: no retry will help (it still goes to the dead-letter queue).
    #[error("malformed job: {0}")]
    Malformed(String),
}

/// Runs one queued job. `final_attempt`: this is the last delivery before the
/// dead-letter queue, so a failure is recorded on the number for the partner to see.
#[tracing::instrument(skip_all, fields(job = tracing::field::Empty))]
pub async fn handle_job(
    deps: WorkerDeps<'_>,
    body: &str,
    final_attempt: bool,
) -> Result<(), JobFailure> {
    let job: Job = serde_json::from_str(body).map_err(|e| JobFailure::Malformed(e.to_string()))?;
    let kind = match &job {
        Job::Setup { .. } => "setup",
        Job::Teardown { .. } => "teardown",
        Job::Check { .. } => "check",
        Job::Inbound { .. } => "inbound",
        Job::Deliver { .. } => "deliver",
    };
    tracing::Span::current().record("job", kind);
    let result = match &job {
        Job::Setup {
            app_id,
            phone_number_id,
        } => run_setup(deps, app_id, phone_number_id).await.map(|_| ()),
        Job::Teardown {
            app_id,
            waba_id,
            phone_number_id,
            sealed_token,
            removed_version,
        } => {
            teardown(
                deps,
                app_id,
                waba_id,
                phone_number_id,
                sealed_token.as_deref(),
                *removed_version,
            )
            .await
        }
        Job::Inbound { change_id } => {
            return crate::usecases::inbound::process_change(deps, change_id)
                .await
                .map_err(|e| JobFailure::Retry(e.to_string()));
        }
        Job::Deliver {
            app_id,
            event_id,
            run,
            attempt,
            not_before,
        } => {
            return crate::usecases::events::deliver(
                deps.delivery(),
                app_id,
                event_id,
                *run,
                *attempt,
                *not_before,
            )
            .await
            .map_err(|e| JobFailure::Retry(e.to_string()));
        }
        Job::Check { numbers } => {
            for (app, phone) in numbers {
                match crate::usecases::health::check_health(deps.check(), app, phone).await {
                    Ok(_) | Err(CheckError::NotFound) => {}
                    Err(e) => {
                        warn!(phone_number_id = %phone, error = %e, "fanned-out check failed")
                    }
                }
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => Ok(()),
        Err(SetupError::Retry(msg)) => {
            if final_attempt
                && let Job::Setup {
                    app_id,
                    phone_number_id,
                } = &job
            {
                mark_setup_failed(deps, app_id, phone_number_id, &msg).await;
            }
            Err(JobFailure::Retry(msg))
        }
        Err(SetupError::Store(e)) => Err(JobFailure::Retry(e.to_string())),
        Err(SetupError::Busy(until)) => {
            // Another delivery runs it: come back when its lease ends, without spending
            // this job's deliveries (a fresh message; this one is done).
            deps.queue
                .enqueue_at(&job, until)
                .await
                .map_err(|e| JobFailure::Retry(format!("re-queueing a busy setup: {e}")))
        }
    }
}

/// The last delivery failed: the number shows why (`setup.lastError`, reason
/// `setup_failed`); it stays pending and the sweep re-drives it later.
async fn mark_setup_failed(deps: WorkerDeps<'_>, app: &AppId, phone: &PhoneNumberId, msg: &str) {
    let Ok(Some(n)) = deps.store.number(app, phone).await else {
        return;
    };
    if !n.is_live() || n.health.status != HealthStatus::Pending {
        return;
    }
    let mut failed = n.revision(deps.clock.now());
    failed.setup.last_error = Some(msg.to_owned());
    failed.health.reason = Some(HealthReason::SetupFailed);
    failed.health.message = Some(format!("setup failed after every retry: {msg}"));
    if let Err(e) = deps.store.save_number(&failed, n.version, None).await {
        warn!(phone_number_id = %phone, error = %e, "could not record the setup failure");
    }
}

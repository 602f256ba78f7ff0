//! The SQS side of the workers: one Lambda batch in, partial batch failures out
//! (`ReportBatchItemFailures`). Each message is parsed and run alone, so a malformed
//! or failing message never fails its batch-mates.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::future::join_all;
use pipes_core::usecases::jobs::{JobFailure, handle_job};
use pipes_core::usecases::setup::WorkerDeps;
use tracing::{Instrument, info_span, warn};

fn receive_count(m: &SqsMessage) -> u32 {
    m.attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

/// Runs every message of the batch (concurrently) and reports the ones to redeliver.
/// `max_receive_count` is the queue's redrive setting: the delivery that reaches it is
/// the last before the dead-letter queue.
pub async fn handle_batch(
    deps: WorkerDeps<'_>,
    event: SqsEvent,
    max_receive_count: u32,
) -> SqsBatchResponse {
    let runs = event.records.iter().map(|m| {
        // One span per message: its job's own spans (appId, phoneNumberId) nest in it.
        let id = m.message_id.clone().unwrap_or_default();
        let span = info_span!("sqs_message", message_id = %id, receive_count = receive_count(m));
        async move {
        let Some(body) = m.body.as_deref() else {
            warn!(message_id = %id, "message without a body");
            return Some(id);
        };
        let final_attempt = receive_count(m) >= max_receive_count;
        match handle_job(deps, body, final_attempt).await {
            Ok(()) => None,
            Err(JobFailure::Malformed(e)) => {
                warn!(message_id = %id, error = %e, "malformed job; left for the dead-letter queue");
                Some(id)
            }
            Err(JobFailure::Retry(e)) => {
                warn!(message_id = %id, error = %e, final_attempt, "job will be retried");
                Some(id)
            }
        }
        }
        .instrument(span)
    });
    let mut response = SqsBatchResponse::default();
    for failed in join_all(runs).await.into_iter().flatten() {
        let mut item = BatchItemFailure::default();
        item.item_identifier = failed;
        response.batch_item_failures.push(item);
    }
    response
}

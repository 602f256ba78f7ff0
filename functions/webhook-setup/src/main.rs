//! Lambda `webhook-setup`: SQS batches of setup, teardown and check jobs, answered with
//! partial batch failures. Only wiring: the composition root and the shared batch
//! handler.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use pipes_adapters::config;
use pipes_adapters::sqs_worker::handle_batch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    let platform = pipes_adapters::root::aws().await?;
    let max_receive = config::max_receive_count()?;
    let deps = platform.worker();
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(
            handle_batch(deps, event.payload, max_receive).await,
        )
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}

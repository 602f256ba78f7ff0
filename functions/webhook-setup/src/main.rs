//! Lambda `webhook-setup`: SQS batches of setup and teardown jobs, answered with partial
//! batch failures. Only wiring: configuration, adapters and the shared batch handler.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use pipes_adapters::config::{self, AwsPlatform};
use pipes_adapters::sqs_worker::handle_batch;
use pipes_core::SystemClock;
use pipes_core::usecases::health::HealthPolicy;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    let platform = AwsPlatform::from_env().await?;
    let max_receive = config::parsed("SETUP_MAX_RECEIVE_COUNT", |s| {
        s.parse::<u32>().map_err(|e| e.to_string())
    })?;
    let policy = HealthPolicy::default();
    let deps = platform.worker_deps(&SystemClock, &policy);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(
            handle_batch(deps, event.payload, max_receive).await,
        )
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}

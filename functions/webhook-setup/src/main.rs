//! Lambda `webhook-setup`: SQS batches of setup and teardown jobs, answered with partial
//! batch failures. Only wiring: configuration, adapters and the shared batch handler.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use pipes_adapters::config::{self, MetaConfig};
use pipes_adapters::sqs_worker::handle_batch;
use pipes_core::SystemClock;
use pipes_core::crypto::Envelope;
use pipes_core::usecases::health::HealthPolicy;
use pipes_core::usecases::setup::WorkerDeps;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = config::aws().await;
    let meta = MetaConfig::from_env_and_ssm(&aws).await?;
    let store = config::dynamo_store(&aws)?;
    let graph = meta.graph_client()?;
    let envelope = Envelope::new(Arc::new(config::kms_wrapper(&aws)?));
    let queue = config::setup_queue(&aws)?;
    let max_receive = config::parsed("SETUP_MAX_RECEIVE_COUNT", |s| {
        s.parse::<u32>().map_err(|e| e.to_string())
    })?;
    let policy = HealthPolicy::default();
    let deps = WorkerDeps {
        store: &store,
        graph: &graph,
        envelope: &envelope,
        queue: &queue,
        clock: &SystemClock,
        policy: &policy,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(
            handle_batch(deps, event.payload, max_receive).await,
        )
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}

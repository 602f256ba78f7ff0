//! Lambda `health-sweep`: on its EventBridge schedule, checks the numbers that are due
//! until shortly before the invocation's deadline, then prints the sweep's metrics in
//! CloudWatch Embedded Metric Format. Only wiring.

use std::time::{Duration, Instant, SystemTime};

use lambda_runtime::{LambdaEvent, service_fn};
use pipes_adapters::metrics::{sweep_emf, sweep_result};
use pipes_adapters::{config, root};
use pipes_core::usecases::sweep::sweep;
use serde_json::Value;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    let platform = root::aws().await?;
    let cfg = config::sweep_config()?;
    let deps = platform.worker();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let left = event
            .context
            .deadline()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let report = sweep(deps, cfg, Some(Instant::now() + left)).await?;
        println!(
            "{}",
            sweep_emf(&report, deps.clock.now().timestamp_millis())
        );
        Ok::<Value, lambda_runtime::Error>(sweep_result(&report))
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}

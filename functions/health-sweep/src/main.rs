//! Lambda `health-sweep`: on its EventBridge schedule, checks the numbers that are due
//! until shortly before the invocation's deadline, then prints the sweep's metrics in
//! CloudWatch Embedded Metric Format. Only wiring.

use std::time::{Duration, Instant};

use lambda_runtime::{LambdaEvent, service_fn};
use pipes_adapters::config::{self, AwsPlatform};
use pipes_adapters::metrics::sweep_emf;
use pipes_core::usecases::health::HealthPolicy;
use pipes_core::usecases::sweep::{SweepConfig, sweep};
use pipes_core::{Clock, SystemClock};
use serde_json::{Value, json};

fn number(name: &'static str) -> Result<usize, config::ConfigError> {
    config::parsed(name, |s| {
        s.parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| "expected a positive integer".to_owned())
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    let platform = AwsPlatform::from_env().await?;
    let policy = HealthPolicy::default();
    let cfg = SweepConfig {
        concurrency: number("SWEEP_CONCURRENCY")?,
        max_inline: number("SWEEP_MAX_INLINE")?,
        ..SweepConfig::default()
    };
    let deps = platform.worker_deps(&SystemClock, &policy);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let now_ms = u64::try_from(SystemClock.now().timestamp_millis()).unwrap_or(0);
        let left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
        let report = sweep(deps, cfg, Some(Instant::now() + left)).await?;
        println!(
            "{}",
            sweep_emf(&report, SystemClock.now().timestamp_millis())
        );
        Ok::<Value, lambda_runtime::Error>(json!({
            "checked": report.checked,
            "transitions": report.transitions,
            "redriven": report.redriven,
            "fannedOut": report.fanned_out,
            "stoppedEarly": report.stopped_early,
            "appCredentialsRejected": report.app_credentials_rejected,
        }))
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}

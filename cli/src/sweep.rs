//! `pipes sweep`: one health sweep now, on the embedded store (talking to the running
//! `pipes dev`'s sandbox, or to Meta when credentials are set) or on DynamoDB.

use std::sync::Arc;

use clap::Args;
use pipes_adapters::config::{self, MetaConfig};
use pipes_adapters::root;
use pipes_core::usecases::PublicBaseUrl;
use pipes_core::usecases::sweep::{SweepConfig, SweepReport, sweep};
use pipes_core::{Clock, SystemClock};

use crate::StoreArgs;

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Checks in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Check every live number now, not only those that are due.
    #[arg(long)]
    all: bool,
    /// In sandbox mode: the running `pipes dev`'s simulated Graph API.
    #[arg(long, default_value = "http://127.0.0.1:3000/sandbox/graph")]
    sandbox_graph_url: String,
}

/// The Meta side: live credentials from the environment, else the dev server's sandbox.
pub fn meta_config(sandbox_graph_url: &str) -> anyhow::Result<MetaConfig> {
    match MetaConfig::from_env()? {
        Some(live) => Ok(live),
        None => Ok(MetaConfig {
            app_id: pipes_sandbox::SANDBOX_APP_ID.to_owned(),
            app_secret: pipes_adapters::graph::AppSecret::Known(
                pipes_sandbox::SANDBOX_APP_SECRET.to_owned().into(),
            ),
            config_id: pipes_sandbox::SANDBOX_CONFIG_ID.to_owned(),
            graph_base_url: sandbox_graph_url.parse()?,
            graph_version: pipes_adapters::graph::GraphConfig::DEFAULT_VERSION.to_owned(),
            tuning: config::GraphTuning::default(),
        }),
    }
}

pub async fn run(args: SweepArgs, at: &StoreArgs) -> anyhow::Result<()> {
    let meta = meta_config(&args.sandbox_graph_url)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Signup links are not made here; the base is only what the platform carries.
    let base = PublicBaseUrl::parse("http://127.0.0.1:3000").map_err(anyhow::Error::msg)?;
    let sandbox = meta.app_id == pipes_sandbox::SANDBOX_APP_ID;
    let platform = match &at.table {
        Some(table) => {
            let aws = config::aws().await;
            let storage = root::Storage::aws(
                &aws,
                table,
                &config::required("SETUP_QUEUE_URL")?,
                &config::required("EVENTS_QUEUE_URL")?,
                &config::required("KMS_KEY_ID")?,
            );
            root::assemble(storage, &meta, clock, base, sandbox)?
        }
        None => root::local(&at.data_dir, &meta, clock, base, sandbox)?.0,
    };
    let deps = platform.worker();
    let cfg = SweepConfig {
        concurrency: args.concurrency.max(1),
        horizon: if args.all {
            chrono::Duration::days(3650)
        } else {
            chrono::Duration::zero()
        },
        ..SweepConfig::default()
    };
    let report = sweep(deps, cfg, None).await?;
    println!("{}", summary(&report));
    Ok(())
}

pub fn summary(r: &SweepReport) -> String {
    let count = |s: &str| r.by_status.get(s).copied().unwrap_or(0);
    format!(
        "sweep: checked {} (healthy {}, degraded {}, down {}), {} status changes, {} setups re-driven, {} throttled, {} fanned out, {} failed, {} ms",
        r.checked,
        count("healthy"),
        count("degraded"),
        count("down"),
        r.transitions,
        r.redriven,
        r.throttled_skips,
        r.fanned_out,
        r.failed,
        r.duration_ms
    )
}

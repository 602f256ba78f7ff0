//! `pipes`: the local server (`pipes dev`, embedded store) and the operator's admin
//! commands, which work on the embedded store (`--data-dir`) or on DynamoDB (`--table`).

mod admin;
mod dev;
mod sweep;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use pipes_core::Store;

#[derive(Debug, Parser)]
#[command(
    name = "pipes",
    version,
    about = "Pipes.bot Embedded Signup backend: local server and admin"
)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives: the embedded store (default) or a DynamoDB table.
#[derive(Debug, Args)]
struct StoreArgs {
    /// Data directory of the embedded store.
    #[arg(long, global = true, env = "PIPES_DATA_DIR", default_value = ".pipes")]
    data_dir: PathBuf,
    /// Use this DynamoDB table instead (standard AWS environment: AWS_REGION, AWS_ENDPOINT_URL, credentials).
    #[arg(long, global = true, env = "PIPES_TABLE", conflicts_with = "data_dir")]
    table: Option<String>,
}

impl StoreArgs {
    async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        pipes_adapters::root::admin_store(self.table.as_deref(), &self.data_dir).await
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve every route on 127.0.0.1 with the embedded store.
    Dev(dev::DevArgs),
    /// Manage Apps and their keys.
    #[command(subcommand)]
    Apps(admin::AppsCommand),
    /// Run one health sweep now (embedded store, or --table).
    Sweep(sweep::SweepArgs),
    /// Meta's webhook changes that named no WABA, number or signup of ours.
    MetaChanges {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev(args) => {
            init_logs("info");
            if cli.store.table.is_some() {
                Err(anyhow::anyhow!(
                    "pipes dev runs on the embedded store; drop --table"
                ))
            } else {
                dev::run(args, &cli.store.data_dir).await
            }
        }
        Command::Sweep(args) => {
            init_logs("warn");
            sweep::run(args, &cli.store).await
        }
        Command::Apps(admin::AppsCommand::Webhook(cmd)) => {
            init_logs("warn");
            match pipes_adapters::root::admin_endpoints(
                cli.store.table.as_deref(),
                &cli.store.data_dir,
            )
            .await
            {
                Ok((store, queue, envelope)) => {
                    let local = cli.store.table.is_none();
                    admin::run_webhook(cmd, &*store, &*queue, &envelope, local).await
                }
                Err(e) => Err(e),
            }
        }
        Command::MetaChanges { limit, json } => {
            init_logs("warn");
            match cli.store.open().await {
                Ok(store) => admin::unmatched_changes(&*store, limit, json).await,
                Err(e) => Err(e),
            }
        }
        Command::Apps(cmd) => {
            init_logs("warn");
            match cli.store.open().await {
                Ok(store) => admin::run(cmd, &*store).await,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

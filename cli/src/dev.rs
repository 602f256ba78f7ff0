//! `pipes dev`: every route on 127.0.0.1, backed by the embedded store in the data dir
//! (SQLite, the master key, the job table, the sandbox's state). Without Meta
//! credentials it runs in sandbox mode. On first start it creates the demo App and
//! prints its key once.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use clap::Args;
use pipes_adapters::config::MetaConfig;
use pipes_adapters::{EmbeddedStore, local_worker, root};
use pipes_core::usecases::sweep::{SweepConfig, sweep};
use pipes_core::usecases::{PublicBaseUrl, admin};
use pipes_core::{AppStore, Clock, Platform, Slug, SystemClock};
use pipes_http::local_router;
use pipes_sandbox::{GRAPH_PATH, Sandbox};
use tokio::net::TcpListener;

pub const DEMO_SLUG: &str = "demo";

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Base URL put in signup links; defaults to this server's own address.
    #[arg(long, env = "PUBLIC_BASE_URL")]
    public_base_url: Option<String>,
    /// Seconds between health sweeps (0 turns the sweep off).
    #[arg(long, default_value_t = 60)]
    sweep_interval: u64,
}

pub async fn run(args: DevArgs, data_dir: &Path) -> anyhow::Result<()> {
    let live = MetaConfig::from_env()?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port)).await?;
    let addr = listener.local_addr()?;
    let base = args
        .public_base_url
        .unwrap_or_else(|| format!("http://{addr}"));
    let public_base_url = PublicBaseUrl::parse(&base).map_err(anyhow::Error::msg)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (meta, sandbox) = match live {
        Some(live) => (live, None),
        None => {
            let sandbox = Sandbox::persistent(data_dir.join(SANDBOX_FILE), Arc::clone(&clock))?;
            let graph_url = format!("http://{addr}{GRAPH_PATH}");
            (crate::sweep::meta_config(&graph_url)?, Some(sandbox))
        }
    };
    let (mut platform, store) =
        root::local(data_dir, &meta, clock, public_base_url, sandbox.is_some())?;
    if let Some(sandbox) = &sandbox {
        // Meta's webhooks come from the sandbox, signed with its app secret; the
        // verification handshake uses a token generated for this run (unless set).
        sandbox.set_webhook_target(format!("http://{addr}/webhooks/meta"));
        if platform.webhook_verify_token.is_none() {
            platform.webhook_verify_token = Some(pipes_core::random::base62(24).into());
        }
    }

    println!("Pipes.bot dev server listening on http://{addr}");
    println!("data dir: {}", data_dir.display());
    if sandbox.is_some() {
        println!(
            "sandbox mode: a simulated Meta answers at http://{addr}{GRAPH_PATH} \
             (set META_APP_ID, META_APP_SECRET and META_CONFIG_ID to use the real Graph API)"
        );
        println!(
            "Meta webhooks: POST http://{addr}/sandbox/webhooks sends signed ones to \
             http://{addr}/webhooks/meta"
        );
        if let Some(t) = &platform.webhook_verify_token {
            println!(
                "webhook verify token for this run: {}",
                secrecy::ExposeSecret::expose_secret(t)
            );
        }
    } else {
        println!("live mode: Graph API at {}", meta.graph_base_url);
    }
    announce_demo_app(&*platform.store, addr).await?;
    announce_login_link(&platform).await?;
    println!("ready (Ctrl-C stops)");

    // Jobs the previous run had taken when it stopped (a crash, Ctrl-C) run again now,
    // not when their visibility timeout would have ended.
    let released = store
        .release_taken_jobs(pipes_core::Clock::now(&*platform.clock))
        .await?;
    if released > 0 {
        println!("resuming {released} job(s) the previous run had started");
    }
    let worker = spawn_worker(platform.clone(), store, args.sweep_interval);
    let extra = sandbox.map_or_else(Router::new, pipes_sandbox::router);
    // The peer's address is the client IP the public routes' rate limits count.
    axum::serve(
        listener,
        local_router(platform, extra).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    worker.abort();
    println!("stopped");
    Ok(())
}

/// The in-process worker (setup, teardown and check jobs from the embedded job table)
/// and the periodic health sweep.
fn spawn_worker(
    platform: Platform,
    store: EmbeddedStore,
    sweep_interval: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let deps = platform.worker();
        let jobs = local_worker::run(store, deps, std::time::Duration::from_millis(200));
        let sweeps = async {
            if sweep_interval == 0 {
                return std::future::pending().await;
            }
            let mut every = tokio::time::interval(std::time::Duration::from_secs(sweep_interval));
            loop {
                every.tick().await;
                match sweep(deps, SweepConfig::default(), None).await {
                    Ok(r) if r.checked + r.redriven > 0 => {
                        tracing::info!("{}", crate::sweep::summary(&r))
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sweep failed"),
                }
            }
        };
        tokio::join!(jobs, sweeps);
    })
}

pub const SANDBOX_FILE: &str = "sandbox.json";

/// Creates the demo App on first start and prints its key and a curl line; later
/// starts only say it exists (its key is not stored and cannot be shown again).
async fn announce_demo_app(store: &dyn AppStore, addr: SocketAddr) -> anyhow::Result<()> {
    let slug = Slug::parse(DEMO_SLUG).map_err(anyhow::Error::msg)?;
    if let Some(app) = store.app_by_slug(&slug).await? {
        println!(
            "demo App {} exists; its key was printed when it was created \
             (new one: pipes apps keys create --app {DEMO_SLUG})",
            app.id
        );
        return Ok(());
    }
    let created = admin::create_app(store, SystemClock.now(), DEMO_SLUG, "Demo App", &[]).await?;
    let key = created.key.expose();
    println!("created demo App {} (slug {DEMO_SLUG})", created.app.id);
    println!("app key: {key}  (shown once: store it now)");
    println!("try it:");
    println!(
        "  curl -s -X POST http://{addr}/v1/apps/token -H 'Authorization: Bearer {key}' \
         -H 'Content-Type: application/json' -d '{{\"redirectUrl\": \"http://localhost:8080/done\"}}'"
    );
    Ok(())
}

/// A fresh login link to the demo App's dashboard, at every start (they work once).
async fn announce_login_link(platform: &Platform) -> anyhow::Result<()> {
    let slug = Slug::parse(DEMO_SLUG).map_err(anyhow::Error::msg)?;
    if let Some(app) = platform.store.app_by_slug(&slug).await? {
        let link = pipes_core::usecases::dashboard::mint_login_link(
            &*platform.store,
            &*platform.clock,
            &platform.public_base_url,
            &app,
            None,
        )
        .await?;
        println!("dashboard: {}  (single use, 15 minutes)", link.url);
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

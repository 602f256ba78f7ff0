//! `pipes apps ...`: create and list Apps, and rotate their keys. New keys are printed
//! once, here, and never again.

use clap::{Args, Subcommand};
use pipes_core::usecases::dashboard::mint_login_link;
use pipes_core::usecases::{PublicBaseUrl, admin};
use pipes_core::{Clock, Store, SystemClock};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Create an App and its first app key.
    Create {
        /// Public name in hosted-page URLs (a-z, 0-9, '-').
        #[arg(long)]
        slug: String,
        /// Display name shown to number owners.
        #[arg(long)]
        name: String,
        /// An allowed origin for redirect URLs (repeatable); none means any.
        #[arg(long = "redirect-origin")]
        redirect_origins: Vec<String>,
        /// Print exactly one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Change an App: its name, allowed redirect origins, or rate limit.
    Update {
        #[command(flatten)]
        app: AppRef,
        #[arg(long)]
        name: Option<String>,
        /// Replaces the allowed redirect origins (repeatable).
        #[arg(long = "redirect-origin", conflicts_with = "any_redirect_origin")]
        redirect_origins: Vec<String>,
        /// Allows any redirect origin again.
        #[arg(long)]
        any_redirect_origin: bool,
        /// Requests per second on the app-key routes, on average (default 20).
        #[arg(long)]
        rate: Option<u32>,
        /// Requests admitted at once (default 100; at least the rate).
        #[arg(long)]
        burst: Option<u32>,
        /// Marks the App for development: its links may redirect to plain http://localhost.
        #[arg(long)]
        development: Option<bool>,
        #[arg(long)]
        json: bool,
    },
    /// List Apps.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create, list or revoke an App's keys (rotation: create the new, deploy, revoke the old).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The App's webhook endpoint: set (the secret is printed once), show, rotate the
    /// secret, send a test ping, remove, and list recent events.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Print a single-use login link to the App's dashboard (valid 15 minutes).
    LoginLink {
        #[command(flatten)]
        app: AppRef,
        /// Base URL the dashboard is served from (the deployed API, or `pipes dev`).
        #[arg(long, env = "PUBLIC_BASE_URL", default_value = "http://127.0.0.1:3000")]
        public_base_url: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct AppRef {
    /// The App's id (app_...) or slug.
    #[arg(long)]
    app: String,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create another key for the App.
    Create {
        #[command(flatten)]
        app: AppRef,
        #[arg(long)]
        json: bool,
    },
    /// List the App's keys (ids and dates; the keys themselves are not stored).
    List {
        #[command(flatten)]
        app: AppRef,
        #[arg(long)]
        json: bool,
    },
    /// Revoke one key: requests with it get 401 at once.
    Revoke {
        #[command(flatten)]
        app: AppRef,
        #[arg(long)]
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register (or move) the endpoint; a new endpoint's secret is printed once.
    Set {
        #[command(flatten)]
        app: AppRef,
        #[arg(long)]
        url: String,
        #[arg(long)]
        json: bool,
    },
    Show {
        #[command(flatten)]
        app: AppRef,
        #[arg(long)]
        json: bool,
    },
    /// A new secret (printed once); the old one keeps signing for 24 hours.
    RotateSecret {
        #[command(flatten)]
        app: AppRef,
        #[arg(long)]
        json: bool,
    },
    /// Queue a `ping` event to the endpoint.
    Test {
        #[command(flatten)]
        app: AppRef,
    },
    Remove {
        #[command(flatten)]
        app: AppRef,
    },
    /// The App's recent events, newest first, with their delivery status.
    Events {
        #[command(flatten)]
        app: AppRef,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

/// `pipes apps webhook ...` (needs the envelope and the events queue, not only the store).
pub async fn run_webhook(
    cmd: WebhookCommand,
    store: &dyn Store,
    queue: &dyn pipes_core::queue::JobQueue,
    envelope: &pipes_core::crypto::Envelope,
    local: bool,
) -> anyhow::Result<()> {
    use pipes_core::usecases::events::{self as ev, EndpointDeps};
    use secrecy::ExposeSecret;
    let deps = EndpointDeps {
        store,
        queue,
        envelope,
        clock: &SystemClock,
        // The embedded store is the developer's machine: plain http to localhost is fine.
        allow_local_http: local,
    };
    let show = |e: &pipes_core::events::Endpoint, secret: Option<&str>, json: bool| {
        if json {
            print_json(&json!({
                "url": e.url.as_str(), "createdAt": e.created_at.to_rfc3339(),
                "failingSince": e.failing_since.map(|t| t.to_rfc3339()), "secret": secret,
            }));
        } else {
            println!("url:     {}", e.url.as_str());
            if let Some(t) = e.failing_since {
                println!(
                    "failing: since {} (an event failed every retry)",
                    t.to_rfc3339()
                );
            }
            if let Some(s) = secret {
                println!("secret:  {s}  (shown once: store it now)");
            }
        }
    };
    match cmd {
        WebhookCommand::Set { app, url, json } => {
            let app = admin::find_app(store, &app.app).await?;
            let (e, secret) = ev::put_endpoint(deps, &app.id, &url).await?;
            show(&e, secret.as_ref().map(|s| s.expose_secret()), json);
        }
        WebhookCommand::Show { app, json } => {
            let app = admin::find_app(store, &app.app).await?;
            let e = store
                .endpoint(&app.id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the App has no webhook endpoint"))?;
            show(&e, None, json);
        }
        WebhookCommand::RotateSecret { app, json } => {
            let app = admin::find_app(store, &app.app).await?;
            let (e, secret) = ev::rotate_secret(deps, &app.id).await?;
            show(&e, Some(secret.expose_secret()), json);
        }
        WebhookCommand::Test { app } => {
            let app = admin::find_app(store, &app.app).await?;
            let e = ev::send_ping(deps, &app.id).await?;
            println!("queued {}", e.id);
        }
        WebhookCommand::Remove { app } => {
            let app = admin::find_app(store, &app.app).await?;
            if !store.delete_endpoint(&app.id).await? {
                anyhow::bail!("the App has no webhook endpoint");
            }
            println!("removed");
        }
        WebhookCommand::Events { app, limit, json } => {
            let app = admin::find_app(store, &app.app).await?;
            let page = store
                .list_events(&app.id, None, limit.clamp(1, 100), None, SystemClock.now())
                .await?;
            if json {
                let list: Vec<_> = page
                    .events
                    .iter()
                    .map(|e| ev::event_view(e, true))
                    .collect();
                print_json(&json!({ "events": list }));
            } else {
                for e in page.events {
                    println!(
                        "{}  {}  {:<22}  {} ({} attempts)",
                        e.id,
                        e.created_at.to_rfc3339(),
                        e.kind.as_str(),
                        e.delivery.as_str(),
                        e.attempts.len()
                    );
                }
            }
        }
    }
    Ok(())
}

/// `pipes meta-changes`: Meta's webhook changes that named nothing of ours (kept for the
/// operator), newest first.
pub async fn unmatched_changes(store: &dyn Store, limit: usize, json: bool) -> anyhow::Result<()> {
    let kept = store.unmatched_changes(limit.clamp(1, 1000)).await?;
    if json {
        print_json(&serde_json::to_value(&kept)?);
    } else {
        for c in kept {
            println!(
                "{}  {}  {}  entry {}  {}",
                c.change.id,
                c.change.received_at.to_rfc3339(),
                c.change.field,
                c.change.entry_id,
                c.note.unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

pub async fn run(cmd: AppsCommand, store: &dyn Store) -> anyhow::Result<()> {
    let now = SystemClock.now();
    match cmd {
        AppsCommand::Create {
            slug,
            name,
            redirect_origins,
            json,
        } => {
            let created = admin::create_app(store, now, &slug, &name, &redirect_origins).await?;
            let app = &created.app;
            if json {
                print_json(&json!({
                    "appId": app.id, "slug": app.slug, "name": app.name,
                    "appKey": created.key.expose(),
                }));
            } else {
                println!(
                    "appId:  {}\nslug:   {}\nname:   {}",
                    app.id, app.slug, app.name
                );
                println!("keyId:  {}", created.key_id);
                println!(
                    "appKey: {}  (shown once: store it now)",
                    created.key.expose()
                );
            }
        }
        AppsCommand::Update {
            app,
            name,
            redirect_origins,
            any_redirect_origin,
            rate,
            burst,
            development,
            json,
        } => {
            let app = admin::find_app(store, &app.app).await?;
            let origins = if any_redirect_origin {
                Some(Vec::new())
            } else {
                (!redirect_origins.is_empty()).then_some(redirect_origins)
            };
            let change = admin::AppUpdate {
                name,
                redirect_origins: origins,
                rate_per_second: rate,
                rate_burst: burst,
                development,
            };
            let updated = admin::update_app(store, &app, change).await?;
            if json {
                print_json(&serde_json::to_value(&updated)?);
            } else {
                let origins: Vec<&str> =
                    updated.allowed_origins.iter().map(|o| o.as_str()).collect();
                println!(
                    "{}  {}  {:?}  origins: [{}]  rate: {}/s, burst {}",
                    updated.id,
                    updated.slug,
                    updated.name.as_str(),
                    origins.join(", "),
                    updated.rate_limit.per_second,
                    updated.rate_limit.burst
                );
            }
        }
        AppsCommand::List { json } => {
            let apps = store.list_apps().await?;
            if json {
                print_json(&serde_json::to_value(&apps)?);
            } else {
                for a in apps {
                    let origins: Vec<&str> = a.allowed_origins.iter().map(|o| o.as_str()).collect();
                    println!(
                        "{}  {}  {:?}  origins: [{}]",
                        a.id,
                        a.slug,
                        a.name.as_str(),
                        origins.join(", ")
                    );
                }
            }
        }
        AppsCommand::Keys(KeysCommand::Create { app, json }) => {
            let app = admin::find_app(store, &app.app).await?;
            let created = admin::create_key(store, now, &app).await?;
            if json {
                print_json(&json!({
                    "appId": app.id, "keyId": created.key_id, "appKey": created.key.expose(),
                }));
            } else {
                println!("keyId:  {}", created.key_id);
                println!(
                    "appKey: {}  (shown once: store it now)",
                    created.key.expose()
                );
            }
        }
        AppsCommand::Keys(KeysCommand::List { app, json }) => {
            let app = admin::find_app(store, &app.app).await?;
            let keys = store.list_keys(&app.id).await?;
            if json {
                print_json(&serde_json::to_value(&keys)?);
            } else {
                for k in keys {
                    let state = k
                        .revoked_at
                        .map_or("live".to_owned(), |t| format!("revoked {}", t.to_rfc3339()));
                    println!(
                        "{}  created {}  {}",
                        k.key_id,
                        k.created_at.to_rfc3339(),
                        state
                    );
                }
            }
        }
        AppsCommand::LoginLink {
            app,
            public_base_url,
            json,
        } => {
            let app = admin::find_app(store, &app.app).await?;
            let base = PublicBaseUrl::parse(&public_base_url).map_err(anyhow::Error::msg)?;
            let link = mint_login_link(store, &SystemClock, &base, &app, None).await?;
            if json {
                print_json(&json!({
                    "url": link.url.as_str(), "expiresAt": link.expires_at.to_rfc3339(),
                }));
            } else {
                println!(
                    "{}  (single use, valid until {})",
                    link.url,
                    link.expires_at.to_rfc3339()
                );
            }
        }
        AppsCommand::Webhook(_) => anyhow::bail!("webhook commands run through run_webhook"),
        AppsCommand::Keys(KeysCommand::Revoke { app, key_id }) => {
            let app = admin::find_app(store, &app.app).await?;
            admin::revoke_key(store, now, &app, &key_id).await?;
            println!("revoked {key_id}");
        }
    }
    Ok(())
}

//! The composition root: the one place that builds the platform's parts, for AWS (each
//! Lambda's cold start) and for local use (`pipes dev`, `pipes sweep`, the admin CLI),
//! and the one assembly step the test harness shares with both. Adding a part (a rate
//! limiter, an event publisher) means adding it to `Platform` and to `assemble`.

use std::path::Path;
use std::sync::Arc;

use pipes_core::crypto::{Envelope, KeyWrapper};
use pipes_core::meta::MetaGraph;
use pipes_core::queue::JobQueue;
use pipes_core::usecases::PublicBaseUrl;
use pipes_core::usecases::health::HealthPolicy;
use pipes_core::{Clock, MetaApp, Platform, Store, SystemClock};

use crate::config::{self, MetaConfig};
use crate::lazy_client::LazyClient;
use crate::{DynamoStore, EmbeddedStore, local_key};

/// Where records, jobs and data keys live.
#[derive(Debug, Clone)]
pub struct Storage {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn JobQueue>,
    pub events_queue: Arc<dyn JobQueue>,
    pub keys: Arc<dyn KeyWrapper>,
}

impl Storage {
    /// DynamoDB, SQS (the setup queue and the events queue) and KMS (no I/O until used;
    /// the SQS and KMS clients are built on first use).
    pub fn aws(
        conf: &aws_config::SdkConfig,
        table: &str,
        queue_url: &str,
        events_queue_url: &str,
        key_id: &str,
    ) -> Self {
        let sqs = LazyClient::new(conf, aws_sdk_sqs::Client::new);
        Self {
            store: Arc::new(DynamoStore::from_conf(conf, table)),
            queue: Arc::new(crate::sqs::SqsQueue::new(sqs.clone(), queue_url)),
            events_queue: Arc::new(crate::sqs::SqsQueue::new(sqs, events_queue_url)),
            keys: Arc::new(crate::kms::KmsWrapper::new(
                LazyClient::new(conf, aws_sdk_kms::Client::new),
                key_id,
            )),
        }
    }

    /// The embedded store in `data_dir` (which is also the job table) and its master
    /// key file; the store is returned too, for the local worker's loop.
    pub fn local(data_dir: &Path) -> anyhow::Result<(Self, EmbeddedStore)> {
        let store = EmbeddedStore::open(data_dir)?;
        let master = local_key::load_or_create(data_dir)?;
        Ok((
            Self {
                store: Arc::new(store.clone()),
                queue: Arc::new(store.clone()),
                events_queue: Arc::new(crate::embedded::EventLane(store.clone())),
                keys: Arc::new(master),
            },
            store,
        ))
    }
}

/// Builds the platform from its storage and Meta's side.
pub fn assemble(
    storage: Storage,
    meta: &MetaConfig,
    clock: Arc<dyn Clock>,
    public_base_url: PublicBaseUrl,
    sandbox: bool,
) -> anyhow::Result<Platform> {
    let graph: Arc<dyn MetaGraph> = Arc::new(meta.graph_client()?);
    Ok(Platform {
        store: storage.store,
        queue: storage.queue,
        events_queue: storage.events_queue,
        graph,
        envelope: Envelope::new(storage.keys),
        clock,
        policy: HealthPolicy::default(),
        public_base_url,
        meta: MetaApp {
            app_id: meta.app_id.clone(),
            config_id: meta.config_id.clone(),
            graph_version: meta.graph_version.clone(),
            sandbox,
        },
        sender: Arc::new(crate::event_sender::HttpEventSender::new(false)),
        webhook_verify_token: config::optional("META_WEBHOOK_VERIFY_TOKEN").map(Into::into),
        allow_local_endpoints: false,
        limits: pipes_core::usecases::limits::Limits::default(),
    })
}

/// A Lambda's platform, from its environment (`TABLE_NAME`, `PUBLIC_BASE_URL`,
/// `KMS_KEY_ID`, `SETUP_QUEUE_URL`, `EVENTS_QUEUE_URL`, `META_WEBHOOK_VERIFY_TOKEN`, `META_APP_ID`, `META_CONFIG_ID`,
/// `META_APP_SECRET_PARAMETER`, ...). At cold start this reads the environment and builds
/// clients; it calls nothing (the Meta app secret is read on the first Graph call, and
/// the Graph client's HTTP client, with its TLS roots, is built then too).
pub async fn aws() -> anyhow::Result<Platform> {
    let conf = config::lambda_aws().await;
    let storage = Storage::aws(
        &conf,
        &config::required("TABLE_NAME")?,
        &config::required("SETUP_QUEUE_URL")?,
        &config::required("EVENTS_QUEUE_URL")?,
        &config::required("KMS_KEY_ID")?,
    );
    let meta = MetaConfig::from_env_with_ssm(&conf)?;
    assemble(
        storage,
        &meta,
        Arc::new(SystemClock),
        config::public_base_url()?,
        false,
    )
}

/// The local platform over the data dir: returns it with the embedded store (the job
/// table the local worker polls).
pub fn local(
    data_dir: &Path,
    meta: &MetaConfig,
    clock: Arc<dyn Clock>,
    public_base_url: PublicBaseUrl,
    sandbox: bool,
) -> anyhow::Result<(Platform, EmbeddedStore)> {
    let (storage, store) = Storage::local(data_dir)?;
    let mut platform = assemble(storage, meta, clock, public_base_url, sandbox)?;
    // On the developer's machine, partner endpoints may be plain http on localhost.
    platform.sender = Arc::new(crate::event_sender::HttpEventSender::new(true));
    platform.allow_local_endpoints = true;
    Ok((platform, store))
}

/// What the admin commands need to manage an App's webhook endpoint: the store, the
/// events queue (a test ping) and the envelope (its secret is sealed like every
/// secret). AWS: `KMS_KEY_ID` and `EVENTS_QUEUE_URL` from the environment.
pub async fn admin_endpoints(
    table: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn JobQueue>, Envelope)> {
    Ok(match table {
        Some(table) => {
            let conf = config::aws().await;
            let storage = Storage::aws(
                &conf,
                table,
                &config::optional("SETUP_QUEUE_URL").unwrap_or_default(),
                &config::required("EVENTS_QUEUE_URL")?,
                &config::required("KMS_KEY_ID")?,
            );
            (
                storage.store,
                storage.events_queue,
                Envelope::new(storage.keys),
            )
        }
        None => {
            let (storage, _) = Storage::local(data_dir)?;
            (
                storage.store,
                storage.events_queue,
                Envelope::new(storage.keys),
            )
        }
    })
}

/// The store alone, for the admin commands: DynamoDB when `table` is given (standard
/// AWS environment), else the embedded store in `data_dir`.
pub async fn admin_store(table: Option<&str>, data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match table {
        Some(table) => Arc::new(DynamoStore::from_conf(&config::aws().await, table)),
        None => Arc::new(EmbeddedStore::open(data_dir)?),
    })
}

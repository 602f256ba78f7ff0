//! Start-up configuration: read once, typed, and loud when something is missing.

use std::env;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {message}")]
    Invalid { name: &'static str, message: String },
}

/// A required environment variable; empty counts as missing.
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    match env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Missing(name)),
    }
}

/// A required variable parsed with `parse`; the message names the variable.
pub fn parsed<T>(
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    parse(&required(name)?).map_err(|message| ConfigError::Invalid { name, message })
}

/// The AWS SDK configuration from the standard environment (`AWS_REGION`,
/// `AWS_ENDPOINT_URL`, credentials chain), which is how tests point at the emulator.
pub async fn aws() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}

/// `PUBLIC_BASE_URL`: where the hosted pages are served from.
pub fn public_base_url() -> Result<pipes_core::usecases::PublicBaseUrl, ConfigError> {
    parsed(
        "PUBLIC_BASE_URL",
        pipes_core::usecases::PublicBaseUrl::parse,
    )
}

/// The DynamoDB store named by `TABLE_NAME`.
pub fn dynamo_store(conf: &aws_config::SdkConfig) -> Result<crate::DynamoStore, ConfigError> {
    Ok(crate::DynamoStore::from_conf(conf, required("TABLE_NAME")?))
}

/// The KMS key named by `KMS_KEY_ID` (id, ARN or alias) as the envelope's key wrapper.
pub fn kms_wrapper(conf: &aws_config::SdkConfig) -> Result<crate::kms::KmsWrapper, ConfigError> {
    Ok(crate::kms::KmsWrapper::new(
        aws_sdk_kms::Client::new(conf),
        required("KMS_KEY_ID")?,
    ))
}

/// The setup queue named by `SETUP_QUEUE_URL`.
pub fn setup_queue(conf: &aws_config::SdkConfig) -> Result<crate::sqs::SqsQueue, ConfigError> {
    Ok(crate::sqs::SqsQueue::new(
        aws_sdk_sqs::Client::new(conf),
        required("SETUP_QUEUE_URL")?,
    ))
}

/// Meta's credentials and where to reach the Graph API.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    pub app_id: String,
    pub app_secret: secrecy::SecretString,
    pub config_id: String,
    pub graph_base_url: url::Url,
    pub graph_version: String,
}

fn graph_location() -> Result<(url::Url, String), ConfigError> {
    let base = optional("META_GRAPH_BASE_URL")
        .unwrap_or_else(|| crate::graph::GraphConfig::DEFAULT_BASE_URL.to_owned());
    let base = url::Url::parse(&base).map_err(|e| ConfigError::Invalid {
        name: "META_GRAPH_BASE_URL",
        message: e.to_string(),
    })?;
    let version = optional("META_GRAPH_VERSION")
        .unwrap_or_else(|| crate::graph::GraphConfig::DEFAULT_VERSION.to_owned());
    if !version.starts_with('v') || version.len() > 8 {
        return Err(ConfigError::Invalid {
            name: "META_GRAPH_VERSION",
            message: "expected a version like v25.0".into(),
        });
    }
    Ok((base, version))
}

/// An optional variable; empty counts as unset.
pub fn optional(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl MetaConfig {
    /// Live Meta configuration when `META_APP_ID`, `META_APP_SECRET` and `META_CONFIG_ID`
    /// are all set; `None` when none is (sandbox mode); an error when only some are.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let names = ["META_APP_ID", "META_APP_SECRET", "META_CONFIG_ID"];
        let set: Vec<Option<String>> = names.iter().map(|n| optional(n)).collect();
        match set.as_slice() {
            [None, None, None] => Ok(None),
            [Some(app_id), Some(secret), Some(config_id)] => {
                let (graph_base_url, graph_version) = graph_location()?;
                Ok(Some(Self {
                    app_id: app_id.clone(),
                    app_secret: secret.clone().into(),
                    config_id: config_id.clone(),
                    graph_base_url,
                    graph_version,
                }))
            }
            _ => {
                let missing = names
                    .iter()
                    .zip(&set)
                    .find(|(_, v)| v.is_none())
                    .map_or("META_APP_ID", |(n, _)| *n);
                Err(ConfigError::Missing(missing))
            }
        }
    }

    /// For Lambda: the app id and config id from the environment, the secret from an
    /// SSM SecureString parameter named by `META_APP_SECRET_PARAMETER` (read once, at
    /// cold start), so the secret never sits in the template or the function's config.
    pub async fn from_env_and_ssm(conf: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let app_id = required("META_APP_ID")?;
        let config_id = required("META_CONFIG_ID")?;
        let parameter = required("META_APP_SECRET_PARAMETER")?;
        let out = aws_sdk_ssm::Client::new(conf)
            .get_parameter()
            .name(&parameter)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| ConfigError::Invalid {
                name: "META_APP_SECRET_PARAMETER",
                message: format!(
                    "could not read the parameter: {}",
                    aws_sdk_ssm::error::DisplayErrorContext(&e)
                ),
            })?;
        let secret = out
            .parameter
            .and_then(|p| p.value)
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::Invalid {
                name: "META_APP_SECRET_PARAMETER",
                message: "the parameter has no value".into(),
            })?;
        let (graph_base_url, graph_version) = graph_location()?;
        Ok(Self {
            app_id,
            app_secret: secret.into(),
            config_id,
            graph_base_url,
            graph_version,
        })
    }

    pub fn graph_client(&self) -> Result<crate::graph::GraphClient, pipes_core::meta::GraphError> {
        let mut cfg = crate::graph::GraphConfig::new(
            self.graph_base_url.clone(),
            self.app_id.clone(),
            self.app_secret.clone(),
        );
        cfg.version.clone_from(&self.graph_version);
        crate::graph::GraphClient::new(cfg)
    }
}

/// Everything a deployed function talks to, built once at cold start from the
/// environment: the table, the Graph client (Meta app secret from SSM), the envelope
/// over KMS, and the job queue.
#[derive(Debug)]
pub struct AwsPlatform {
    pub meta: MetaConfig,
    pub store: crate::DynamoStore,
    pub graph: crate::graph::GraphClient,
    /// One envelope for the container's life: warm invocations reuse cached data keys.
    pub envelope: pipes_core::crypto::Envelope,
    pub queue: crate::sqs::SqsQueue,
}

impl AwsPlatform {
    pub async fn from_env() -> anyhow::Result<Self> {
        let aws = aws().await;
        let meta = MetaConfig::from_env_and_ssm(&aws).await?;
        Ok(Self {
            store: dynamo_store(&aws)?,
            graph: meta.graph_client()?,
            envelope: pipes_core::crypto::Envelope::new(std::sync::Arc::new(kms_wrapper(&aws)?)),
            queue: setup_queue(&aws)?,
            meta,
        })
    }

    /// What the workers run with.
    pub fn worker_deps<'a>(
        &'a self,
        clock: &'a dyn pipes_core::Clock,
        policy: &'a pipes_core::usecases::health::HealthPolicy,
    ) -> pipes_core::usecases::setup::WorkerDeps<'a> {
        pipes_core::usecases::setup::WorkerDeps {
            store: &self.store,
            graph: &self.graph,
            envelope: &self.envelope,
            queue: &self.queue,
            clock,
            policy,
        }
    }
}

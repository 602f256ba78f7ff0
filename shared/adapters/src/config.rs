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
/// `AWS_ENDPOINT_URL`, the whole credentials chain: profiles, SSO, ...), for operators'
/// commands and tests.
pub async fn aws() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}

/// A Lambda's AWS SDK configuration: region and credentials from the environment
/// variables Lambda sets (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), and `AWS_ENDPOINT_URL` when set. Skipping the rest of the
/// default chains (profile files, IMDS, SSO) takes about 3 ms off every cold start.
pub async fn lambda_aws() -> aws_config::SdkConfig {
    lambda_aws_at(optional("AWS_ENDPOINT_URL")).await
}

/// [`lambda_aws`] with the endpoint given (tests point it at a dead port). Requests fail
/// fast when AWS does: 1 s to connect, 3 s per attempt, 3 attempts 50 ms apart at
/// first (the SDK's default waits about a second before its first retry, which turned a
/// store outage into 5-second answers).
pub async fn lambda_aws_at(endpoint: Option<String>) -> aws_config::SdkConfig {
    use aws_config::environment::{
        EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
    };
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(EnvironmentVariableRegionProvider::new())
        .credentials_provider(EnvironmentVariableCredentialsProvider::new())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(std::time::Duration::from_millis(50)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(1))
                .operation_attempt_timeout(std::time::Duration::from_secs(3))
                .build(),
        );
    match aws_https_client() {
        Ok(client) => loader = loader.http_client(client),
        // Never expected (the roots are compiled in and tested); the SDK's own client
        // (the system's roots) still works.
        Err(e) => tracing::warn!(error = %e, "AWS HTTP client with compiled-in roots"),
    }
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The roots AWS service endpoints chain to, compiled in (see the file's header).
pub const AWS_ROOTS_PEM: &[u8] = include_bytes!("aws-roots.pem");

/// The AWS SDK's HTTPS client (hyper, rustls with aws-lc) trusting only
/// [`AWS_ROOTS_PEM`]: reading and parsing the system's roots was most of a cold start.
pub fn aws_https_client() -> Result<aws_sdk_dynamodb::config::SharedHttpClient, String> {
    use aws_smithy_http_client::tls;
    let context = tls::TlsContext::builder()
        .with_trust_store(
            tls::TrustStore::empty()
                .with_native_roots(false)
                .with_pem_certificate(AWS_ROOTS_PEM),
        )
        .build()
        .map_err(|e| e.to_string())?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https())
}

/// `PUBLIC_BASE_URL`: where the hosted pages are served from.
pub fn public_base_url() -> Result<pipes_core::usecases::PublicBaseUrl, ConfigError> {
    parsed(
        "PUBLIC_BASE_URL",
        pipes_core::usecases::PublicBaseUrl::parse,
    )
}

/// Meta's credentials and where to reach the Graph API.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    pub app_id: String,
    pub app_secret: crate::graph::AppSecret,
    pub config_id: String,
    pub graph_base_url: url::Url,
    pub graph_version: String,
    /// The Graph client's total timeout per call and first retry backoff.
    pub tuning: GraphTuning,
}

/// How patient the Graph client is (the tests use shorter waits than production).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphTuning {
    pub timeout: std::time::Duration,
    pub backoff: std::time::Duration,
}

impl Default for GraphTuning {
    fn default() -> Self {
        Self {
            timeout: std::time::Duration::from_secs(10),
            backoff: std::time::Duration::from_millis(200),
        }
    }
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
                    app_secret: crate::graph::AppSecret::Known(secret.clone().into()),
                    config_id: config_id.clone(),
                    graph_base_url,
                    graph_version,
                    tuning: GraphTuning::default(),
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

    /// For Lambda: the app id and config id from the environment, the secret from the SSM
    /// SecureString parameter named by `META_APP_SECRET_PARAMETER`, read on first use
    /// (not at cold start), so the secret never sits in the template or the
    /// function's configuration.
    pub fn from_env_with_ssm(conf: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let app_id = required("META_APP_ID")?;
        let config_id = required("META_CONFIG_ID")?;
        let parameter = required("META_APP_SECRET_PARAMETER")?;
        let (graph_base_url, graph_version) = graph_location()?;
        Ok(Self {
            app_id,
            app_secret: crate::graph::AppSecret::from_ssm(
                crate::lazy_client::LazyClient::new(conf, aws_sdk_ssm::Client::new),
                parameter,
            ),
            config_id,
            graph_base_url,
            graph_version,
            tuning: GraphTuning::default(),
        })
    }

    pub fn graph_client(&self) -> Result<crate::graph::GraphClient, pipes_core::meta::GraphError> {
        let mut cfg = crate::graph::GraphConfig::with_secret(
            self.graph_base_url.clone(),
            self.app_id.clone(),
            self.app_secret.clone(),
        );
        cfg.version.clone_from(&self.graph_version);
        cfg.timeout = self.tuning.timeout;
        cfg.backoff = self.tuning.backoff;
        crate::graph::GraphClient::new(cfg)
    }
}

/// A positive whole number from `name`.
pub fn positive(name: &'static str) -> Result<usize, ConfigError> {
    parsed(name, |s| {
        s.parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| "expected a positive integer".to_owned())
    })
}

/// The health sweep's settings: `SWEEP_CONCURRENCY`, `SWEEP_MAX_INLINE`.
pub fn sweep_config() -> Result<pipes_core::usecases::sweep::SweepConfig, ConfigError> {
    Ok(pipes_core::usecases::sweep::SweepConfig {
        concurrency: positive("SWEEP_CONCURRENCY")?,
        max_inline: positive("SWEEP_MAX_INLINE")?,
        ..pipes_core::usecases::sweep::SweepConfig::default()
    })
}

/// `SETUP_MAX_RECEIVE_COUNT`: the setup queue's maxReceiveCount.
pub fn max_receive_count() -> Result<u32, ConfigError> {
    parsed("SETUP_MAX_RECEIVE_COUNT", |s| {
        s.parse::<u32>().map_err(|e| e.to_string())
    })
}

/// The roots an HTTPS client for Meta's Graph API or a partner's endpoint trusts:
/// Mozilla's root programme as compiled in (`webpki-root-certs`), not the system's.
/// Reading the system's (every file under `/etc/ssl/certs`: some 1,300 system calls)
/// took 2.5-4.6 ms per client on this machine, and up to 15 ms on a sweep's first
/// calls, where it held back every check; these take 0.1-0.3 ms.
pub fn web_roots() -> Vec<reqwest::Certificate> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        // With rustls, `from_der` only keeps the bytes: a root that does not parse
        // fails the client's build, which reports it.
        .filter_map(|der| reqwest::Certificate::from_der(der).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_web_roots_build_a_client() {
        // A root rustls cannot parse fails the whole build below.
        let roots = web_roots();
        assert!(roots.len() > 100);
        assert!(
            reqwest::Client::builder()
                .tls_certs_only(roots)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn the_compiled_in_aws_roots_build_a_client() {
        let pem = String::from_utf8_lossy(AWS_ROOTS_PEM);
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        assert!(aws_https_client().is_ok());
    }
}

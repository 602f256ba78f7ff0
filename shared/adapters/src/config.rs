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

/// The DynamoDB store named by `TABLE_NAME`, on the standard AWS environment.
pub async fn dynamo_store() -> Result<crate::DynamoStore, ConfigError> {
    let table = required("TABLE_NAME")?;
    Ok(crate::DynamoStore::from_conf(&aws().await, table))
}

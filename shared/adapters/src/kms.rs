//! The KMS `KeyWrapper`: `GenerateDataKey` (AES_256) and `Decrypt`, both under the
//! encryption context, so a data key only unwraps for the App it was made for.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use pipes_core::crypto::{CryptoError, DataKey, KeyBytes, KeyContext, KeyWrapper};
use secrecy::SecretBox;

use crate::lazy_client::LazyClient;

#[derive(Debug, Clone)]
pub struct KmsWrapper {
    client: LazyClient<Client>,
    key_id: String,
}

impl KmsWrapper {
    /// `key_id`: the key's id, ARN or alias (`alias/...`).
    pub fn new(client: impl Into<LazyClient<Client>>, key_id: impl Into<String>) -> Self {
        Self {
            client: client.into(),
            key_id: key_id.into(),
        }
    }
}

fn context(c: &KeyContext) -> HashMap<String, String> {
    c.pairs().clone().into_iter().collect()
}

/// KMS's refusals (bad ciphertext, wrong context or key, no access) versus outages.
fn kms_error<
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
>(
    e: SdkError<E, R>,
) -> CryptoError {
    match e.as_service_error().and_then(ProvideErrorMetadata::code) {
        Some("InvalidCiphertextException") => CryptoError::Tampered,
        Some(
            code @ ("AccessDeniedException"
            | "IncorrectKeyException"
            | "NotFoundException"
            | "DisabledException"
            | "KMSInvalidStateException"),
        ) => CryptoError::Refused(code.to_owned()),
        _ => CryptoError::Unavailable(Box::new(e)),
    }
}

fn key_bytes(blob: Option<Blob>) -> Result<KeyBytes, CryptoError> {
    let bytes: [u8; 32] = blob
        .ok_or(CryptoError::Malformed)?
        .into_inner()
        .try_into()
        .map_err(|_| CryptoError::Malformed)?;
    Ok(SecretBox::new(Box::new(bytes)))
}

#[async_trait]
impl KeyWrapper for KmsWrapper {
    async fn generate_data_key(&self, ctx: &KeyContext) -> Result<DataKey, CryptoError> {
        let out = self
            .client
            .get()
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context(ctx)))
            .send()
            .await
            .map_err(kms_error)?;
        Ok(DataKey {
            wrapped: out
                .ciphertext_blob
                .ok_or(CryptoError::Malformed)?
                .into_inner(),
            key_id: out.key_id.ok_or(CryptoError::Malformed)?,
            plaintext: key_bytes(out.plaintext)?,
        })
    }

    async fn unwrap_data_key(
        &self,
        key_id: &str,
        wrapped: &[u8],
        ctx: &KeyContext,
    ) -> Result<KeyBytes, CryptoError> {
        let out = self
            .client
            .get()
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(context(ctx)))
            .send()
            .await
            .map_err(kms_error)?;
        key_bytes(out.plaintext)
    }
}

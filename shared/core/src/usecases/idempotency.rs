//! Idempotency keys on the App's non-idempotent POSTs (`Idempotency-Key` header): the
//! same key with the same request within 24 hours gets the same response (the same
//! `sessionId` and `token` for `POST /v1/apps/token`), a different request 422, a
//! request while the first is running 409. Responses are kept sealed (they may carry a
//! token or a secret shown once); a run that failed on our side (5xx) frees the key.

use chrono::Duration;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::crypto::{CryptoError, Envelope};
use crate::ids::{AppId, SecretHash};
use crate::ports::{IdemClaim, IdempotencyStore, StoreError};

/// How long a key is remembered.
pub const KEY_TTL: Duration = Duration::hours(24);
/// How long a run holds its key (a run that dies frees it then).
pub const RUN_LEASE: Duration = Duration::seconds(60);

/// Everything the idempotency layer talks to.
#[derive(Debug, Clone, Copy)]
pub struct IdemDeps<'a> {
    pub store: &'a dyn IdempotencyStore,
    pub envelope: &'a Envelope,
    pub clock: &'a dyn Clock,
}

#[derive(Debug, thiserror::Error)]
pub enum IdemError {
    #[error("Idempotency-Key: {0}")]
    InvalidKey(&'static str),
    #[error("a request with this Idempotency-Key is still running")]
    InUse,
    #[error("this Idempotency-Key was used with a different request")]
    Reused,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored response could not be opened")]
    Crypto(#[from] CryptoError),
}

/// A key as a partner may send it: 1 to 255 visible ASCII characters.
pub fn key_hash(key: &str) -> Result<SecretHash, IdemError> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(IdemError::InvalidKey(
            "must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(SecretHash::of(key))
}

/// The request's fingerprint: method, path and query, and body.
pub fn fingerprint(method: &str, path_and_query: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), path_and_query.as_bytes(), body] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// What to do with a request carrying a key.
#[derive(Debug)]
pub enum Start {
    /// Run it, then [`finish`] (or [`release`] on a 5xx).
    Run,
    /// Answer with this stored response.
    Replay { status: u16, body: Vec<u8> },
}

pub async fn start(
    deps: IdemDeps<'_>,
    app: &AppId,
    key: &SecretHash,
    request_hash: &str,
) -> Result<Start, IdemError> {
    let now = deps.clock.now();
    match deps
        .store
        .claim_idempotency(app, key, request_hash, now, now + RUN_LEASE, now + KEY_TTL)
        .await?
    {
        IdemClaim::Run => Ok(Start::Run),
        IdemClaim::InProgress => Err(IdemError::InUse),
        IdemClaim::Reused => Err(IdemError::Reused),
        IdemClaim::Replay { status, body } => {
            let opened = deps.envelope.open_response(app, &body).await?;
            Ok(Start::Replay {
                status,
                body: opened.expose_secret().clone(),
            })
        }
    }
}

/// Keeps a run's response for the key's retries.
pub async fn finish(
    deps: IdemDeps<'_>,
    app: &AppId,
    key: &SecretHash,
    status: u16,
    body: &[u8],
) -> Result<(), IdemError> {
    let sealed = deps.envelope.seal_response(app, body).await?;
    deps.store
        .finish_idempotency(app, key, status, &sealed)
        .await?;
    Ok(())
}

/// Frees the key after a run that failed on our side.
pub async fn release(deps: IdemDeps<'_>, app: &AppId, key: &SecretHash) -> Result<(), IdemError> {
    Ok(deps.store.release_idempotency(app, key).await?)
}

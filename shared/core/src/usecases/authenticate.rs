//! Authenticates a partner's `Authorization: Bearer ak_...` header.

use crate::app::App;
use crate::ids::{AppKey, KeyId, SecretHash};
use crate::ports::{AppStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, unknown or revoked: callers cannot tell which.
    #[error("missing or invalid app key")]
    Unauthorized,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The App behind a presented key. A missing or malformed key takes the same path as an
/// unknown one (hash, one store lookup) so the three cannot be told apart by timing.
pub async fn authenticate(store: &dyn AppStore, presented: Option<&str>) -> Result<App, AuthError> {
    Ok(authenticate_key(store, presented).await?.0)
}

/// [`authenticate`], also naming the key that was presented.
pub async fn authenticate_key(
    store: &dyn AppStore,
    presented: Option<&str>,
) -> Result<(App, KeyId), AuthError> {
    let presented = presented.unwrap_or("");
    let well_formed = AppKey::parse(presented).is_some();
    let found = store.live_key(&SecretHash::of(presented)).await?;
    match found {
        Some(found) if well_formed => Ok(found),
        _ => Err(AuthError::Unauthorized),
    }
}

//! Authenticates a partner's `Authorization: Bearer ak_...` header.

use crate::app::App;
use crate::ids::{AppKey, SecretHash};
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
    let presented = presented.unwrap_or("");
    let well_formed = AppKey::parse(presented).is_some();
    let found = store.app_for_key(&SecretHash::of(presented)).await?;
    match found {
        Some(app) if well_formed => Ok(app),
        _ => Err(AuthError::Unauthorized),
    }
}

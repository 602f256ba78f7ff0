//! Reads one signup session on behalf of the App that minted it.

use crate::app::App;
use crate::ids::SessionId;
use crate::ports::{SessionStore, StoreError};
use crate::session::SignupSession;

#[derive(Debug, thiserror::Error)]
pub enum GetSessionError {
    /// Unknown, malformed, or another App's session: all look the same from outside.
    #[error("no such session")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn get_session(
    store: &dyn SessionStore,
    app: &App,
    session_id: &str,
) -> Result<SignupSession, GetSessionError> {
    let id = SessionId::parse(session_id).ok_or(GetSessionError::NotFound)?;
    match store.session(&id).await? {
        Some(s) if s.app_id == app.id => Ok(s),
        _ => Err(GetSessionError::NotFound),
    }
}

//! The storage ports. Each has a DynamoDB and an embedded implementation, and both pass
//! the same contract suite (`tests/`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::app::{App, AppKeyRecord, Slug};
use crate::ids::{AppId, KeyId, SecretHash, SessionId};
use crate::session::SignupSession;

/// What can go wrong in a store. Messages name the kind of failure, never stored values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write (e.g. the slug is taken).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The write refers to something that does not exist (e.g. a key for an unknown App).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The store could not be reached or answered with an error.
    #[error("store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored record could not be read back into the domain (corrupt or foreign data).
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

#[async_trait]
pub trait AppStore: Send + Sync {
    /// Stores a new App with its first key. `Conflict` when the slug or id is taken.
    async fn create_app(
        &self,
        app: &App,
        key: &AppKeyRecord,
        key_hash: &SecretHash,
    ) -> Result<(), StoreError>;
    async fn app(&self, id: &AppId) -> Result<Option<App>, StoreError>;
    async fn app_by_slug(&self, slug: &Slug) -> Result<Option<App>, StoreError>;
    /// Every App, oldest first (an operator's listing, not a request path).
    async fn list_apps(&self) -> Result<Vec<App>, StoreError>;
    /// Adds a key to an existing App (`NotFound` otherwise).
    async fn add_key(&self, key: &AppKeyRecord, key_hash: &SecretHash) -> Result<(), StoreError>;
    /// The App holding a live (not revoked) key with this hash.
    async fn app_for_key(&self, key_hash: &SecretHash) -> Result<Option<App>, StoreError>;
    /// The App's keys, oldest first, revoked ones included.
    async fn list_keys(&self, app: &AppId) -> Result<Vec<AppKeyRecord>, StoreError>;
    /// Revokes one key of the App; `false` when the App has no such key. Revoking twice
    /// keeps the first revocation time.
    async fn revoke_key(
        &self,
        app: &AppId,
        key: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session; `Conflict` if its id or token hash already exists.
    async fn insert_session(&self, session: &SignupSession) -> Result<(), StoreError>;
    async fn session(&self, id: &SessionId) -> Result<Option<SignupSession>, StoreError>;
    async fn session_by_token(
        &self,
        token_hash: &SecretHash,
    ) -> Result<Option<SignupSession>, StoreError>;
}

/// Everything the request handlers need from storage.
pub trait Store: AppStore + SessionStore + std::fmt::Debug {}
impl<T: AppStore + SessionStore + std::fmt::Debug> Store for T {}

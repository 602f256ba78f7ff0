//! Operator actions on Apps and their keys (the `pipes apps` commands).

use chrono::{DateTime, Utc};

use crate::app::{App, AppKeyRecord, AppName, RedirectOrigin, Slug};
use crate::ids::{AppId, AppKey, KeyId};
use crate::ports::{AppStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("the slug is already taken")]
    SlugTaken,
    #[error("no such App")]
    AppNotFound,
    #[error("the App has no such key")]
    KeyNotFound,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => Self::SlugTaken,
            StoreError::NotFound(_) => Self::AppNotFound,
            e => Self::Store(e),
        }
    }
}

/// A new App with its first key; the key's plaintext exists only here.
#[derive(Debug)]
pub struct CreatedApp {
    pub app: App,
    pub key_id: KeyId,
    pub key: AppKey,
}

#[derive(Debug)]
pub struct CreatedKey {
    pub key_id: KeyId,
    pub key: AppKey,
}

fn new_key(app_id: &AppId, now: DateTime<Utc>) -> (AppKeyRecord, AppKey) {
    let record = AppKeyRecord {
        key_id: KeyId::generate(),
        app_id: app_id.clone(),
        created_at: now,
        revoked_at: None,
    };
    (record, AppKey::generate())
}

pub async fn create_app(
    store: &dyn AppStore,
    now: DateTime<Utc>,
    slug: &str,
    name: &str,
    origins: &[String],
) -> Result<CreatedApp, AdminError> {
    let invalid = |field| move |message| AdminError::Invalid { field, message };
    let app = App {
        id: AppId::generate(),
        slug: Slug::parse(slug).map_err(invalid("slug"))?,
        name: AppName::parse(name).map_err(invalid("name"))?,
        allowed_origins: origins
            .iter()
            .map(|o| RedirectOrigin::parse(o))
            .collect::<Result<_, _>>()
            .map_err(invalid("redirect origin"))?,
        created_at: now,
        rate_limit: crate::app::RateLimit::default(),
        development: false,
    };
    let (record, key) = new_key(&app.id, now);
    store.create_app(&app, &record, &key.hash()).await?;
    tracing::info!(app_id = %app.id, slug = %app.slug, key_id = %record.key_id, "app created");
    Ok(CreatedApp {
        app,
        key_id: record.key_id,
        key,
    })
}

/// What `pipes apps update` may change (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct AppUpdate {
    pub name: Option<String>,
    /// Replaces the allowed redirect origins (an empty list allows any).
    pub redirect_origins: Option<Vec<String>>,
    pub rate_per_second: Option<u32>,
    pub rate_burst: Option<u32>,
    /// Marks the App for development (plain `http://localhost` redirects) or not.
    pub development: Option<bool>,
}

/// Changes an App's name, allowed redirect origins or rate limit (validated like at
/// creation); the App as stored.
pub async fn update_app(
    store: &dyn AppStore,
    app: &App,
    change: AppUpdate,
) -> Result<App, AdminError> {
    let invalid = |field| move |message| AdminError::Invalid { field, message };
    let mut next = app.clone();
    if let Some(name) = change.name {
        next.name = AppName::parse(&name).map_err(invalid("name"))?;
    }
    if let Some(origins) = change.redirect_origins {
        next.allowed_origins = origins
            .iter()
            .map(|o| RedirectOrigin::parse(o))
            .collect::<Result<_, _>>()
            .map_err(invalid("redirect origin"))?;
    }
    if change.rate_per_second.is_some() || change.rate_burst.is_some() {
        let per_second = change.rate_per_second.unwrap_or(next.rate_limit.per_second);
        let burst = change
            .rate_burst
            .unwrap_or_else(|| next.rate_limit.burst.max(per_second));
        next.rate_limit =
            crate::app::RateLimit::new(per_second, burst).map_err(invalid("rate limit"))?;
    }
    if let Some(d) = change.development {
        next.development = d;
    }
    store.update_app(&next).await.map_err(|e| match e {
        StoreError::NotFound(_) => AdminError::AppNotFound,
        e => AdminError::Store(e),
    })?;
    tracing::info!(app_id = %next.id, "app updated");
    Ok(next)
}

/// Finds an App by id (`app_...`) or by slug.
pub async fn find_app(store: &dyn AppStore, id_or_slug: &str) -> Result<App, AdminError> {
    let found = match AppId::parse(id_or_slug) {
        Some(id) => store.app(&id).await?,
        None => match Slug::parse(id_or_slug) {
            Ok(slug) => store.app_by_slug(&slug).await?,
            Err(_) => None,
        },
    };
    found.ok_or(AdminError::AppNotFound)
}

pub async fn create_key(
    store: &dyn AppStore,
    now: DateTime<Utc>,
    app: &App,
) -> Result<CreatedKey, AdminError> {
    let (record, key) = new_key(&app.id, now);
    store.add_key(&record, &key.hash()).await?;
    tracing::info!(app_id = %app.id, key_id = %record.key_id, "app key created");
    Ok(CreatedKey {
        key_id: record.key_id,
        key,
    })
}

pub async fn revoke_key(
    store: &dyn AppStore,
    now: DateTime<Utc>,
    app: &App,
    key_id: &str,
) -> Result<(), AdminError> {
    let key_id = KeyId::parse(key_id).ok_or(AdminError::KeyNotFound)?;
    if store.revoke_key(&app.id, &key_id, now).await? {
        tracing::info!(app_id = %app.id, key_id = %key_id, "app key revoked");
        Ok(())
    } else {
        Err(AdminError::KeyNotFound)
    }
}

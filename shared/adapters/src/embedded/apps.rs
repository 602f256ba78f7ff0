//! Apps and their keys.

use super::*;

#[async_trait]
impl AppStore for EmbeddedStore {
    async fn create_app(
        &self,
        app: &App,
        key: &AppKeyRecord,
        key_hash: &SecretHash,
    ) -> Result<(), StoreError> {
        let (app, key, hash) = (app.clone(), key.clone(), key_hash.clone());
        let origins = to_json(&app.allowed_origins)?;
        let rate = to_json(&app.settings())?;
        self.with(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let inserted = tx
                .execute(
                    "INSERT INTO apps (id, slug, name, allowed_origins, created_at, settings) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        app.id.as_str(),
                        app.slug.as_str(),
                        app.name.as_str(),
                        origins,
                        millis(app.created_at),
                        rate
                    ],
                )
                .and_then(|_| insert_key(&tx, &key, &hash));
            match inserted {
                Ok(_) => tx.commit().map_err(db_err),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict("app slug or id")),
                Err(e) => Err(db_err(e)),
            }
        })
        .await
    }

    async fn app(&self, id: &AppId) -> Result<Option<App>, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?1");
            one(c, &sql, [id.as_str()], app_from_row)
        })
        .await
    }

    async fn app_by_slug(&self, slug: &Slug) -> Result<Option<App>, StoreError> {
        let slug = slug.clone();
        self.with(move |c| {
            let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE slug = ?1");
            one(c, &sql, [slug.as_str()], app_from_row)
        })
        .await
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        self.with(|c| {
            let sql = format!("SELECT {APP_COLUMNS} FROM apps ORDER BY created_at, id");
            all(c, &sql, [], app_from_row)
        })
        .await
    }

    async fn update_app(&self, app: &App) -> Result<(), StoreError> {
        let app = app.clone();
        let origins = to_json(&app.allowed_origins)?;
        let rate = to_json(&app.settings())?;
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE apps SET name = ?2, allowed_origins = ?3, settings = ?4 WHERE id = ?1",
                    params![app.id.as_str(), app.name.as_str(), origins, rate],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound("app"));
            }
            Ok(())
        })
        .await
    }

    async fn add_key(&self, key: &AppKeyRecord, key_hash: &SecretHash) -> Result<(), StoreError> {
        let (key, hash) = (key.clone(), key_hash.clone());
        self.with(move |c| match insert_key(c, &key, &hash) {
            Ok(_) => Ok(()),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                let app_exists = c
                    .query_row(
                        "SELECT 1 FROM apps WHERE id = ?1",
                        [key.app_id.as_str()],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(db_err)?
                    .is_some();
                Err(if app_exists {
                    StoreError::Conflict("app key")
                } else {
                    StoreError::NotFound("app")
                })
            }
            Err(e) => Err(db_err(e)),
        })
        .await
    }

    async fn live_key(&self, key_hash: &SecretHash) -> Result<Option<(App, KeyId)>, StoreError> {
        let hash = key_hash.clone();
        self.with(move |c| {
            let sql = "SELECT a.id, a.slug, a.name, a.allowed_origins, a.created_at, a.settings, \
                       k.key_id FROM app_keys k JOIN apps a ON a.id = k.app_id \
                       WHERE k.key_hash = ?1 AND k.revoked_at IS NULL";
            one(c, sql, [hash.as_str()], |r| {
                let key: String = r.get(6)?;
                Ok(app_from_row(r)?.and_then(|app| {
                    let key =
                        KeyId::parse(&key).ok_or_else(|| StoreError::Corrupt("key_id".into()))?;
                    Ok((app, key))
                }))
            })
        })
        .await
    }

    async fn list_keys(&self, app: &AppId) -> Result<Vec<AppKeyRecord>, StoreError> {
        let app = app.clone();
        self.with(move |c| {
            let sql = "SELECT key_id, app_id, created_at, revoked_at FROM app_keys \
                       WHERE app_id = ?1 ORDER BY created_at, key_id";
            all(c, sql, [app.as_str()], key_from_row)
        })
        .await
    }

    async fn revoke_key(
        &self,
        app: &AppId,
        key: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (app, key) = (app.clone(), key.clone());
        self.with(move |c| {
            let found = c
                .execute(
                    "UPDATE app_keys SET revoked_at = COALESCE(revoked_at, ?3) \
                     WHERE app_id = ?1 AND key_id = ?2",
                    params![app.as_str(), key.as_str(), millis(at)],
                )
                .map_err(db_err)?;
            Ok(found == 1)
        })
        .await
    }
}

//! Row codecs: reading Apps, keys, sessions and numbers back from their rows.

use super::*;

pub(super) const APP_COLUMNS: &str = "id, slug, name, allowed_origins, created_at, settings";

pub(super) fn app_from_row(r: &Row<'_>) -> rusqlite::Result<Result<App, StoreError>> {
    let (id, slug, name, origins, created): (String, String, String, String, i64) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    let settings: Option<String> = r.get(5)?;
    Ok((|| {
        let settings: pipes_core::app::AppSettings = settings
            .map(|s| from_json("app settings", &s))
            .transpose()?
            .unwrap_or_default();
        Ok(App {
            id: AppId::parse(&id).ok_or_else(|| StoreError::Corrupt("app id".into()))?,
            slug: Slug::parse(&slug).map_err(corrupt("slug"))?,
            name: AppName::parse(&name).map_err(corrupt("name"))?,
            allowed_origins: from_json::<Vec<RedirectOrigin>>("allowed origins", &origins)?,
            created_at: time(created)?,
            rate_limit: settings.rate_limit,
            development: settings.development,
        })
    })())
}

pub(super) fn key_from_row(r: &Row<'_>) -> rusqlite::Result<Result<AppKeyRecord, StoreError>> {
    let (key_id, app_id, created, revoked): (String, String, i64, Option<i64>) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    Ok((|| {
        Ok(AppKeyRecord {
            key_id: KeyId::parse(&key_id).ok_or_else(|| StoreError::Corrupt("key id".into()))?,
            app_id: AppId::parse(&app_id).ok_or_else(|| StoreError::Corrupt("app id".into()))?,
            created_at: time(created)?,
            revoked_at: revoked.map(time).transpose()?,
        })
    })())
}

pub(super) const SESSION_COLUMNS: &str = "id, app_id, token_hash, status, redirect_url, metadata, \
     created_at, expires_at, completed_at, phone_number_id, error, abandons";

pub(super) fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Result<SignupSession, StoreError>> {
    let id: String = r.get(0)?;
    let app_id: String = r.get(1)?;
    let token_hash: String = r.get(2)?;
    let status: String = r.get(3)?;
    let redirect_url: String = r.get(4)?;
    let metadata: String = r.get(5)?;
    let created: i64 = r.get(6)?;
    let expires: i64 = r.get(7)?;
    let completed: Option<i64> = r.get(8)?;
    let phone_number_id: Option<String> = r.get(9)?;
    let error: Option<String> = r.get(10)?;
    let abandons: String = r.get(11)?;
    Ok((|| {
        Ok(SignupSession {
            id: SessionId::parse(&id).ok_or_else(|| StoreError::Corrupt("session id".into()))?,
            app_id: AppId::parse(&app_id).ok_or_else(|| StoreError::Corrupt("app id".into()))?,
            token_hash: SecretHash::parse(&token_hash)
                .ok_or_else(|| StoreError::Corrupt("token hash".into()))?,
            status: SessionStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt("status".into()))?,
            redirect_url: RedirectUrl::try_from(redirect_url).map_err(corrupt("redirect url"))?,
            metadata: from_json::<Metadata>("metadata", &metadata)?,
            created_at: time(created)?,
            expires_at: time(expires)?,
            completed_at: completed.map(time).transpose()?,
            phone_number_id,
            error: error
                .map(|e| from_json::<SessionFailure>("error", &e))
                .transpose()?,
            abandons: from_json::<Vec<Abandon>>("abandons", &abandons)?,
        })
    })())
}

/// One row through `map`, flattening the two error layers.
pub(super) fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: fn(&Row<'_>) -> rusqlite::Result<Result<T, StoreError>>,
) -> Result<Option<T>, StoreError> {
    conn.query_row(sql, params, map)
        .optional()
        .map_err(db_err)?
        .transpose()
}

pub(super) fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: fn(&Row<'_>) -> rusqlite::Result<Result<T, StoreError>>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt.query_map(params, map).map_err(db_err)?;
    rows.map(|r| r.map_err(db_err).and_then(|x| x)).collect()
}

pub(super) fn insert_key(
    conn: &Connection,
    key: &AppKeyRecord,
    hash: &SecretHash,
) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO app_keys (key_hash, key_id, app_id, created_at, revoked_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            hash.as_str(),
            key.key_id.as_str(),
            key.app_id.as_str(),
            millis(key.created_at),
            key.revoked_at.map(millis)
        ],
    )
}

pub(super) fn number_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Number, StoreError>> {
    let record: String = r.get(0)?;
    Ok(from_json("number", &record))
}

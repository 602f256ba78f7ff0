//! Dashboard login links (single use) and sessions, both found by their secret's hash.

use super::*;
use pipes_core::ports::{DashboardSession, DashboardStore, LinkUse, LoginLink};

/// An optional key id column.
fn minted_by(v: Option<String>) -> Result<Option<KeyId>, StoreError> {
    v.map(|k| KeyId::parse(&k).ok_or_else(|| StoreError::Corrupt("minted_by".into())))
        .transpose()
}

fn link_from_row(r: &Row<'_>) -> rusqlite::Result<Result<(LoginLink, Option<i64>), StoreError>> {
    let (hash, app, created, expires, used): (String, String, i64, i64, Option<i64>) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    let key: Option<String> = r.get(5)?;
    Ok((|| {
        Ok((
            LoginLink {
                token_hash: SecretHash::parse(&hash)
                    .ok_or_else(|| StoreError::Corrupt("token_hash".into()))?,
                app_id: AppId::parse(&app).ok_or_else(|| StoreError::Corrupt("app_id".into()))?,
                minted_by: minted_by(key)?,
                created_at: time(created)?,
                expires_at: time(expires)?,
            },
            used,
        ))
    })())
}

fn dashboard_session_from_row(
    r: &Row<'_>,
) -> rusqlite::Result<Result<DashboardSession, StoreError>> {
    let (hash, app, csrf, created, expires): (String, String, String, i64, i64) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    let key: Option<String> = r.get(5)?;
    Ok((|| {
        Ok(DashboardSession {
            cookie_hash: SecretHash::parse(&hash)
                .ok_or_else(|| StoreError::Corrupt("cookie_hash".into()))?,
            app_id: AppId::parse(&app).ok_or_else(|| StoreError::Corrupt("app_id".into()))?,
            csrf,
            minted_by: minted_by(key)?,
            created_at: time(created)?,
            expires_at: time(expires)?,
        })
    })())
}

#[async_trait]
impl DashboardStore for EmbeddedStore {
    async fn insert_login_link(&self, link: &LoginLink) -> Result<(), StoreError> {
        let link = link.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO login_links (token_hash, app_id, created_at, expires_at, minted_by) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![link.token_hash.as_str(), link.app_id.as_str(), millis(link.created_at), millis(link.expires_at), link.minted_by.as_ref().map(|k| k.as_str())],
            )
            .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict("login link") } else { db_err(e) })?;
            Ok(())
        })
        .await
    }

    async fn use_login_link(
        &self,
        token_hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<LinkUse, StoreError> {
        let hash = token_hash.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            let Some((link, used)) = one(
                &tx,
                "SELECT token_hash, app_id, created_at, expires_at, used_at, minted_by FROM login_links WHERE token_hash = ?1",
                params![hash.as_str()],
                link_from_row,
            )?
            else {
                return Ok(LinkUse::NotFound);
            };
            if used.is_some() {
                return Ok(LinkUse::Used);
            }
            if link.expires_at <= now {
                return Ok(LinkUse::Expired);
            }
            let changed = tx
                .execute(
                    "UPDATE login_links SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
                    params![hash.as_str(), millis(now)],
                )
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(if changed == 1 { LinkUse::Signed(link) } else { LinkUse::Used })
        })
        .await
    }

    async fn insert_dashboard_session(&self, s: &DashboardSession) -> Result<(), StoreError> {
        let s = s.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO dashboard_sessions (cookie_hash, app_id, csrf, created_at, expires_at, minted_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.cookie_hash.as_str(), s.app_id.as_str(), s.csrf, millis(s.created_at), millis(s.expires_at), s.minted_by.as_ref().map(|k| k.as_str())],
            )
            .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict("dashboard session") } else { db_err(e) })?;
            Ok(())
        })
        .await
    }

    async fn dashboard_session(
        &self,
        cookie_hash: &SecretHash,
    ) -> Result<Option<DashboardSession>, StoreError> {
        let hash = cookie_hash.clone();
        self.with(move |c| {
            one(
                c,
                "SELECT cookie_hash, app_id, csrf, created_at, expires_at, minted_by FROM dashboard_sessions WHERE cookie_hash = ?1",
                params![hash.as_str()],
                dashboard_session_from_row,
            )
        })
        .await
    }

    async fn end_dashboard_session(&self, cookie_hash: &SecretHash) -> Result<(), StoreError> {
        let hash = cookie_hash.clone();
        self.with(move |c| {
            c.execute(
                "DELETE FROM dashboard_sessions WHERE cookie_hash = ?1",
                params![hash.as_str()],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }
}

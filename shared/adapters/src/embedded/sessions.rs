//! Signup sessions: claims, releases and abandons.

use super::*;

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn insert_session(&self, s: &SignupSession) -> Result<(), StoreError> {
        let s = s.clone();
        let metadata = to_json(&s.metadata)?;
        let error = s.error.as_ref().map(to_json).transpose()?;
        let abandons = to_json(&s.abandons)?;
        self.with(move |c| {
            let sql = format!(
                "INSERT INTO sessions ({SESSION_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            );
            let res = c.execute(
                &sql,
                params![
                    s.id.as_str(),
                    s.app_id.as_str(),
                    s.token_hash.as_str(),
                    s.status.as_str(),
                    s.redirect_url.as_str(),
                    metadata,
                    millis(s.created_at),
                    millis(s.expires_at),
                    s.completed_at.map(millis),
                    s.phone_number_id,
                    error,
                    abandons
                ],
            );
            match res {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict("session")),
                Err(e) => Err(db_err(e)),
            }
        })
        .await
    }

    async fn session(&self, id: &SessionId) -> Result<Option<SignupSession>, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1");
            one(c, &sql, [id.as_str()], session_from_row)
        })
        .await
    }

    async fn session_by_token(
        &self,
        token_hash: &SecretHash,
    ) -> Result<Option<SignupSession>, StoreError> {
        let hash = token_hash.clone();
        self.with(move |c| {
            let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?1");
            one(c, &sql, [hash.as_str()], session_from_row)
        })
        .await
    }

    async fn claim_session(
        &self,
        token_hash: &SecretHash,
        claim_id: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let (hash, claim_id) = (token_hash.clone(), claim_id.to_owned());
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let sql = format!("SELECT {SESSION_COLUMNS}, claim_until FROM sessions WHERE token_hash = ?1");
            let found = tx
                .query_row(&sql, [hash.as_str()], |r| {
                    Ok((session_from_row(r)?, r.get::<_, Option<i64>>(12)?))
                })
                .optional()
                .map_err(db_err)?;
            let Some((session, claim_until)) = found else {
                return Ok(Claim::NotFound);
            };
            let mut session = session?;
            let lease_over = claim_until.is_none_or(|u| u < millis(now));
            if let Some(refused) = Claim::refusal(&session, now, lease_over) {
                return Ok(refused);
            }
            tx.execute(
                "UPDATE sessions SET status = 'completing', claim_id = ?2, claim_until = ?3 WHERE id = ?1",
                params![session.id.as_str(), claim_id, millis(lease_until)],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            session.status = SessionStatus::Completing;
            Ok(Claim::Won(Box::new(session)))
        })
        .await
    }

    async fn release_claim(
        &self,
        id: &SessionId,
        claim_id: &str,
        release: &Release,
    ) -> Result<bool, StoreError> {
        let (id, claim_id, release) = (id.clone(), claim_id.to_owned(), release.clone());
        let error = release.error.as_ref().map(to_json).transpose()?;
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE sessions SET status = ?3, error = ?4, claim_id = NULL, claim_until = NULL \
                     WHERE id = ?1 AND claim_id = ?2",
                    params![id.as_str(), claim_id, release.status.as_str(), error],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn record_abandon(&self, id: &SessionId, abandon: &Abandon) -> Result<bool, StoreError> {
        let (id, abandon) = (id.clone(), abandon.clone());
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let found: Option<(String, String)> = tx
                .query_row(
                    "SELECT status, abandons FROM sessions WHERE id = ?1",
                    [id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_err)?;
            let Some((status, abandons)) = found else {
                return Ok(false);
            };
            let mut list: Vec<Abandon> = from_json("abandons", &abandons)?;
            if status == SessionStatus::Completed.as_str() || list.len() >= MAX_ABANDONS {
                return Ok(false);
            }
            list.push(abandon);
            tx.execute(
                "UPDATE sessions SET abandons = ?2 WHERE id = ?1",
                params![id.as_str(), to_json(&list)?],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn record_finish(
        &self,
        session: &SignupSession,
        finish: &Abandon,
        waba: &WabaId,
    ) -> Result<bool, StoreError> {
        if !self.record_abandon(&session.id, finish).await? {
            return Ok(false);
        }
        let (id, waba, at) = (session.id.clone(), waba.clone(), millis(finish.at));
        self.with(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO finish_reports (waba_id, session_id, at) VALUES (?1, ?2, ?3)",
                params![waba.as_str(), id.as_str(), at],
            )
            .map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn sessions_finished_with(&self, waba: &WabaId) -> Result<Vec<SessionId>, StoreError> {
        let waba = waba.clone();
        self.with(move |c| {
            all(
                c,
                "SELECT session_id FROM finish_reports WHERE waba_id = ?1 ORDER BY at, session_id",
                [waba.as_str()],
                |r| {
                    let id: String = r.get(0)?;
                    Ok(SessionId::parse(&id)
                        .ok_or_else(|| StoreError::Corrupt("session id".into())))
                },
            )
        })
        .await
    }

    async fn mark_interrupted(&self, id: &SessionId) -> Result<bool, StoreError> {
        let id = id.clone();
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE sessions SET status = 'interrupted'                      WHERE id = ?1 AND status IN ('pending', 'failed')",
                    [id.as_str()],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn recent_sessions(
        &self,
        app: &AppId,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<SignupSession>, StoreError> {
        let app = app.clone();
        self.with(move |c| {
            all(
                c,
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE app_id = ?1 AND created_at >= ?2 \
                     ORDER BY created_at DESC, id DESC LIMIT ?3"
                ),
                params![app.as_str(), millis(since), limit as i64],
                session_from_row,
            )
        })
        .await
    }
}

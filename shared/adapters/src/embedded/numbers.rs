//! Numbers: versioned writes, ownership, WABA membership, paging and due numbers.

use super::*;

#[async_trait]
impl NumberStore for EmbeddedStore {
    async fn number(
        &self,
        app: &AppId,
        phone: &PhoneNumberId,
    ) -> Result<Option<Number>, StoreError> {
        let (app, phone) = (app.clone(), phone.clone());
        self.with(move |c| {
            one(
                c,
                "SELECT record FROM numbers WHERE app_id = ?1 AND phone_number_id = ?2",
                [app.as_str(), phone.as_str()],
                number_from_row,
            )
        })
        .await
    }

    async fn number_owner(&self, phone: &PhoneNumberId) -> Result<Option<AppId>, StoreError> {
        let phone = phone.clone();
        self.with(move |c| {
            let owner: Option<String> = c
                .query_row(
                    "SELECT app_id FROM number_owners WHERE phone_number_id = ?1",
                    [phone.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            owner
                .map(|o| AppId::parse(&o).ok_or_else(|| StoreError::Corrupt("owner".into())))
                .transpose()
        })
        .await
    }

    async fn complete_signup(&self, done: &SignupCompletion) -> Result<(), CompletionError> {
        let done = done.clone();
        let record = to_json(&done.number)?;
        let history = done.history.as_ref().map(to_json).transpose()?;
        self.with(move |c| {
                let tx = c
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let n = &done.number;
                let claimed = tx
                    .execute(
                        "UPDATE sessions SET status = 'completed', completed_at = ?3, phone_number_id = ?4, \
                         error = NULL, claim_id = NULL, claim_until = NULL WHERE id = ?1 AND claim_id = ?2",
                        params![
                            done.session_id.as_str(),
                            done.claim_id,
                            millis(done.completed_at),
                            n.phone_number_id.as_str()
                        ],
                    )
                    .map_err(db_err)?;
                if claimed != 1 {
                    return Ok(Err(CompletionError::ClaimLost));
                }
                let owner: Option<String> = tx
                    .query_row(
                        "SELECT app_id FROM number_owners WHERE phone_number_id = ?1",
                        [n.phone_number_id.as_str()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err)?;
                match owner {
                    Some(o) if o != n.app_id.as_str() => return Ok(Err(CompletionError::OwnedByAnotherApp)),
                    Some(_) => {}
                    None => {
                        tx.execute(
                            "INSERT INTO number_owners (phone_number_id, app_id) VALUES (?1, ?2)",
                            params![n.phone_number_id.as_str(), n.app_id.as_str()],
                        )
                        .map_err(db_err)?;
                    }
                }
                if let Err(e) = write_number(&tx, n, &record, done.expected_version)? {
                    return Ok(Err(e));
                }
                if let Some(event) = &history {
                    insert_history(&tx, n, done.completed_at, event)?;
                }
                tx.commit().map_err(db_err)?;
                Ok(Ok(()))
            })
            .await?
    }

    async fn save_number(
        &self,
        number: &Number,
        expected_version: u64,
        history: Option<&HealthEvent>,
    ) -> Result<(), WriteError> {
        let number = number.clone();
        let record = to_json(&number)?;
        let history = history.map(to_json).transpose()?;
        let at = number.updated_at;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            if write_number(&tx, &number, &record, Some(expected_version))?.is_err() {
                return Ok(Err(WriteError::Changed));
            }
            if let Some(event) = &history {
                insert_history(&tx, &number, at, event)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(Ok(()))
        })
        .await?
    }

    async fn remove_number(
        &self,
        removed: &Number,
        expected_version: u64,
        history: &HealthEvent,
    ) -> Result<(), WriteError> {
        let removed = removed.clone();
        let record = to_json(&removed)?;
        let history = to_json(history)?;
        let at = removed.updated_at;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            if write_number(&tx, &removed, &record, Some(expected_version))?.is_err() {
                return Ok(Err(WriteError::Changed));
            }
            tx.execute(
                "DELETE FROM number_owners WHERE phone_number_id = ?1 AND app_id = ?2",
                params![removed.phone_number_id.as_str(), removed.app_id.as_str()],
            )
            .map_err(db_err)?;
            insert_history(&tx, &removed, at, &history)?;
            tx.commit().map_err(db_err)?;
            Ok(Ok(()))
        })
        .await?
    }

    async fn list_numbers(
        &self,
        app: &AppId,
        status: Option<HealthStatus>,
        limit: usize,
        after: Option<&PhoneNumberId>,
    ) -> Result<NumberPage, StoreError> {
        let (app, after) = (
            app.clone(),
            after.map(|a| a.as_str().to_owned()).unwrap_or_default(),
        );
        let status = status.map(HealthStatus::as_str);
        self.with(move |c| {
            let numbers = all(
                c,
                "SELECT record FROM numbers WHERE app_id = ?1 AND (?2 IS NULL OR status = ?2) \
                 AND phone_number_id > ?3 ORDER BY phone_number_id LIMIT ?4",
                params![app.as_str(), status, after, (limit + 1) as i64],
                number_from_row,
            )?;
            Ok(NumberPage::from_overfetch(numbers, limit))
        })
        .await
    }

    async fn live_numbers_in_waba(
        &self,
        waba: &WabaId,
    ) -> Result<Vec<(AppId, PhoneNumberId)>, StoreError> {
        let waba = waba.clone();
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT app_id, phone_number_id FROM numbers WHERE waba_id = ?1 AND status != 'removed'",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map([waba.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(db_err)?;
            rows.map(|r| {
                let (a, p) = r.map_err(db_err)?;
                Ok((
                    AppId::parse(&a).ok_or_else(|| StoreError::Corrupt("app id".into()))?,
                    PhoneNumberId::parse(&p).ok_or_else(|| StoreError::Corrupt("phone".into()))?,
                ))
            })
            .collect()
        })
        .await
    }

    async fn history(
        &self,
        app: &AppId,
        phone: &PhoneNumberId,
        limit: usize,
    ) -> Result<Vec<HealthEvent>, StoreError> {
        let (app, phone) = (app.clone(), phone.clone());
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT event FROM health_history WHERE app_id = ?1 AND phone_number_id = ?2 \
                     ORDER BY at DESC, seq DESC LIMIT ?3",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![app.as_str(), phone.as_str(), limit as i64], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(db_err)?;
            rows.map(|r| from_json("history", &r.map_err(db_err)?))
                .collect()
        })
        .await
    }

    async fn due_numbers(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueNumber>, StoreError> {
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT app_id, phone_number_id, next_check_at FROM numbers \
                     WHERE next_check_at IS NOT NULL AND next_check_at <= ?1 AND status != 'removed' \
                     ORDER BY next_check_at LIMIT ?2",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![millis(now), limit as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(db_err)?;
            rows.map(|r| {
                let (a, p, due) = r.map_err(db_err)?;
                Ok(DueNumber {
                    app_id: AppId::parse(&a).ok_or_else(|| StoreError::Corrupt("app id".into()))?,
                    phone_number_id: PhoneNumberId::parse(&p)
                        .ok_or_else(|| StoreError::Corrupt("phone".into()))?,
                    due_at: time(due)?,
                })
            })
            .collect()
        })
        .await
    }
}

/// Inserts (expected `None`) or replaces (at the expected version) a number record.
pub(super) fn write_number(
    tx: &rusqlite::Transaction<'_>,
    n: &Number,
    record: &str,
    expected: Option<u64>,
) -> Result<Result<(), CompletionError>, StoreError> {
    let version = i64::try_from(n.version).map_err(|_| StoreError::Corrupt("version".into()))?;
    let next_check = n.health.next_check_at.map(millis);
    let changed = match expected {
        None => tx.execute(
            "INSERT OR IGNORE INTO numbers (app_id, phone_number_id, waba_id, status, next_check_at, version, record) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![n.app_id.as_str(), n.phone_number_id.as_str(), n.waba_id.as_str(), n.health.status.as_str(), next_check, version, record],
        ),
        Some(v) => tx.execute(
            "UPDATE numbers SET waba_id = ?3, status = ?4, next_check_at = ?5, version = ?6, record = ?7 \
             WHERE app_id = ?1 AND phone_number_id = ?2 AND version = ?8",
            params![n.app_id.as_str(), n.phone_number_id.as_str(), n.waba_id.as_str(), n.health.status.as_str(), next_check, version, record, i64::try_from(v).unwrap_or(i64::MAX)],
        ),
    }
    .map_err(db_err)?;
    Ok(if changed == 1 {
        Ok(())
    } else {
        Err(CompletionError::NumberChanged)
    })
}

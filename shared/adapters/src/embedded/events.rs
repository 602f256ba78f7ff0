//! Meta's received changes (the inbox), partner endpoints and events.

use super::*;
use pipes_core::events::{Endpoint, Event, EventType};
use pipes_core::ports::{ChangeOutcome, EventPage, EventStore, InboxStore, StoredChange};
use pipes_core::webhooks::InboundChange;

fn change_from_row(r: &Row<'_>) -> rusqlite::Result<Result<StoredChange, StoreError>> {
    let record: String = r.get(0)?;
    let outcome: Option<String> = r.get(1)?;
    let note: Option<String> = r.get(2)?;
    let settled: Option<i64> = r.get(3)?;
    Ok((|| {
        Ok(StoredChange {
            change: from_json::<InboundChange>("change", &record)?,
            outcome: outcome
                .map(|o| from_json::<ChangeOutcome>("outcome", &format!("\"{o}\"")))
                .transpose()?,
            note,
            settled_at: settled.map(time).transpose()?,
        })
    })())
}

const CHANGE_COLUMNS: &str = "record, outcome, note, settled_at";

#[async_trait]
impl InboxStore for EmbeddedStore {
    async fn insert_change(&self, change: &InboundChange) -> Result<bool, StoreError> {
        let record = to_json(change)?;
        let (id, at) = (change.id.clone(), millis(change.received_at));
        self.with(move |c| {
            // Expired changes go first, so an id is recognised for INBOX_RETENTION.
            let cutoff = at - pipes_core::ports::INBOX_RETENTION.num_milliseconds();
            c.execute("DELETE FROM inbox WHERE received_at < ?1", [cutoff])
                .map_err(db_err)?;
            let n = c
                .execute(
                    "INSERT OR IGNORE INTO inbox (id, received_at, record) VALUES (?1, ?2, ?3)",
                    params![id, at, record],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn change(&self, id: &str) -> Result<Option<StoredChange>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            one(
                c,
                &format!("SELECT {CHANGE_COLUMNS} FROM inbox WHERE id = ?1"),
                [id],
                change_from_row,
            )
        })
        .await
    }

    async fn settle_change(
        &self,
        id: &str,
        outcome: ChangeOutcome,
        note: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (id, note) = (id.to_owned(), note.to_owned());
        self.with(move |c| {
            c.execute(
                "UPDATE inbox SET outcome = ?2, note = ?3, settled_at = ?4 WHERE id = ?1",
                params![id, outcome.as_str(), note, millis(at)],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn unmatched_changes(&self, limit: usize) -> Result<Vec<StoredChange>, StoreError> {
        self.with(move |c| {
            all(
                c,
                &format!(
                    "SELECT {CHANGE_COLUMNS} FROM inbox WHERE outcome = 'unmatched' \
                     ORDER BY settled_at DESC, id DESC LIMIT ?1"
                ),
                [limit as i64],
                change_from_row,
            )
        })
        .await
    }
}

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Event, StoreError>> {
    let record: String = r.get(0)?;
    Ok(from_json::<Event>("event", &record))
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let record = to_json(endpoint)?;
        let app = endpoint.app_id.clone();
        let failing = endpoint.failing_since.map(millis);
        self.with(move |c| {
            c.execute(
                "INSERT INTO endpoints (app_id, record, failing_since) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(app_id) DO UPDATE SET record = excluded.record, \
                 failing_since = excluded.failing_since",
                params![app.as_str(), record, failing],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn endpoint(&self, app: &AppId) -> Result<Option<Endpoint>, StoreError> {
        let app = app.clone();
        self.with(move |c| {
            one(
                c,
                "SELECT record, failing_since FROM endpoints WHERE app_id = ?1",
                [app.as_str()],
                |r| {
                    let record: String = r.get(0)?;
                    let failing: Option<i64> = r.get(1)?;
                    Ok((|| {
                        let mut e = from_json::<Endpoint>("endpoint", &record)?;
                        e.failing_since = failing.map(time).transpose()?;
                        Ok(e)
                    })())
                },
            )
        })
        .await
    }

    async fn delete_endpoint(&self, app: &AppId) -> Result<bool, StoreError> {
        let app = app.clone();
        self.with(move |c| {
            let n = c
                .execute("DELETE FROM endpoints WHERE app_id = ?1", [app.as_str()])
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn set_endpoint_failing(
        &self,
        app: &AppId,
        since: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let app = app.clone();
        self.with(move |c| {
            c.execute(
                "UPDATE endpoints SET failing_since = ?2 WHERE app_id = ?1",
                params![app.as_str(), since.map(millis)],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn insert_event(&self, event: &Event) -> Result<bool, StoreError> {
        let record = to_json(event)?;
        let e = event.clone();
        self.with(move |c| {
            let cutoff = millis(e.created_at - pipes_core::events::RETENTION);
            c.execute(
                "DELETE FROM events WHERE app_id = ?1 AND created_at < ?2",
                params![e.app_id.as_str(), cutoff],
            )
            .map_err(db_err)?;
            let n = c
                .execute(
                    "INSERT OR IGNORE INTO events (app_id, id, kind, created_at, record) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        e.app_id.as_str(),
                        e.id,
                        e.kind.as_str(),
                        millis(e.created_at),
                        record
                    ],
                )
                .map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn event(&self, app: &AppId, id: &str) -> Result<Option<Event>, StoreError> {
        let (app, id) = (app.clone(), id.to_owned());
        self.with(move |c| {
            one(
                c,
                "SELECT record FROM events WHERE app_id = ?1 AND id = ?2",
                params![app.as_str(), id],
                event_from_row,
            )
        })
        .await
    }

    async fn save_delivery(&self, event: &Event) -> Result<(), StoreError> {
        let record = to_json(event)?;
        let (app, id) = (event.app_id.clone(), event.id.clone());
        self.with(move |c| {
            c.execute(
                "UPDATE events SET record = ?3 WHERE app_id = ?1 AND id = ?2",
                params![app.as_str(), id, record],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn list_events(
        &self,
        app: &AppId,
        kind: Option<EventType>,
        limit: usize,
        before: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<EventPage, StoreError> {
        let app = app.clone();
        let kind = kind.map(|k| k.as_str().to_owned());
        let before = before.unwrap_or("evt_g").to_owned(); // 'g' sorts after every hex id
        let cutoff = millis(now - pipes_core::events::RETENTION);
        let events = self
            .with(move |c| {
                all(
                    c,
                    "SELECT record FROM events WHERE app_id = ?1 AND id < ?2 AND created_at >= ?3 \
                     AND (?4 IS NULL OR kind = ?4) ORDER BY id DESC LIMIT ?5",
                    params![app.as_str(), before, cutoff, kind, (limit + 1) as i64],
                    event_from_row,
                )
            })
            .await?;
        Ok(EventPage::from_overfetch(events, limit))
    }
}

#[async_trait]
impl pipes_core::ports::IdempotencyStore for EmbeddedStore {
    async fn claim_idempotency(
        &self,
        app: &AppId,
        key_hash: &SecretHash,
        request_hash: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<pipes_core::ports::IdemClaim, StoreError> {
        use pipes_core::ports::IdemClaim;
        let (app, key, req) = (app.clone(), key_hash.clone(), request_hash.to_owned());
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            type Row = (String, Option<i64>, Option<u16>, Option<String>, i64);
            let found: Option<Row> = tx
                .query_row(
                    "SELECT request_hash, lease_until, status, body, expires_at FROM idempotency \
                     WHERE app_id = ?1 AND key_hash = ?2",
                    params![app.as_str(), key.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .map_err(db_err)?;
            let claim = match found {
                Some((_, _, _, _, expires)) if expires <= millis(now) => None,
                Some((hash, _, _, _, _)) if hash != req => Some(IdemClaim::Reused),
                Some((_, _, Some(status), Some(body), _)) => Some(IdemClaim::Replay {
                    status,
                    body: pipes_core::crypto::Sealed::decode(&body)
                        .map_err(|_| StoreError::Corrupt("idempotent response".into()))?,
                }),
                Some((_, Some(lease), _, _, _)) if lease > millis(now) => {
                    Some(IdemClaim::InProgress)
                }
                _ => None,
            };
            if let Some(claim) = claim {
                return Ok(claim);
            }
            tx.execute(
                "INSERT INTO idempotency (app_id, key_hash, request_hash, lease_until, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(app_id, key_hash) DO UPDATE SET \
                 request_hash = excluded.request_hash, lease_until = excluded.lease_until, \
                 status = NULL, body = NULL, expires_at = excluded.expires_at",
                params![
                    app.as_str(),
                    key.as_str(),
                    req,
                    millis(lease_until),
                    millis(expires_at)
                ],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(IdemClaim::Run)
        })
        .await
    }

    async fn finish_idempotency(
        &self,
        app: &AppId,
        key_hash: &SecretHash,
        status: u16,
        body: &pipes_core::crypto::Sealed,
    ) -> Result<(), StoreError> {
        let (app, key, body) = (app.clone(), key_hash.clone(), body.encode());
        self.with(move |c| {
            c.execute(
                "UPDATE idempotency SET status = ?3, body = ?4, lease_until = NULL \
                 WHERE app_id = ?1 AND key_hash = ?2",
                params![app.as_str(), key.as_str(), status, body],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn release_idempotency(
        &self,
        app: &AppId,
        key_hash: &SecretHash,
    ) -> Result<(), StoreError> {
        let (app, key) = (app.clone(), key_hash.clone());
        self.with(move |c| {
            c.execute(
                "DELETE FROM idempotency WHERE app_id = ?1 AND key_hash = ?2 AND status IS NULL",
                params![app.as_str(), key.as_str()],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl pipes_core::ports::RateCounter for EmbeddedStore {
    async fn count_request(
        &self,
        bucket: &str,
        window_start: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let bucket = bucket.to_owned();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            // Old windows go as new ones come (bounded by what was counted recently).
            tx.execute(
                "DELETE FROM rate_counters WHERE expires_at < ?1",
                [millis(window_start)],
            )
            .map_err(db_err)?;
            let count: i64 = tx
                .query_row(
                    "INSERT INTO rate_counters (bucket, window_start, count, expires_at) \
                     VALUES (?1, ?2, 1, ?3) ON CONFLICT(bucket, window_start) \
                     DO UPDATE SET count = count + 1 RETURNING count",
                    params![bucket, millis(window_start), millis(expires_at)],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }
}

//! The durable job table (the local stand-in for SQS): visibility timeouts, retries with backoff, dead after 5 deliveries.

use super::*;

/// A job taken from the embedded queue; invisible to other takers until it is acked,
/// retried, or its visibility timeout passes (then it is delivered again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: i64,
    pub body: String,
    /// Deliveries so far, this one included.
    pub attempts: u32,
}

impl EmbeddedStore {
    /// Takes up to `limit` visible jobs, oldest first, hiding them until `hidden_until`.
    pub async fn take_jobs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        hidden_until: DateTime<Utc>,
    ) -> Result<Vec<QueuedJob>, StoreError> {
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let jobs: Vec<QueuedJob> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id, body, attempts FROM jobs WHERE dead = 0 AND visible_at <= ?1 \
                         ORDER BY id LIMIT ?2",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![millis(now), limit as i64], |r| {
                        Ok(QueuedJob {
                            id: r.get(0)?,
                            body: r.get(1)?,
                            attempts: r.get::<_, u32>(2)? + 1,
                        })
                    })
                    .map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)?
            };
            for job in &jobs {
                tx.execute(
                    "UPDATE jobs SET visible_at = ?2, attempts = attempts + 1 WHERE id = ?1",
                    params![job.id, millis(hidden_until)],
                )
                .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(jobs)
        })
        .await
    }

    /// The job is done: it is deleted.
    pub async fn ack_job(&self, id: i64) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute("DELETE FROM jobs WHERE id = ?1", [id])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    /// The job failed: it becomes visible again at `at`, or dead after too many tries.
    pub async fn retry_job(
        &self,
        id: i64,
        at: DateTime<Utc>,
        error: &str,
        dead: bool,
    ) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE jobs SET visible_at = ?2, last_error = ?3, dead = ?4 WHERE id = ?1",
                params![id, millis(at), error, dead],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    /// Jobs that failed every delivery (the local dead-letter queue).
    pub async fn dead_jobs(&self) -> Result<Vec<QueuedJob>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached("SELECT id, body, attempts FROM jobs WHERE dead = 1 ORDER BY id")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(QueuedJob {
                        id: r.get(0)?,
                        body: r.get(1)?,
                        attempts: r.get(2)?,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }
}

#[async_trait]
impl JobQueue for EmbeddedStore {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError> {
        let body = serde_json::to_string(job).map_err(|e| QueueError(Box::new(e)))?;
        let now = Utc::now().timestamp_millis();
        self.with(move |c| {
            c.execute(
                "INSERT INTO jobs (body, visible_at, created_at) VALUES (?1, 0, ?2)",
                params![body, now],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
        .map_err(|e| QueueError(Box::new(e)))
    }
}

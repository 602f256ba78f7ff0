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

/// The job table's lanes: the counterparts of the setup queue and the events queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Setups, teardowns, checks and Meta's webhook changes.
    Work,
    /// Partner-event deliveries.
    Events,
}

impl Lane {
    fn as_str(self) -> &'static str {
        match self {
            Self::Work => "work",
            Self::Events => "events",
        }
    }
}

/// The events lane of the job table as a `JobQueue`.
#[derive(Debug, Clone)]
pub struct EventLane(pub EmbeddedStore);

#[async_trait]
impl JobQueue for EventLane {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError> {
        self.0.push(Lane::Events, job, None).await
    }

    async fn enqueue_at(&self, job: &Job, at: DateTime<Utc>) -> Result<(), QueueError> {
        self.0.push(Lane::Events, job, Some(at)).await
    }
}

impl EmbeddedStore {
    /// Takes up to `limit` visible jobs of the work lane, oldest first, hiding them
    /// until `hidden_until`.
    pub async fn take_jobs(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        hidden_until: DateTime<Utc>,
    ) -> Result<Vec<QueuedJob>, StoreError> {
        self.take_lane_jobs(Lane::Work, now, limit, hidden_until)
            .await
    }

    /// Takes up to `limit` visible jobs of `lane`, oldest first.
    pub async fn take_lane_jobs(
        &self,
        lane: Lane,
        now: DateTime<Utc>,
        limit: usize,
        hidden_until: DateTime<Utc>,
    ) -> Result<Vec<QueuedJob>, StoreError> {
        let lane = lane.as_str();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let jobs: Vec<QueuedJob> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id, body, attempts FROM jobs WHERE lane = ?3 AND dead = 0 \
                         AND visible_at <= ?1 ORDER BY id LIMIT ?2",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![millis(now), limit as i64, lane], |r| {
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

    /// Makes jobs a previous worker had taken visible again at once, and gives back the
    /// setup leases it held (a restarted `pipes dev` is the only worker of its data dir:
    /// what it had taken when it died will never be acked or released). Returns how many
    /// jobs.
    pub async fn release_taken_jobs(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.with(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            let n = tx
                .execute(
                    "UPDATE jobs SET visible_at = ?1 WHERE dead = 0 AND attempts > 0 AND visible_at > ?1",
                    [millis(now)],
                )
                .map_err(db_err)?;
            tx.execute(
                "UPDATE numbers SET record = json_set(record, '$.setup.leaseUntil', NULL) \
                 WHERE json_extract(record, '$.setup.leaseUntil') IS NOT NULL",
                [],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(n)
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
        self.push(Lane::Work, job, None).await
    }

    async fn enqueue_at(&self, job: &Job, at: DateTime<Utc>) -> Result<(), QueueError> {
        self.push(Lane::Work, job, Some(at)).await
    }
}

impl EmbeddedStore {
    /// Queues `job` in `lane`, visible from `at` (the platform clock's time) or at once.
    async fn push(
        &self,
        lane: Lane,
        job: &Job,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), QueueError> {
        let lane = lane.as_str();
        let body = serde_json::to_string(job).map_err(|e| QueueError(Box::new(e)))?;
        let now = Utc::now().timestamp_millis();
        let visible = at.map_or(0, millis);
        self.with(move |c| {
            c.execute(
                "INSERT INTO jobs (body, visible_at, created_at, lane) VALUES (?1, ?3, ?2, ?4)",
                params![body, now, visible, lane],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
        .map_err(|e| QueueError(Box::new(e)))
    }
}

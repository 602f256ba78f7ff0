//! The SQS `JobQueue`: one message per job, its body the job's JSON.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use pipes_core::queue::{Job, JobQueue, QueueError};

use crate::lazy_client::LazyClient;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: LazyClient<Client>,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: impl Into<LazyClient<Client>>, queue_url: impl Into<String>) -> Self {
        Self {
            client: client.into(),
            queue_url: queue_url.into(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError> {
        self.send(job, 0).await
    }

    async fn enqueue_at(
        &self,
        job: &Job,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), QueueError> {
        // SQS delays at most 900 s; longer waits are the job's own `notBefore`.
        let delay = (at - chrono::Utc::now()).num_seconds().clamp(0, 900);
        self.send(job, i32::try_from(delay).unwrap_or(900)).await
    }
}

impl SqsQueue {
    async fn send(&self, job: &Job, delay: i32) -> Result<(), QueueError> {
        let body = serde_json::to_string(job).map_err(|e| QueueError(Box::new(e)))?;
        let mut send = self
            .client
            .get()
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body);
        if delay > 0 {
            send = send.delay_seconds(delay);
        }
        send.send().await.map_err(|e| QueueError(Box::new(e)))?;
        Ok(())
    }
}

//! The `JobQueue` port: background work handed off by request handlers (SQS on AWS,
//! a durable table in the embedded store locally).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::AppId;
use crate::number::{PhoneNumberId, WabaId};

/// One unit of background work. Serialized as the queue message body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Job {
    /// Run (or resume) the post-signup setup of a number.
    Setup {
        #[serde(rename = "appId")]
        app_id: AppId,
        #[serde(rename = "phoneNumberId")]
        phone_number_id: PhoneNumberId,
    },
    /// After a removal: unsubscribe the WABA when no live number of it remains.
    Teardown {
        #[serde(rename = "appId")]
        app_id: AppId,
        #[serde(rename = "wabaId")]
        waba_id: WabaId,
        /// Messages queued by earlier versions carried the sealed token; new ones leave
        /// it on the number record (`teardown_token`).
        #[serde(
            rename = "sealedToken",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        sealed_token: Option<String>,
        #[serde(rename = "phoneNumberId")]
        phone_number_id: PhoneNumberId,
        /// The version the removal writes: a record at this version or later that is
        /// live again was re-onboarded since, and the teardown has nothing left to do.
        #[serde(
            rename = "removedVersion",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        removed_version: Option<u64>,
    },
    /// A received Meta webhook change, to be acted on once.
    Inbound {
        #[serde(rename = "changeId")]
        change_id: String,
    },
    /// One delivery attempt of a partner event (`attempt` counts from 1 in this run of
    /// the retry schedule); not before `notBefore` (waits longer than the queue's
    /// longest delay hop).
    Deliver {
        #[serde(rename = "appId")]
        app_id: AppId,
        #[serde(rename = "eventId")]
        event_id: String,
        /// The event's run of the retry schedule this job belongs to.
        #[serde(default)]
        run: u32,
        attempt: u32,
        #[serde(rename = "notBefore", default, skip_serializing_if = "Option::is_none")]
        not_before: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Health checks fanned out by the sweep.
    Check {
        #[serde(rename = "numbers")]
        numbers: Vec<(AppId, PhoneNumberId)>,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("the job queue is unavailable")]
pub struct QueueError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

#[async_trait]
pub trait JobQueue: Send + Sync + std::fmt::Debug {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError>;
    /// Queues a job that becomes visible at `at` (by the platform's clock) or, on SQS,
    /// after at most 15 minutes (its limit; longer waits are the job's own `notBefore`).
    async fn enqueue_at(
        &self,
        job: &Job,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), QueueError>;
}

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
        /// The removed number's token, re-sealed for the job (the record's is destroyed).
        #[serde(rename = "sealedToken")]
        sealed_token: String,
        #[serde(rename = "phoneNumberId")]
        phone_number_id: PhoneNumberId,
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
}

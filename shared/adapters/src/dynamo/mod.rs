//! The DynamoDB store: one table, partition key `pk` and sort key `sk` (strings).
//!
//! | item | pk | sk | notes |
//! |---|---|---|---|
//! | App | `APP#{appId}` | `APP` | |
//! | slug lookup | `SLUG#{slug}` | `SLUG` | makes slugs unique, O(1) by slug |
//! | key lookup | `KEY#{sha256}` | `KEY` | O(1) authentication; `revokedAt` once revoked |
//! | key listing | `KEYS#{appId}` | `KEY#{keyId}` | lets an App's keys be listed and revoked by id |
//! | session | `SES#{sessionId}` | `SES` | `ttl` = expiry + retention |
//! | token lookup | `TOK#{sha256}` | `TOK` | finds a session by its token's hash |
//! | number | `NUM#{appId}` | `NUM#{phoneNumberId}` | the whole record in `record`; `gsi1pk`/`gsi1sk` while a check is due |
//! | platform owner | `PHONE#{phoneNumberId}` | `PHONE` | one App per number across the platform |
//! | WABA membership | `WABA#{wabaId}` | `NUM#{phoneNumberId}` | a WABA's live numbers, across Apps |
//! | health history | `HIST#{appId}` | `HIST#{phone}#{millis}#{rand}` | newest last |
//! | dashboard login link | `LOGIN#{sha256}` | `LOGIN` | single use (`usedAt`); `ttl` |
//! | dashboard session | `DSES#{sha256}` | `DSES` | the cookie's hash; `ttl` |
//! | finish report | `FIN#{wabaId}` | `SES#{sessionId}` | the page saw Meta's flow finish with this WABA; `ttl` |
//! | received Meta change | `INB#{changeId}` | `INB` | the change, its outcome; `gsi2pk` = `INBOX#UNMATCHED` when kept for the operator; `ttl` 30 days |
//! | webhook endpoint | `HOOK#{appId}` | `HOOK` | url, sealed signing secret(s) |
//! | partner event | `EVT#{appId}` | `EVT#{eventId}` | ids start with the creation time: newest first by sk; `ttl` 30 days |
//!
//! Index `gsi1` (keys only): `gsi1pk` = `DUE#{shard}` (16 shards), `gsi1sk` =
//! `{due millis}#{appId}#{phone}`: the sweep's due numbers without a Scan. Index `gsi2`
//! (all attributes): `gsi2pk` = `APPSES#{appId}`, `gsi2sk` = `{created millis}#{sessionId}`
//! on session items: an App's recent sessions (the dashboard's Signups page).
//!
//! The partition-key prefixes are what each function's IAM policy grants
//! (`dynamodb:LeadingKeys`): App records (`APP#`, `SLUG#`) are written only by the admin
//! CLI, keys (`KEY#`, `KEYS#`) by the CLI and the dashboard, so numbers, history and key
//! listings live in partitions of their own.
//!
//! Every attribute name in an expression is aliased (`#n`), as DynamoDB requires for
//! reserved words. Writes that must be unique are conditional, in one transaction.

mod apps;
mod dashboard;
mod events;
mod history;
mod items;
mod numbers;
mod sessions;
mod table;

pub use numbers::DUE_SHARDS;
pub use table::create_table;

use history::*;
use items::*;

use std::collections::HashMap;

use crate::codec::{from_json, to_json};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update,
};
use chrono::{DateTime, Duration, Utc};
use pipes_core::ports::{
    Claim, CompletionError, DueNumber, MAX_ABANDONS, NumberPage, NumberStore, Release,
    SignupCompletion, WriteError,
};
use pipes_core::session::{Abandon, SessionFailure};
use pipes_core::{
    App, AppId, AppKeyRecord, AppName, AppStore, HealthEvent, HealthStatus, KeyId, Metadata,
    Number, PhoneNumberId, RedirectOrigin, RedirectUrl, SecretHash, SessionId, SessionStatus,
    SessionStore, SignupSession, Slug, StoreError, WabaId,
};

/// How long a session stays readable (`GET /v1/sessions/{id}` says `expired`) after it
/// expires, before DynamoDB's TTL may delete it.
pub const SESSION_RETENTION: Duration = Duration::days(30);

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn from_conf(conf: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(conf), table)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(out.item)
    }

    fn put(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", "pk")
            .build()
            .map_err(StoreError::unavailable)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Runs a transaction; a refused condition at index `i` becomes `on_condition(i)`.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        on_condition: impl Fn(usize) -> StoreError,
    ) -> Result<(), StoreError> {
        self.transact_raw(items)
            .await
            .map_err(|e| e.either(on_condition))
    }

    /// Runs a transaction; `Refused(i)` names the first item whose condition failed.
    async fn transact_raw(&self, items: Vec<TransactWriteItem>) -> Result<(), TransactFailure> {
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                TransactWriteItemsError::TransactionCanceledException(c) => {
                    let failed = c
                        .cancellation_reasons()
                        .iter()
                        .position(|r| r.code() == Some("ConditionalCheckFailed"));
                    Err(match failed {
                        Some(i) => TransactFailure::Refused(i),
                        None => TransactFailure::Store(StoreError::unavailable(c)),
                    })
                }
                other => Err(TransactFailure::Store(StoreError::unavailable(other))),
            },
            Err(e) => Err(TransactFailure::Store(StoreError::unavailable(e))),
        }
    }
}

enum TransactFailure {
    Refused(usize),
    Store(StoreError),
}

impl TransactFailure {
    fn either(self, on_condition: impl Fn(usize) -> StoreError) -> StoreError {
        match self {
            Self::Refused(i) => on_condition(i),
            Self::Store(e) => e,
        }
    }
}

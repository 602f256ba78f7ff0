//! The DynamoDB store: one table, partition key `pk` and sort key `sk` (strings).
//!
//! | item | pk | sk | notes |
//! |---|---|---|---|
//! | App | `APP#{appId}` | `APP` | |
//! | slug lookup | `SLUG#{slug}` | `SLUG` | makes slugs unique, O(1) by slug |
//! | key lookup | `KEY#{sha256}` | `KEY` | O(1) authentication; `revokedAt` once revoked |
//! | key listing | `APP#{appId}` | `KEY#{keyId}` | lets an App's keys be listed and revoked by id |
//! | session | `SES#{sessionId}` | `SES` | `ttl` = expiry + retention |
//! | token lookup | `TOK#{sha256}` | `TOK` | finds a session by its token's hash |
//! | number | `NUM#{appId}` | `NUM#{phoneNumberId}` | the whole record in `record`; `gsi1pk`/`gsi1sk` while a check is due |
//! | platform owner | `PHONE#{phoneNumberId}` | `PHONE` | one App per number across the platform |
//! | WABA membership | `WABA#{wabaId}` | `NUM#{phoneNumberId}` | a WABA's live numbers, across Apps |
//! | health history | `HIST#{appId}` | `HIST#{phone}#{millis}#{rand}` | newest last |
//!
//! Index `gsi1` (keys only): `gsi1pk` = `DUE#{shard}` (16 shards), `gsi1sk` =
//! `{due millis}#{appId}#{phone}`: the sweep's due numbers without a Scan.
//!
//! The partition-key prefixes are what each function's IAM policy grants
//! (`dynamodb:LeadingKeys`): App records and keys (`APP#`, `KEY#`, `SLUG#`) are written
//! only by the admin CLI, so numbers and history live in partitions of their own.
//!
//! Every attribute name in an expression is aliased (`#n`), as DynamoDB requires for
//! reserved words. Writes that must be unique are conditional, in one transaction.

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

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn app_pk(id: &AppId) -> String {
    format!("APP#{id}")
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// Typed reads of an item's attributes; a missing or mistyped one is `Corrupt`.
struct Attrs<'a>(&'a Item);

impl Attrs<'_> {
    fn str(&self, name: &str) -> Result<&str, StoreError> {
        self.opt_str(name)?.ok_or_else(|| corrupt(name))
    }

    fn opt_str(&self, name: &str) -> Result<Option<&str>, StoreError> {
        match self.0.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(_) => Err(corrupt(name)),
        }
    }

    fn time(&self, name: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_time(name)?.ok_or_else(|| corrupt(name))
    }

    fn opt_time(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.0.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse::<i64>()
                .ok()
                .and_then(DateTime::from_timestamp_millis)
                .map(Some)
                .ok_or_else(|| corrupt(name)),
            Some(_) => Err(corrupt(name)),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, StoreError> {
        from_json(name, self.str(name)?)
    }

    fn app_id(&self) -> Result<AppId, StoreError> {
        AppId::parse(self.str("appId")?).ok_or_else(|| corrupt("appId"))
    }
}

fn app_item(app: &App) -> Result<Item, StoreError> {
    Ok(HashMap::from([
        ("pk".into(), s(app_pk(&app.id))),
        ("sk".into(), s("APP")),
        ("appId".into(), s(app.id.as_str())),
        ("slug".into(), s(app.slug.as_str())),
        ("name".into(), s(app.name.as_str())),
        ("allowedOrigins".into(), s(to_json(&app.allowed_origins)?)),
        ("createdAt".into(), n(app.created_at.timestamp_millis())),
    ]))
}

fn app_from(item: &Item) -> Result<App, StoreError> {
    let a = Attrs(item);
    Ok(App {
        id: a.app_id()?,
        slug: Slug::parse(a.str("slug")?).map_err(|_| corrupt("slug"))?,
        name: AppName::parse(a.str("name")?).map_err(|_| corrupt("name"))?,
        allowed_origins: a.json::<Vec<RedirectOrigin>>("allowedOrigins")?,
        created_at: a.time("createdAt")?,
    })
}

/// The two key items: the lookup by hash and the listing entry under the App.
fn key_items(key: &AppKeyRecord, hash: &SecretHash) -> [Item; 2] {
    let common = [
        ("appId".to_owned(), s(key.app_id.as_str())),
        ("keyId".to_owned(), s(key.key_id.as_str())),
        ("keyHash".to_owned(), s(hash.as_str())),
        ("createdAt".to_owned(), n(key.created_at.timestamp_millis())),
    ];
    let mut lookup: Item = common.clone().into();
    lookup.insert("pk".into(), s(format!("KEY#{}", hash.as_str())));
    lookup.insert("sk".into(), s("KEY"));
    let mut listing: Item = common.into();
    listing.insert("pk".into(), s(app_pk(&key.app_id)));
    listing.insert("sk".into(), s(format!("KEY#{}", key.key_id)));
    [lookup, listing]
}

fn key_from(item: &Item) -> Result<AppKeyRecord, StoreError> {
    let a = Attrs(item);
    Ok(AppKeyRecord {
        key_id: KeyId::parse(a.str("keyId")?).ok_or_else(|| corrupt("keyId"))?,
        app_id: a.app_id()?,
        created_at: a.time("createdAt")?,
        revoked_at: a.opt_time("revokedAt")?,
    })
}

fn session_item(ses: &SignupSession) -> Result<Item, StoreError> {
    let ttl = (ses.expires_at + SESSION_RETENTION).timestamp();
    let mut item: Item = HashMap::from([
        ("pk".into(), s(format!("SES#{}", ses.id))),
        ("sk".into(), s("SES")),
        ("sessionId".into(), s(ses.id.as_str())),
        ("appId".into(), s(ses.app_id.as_str())),
        ("tokenHash".into(), s(ses.token_hash.as_str())),
        ("status".into(), s(ses.status.as_str())),
        ("redirectUrl".into(), s(ses.redirect_url.as_str())),
        ("metadata".into(), s(to_json(&ses.metadata)?)),
        ("createdAt".into(), n(ses.created_at.timestamp_millis())),
        ("expiresAt".into(), n(ses.expires_at.timestamp_millis())),
        (
            "abandons".into(),
            AttributeValue::L(
                ses.abandons
                    .iter()
                    .map(|a| to_json(a).map(s))
                    .collect::<Result<_, _>>()?,
            ),
        ),
        ("ttl".into(), n(ttl)),
    ]);
    if let Some(t) = ses.completed_at {
        item.insert("completedAt".into(), n(t.timestamp_millis()));
    }
    if let Some(p) = &ses.phone_number_id {
        item.insert("phoneNumberId".into(), s(p));
    }
    if let Some(e) = &ses.error {
        item.insert("error".into(), s(to_json(e)?));
    }
    Ok(item)
}

fn session_from(item: &Item) -> Result<SignupSession, StoreError> {
    let a = Attrs(item);
    Ok(SignupSession {
        id: SessionId::parse(a.str("sessionId")?).ok_or_else(|| corrupt("sessionId"))?,
        app_id: a.app_id()?,
        token_hash: SecretHash::parse(a.str("tokenHash")?).ok_or_else(|| corrupt("tokenHash"))?,
        status: SessionStatus::parse(a.str("status")?).ok_or_else(|| corrupt("status"))?,
        redirect_url: RedirectUrl::try_from(a.str("redirectUrl")?.to_owned())
            .map_err(|_| corrupt("redirectUrl"))?,
        metadata: a.json::<Metadata>("metadata")?,
        created_at: a.time("createdAt")?,
        expires_at: a.time("expiresAt")?,
        completed_at: a.opt_time("completedAt")?,
        phone_number_id: a.opt_str("phoneNumberId")?.map(str::to_owned),
        error: a
            .opt_str("error")?
            .map(|e| from_json::<SessionFailure>("error", e))
            .transpose()?,
        abandons: match item.get("abandons") {
            Some(AttributeValue::L(list)) => list
                .iter()
                .map(|v| match v {
                    AttributeValue::S(j) => from_json::<Abandon>("abandons", j),
                    _ => Err(corrupt("abandons")),
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
            Some(_) => return Err(corrupt("abandons")),
        },
    })
}

/// Whether an SDK error is a refused condition (the write did not happen).
fn is_condition_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

#[async_trait]
impl AppStore for DynamoStore {
    async fn create_app(
        &self,
        app: &App,
        key: &AppKeyRecord,
        key_hash: &SecretHash,
    ) -> Result<(), StoreError> {
        let slug = HashMap::from([
            ("pk".into(), s(format!("SLUG#{}", app.slug))),
            ("sk".into(), s("SLUG")),
            ("appId".into(), s(app.id.as_str())),
        ]);
        let [lookup, listing] = key_items(key, key_hash);
        let items = vec![
            self.put(app_item(app)?)?,
            self.put(slug)?,
            self.put(lookup)?,
            self.put(listing)?,
        ];
        self.transact(items, |_| StoreError::Conflict("app slug or id"))
            .await
    }

    async fn app(&self, id: &AppId) -> Result<Option<App>, StoreError> {
        self.get(app_pk(id), "APP")
            .await?
            .map(|i| app_from(&i))
            .transpose()
    }

    async fn app_by_slug(&self, slug: &Slug) -> Result<Option<App>, StoreError> {
        let Some(item) = self.get(format!("SLUG#{slug}"), "SLUG").await? else {
            return Ok(None);
        };
        self.app(&Attrs(&item).app_id()?).await
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        let mut apps = Vec::new();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("#sk = :app")
            .expression_attribute_names("#sk", "sk")
            .expression_attribute_values(":app", s("APP"))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            apps.push(app_from(&item.map_err(StoreError::unavailable)?)?);
        }
        apps.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(apps)
    }

    async fn add_key(&self, key: &AppKeyRecord, key_hash: &SecretHash) -> Result<(), StoreError> {
        let app_exists = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(app_pk(&key.app_id)))
            .key("sk", s("APP"))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", "pk")
            .build()
            .map_err(StoreError::unavailable)?;
        let [lookup, listing] = key_items(key, key_hash);
        let items = vec![
            TransactWriteItem::builder()
                .condition_check(app_exists)
                .build(),
            self.put(lookup)?,
            self.put(listing)?,
        ];
        self.transact(items, |i| match i {
            0 => StoreError::NotFound("app"),
            _ => StoreError::Conflict("app key"),
        })
        .await
    }

    async fn app_for_key(&self, key_hash: &SecretHash) -> Result<Option<App>, StoreError> {
        let Some(item) = self
            .get(format!("KEY#{}", key_hash.as_str()), "KEY")
            .await?
        else {
            return Ok(None);
        };
        if key_from(&item)?.revoked_at.is_some() {
            return Ok(None);
        }
        self.app(&Attrs(&item).app_id()?).await
    }

    async fn list_keys(&self, app: &AppId) -> Result<Vec<AppKeyRecord>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :key)")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#sk", "sk")
            .expression_attribute_values(":pk", s(app_pk(app)))
            .expression_attribute_values(":key", s("KEY#"))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            keys.push(key_from(&item.map_err(StoreError::unavailable)?)?);
        }
        keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(keys)
    }

    async fn revoke_key(
        &self,
        app: &AppId,
        key: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Some(listing) = self.get(app_pk(app), &format!("KEY#{key}")).await? else {
            return Ok(false);
        };
        let hash = Attrs(&listing).str("keyHash")?.to_owned();
        let revoke = |pk: String, sk: String| {
            Update::builder()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .update_expression("SET #r = if_not_exists(#r, :at)")
                .condition_expression("attribute_exists(#pk)")
                .expression_attribute_names("#r", "revokedAt")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_values(":at", n(at.timestamp_millis()))
                .build()
                .map(|u| TransactWriteItem::builder().update(u).build())
                .map_err(StoreError::unavailable)
        };
        let items = vec![
            revoke(app_pk(app), format!("KEY#{key}"))?,
            revoke(format!("KEY#{hash}"), "KEY".into())?,
        ];
        self.transact(items, |_| StoreError::NotFound("app key"))
            .await?;
        Ok(true)
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn insert_session(&self, ses: &SignupSession) -> Result<(), StoreError> {
        let token = HashMap::from([
            ("pk".into(), s(format!("TOK#{}", ses.token_hash.as_str()))),
            ("sk".into(), s("TOK")),
            ("sessionId".into(), s(ses.id.as_str())),
            (
                "ttl".into(),
                n((ses.expires_at + SESSION_RETENTION).timestamp()),
            ),
        ]);
        let items = vec![self.put(session_item(ses)?)?, self.put(token)?];
        self.transact(items, |_| StoreError::Conflict("session"))
            .await
    }

    async fn session(&self, id: &SessionId) -> Result<Option<SignupSession>, StoreError> {
        self.get(format!("SES#{id}"), "SES")
            .await?
            .map(|i| session_from(&i))
            .transpose()
    }

    async fn session_by_token(
        &self,
        token_hash: &SecretHash,
    ) -> Result<Option<SignupSession>, StoreError> {
        let Some(item) = self
            .get(format!("TOK#{}", token_hash.as_str()), "TOK")
            .await?
        else {
            return Ok(None);
        };
        let id =
            SessionId::parse(Attrs(&item).str("sessionId")?).ok_or_else(|| corrupt("sessionId"))?;
        self.session(&id).await
    }

    async fn claim_session(
        &self,
        token_hash: &SecretHash,
        claim_id: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let Some(session) = self.session_by_token(token_hash).await? else {
            return Ok(Claim::NotFound);
        };
        // Cheap answers first; the conditional write below is what decides races.
        if let Some(verdict @ (Claim::Expired | Claim::Used)) = Claim::refusal(&session, now, true)
        {
            return Ok(verdict);
        }
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("SES#{}", session.id)))
            .key("sk", s("SES"))
            .update_expression("SET #s = :completing, #c = :claim, #u = :until")
            .condition_expression(
                "(#s IN (:pending, :failed) OR (#s = :completing AND #u < :now)) AND #e > :now",
            )
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#c", "claimId")
            .expression_attribute_names("#u", "claimUntil")
            .expression_attribute_names("#e", "expiresAt")
            .expression_attribute_values(":completing", s("completing"))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":claim", s(claim_id))
            .expression_attribute_values(":until", n(lease_until.timestamp_millis()))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => {
                let item = out.attributes.ok_or_else(|| corrupt("claimed session"))?;
                Ok(Claim::Won(Box::new(session_from(&item)?)))
            }
            Err(e) if is_condition_failure(&e) => {
                let Some(current) = self.session(&session.id).await? else {
                    return Ok(Claim::NotFound);
                };
                Ok(Claim::refusal(&current, now, false).unwrap_or(Claim::Held))
            }
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    async fn release_claim(
        &self,
        id: &SessionId,
        claim_id: &str,
        release: &Release,
    ) -> Result<bool, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("SES#{id}")))
            .key("sk", s("SES"))
            .condition_expression("#c = :claim")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#c", "claimId")
            .expression_attribute_names("#u", "claimUntil")
            .expression_attribute_names("#err", "error")
            .expression_attribute_values(":claim", s(claim_id))
            .expression_attribute_values(":status", s(release.status.as_str()));
        update = match &release.error {
            Some(e) => update
                .update_expression("SET #s = :status, #err = :err REMOVE #c, #u")
                .expression_attribute_values(":err", s(to_json(e)?)),
            None => update.update_expression("SET #s = :status REMOVE #c, #u, #err"),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    async fn record_abandon(&self, id: &SessionId, abandon: &Abandon) -> Result<bool, StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("SES#{id}")))
            .key("sk", s("SES"))
            .update_expression("SET #a = list_append(#a, :new)")
            .condition_expression("attribute_exists(#pk) AND #s <> :completed AND size(#a) < :max")
            .expression_attribute_names("#a", "abandons")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_values(":new", AttributeValue::L(vec![s(to_json(abandon)?)]))
            .expression_attribute_values(":completed", s("completed"))
            .expression_attribute_values(":max", n(MAX_ABANDONS as i64))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }
}

fn numbers_pk(app: &AppId) -> String {
    format!("NUM#{app}")
}

fn history_pk(app: &AppId) -> String {
    format!("HIST#{app}")
}

fn number_sk(phone: &PhoneNumberId) -> String {
    format!("NUM#{phone}")
}

/// Due numbers are spread over this many GSI partitions so the sweep's reads scale.
pub const DUE_SHARDS: u32 = 16;

fn due_shard(phone: &PhoneNumberId) -> String {
    let h = phone
        .as_str()
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("DUE#{:02}", h % DUE_SHARDS)
}

/// The number item: key, the attributes queries filter on, and the whole record.
fn number_item(number: &Number) -> Result<Item, StoreError> {
    let version = i64::try_from(number.version).map_err(|_| corrupt("version"))?;
    let mut item: Item = HashMap::from([
        ("pk".into(), s(numbers_pk(&number.app_id))),
        ("sk".into(), s(number_sk(&number.phone_number_id))),
        ("appId".into(), s(number.app_id.as_str())),
        ("phoneNumberId".into(), s(number.phone_number_id.as_str())),
        ("wabaId".into(), s(number.waba_id.as_str())),
        ("status".into(), s(number.health.status.as_str())),
        ("version".into(), n(version)),
        ("record".into(), s(to_json(number)?)),
    ]);
    if let Some(due) = number.health.next_check_at {
        item.insert("gsi1pk".into(), s(due_shard(&number.phone_number_id)));
        item.insert(
            "gsi1sk".into(),
            s(format!(
                "{:015}#{}#{}",
                due.timestamp_millis(),
                number.app_id,
                number.phone_number_id
            )),
        );
    }
    Ok(item)
}

/// Reads a GSI sort key `{due millis}#{appId}#{phone}` back.
fn due_from(key: &str) -> Result<DueNumber, StoreError> {
    let mut parts = key.splitn(3, '#');
    let (Some(due), Some(app), Some(phone)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(corrupt("gsi1sk"));
    };
    Ok(DueNumber {
        app_id: AppId::parse(app).ok_or_else(|| corrupt("gsi1sk"))?,
        phone_number_id: PhoneNumberId::parse(phone).ok_or_else(|| corrupt("gsi1sk"))?,
        due_at: due
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| corrupt("gsi1sk"))?,
    })
}

/// The WABA membership item: lets teardown find a WABA's live numbers across Apps.
fn membership_item(number: &Number) -> Item {
    HashMap::from([
        ("pk".into(), s(format!("WABA#{}", number.waba_id))),
        ("sk".into(), s(number_sk(&number.phone_number_id))),
        ("appId".into(), s(number.app_id.as_str())),
        ("phoneNumberId".into(), s(number.phone_number_id.as_str())),
    ])
}

fn number_from(item: &Item) -> Result<Number, StoreError> {
    from_json("number", Attrs(item).str("record")?)
}

fn history_item(number: &Number, event: &HealthEvent) -> Result<Item, StoreError> {
    Ok(HashMap::from([
        ("pk".into(), s(history_pk(&number.app_id))),
        (
            "sk".into(),
            s(format!(
                "HIST#{}#{:015}#{}",
                number.phone_number_id,
                event.at.timestamp_millis(),
                pipes_core::random::base62(6)
            )),
        ),
        ("event".into(), s(to_json(event)?)),
    ]))
}

impl DynamoStore {
    /// A put of the number item that succeeds only over the version that was read
    /// (`None`: only if the App has no record of the number).
    fn versioned_put(
        &self,
        number: &Number,
        expected: Option<u64>,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(number_item(number)?));
        let put = match expected {
            None => put
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", "pk"),
            Some(v) => put
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(
                    ":expected",
                    n(i64::try_from(v).map_err(|_| corrupt("version"))?),
                ),
        };
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(StoreError::unavailable)?)
            .build())
    }
}

#[async_trait]
impl NumberStore for DynamoStore {
    async fn number(
        &self,
        app: &AppId,
        phone: &PhoneNumberId,
    ) -> Result<Option<Number>, StoreError> {
        self.get(numbers_pk(app), &number_sk(phone))
            .await?
            .map(|i| number_from(&i))
            .transpose()
    }

    async fn number_owner(&self, phone: &PhoneNumberId) -> Result<Option<AppId>, StoreError> {
        self.get(format!("PHONE#{phone}"), "PHONE")
            .await?
            .map(|i| Attrs(&i).app_id())
            .transpose()
    }

    async fn complete_signup(&self, done: &SignupCompletion) -> Result<(), CompletionError> {
        let number = &done.number;
        let session = Update::builder()
            .table_name(&self.table)
            .key("pk", s(format!("SES#{}", done.session_id)))
            .key("sk", s("SES"))
            .update_expression("SET #s = :completed, #ca = :at, #p = :phone REMOVE #c, #u, #err")
            .condition_expression("#c = :claim")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#ca", "completedAt")
            .expression_attribute_names("#p", "phoneNumberId")
            .expression_attribute_names("#c", "claimId")
            .expression_attribute_names("#u", "claimUntil")
            .expression_attribute_names("#err", "error")
            .expression_attribute_values(":completed", s("completed"))
            .expression_attribute_values(":at", n(done.completed_at.timestamp_millis()))
            .expression_attribute_values(":phone", s(number.phone_number_id.as_str()))
            .expression_attribute_values(":claim", s(&done.claim_id))
            .build()
            .map_err(StoreError::unavailable)?;
        let owner = Put::builder()
            .table_name(&self.table)
            .item("pk", s(format!("PHONE#{}", number.phone_number_id)))
            .item("sk", s("PHONE"))
            .item("appId", s(number.app_id.as_str()))
            .condition_expression("attribute_not_exists(#pk) OR #a = :app")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#a", "appId")
            .expression_attribute_values(":app", s(number.app_id.as_str()))
            .build()
            .map_err(StoreError::unavailable)?;
        let membership = Put::builder()
            .table_name(&self.table)
            .set_item(Some(membership_item(number)))
            .build()
            .map_err(StoreError::unavailable)?;
        let mut items = vec![
            TransactWriteItem::builder().update(session).build(),
            TransactWriteItem::builder().put(owner).build(),
            self.versioned_put(number, done.expected_version)?,
            TransactWriteItem::builder().put(membership).build(),
        ];
        if let Some(event) = &done.history {
            items.push(self.put(history_item(number, event)?)?);
        }
        match self.transact_raw(items).await {
            Ok(()) => Ok(()),
            Err(TransactFailure::Refused(0)) => Err(CompletionError::ClaimLost),
            Err(TransactFailure::Refused(1)) => Err(CompletionError::OwnedByAnotherApp),
            Err(TransactFailure::Refused(_)) => Err(CompletionError::NumberChanged),
            Err(TransactFailure::Store(e)) => Err(e.into()),
        }
    }
    async fn save_number(
        &self,
        number: &Number,
        expected_version: u64,
        history: Option<&HealthEvent>,
    ) -> Result<(), WriteError> {
        let mut items = vec![self.versioned_put(number, Some(expected_version))?];
        if let Some(event) = history {
            items.push(self.put(history_item(number, event)?)?);
        }
        match self.transact_raw(items).await {
            Ok(()) => Ok(()),
            Err(TransactFailure::Refused(_)) => Err(WriteError::Changed),
            Err(TransactFailure::Store(e)) => Err(e.into()),
        }
    }

    async fn remove_number(
        &self,
        removed: &Number,
        expected_version: u64,
        history: &HealthEvent,
    ) -> Result<(), WriteError> {
        let owner = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(format!("PHONE#{}", removed.phone_number_id)))
            .key("sk", s("PHONE"))
            .condition_expression("attribute_not_exists(#pk) OR #a = :app")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#a", "appId")
            .expression_attribute_values(":app", s(removed.app_id.as_str()))
            .build()
            .map_err(StoreError::unavailable)?;
        let membership = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(format!("WABA#{}", removed.waba_id)))
            .key("sk", s(number_sk(&removed.phone_number_id)))
            .build()
            .map_err(StoreError::unavailable)?;
        let items = vec![
            self.versioned_put(removed, Some(expected_version))?,
            TransactWriteItem::builder().delete(owner).build(),
            TransactWriteItem::builder().delete(membership).build(),
            self.put(history_item(removed, history)?)?,
        ];
        match self.transact_raw(items).await {
            Ok(()) => Ok(()),
            Err(TransactFailure::Refused(_)) => Err(WriteError::Changed),
            Err(TransactFailure::Store(e)) => Err(e.into()),
        }
    }

    async fn list_numbers(
        &self,
        app: &AppId,
        status: Option<HealthStatus>,
        limit: usize,
        after: Option<&PhoneNumberId>,
    ) -> Result<NumberPage, StoreError> {
        let mut numbers = Vec::new();
        let mut start: Option<Item> = after.map(|a| {
            HashMap::from([
                ("pk".to_owned(), s(numbers_pk(app))),
                ("sk".to_owned(), s(number_sk(a))),
            ])
        });
        // Read one more than asked, to know whether another page exists.
        let wanted = limit + 1;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :num)")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#sk", "sk")
                .expression_attribute_values(":pk", s(numbers_pk(app)))
                .expression_attribute_values(":num", s("NUM#"))
                .consistent_read(true)
                .limit(i32::try_from(wanted - numbers.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            if let Some(st) = status {
                query = query
                    .filter_expression("#s = :status")
                    .expression_attribute_names("#s", "status")
                    .expression_attribute_values(":status", s(st.as_str()));
            }
            let out = query.send().await.map_err(StoreError::unavailable)?;
            for item in out.items() {
                numbers.push(number_from(item)?);
            }
            match out.last_evaluated_key {
                Some(key) if numbers.len() < wanted => start = Some(key),
                _ => break,
            }
        }
        Ok(NumberPage::from_overfetch(numbers, limit))
    }

    async fn live_numbers_in_waba(
        &self,
        waba: &WabaId,
    ) -> Result<Vec<(AppId, PhoneNumberId)>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_values(":pk", s(format!("WABA#{waba}")))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(StoreError::unavailable)?;
            let a = Attrs(&item);
            let phone = PhoneNumberId::parse(a.str("phoneNumberId")?)
                .ok_or_else(|| corrupt("phoneNumberId"))?;
            out.push((a.app_id()?, phone));
        }
        Ok(out)
    }

    async fn history(
        &self,
        app: &AppId,
        phone: &PhoneNumberId,
        limit: usize,
    ) -> Result<Vec<HealthEvent>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :hist)")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#sk", "sk")
            .expression_attribute_values(":pk", s(history_pk(app)))
            .expression_attribute_values(":hist", s(format!("HIST#{phone}#")))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        out.items()
            .iter()
            .map(|i| from_json("history", Attrs(i).str("event")?))
            .collect()
    }

    async fn due_numbers(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueNumber>, StoreError> {
        // Each shard is a partition of the GSI, sorted by due time: read the stalest of
        // each (in parallel), then keep the stalest overall.
        let upper = format!("{:015}~", now.timestamp_millis());
        let queries = (0..DUE_SHARDS).map(|shard| {
            self.client
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("#p = :shard AND #d <= :upper")
                .expression_attribute_names("#p", "gsi1pk")
                .expression_attribute_names("#d", "gsi1sk")
                .expression_attribute_values(":shard", s(format!("DUE#{shard:02}")))
                .expression_attribute_values(":upper", s(upper.clone()))
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .send()
        });
        let mut due = Vec::new();
        for out in futures_util::future::join_all(queries).await {
            let out = out.map_err(StoreError::unavailable)?;
            for item in out.items() {
                due.push(due_from(Attrs(item).str("gsi1sk")?)?);
            }
        }
        due.sort_by_key(|d| d.due_at);
        due.truncate(limit);
        Ok(due)
    }
}

/// Creates the table as `template.yaml` declares it (keys, the sweep's GSI, TTL): for
/// tests against the emulator and for `pipes` pointed at a fresh table.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
    };
    let attr = |name: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(t)
            .build()
            .map_err(StoreError::unavailable)
    };
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .map_err(StoreError::unavailable)
    };
    let gsi = GlobalSecondaryIndex::builder()
        .index_name("gsi1")
        .key_schema(key("gsi1pk", KeyType::Hash)?)
        .key_schema(key("gsi1sk", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()
        .map_err(StoreError::unavailable)?;
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("sk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("gsi1pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("gsi1sk", ScalarAttributeType::S)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(gsi)
        .send()
        .await
        .map_err(StoreError::unavailable)?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("ttl")
                .enabled(true)
                .build()
                .map_err(StoreError::unavailable)?,
        )
        .send()
        .await
        .map_err(StoreError::unavailable)?;
    Ok(())
}

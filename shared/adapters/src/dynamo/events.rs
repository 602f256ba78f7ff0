//! Meta's received changes (the inbox), partner endpoints and events.

use super::*;
use pipes_core::events::{Endpoint, Event, EventType};
use pipes_core::ports::{
    ChangeOutcome, EventPage, EventStore, INBOX_RETENTION, InboxStore, StoredChange,
};
use pipes_core::webhooks::InboundChange;

/// The partition listing changes kept for the operator (index gsi2).
const UNMATCHED: &str = "INBOX#UNMATCHED";

fn change_from(item: &Item) -> Result<StoredChange, StoreError> {
    let a = Attrs(item);
    Ok(StoredChange {
        change: a.json::<InboundChange>("record")?,
        outcome: a
            .opt_str("outcome")?
            .map(|o| from_json::<ChangeOutcome>("outcome", &format!("\"{o}\"")))
            .transpose()?,
        note: a.opt_str("note")?.map(str::to_owned),
        settled_at: a.opt_time("settledAt")?,
    })
}

#[async_trait]
impl InboxStore for DynamoStore {
    async fn insert_change(&self, change: &InboundChange) -> Result<bool, StoreError> {
        let item: Item = HashMap::from([
            ("pk".into(), s(format!("INB#{}", change.id))),
            ("sk".into(), s("INB")),
            ("record".into(), s(to_json(change)?)),
            (
                "receivedAt".into(),
                n(change.received_at.timestamp_millis()),
            ),
            (
                "ttl".into(),
                n((change.received_at + INBOX_RETENTION).timestamp()),
            ),
        ]);
        self.put_new(item).await
    }

    async fn change(&self, id: &str) -> Result<Option<StoredChange>, StoreError> {
        self.get(format!("INB#{id}"), "INB")
            .await?
            .map(|i| change_from(&i))
            .transpose()
    }

    async fn settle_change(
        &self,
        id: &str,
        outcome: ChangeOutcome,
        note: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("INB#{id}")))
            .key("sk", s("INB"))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#o", "outcome")
            .expression_attribute_names("#n", "note")
            .expression_attribute_names("#at", "settledAt")
            .expression_attribute_values(":o", s(outcome.as_str()))
            .expression_attribute_values(":n", s(note))
            .expression_attribute_values(":at", n(at.timestamp_millis()));
        update = if outcome == ChangeOutcome::Unmatched {
            update
                .update_expression("SET #o = :o, #n = :n, #at = :at, #g = :g, #gs = :gs")
                .expression_attribute_names("#g", "gsi2pk")
                .expression_attribute_names("#gs", "gsi2sk")
                .expression_attribute_values(":g", s(UNMATCHED))
                .expression_attribute_values(
                    ":gs",
                    s(format!("{:015}#{id}", at.timestamp_millis())),
                )
        } else {
            update.update_expression("SET #o = :o, #n = :n, #at = :at")
        };
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::NotFound("change")),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    async fn unmatched_changes(&self, limit: usize) -> Result<Vec<StoredChange>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi2")
            .key_condition_expression("#p = :p")
            .expression_attribute_names("#p", "gsi2pk")
            .expression_attribute_values(":p", s(UNMATCHED))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        out.items().iter().map(change_from).collect()
    }
}

fn event_item(e: &Event) -> Result<Item, StoreError> {
    Ok(HashMap::from([
        ("pk".into(), s(format!("EVT#{}", e.app_id))),
        ("sk".into(), s(format!("EVT#{}", e.id))),
        ("kind".into(), s(e.kind.as_str())),
        ("createdAt".into(), n(e.created_at.timestamp_millis())),
        ("record".into(), s(to_json(e)?)),
        ("ttl".into(), n(e.expires_at().timestamp())),
    ]))
}

impl DynamoStore {
    /// Puts an item that must not exist yet; `false` when it does (nothing written).
    async fn put_new(&self, item: Item) -> Result<bool, StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", "pk")
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("HOOK#{}", endpoint.app_id)))
            .item("sk", s("HOOK"))
            .item("record", s(to_json(endpoint)?));
        if let Some(t) = endpoint.failing_since {
            put = put.item("failingSince", n(t.timestamp_millis()));
        }
        put.send().await.map_err(StoreError::unavailable)?;
        Ok(())
    }

    async fn endpoint(&self, app: &AppId) -> Result<Option<Endpoint>, StoreError> {
        let Some(item) = self.get(format!("HOOK#{app}"), "HOOK").await? else {
            return Ok(None);
        };
        let a = Attrs(&item);
        let mut e = a.json::<Endpoint>("record")?;
        e.failing_since = a.opt_time("failingSince")?;
        Ok(Some(e))
    }

    async fn delete_endpoint(&self, app: &AppId) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("HOOK#{app}")))
            .key("sk", s("HOOK"))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(out.attributes.is_some())
    }

    async fn set_endpoint_failing(
        &self,
        app: &AppId,
        since: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("HOOK#{app}")))
            .key("sk", s("HOOK"))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#f", "failingSince");
        let update = match since {
            Some(t) => update
                .update_expression("SET #f = :t")
                .expression_attribute_values(":t", n(t.timestamp_millis())),
            None => update.update_expression("REMOVE #f"),
        };
        match update.send().await {
            // Removed meanwhile: it stays removed.
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    async fn insert_event(&self, event: &Event) -> Result<bool, StoreError> {
        self.put_new(event_item(event)?).await
    }

    async fn event(&self, app: &AppId, id: &str) -> Result<Option<Event>, StoreError> {
        self.get(format!("EVT#{app}"), &format!("EVT#{id}"))
            .await?
            .map(|i| Attrs(&i).json::<Event>("record"))
            .transpose()
    }

    async fn save_delivery(&self, event: &Event) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("EVT#{}", event.app_id)))
            .key("sk", s(format!("EVT#{}", event.id)))
            .update_expression("SET #r = :r")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#r", "record")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_values(":r", s(to_json(event)?))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::NotFound("event")),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    async fn list_events(
        &self,
        app: &AppId,
        kind: Option<EventType>,
        limit: usize,
        before: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<EventPage, StoreError> {
        // Newest first by id (ids start with their creation time); the type and the
        // retention (TTL deletes lazily) are filters, so a page may take several reads.
        let cutoff = (now - pipes_core::events::RETENTION).timestamp_millis();
        let upper = match before {
            Some(id) => format!("EVT#{id}"),
            None => "EVT#evt_g".to_owned(),
        };
        // A filtered page reads at most MAX_READS queries of READ_PAGE items (DynamoDB
        // applies `Limit` before the filter): a rare type on a busy App answers a short
        // page with a cursor instead of reading the whole partition.
        const READ_PAGE: usize = 100;
        const MAX_READS: usize = 5;
        let mut events = Vec::new();
        let mut start: Option<Item> = None;
        let mut last_read: Option<String> = None;
        let mut reads = 0;
        loop {
            reads += 1;
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#sk", "sk")
                .expression_attribute_names("#c", "createdAt")
                .expression_attribute_values(":pk", s(format!("EVT#{app}")))
                .expression_attribute_values(":lo", s("EVT#evt_"))
                .expression_attribute_values(":hi", s(upper.clone()))
                .expression_attribute_values(":cut", n(cutoff))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(i32::try_from((limit + 1).max(READ_PAGE)).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            q = match kind {
                Some(k) => q
                    .filter_expression("#c >= :cut AND #k = :k")
                    .expression_attribute_names("#k", "kind")
                    .expression_attribute_values(":k", s(k.as_str())),
                None => q.filter_expression("#c >= :cut"),
            };
            let out = q.send().await.map_err(StoreError::unavailable)?;
            for item in out.items() {
                let e = Attrs(item).json::<Event>("record")?;
                if Some(e.id.as_str()) != before {
                    events.push(e);
                }
            }
            start = out.last_evaluated_key;
            if events.len() > limit || start.is_none() {
                break;
            }
            if reads >= MAX_READS {
                // More may match further back: the cursor resumes after what was read.
                last_read = start
                    .as_ref()
                    .and_then(|k| k.get("sk"))
                    .and_then(|v| v.as_s().ok())
                    .and_then(|sk| sk.strip_prefix("EVT#"))
                    .map(str::to_owned);
                break;
            }
        }
        let mut page = EventPage::from_overfetch(events, limit);
        if page.next_before.is_none() {
            page.next_before = last_read;
        }
        Ok(page)
    }
}

#[async_trait]
impl pipes_core::ports::IdempotencyStore for DynamoStore {
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
        let (pk, sk) = (format!("IDEM#{app}"), format!("IDEM#{}", key_hash.as_str()));
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("sk", s(&sk))
            .item("requestHash", s(request_hash))
            .item("leaseUntil", n(lease_until.timestamp_millis()))
            .item("expiresAt", n(expires_at.timestamp_millis()))
            .item("ttl", n(expires_at.timestamp()))
            // New, expired, or a run that died (its lease is over) with the same request.
            .condition_expression(
                "attribute_not_exists(#pk) OR #e <= :now OR \
                 (attribute_not_exists(#st) AND #l <= :now AND #r = :r)",
            )
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#e", "expiresAt")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#l", "leaseUntil")
            .expression_attribute_names("#r", "requestHash")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":r", s(request_hash))
            .send()
            .await;
        match res {
            Ok(_) => return Ok(IdemClaim::Run),
            Err(e) if is_condition_failure(&e) => {}
            Err(e) => return Err(StoreError::unavailable(e)),
        }
        let Some(item) = self.get(pk, &sk).await? else {
            return Ok(IdemClaim::InProgress); // gone meanwhile: the caller may retry
        };
        let a = Attrs(&item);
        if a.str("requestHash")? != request_hash {
            return Ok(IdemClaim::Reused);
        }
        match (a.opt_str("status")?, a.opt_str("body")?) {
            (Some(status), Some(body)) => Ok(IdemClaim::Replay {
                status: status.parse().map_err(|_| corrupt("status"))?,
                body: pipes_core::crypto::Sealed::decode(body).map_err(|_| corrupt("body"))?,
            }),
            _ => Ok(IdemClaim::InProgress),
        }
    }

    async fn finish_idempotency(
        &self,
        app: &AppId,
        key_hash: &SecretHash,
        status: u16,
        body: &pipes_core::crypto::Sealed,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("IDEM#{app}")))
            .key("sk", s(format!("IDEM#{}", key_hash.as_str())))
            .update_expression("SET #st = :st, #b = :b REMOVE #l")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#b", "body")
            .expression_attribute_names("#l", "leaseUntil")
            .expression_attribute_values(":st", s(status.to_string()))
            .expression_attribute_values(":b", s(body.encode()))
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    async fn release_idempotency(
        &self,
        app: &AppId,
        key_hash: &SecretHash,
    ) -> Result<(), StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("IDEM#{app}")))
            .key("sk", s(format!("IDEM#{}", key_hash.as_str())))
            .condition_expression("attribute_not_exists(#st)")
            .expression_attribute_names("#st", "status")
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }
}

#[async_trait]
impl pipes_core::ports::RateCounter for DynamoStore {
    async fn count_request(
        &self,
        bucket: &str,
        window_start: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // One atomic ADD: no read, no race between instances.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("RL#{bucket}")))
            .key("sk", s(format!("{:015}", window_start.timestamp_millis())))
            .update_expression("ADD #c :one SET #t = :ttl")
            .expression_attribute_names("#c", "count")
            .expression_attribute_names("#t", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", n(expires_at.timestamp()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        let count = out
            .attributes()
            .and_then(|a| a.get("count"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| corrupt("count"))?;
        Ok(count)
    }
}

//! Numbers: the number item (with the sweep's index keys), the platform-owner and WABA-membership items, and the NumberStore.

use super::*;

pub(super) fn numbers_pk(app: &AppId) -> String {
    format!("NUM#{app}")
}

/// Due numbers are spread over this many GSI partitions so the sweep's reads scale.
pub const DUE_SHARDS: u32 = 16;

pub(super) fn due_shard(phone: &PhoneNumberId) -> String {
    let h = phone
        .as_str()
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("DUE#{:02}", h % DUE_SHARDS)
}

/// The number item: key, the attributes queries filter on, and the whole record.
pub(super) fn number_item(number: &Number) -> Result<Item, StoreError> {
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
pub(super) fn due_from(key: &str) -> Result<DueNumber, StoreError> {
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
pub(super) fn membership_item(number: &Number) -> Item {
    HashMap::from([
        ("pk".into(), s(format!("WABA#{}", number.waba_id))),
        ("sk".into(), s(number_sk(&number.phone_number_id))),
        ("appId".into(), s(number.app_id.as_str())),
        ("phoneNumberId".into(), s(number.phone_number_id.as_str())),
    ])
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
        if let Some(old) = &done.previous_waba {
            // The number moved to another WABA: its membership in the old one ends.
            let leave = Delete::builder()
                .table_name(&self.table)
                .key("pk", s(format!("WABA#{old}")))
                .key("sk", s(number_sk(&number.phone_number_id)))
                .build()
                .map_err(StoreError::unavailable)?;
            items.push(TransactWriteItem::builder().delete(leave).build());
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

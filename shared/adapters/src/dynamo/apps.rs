//! Apps and their keys: the App item, the slug and key-hash lookups, key listings.

use super::*;

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
        let [lookup, listing] = key_items(key, key_hash, app)?;
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

    async fn update_app(&self, app: &App) -> Result<(), StoreError> {
        // The live keys' lookups carry a copy of the App (revoked ones authenticate
        // nothing and are left as they are).
        let mut hashes = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_values(":pk", s(keys_pk(&app.id)))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            for listing in out.items() {
                if !listing.contains_key("revokedAt") {
                    hashes.push(Attrs(listing).str("keyHash")?.to_owned());
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        let item = app_item(app)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", "pk")
            .build()
            .map_err(StoreError::unavailable)?;
        let mut copy = item;
        copy.remove("pk");
        copy.remove("sk");
        let update = |hash: &str| -> Result<TransactWriteItem, StoreError> {
            let u = Update::builder()
                .table_name(&self.table)
                .key("pk", s(format!("KEY#{hash}")))
                .key("sk", s("KEY"))
                .update_expression("SET #app = :app")
                .condition_expression("attribute_exists(#pk)")
                .expression_attribute_names("#app", "app")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_values(":app", AttributeValue::M(copy.clone()))
                .build()
                .map_err(StoreError::unavailable)?;
            Ok(TransactWriteItem::builder().update(u).build())
        };
        // The App and up to 99 copies together; any further copies in more transactions
        // (the copies are a cache of the App item).
        let mut chunks = hashes.chunks(99);
        let mut first = vec![TransactWriteItem::builder().put(put).build()];
        for h in chunks.next().unwrap_or_default() {
            first.push(update(h)?);
        }
        self.transact(first, |i| match i {
            0 => StoreError::NotFound("app"),
            _ => StoreError::Conflict("a key changed meanwhile"),
        })
        .await?;
        for chunk in chunks {
            let items = chunk
                .iter()
                .map(|h| update(h))
                .collect::<Result<Vec<_>, _>>()?;
            self.transact(items, |_| StoreError::Conflict("a key changed meanwhile"))
                .await?;
        }
        Ok(())
    }

    async fn add_key(&self, key: &AppKeyRecord, key_hash: &SecretHash) -> Result<(), StoreError> {
        let app = self
            .app(&key.app_id)
            .await?
            .ok_or(StoreError::NotFound("app"))?;
        let app_exists = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(app_pk(&key.app_id)))
            .key("sk", s("APP"))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", "pk")
            .build()
            .map_err(StoreError::unavailable)?;
        let [lookup, listing] = key_items(key, key_hash, &app)?;
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

    async fn live_key(&self, key_hash: &SecretHash) -> Result<Option<(App, KeyId)>, StoreError> {
        let Some(item) = self
            .get(format!("KEY#{}", key_hash.as_str()), "KEY")
            .await?
        else {
            return Ok(None);
        };
        let key = key_from(&item)?;
        if key.revoked_at.is_some() {
            return Ok(None);
        }
        // One read: the App is copied onto the key item.
        let app = match app_copy(&item)? {
            Some(app) => Some(app),
            None => self.app(&Attrs(&item).app_id()?).await?,
        };
        Ok(app.map(|app| (app, key.key_id)))
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
            .expression_attribute_values(":pk", s(keys_pk(app)))
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
        let Some(listing) = self.get(keys_pk(app), &format!("KEY#{key}")).await? else {
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
            revoke(keys_pk(app), format!("KEY#{key}"))?,
            revoke(format!("KEY#{hash}"), "KEY".into())?,
        ];
        self.transact(items, |_| StoreError::NotFound("app key"))
            .await?;
        Ok(true)
    }
}

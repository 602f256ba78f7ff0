//! Signup sessions: the session item, the token-hash lookup, claims and abandons.

use super::*;

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
        // Two requests on the way to a win: the token lookup, then the conditional
        // update, which decides races and refuses expired or used sessions by itself
        // (a missing session fails its condition too: nothing is created). Only a
        // refusal reads the session, to say why.
        let Some(token) = self
            .get(format!("TOK#{}", token_hash.as_str()), "TOK")
            .await?
        else {
            return Ok(Claim::NotFound);
        };
        let session_id = SessionId::parse(Attrs(&token).str("sessionId")?)
            .ok_or_else(|| corrupt("sessionId"))?;
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("SES#{session_id}")))
            .key("sk", s("SES"))
            .update_expression("SET #s = :completing, #c = :claim, #u = :until")
            .condition_expression(
                "(#s IN (:pending, :failed, :interrupted) OR (#s = :completing AND #u < :now)) AND #e > :now",
            )
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#c", "claimId")
            .expression_attribute_names("#u", "claimUntil")
            .expression_attribute_names("#e", "expiresAt")
            .expression_attribute_values(":completing", s("completing"))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":interrupted", s("interrupted"))
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
                let Some(current) = self.session(&session_id).await? else {
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

    async fn record_finish(
        &self,
        session: &SignupSession,
        finish: &Abandon,
        waba: &WabaId,
    ) -> Result<bool, StoreError> {
        if !self.record_abandon(&session.id, finish).await? {
            return Ok(false);
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("FIN#{waba}")))
            .item("sk", s(format!("SES#{}", session.id)))
            .item("at", n(finish.at.timestamp_millis()))
            .item(
                "ttl",
                n((session.expires_at + SESSION_RETENTION).timestamp()),
            )
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(true)
    }

    async fn sessions_finished_with(&self, waba: &WabaId) -> Result<Vec<SessionId>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_values(":pk", s(format!("FIN#{waba}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        let mut found: Vec<(i64, SessionId)> = out
            .items()
            .iter()
            .map(|i| {
                let a = Attrs(i);
                let id = a
                    .str("sk")?
                    .strip_prefix("SES#")
                    .and_then(SessionId::parse)
                    .ok_or_else(|| corrupt("finish report"))?;
                Ok((a.time("at")?.timestamp_millis(), id))
            })
            .collect::<Result<_, StoreError>>()?;
        found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.as_str().cmp(b.1.as_str())));
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }

    async fn mark_interrupted(&self, id: &SessionId) -> Result<bool, StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("SES#{id}")))
            .key("sk", s("SES"))
            .update_expression("SET #s = :interrupted")
            .condition_expression("#s IN (:pending, :failed)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":interrupted", s("interrupted"))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":failed", s("failed"))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    async fn recent_sessions(
        &self,
        app: &AppId,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<SignupSession>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi2")
            .key_condition_expression("#p = :app AND #s >= :since")
            .expression_attribute_names("#p", "gsi2pk")
            .expression_attribute_names("#s", "gsi2sk")
            .expression_attribute_values(":app", s(format!("APPSES#{app}")))
            .expression_attribute_values(":since", s(format!("{:015}", since.timestamp_millis())))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        out.items().iter().map(session_from).collect()
    }
}

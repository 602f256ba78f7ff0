//! Dashboard login links (single use: a conditional update spends one) and sessions,
//! both found by their secret's hash; DynamoDB's TTL removes them a day after expiry.

use super::*;
use pipes_core::ports::{DashboardSession, DashboardStore, LinkUse, LoginLink};

/// Kept this long after expiry before TTL may delete (reads check expiry anyway).
const RETENTION: Duration = Duration::days(1);

fn link_pk(hash: &SecretHash) -> String {
    format!("LOGIN#{}", hash.as_str())
}

fn session_pk(hash: &SecretHash) -> String {
    format!("DSES#{}", hash.as_str())
}

fn link_from(item: &Item) -> Result<LoginLink, StoreError> {
    let a = Attrs(item);
    Ok(LoginLink {
        token_hash: SecretHash::parse(a.str("tokenHash")?).ok_or_else(|| corrupt("tokenHash"))?,
        app_id: a.app_id()?,
        minted_by: minted_by(item)?,
        created_at: a.time("createdAt")?,
        expires_at: a.time("expiresAt")?,
    })
}

/// The optional `mintedBy` key id.
fn minted_by(item: &Item) -> Result<Option<KeyId>, StoreError> {
    item.get("mintedBy")
        .map(|v| {
            v.as_s()
                .ok()
                .and_then(|k| KeyId::parse(k))
                .ok_or_else(|| corrupt("mintedBy"))
        })
        .transpose()
}

fn dashboard_session_from(item: &Item) -> Result<DashboardSession, StoreError> {
    let a = Attrs(item);
    Ok(DashboardSession {
        cookie_hash: SecretHash::parse(a.str("cookieHash")?)
            .ok_or_else(|| corrupt("cookieHash"))?,
        app_id: a.app_id()?,
        csrf: a.str("csrf")?.to_owned(),
        minted_by: minted_by(item)?,
        created_at: a.time("createdAt")?,
        expires_at: a.time("expiresAt")?,
    })
}

#[async_trait]
impl DashboardStore for DynamoStore {
    async fn insert_login_link(&self, link: &LoginLink) -> Result<(), StoreError> {
        let mut item = HashMap::from([
            ("pk".into(), s(link_pk(&link.token_hash))),
            ("sk".into(), s("LOGIN")),
            ("tokenHash".into(), s(link.token_hash.as_str())),
            ("appId".into(), s(link.app_id.as_str())),
            ("createdAt".into(), n(link.created_at.timestamp_millis())),
            ("expiresAt".into(), n(link.expires_at.timestamp_millis())),
            ("ttl".into(), n((link.expires_at + RETENTION).timestamp())),
        ]);
        if let Some(key) = &link.minted_by {
            item.insert("mintedBy".into(), s(key.as_str()));
        }
        self.transact(vec![self.put(item)?], |_| {
            StoreError::Conflict("login link")
        })
        .await
    }

    async fn use_login_link(
        &self,
        token_hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<LinkUse, StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(link_pk(token_hash)))
            .key("sk", s("LOGIN"))
            .update_expression("SET #u = :now")
            .condition_expression(
                "attribute_exists(#pk) AND attribute_not_exists(#u) AND #e > :now",
            )
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#u", "usedAt")
            .expression_attribute_names("#e", "expiresAt")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => {
                let item = out.attributes.ok_or_else(|| corrupt("login link"))?;
                Ok(LinkUse::Signed(link_from(&item)?))
            }
            Err(e) if is_condition_failure(&e) => {
                // Say why: never there, spent, or expired.
                let Some(item) = self.get(link_pk(token_hash), "LOGIN").await? else {
                    return Ok(LinkUse::NotFound);
                };
                Ok(if item.contains_key("usedAt") {
                    LinkUse::Used
                } else {
                    LinkUse::Expired
                })
            }
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    async fn insert_dashboard_session(&self, ses: &DashboardSession) -> Result<(), StoreError> {
        let mut item = HashMap::from([
            ("pk".into(), s(session_pk(&ses.cookie_hash))),
            ("sk".into(), s("DSES")),
            ("cookieHash".into(), s(ses.cookie_hash.as_str())),
            ("appId".into(), s(ses.app_id.as_str())),
            ("csrf".into(), s(&ses.csrf)),
            ("createdAt".into(), n(ses.created_at.timestamp_millis())),
            ("expiresAt".into(), n(ses.expires_at.timestamp_millis())),
            ("ttl".into(), n((ses.expires_at + RETENTION).timestamp())),
        ]);
        if let Some(key) = &ses.minted_by {
            item.insert("mintedBy".into(), s(key.as_str()));
        }
        self.transact(vec![self.put(item)?], |_| {
            StoreError::Conflict("dashboard session")
        })
        .await
    }

    async fn dashboard_session(
        &self,
        cookie_hash: &SecretHash,
    ) -> Result<Option<DashboardSession>, StoreError> {
        self.get(session_pk(cookie_hash), "DSES")
            .await?
            .map(|i| dashboard_session_from(&i))
            .transpose()
    }

    async fn end_dashboard_session(&self, cookie_hash: &SecretHash) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(session_pk(cookie_hash)))
            .key("sk", s("DSES"))
            .send()
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }
}

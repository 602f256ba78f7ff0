//! Item codecs: typed reads of attributes, and the items of Apps, keys and sessions.

use super::*;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn app_pk(id: &AppId) -> String {
    format!("APP#{id}")
}

/// The partition of an App's key listing items (not the App's own: the dashboard may
/// write keys, and only the admin CLI writes App records).
pub(super) fn keys_pk(app: &AppId) -> String {
    format!("KEYS#{app}")
}

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// Typed reads of an item's attributes; a missing or mistyped one is `Corrupt`.
pub(super) struct Attrs<'a>(pub(super) &'a Item);

impl Attrs<'_> {
    pub(super) fn str(&self, name: &str) -> Result<&str, StoreError> {
        self.opt_str(name)?.ok_or_else(|| corrupt(name))
    }

    pub(super) fn opt_str(&self, name: &str) -> Result<Option<&str>, StoreError> {
        match self.0.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(_) => Err(corrupt(name)),
        }
    }

    pub(super) fn time(&self, name: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_time(name)?.ok_or_else(|| corrupt(name))
    }

    pub(super) fn opt_time(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
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

    pub(super) fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, StoreError> {
        from_json(name, self.str(name)?)
    }

    pub(super) fn app_id(&self) -> Result<AppId, StoreError> {
        AppId::parse(self.str("appId")?).ok_or_else(|| corrupt("appId"))
    }
}

pub(super) fn app_item(app: &App) -> Result<Item, StoreError> {
    Ok(HashMap::from([
        ("pk".into(), s(app_pk(&app.id))),
        ("sk".into(), s("APP")),
        ("appId".into(), s(app.id.as_str())),
        ("slug".into(), s(app.slug.as_str())),
        ("name".into(), s(app.name.as_str())),
        ("allowedOrigins".into(), s(to_json(&app.allowed_origins)?)),
        ("createdAt".into(), n(app.created_at.timestamp_millis())),
        ("settings".into(), s(to_json(&app.settings())?)),
    ]))
}

pub(super) fn app_from(item: &Item) -> Result<App, StoreError> {
    let a = Attrs(item);
    let settings: pipes_core::app::AppSettings = a
        .opt_str("settings")?
        .map(|s| from_json("settings", s))
        .transpose()?
        .unwrap_or_default();
    Ok(App {
        id: a.app_id()?,
        slug: Slug::parse(a.str("slug")?).map_err(|_| corrupt("slug"))?,
        name: AppName::parse(a.str("name")?).map_err(|_| corrupt("name"))?,
        allowed_origins: a.json::<Vec<RedirectOrigin>>("allowedOrigins")?,
        created_at: a.time("createdAt")?,
        rate_limit: settings.rate_limit,
        development: settings.development,
    })
}

/// The two key items: the lookup by hash and the listing entry under the App. The lookup
/// carries a copy of the App (attribute `app`, a map of the App item's attributes), so
/// authenticating a request is one read; whatever changes an App rewrites its keys'
/// copies in the same transaction.
pub(super) fn key_items(
    key: &AppKeyRecord,
    hash: &SecretHash,
    app: &App,
) -> Result<[Item; 2], StoreError> {
    let common = [
        ("appId".to_owned(), s(key.app_id.as_str())),
        ("keyId".to_owned(), s(key.key_id.as_str())),
        ("keyHash".to_owned(), s(hash.as_str())),
        ("createdAt".to_owned(), n(key.created_at.timestamp_millis())),
    ];
    let mut lookup: Item = common.clone().into();
    lookup.insert("pk".into(), s(format!("KEY#{}", hash.as_str())));
    lookup.insert("sk".into(), s("KEY"));
    let mut copy = app_item(app)?;
    copy.remove("pk");
    copy.remove("sk");
    lookup.insert("app".into(), AttributeValue::M(copy));
    let mut listing: Item = common.into();
    listing.insert("pk".into(), s(keys_pk(&key.app_id)));
    listing.insert("sk".into(), s(format!("KEY#{}", key.key_id)));
    Ok([lookup, listing])
}

/// The App copied onto a key lookup item, when it has one (items written before the
/// copy existed do not).
pub(super) fn app_copy(key_item: &Item) -> Result<Option<App>, StoreError> {
    match key_item.get("app") {
        None => Ok(None),
        Some(AttributeValue::M(copy)) => app_from(copy).map(Some),
        Some(_) => Err(corrupt("app")),
    }
}

pub(super) fn key_from(item: &Item) -> Result<AppKeyRecord, StoreError> {
    let a = Attrs(item);
    Ok(AppKeyRecord {
        key_id: KeyId::parse(a.str("keyId")?).ok_or_else(|| corrupt("keyId"))?,
        app_id: a.app_id()?,
        created_at: a.time("createdAt")?,
        revoked_at: a.opt_time("revokedAt")?,
    })
}

pub(super) fn session_item(ses: &SignupSession) -> Result<Item, StoreError> {
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
        // The App's sessions by creation time (index gsi2).
        ("gsi2pk".into(), s(format!("APPSES#{}", ses.app_id))),
        (
            "gsi2sk".into(),
            s(format!(
                "{:015}#{}",
                ses.created_at.timestamp_millis(),
                ses.id
            )),
        ),
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

pub(super) fn session_from(item: &Item) -> Result<SignupSession, StoreError> {
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
pub(super) fn is_condition_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

pub(super) fn number_sk(phone: &PhoneNumberId) -> String {
    format!("NUM#{phone}")
}

pub(super) fn number_from(item: &Item) -> Result<Number, StoreError> {
    from_json("number", Attrs(item).str("record")?)
}

//! The Graph API client (`reqwest` + rustls): every call of the `MetaGraph` port, with
//! connect and total timeouts, bounded jittered retries of idempotent calls (never the
//! code exchange), errors classified by Meta's code/subcode, and the regain time read
//! from the usage headers. URLs carry secrets in their query (the app secret, codes,
//! tokens), so no URL, and no reqwest error (which embeds one), ever reaches a message.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pipes_core::meta::{
    AccessToken, AuthCode, CanSend, EntityHealth, GranularScope, GraphError, GraphErrorKind,
    HealthIssue, MessagingHealth, MetaGraph, TokenFacts, WabaInfo, WabaNumber,
};
use pipes_core::number::Profile;
use pipes_core::{PhoneNumberId, WabaId};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

/// Our Meta app's secret: known at start (local), or read from an SSM SecureString on
/// first use and kept (Lambda), so a cold start makes no SSM call and a function that
/// never calls Meta (the token issuer) never reads it.
#[derive(Clone)]
pub enum AppSecret {
    Known(SecretString),
    Ssm {
        client: crate::lazy_client::LazyClient<aws_sdk_ssm::Client>,
        parameter: String,
        read: std::sync::Arc<tokio::sync::OnceCell<SecretString>>,
    },
}

impl std::fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Known(_) => f.write_str("AppSecret::Known([REDACTED])"),
            Self::Ssm { parameter, .. } => write!(f, "AppSecret::Ssm({parameter})"),
        }
    }
}

impl AppSecret {
    pub fn from_ssm(
        client: impl Into<crate::lazy_client::LazyClient<aws_sdk_ssm::Client>>,
        parameter: impl Into<String>,
    ) -> Self {
        Self::Ssm {
            client: client.into(),
            parameter: parameter.into(),
            read: std::sync::Arc::default(),
        }
    }

    /// The secret; an SSM failure is a transient Graph failure (nothing reaches Meta).
    pub async fn get(&self) -> Result<SecretString, GraphError> {
        match self {
            Self::Known(s) => Ok(s.clone()),
            Self::Ssm {
                client,
                parameter,
                read,
            } => read
                .get_or_try_init(|| async {
                    let out = client
                        .get()
                        .get_parameter()
                        .name(parameter)
                        .with_decryption(true)
                        .send()
                        .await
                        .map_err(|e| {
                            tracing::error!(
                                parameter = %parameter,
                                error = %aws_sdk_ssm::error::DisplayErrorContext(&e),
                                "could not read the Meta app secret"
                            );
                            GraphError::transient("the Meta app secret could not be read")
                        })?;
                    out.parameter
                        .and_then(|p| p.value)
                        .filter(|v| !v.is_empty())
                        .map(SecretString::from)
                        .ok_or_else(|| {
                            tracing::error!(parameter = %parameter, "the Meta app secret parameter has no value");
                            GraphError::transient("the Meta app secret parameter has no value")
                        })
                })
                .await
                .cloned(),
        }
    }
}

/// How the client reaches Meta.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// `https://graph.facebook.com` (or the sandbox's `/sandbox/graph`).
    pub base_url: Url,
    /// `v25.0`.
    pub version: String,
    pub app_id: String,
    pub app_secret: AppSecret,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Extra attempts for transient failures of idempotent calls.
    pub retries: u32,
    /// First backoff; doubled each retry, with full jitter.
    pub backoff: Duration,
}

impl GraphConfig {
    pub const DEFAULT_BASE_URL: &'static str = "https://graph.facebook.com";
    pub const DEFAULT_VERSION: &'static str = "v25.0";

    pub fn new(base_url: Url, app_id: impl Into<String>, app_secret: SecretString) -> Self {
        Self::with_secret(base_url, app_id, AppSecret::Known(app_secret))
    }

    pub fn with_secret(base_url: Url, app_id: impl Into<String>, app_secret: AppSecret) -> Self {
        Self {
            base_url,
            version: Self::DEFAULT_VERSION.to_owned(),
            app_id: app_id.into(),
            app_secret,
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GraphClient {
    /// Built on the first call (some functions never call Meta; with the roots compiled
    /// in it takes about 0.3 ms), then shared by every clone.
    http: std::sync::Arc<std::sync::OnceLock<reqwest::Client>>,
    /// Held while the client is built: the first calls, which arrive together (a
    /// sweep's first checks), wait for one build instead of each making its own.
    building: std::sync::Arc<std::sync::Mutex<()>>,
    cfg: GraphConfig,
}

/// Whether a call may be sent again after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Idempotent,
    Never,
}

impl GraphClient {
    pub fn new(cfg: GraphConfig) -> Result<Self, GraphError> {
        Ok(Self {
            http: std::sync::Arc::default(),
            building: std::sync::Arc::default(),
            cfg,
        })
    }

    fn http(&self) -> Result<&reqwest::Client, GraphError> {
        if let Some(client) = self.http.get() {
            return Ok(client);
        }
        let _building = self.building.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = self.http.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(self.cfg.connect_timeout)
            .timeout(self.cfg.timeout)
            .user_agent(concat!("pipes-bot/", env!("CARGO_PKG_VERSION")))
            .tls_certs_only(crate::config::web_roots())
            .build()
            .map_err(|_| GraphError::transient("could not build the HTTP client"))?;
        Ok(self.http.get_or_init(|| client))
    }

    fn url(&self, path: &str) -> Result<Url, GraphError> {
        let base = self.cfg.base_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{}/{path}", self.cfg.version))
            .map_err(|_| GraphError::transient("invalid Graph URL"))
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&AccessToken>,
    ) -> Result<RequestBuilder, GraphError> {
        let req = self.http()?.request(method, self.url(path)?);
        Ok(match token {
            Some(t) => req.bearer_auth(t.expose()),
            None => req,
        })
    }

    /// Sends `build()` and parses the JSON answer, retrying per `retry`.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        what: &'static str,
        retry: Retry,
        build: impl Fn() -> Result<RequestBuilder, GraphError>,
    ) -> Result<T, GraphError> {
        let attempts = match retry {
            Retry::Idempotent => self.cfg.retries + 1,
            Retry::Never => 1,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match build()?.send().await {
                Ok(res) => parse(what, res).await,
                Err(e) => Err(transport_error(what, &e)),
            };
            match result {
                Err(e) if e.kind == GraphErrorKind::Transient && attempt < attempts => {
                    tracing::debug!(call = what, attempt, "transient Graph failure; retrying");
                    tokio::time::sleep(jitter(self.cfg.backoff * 2u32.pow(attempt - 1))).await;
                }
                other => return other,
            }
        }
    }
}

/// Full jitter: a uniformly random wait up to `max`.
fn jitter(max: Duration) -> Duration {
    let mut b = [0u8; 4];
    let r = getrandom_u32(&mut b);
    max.mul_f64(f64::from(r) / f64::from(u32::MAX))
}

fn getrandom_u32(b: &mut [u8; 4]) -> u32 {
    let s = pipes_core::random::base62(4);
    b.copy_from_slice(&s.as_bytes()[..4]);
    u32::from_le_bytes(*b).wrapping_mul(2_654_435_761)
}

fn transport_error(what: &str, e: &reqwest::Error) -> GraphError {
    let cause = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed in transport"
    };
    GraphError::transient(format!("{what}: {cause}"))
}

#[derive(Debug, Deserialize)]
struct MetaErrorBody {
    error: MetaError,
}

#[derive(Debug, Deserialize)]
struct MetaError {
    #[serde(default)]
    message: String,
    code: Option<i64>,
    error_subcode: Option<i64>,
    #[serde(default)]
    is_transient: bool,
    #[serde(default)]
    error_data: Option<ErrorData>,
}

#[derive(Debug, Deserialize)]
struct ErrorData {
    #[serde(default)]
    details: Option<String>,
}

/// Calls whose failures can be about *our* app rather than the owner's token.
const EXCHANGE: &str = "code exchange";
const DEBUG_TOKEN: &str = "debug_token";

/// Whose fault: on the exchange, `code 1` ("Error validating client secret", not
/// transient) and `101` (invalid application) refuse our app's credentials; on
/// `debug_token`, whose access token is our app token, so do 190/102 and permission
/// errors. Everywhere else the classification by code stands.
fn whose_fault(what: &str, e: &MetaError, kind: GraphErrorKind) -> GraphErrorKind {
    match (what, e.code) {
        (EXCHANGE, Some(1)) if !e.is_transient => GraphErrorKind::AppCredentials,
        (EXCHANGE | DEBUG_TOKEN, Some(101)) => GraphErrorKind::AppCredentials,
        (DEBUG_TOKEN, _)
            if matches!(
                kind,
                GraphErrorKind::TokenInvalid | GraphErrorKind::Permission
            ) =>
        {
            GraphErrorKind::AppCredentials
        }
        _ => kind,
    }
}

/// The largest `estimated_time_to_regain_access` (minutes) in Meta's usage headers.
fn regain_time(res: &Response) -> Option<Duration> {
    let mut minutes: Option<u64> = None;
    for name in [
        "x-business-use-case-usage",
        "x-app-usage",
        "x-ad-account-usage",
    ] {
        let Some(v) = res.headers().get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<Value>(v) else {
            continue;
        };
        let mut stack = vec![&json];
        while let Some(node) = stack.pop() {
            match node {
                Value::Object(m) => {
                    if let Some(t) = m
                        .get("estimated_time_to_regain_access")
                        .and_then(Value::as_u64)
                    {
                        minutes = Some(minutes.map_or(t, |m| m.max(t)));
                    }
                    stack.extend(m.values());
                }
                Value::Array(a) => stack.extend(a),
                _ => {}
            }
        }
    }
    minutes
        .filter(|m| *m > 0)
        .map(|m| Duration::from_secs(m * 60))
}

async fn parse<T: for<'de> Deserialize<'de>>(what: &str, res: Response) -> Result<T, GraphError> {
    let status = res.status();
    let retry_after = regain_time(&res);
    let bytes = res.bytes().await.map_err(|e| transport_error(what, &e))?;
    if let Ok(MetaErrorBody { error }) = serde_json::from_slice::<MetaErrorBody>(&bytes) {
        let kind = match error.code {
            Some(code) => GraphError::classify(code, error.error_subcode, error.is_transient),
            None if status.is_server_error() => GraphErrorKind::Transient,
            None => GraphErrorKind::Other,
        };
        let kind = if kind == GraphErrorKind::Other && status.is_server_error() {
            GraphErrorKind::Transient
        } else {
            kind
        };
        return Err(GraphError {
            kind: whose_fault(what, &error, kind),
            code: error.code,
            subcode: error.error_subcode,
            message: format!("{what}: {}", truncate(&error.message)),
            retry_after,
            details: error
                .error_data
                .and_then(|d| d.details)
                .map(|d| truncate(&d)),
        });
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        let mut e = GraphError::transient(format!("{what}: HTTP {}", status.as_u16()));
        e.retry_after = retry_after;
        if status == StatusCode::TOO_MANY_REQUESTS {
            e.kind = GraphErrorKind::Throttled;
        }
        return Err(e);
    }
    if !status.is_success() {
        return Err(GraphError {
            retry_after,
            ..GraphError::of_kind(
                GraphErrorKind::Other,
                format!("{what}: HTTP {}", status.as_u16()),
            )
        });
    }
    serde_json::from_slice(&bytes).map_err(|_| {
        GraphError::of_kind(
            GraphErrorKind::Other,
            format!("{what}: unexpected response shape"),
        )
    })
}

/// Meta's messages are short; cap them so nothing large lands in logs or records.
fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

#[derive(Debug, Deserialize)]
struct Exchanged {
    access_token: String,
}

#[derive(Debug, Deserialize)]
struct DebugTokenBody {
    data: DebugTokenData,
}

#[derive(Debug, Deserialize)]
struct DebugTokenData {
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    is_valid: bool,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    granular_scopes: Vec<GranularScope>,
}

#[derive(Debug, Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
struct Paging {
    #[serde(default)]
    cursors: Option<Cursors>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Cursors {
    #[serde(default)]
    after: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NumberBody {
    id: String,
    #[serde(default)]
    display_phone_number: Option<String>,
    #[serde(default)]
    verified_name: Option<String>,
    #[serde(default)]
    quality_rating: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    name_status: Option<String>,
    #[serde(default)]
    platform_type: Option<String>,
    #[serde(default)]
    code_verification_status: Option<String>,
}

impl NumberBody {
    fn profile(self) -> Profile {
        Profile {
            display_phone_number: self.display_phone_number,
            verified_name: self.verified_name,
            quality_rating: self.quality_rating,
            status: self.status,
            name_status: self.name_status,
            platform_type: self.platform_type,
            code_verification_status: self.code_verification_status,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Success {
    #[serde(default)]
    success: bool,
}

#[derive(Debug, Deserialize)]
struct HealthBody {
    health_status: HealthStatusBody,
}

#[derive(Debug, Deserialize)]
struct HealthStatusBody {
    can_send_message: String,
    #[serde(default)]
    entities: Vec<EntityBody>,
}

#[derive(Debug, Deserialize)]
struct EntityBody {
    #[serde(default)]
    entity_type: String,
    #[serde(default)]
    can_send_message: Option<String>,
    #[serde(default)]
    errors: Vec<EntityError>,
    #[serde(default)]
    additional_info: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct EntityError {
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    error_description: String,
}

#[derive(Debug, Deserialize)]
struct WabaBody {
    #[serde(default)]
    account_review_status: Option<String>,
}

fn expect_success(what: &str, s: Success) -> Result<(), GraphError> {
    if s.success {
        Ok(())
    } else {
        Err(GraphError::of_kind(
            GraphErrorKind::Other,
            format!("{what}: Meta answered success=false"),
        ))
    }
}

/// Reads an app id from a `subscribed_apps` item, flat (`{id}`) or nested
/// (`{whatsapp_business_api_data: {id}}`): Meta's docs and OpenAPI file disagree.
fn subscribed_app_id(item: &Value) -> Option<String> {
    item.get("whatsapp_business_api_data")
        .and_then(|d| d.get("id"))
        .or_else(|| item.get("id"))
        .and_then(|id| match id {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

/// The number node's profile fields, spelt once for both reads of them.
macro_rules! profile_fields {
    () => {
        "display_phone_number,verified_name,quality_rating,status,name_status,code_verification_status,platform_type,throughput"
    };
}
const PROFILE_FIELDS: &str = profile_fields!();
const PROFILE_AND_HEALTH_FIELDS: &str = concat!(profile_fields!(), ",health_status");
const MAX_PAGES: usize = 20;

#[async_trait]
impl MetaGraph for GraphClient {
    async fn exchange_code(&self, code: &AuthCode) -> Result<AccessToken, GraphError> {
        let secret = self.cfg.app_secret.get().await?;
        let body: Exchanged = self
            .call(EXCHANGE, Retry::Never, || {
                Ok(self
                    .request(Method::GET, "oauth/access_token", None)?
                    .query(&[
                        ("client_id", self.cfg.app_id.as_str()),
                        ("client_secret", secret.expose_secret()),
                        ("code", code.expose()),
                    ]))
            })
            .await?;
        // A 200 without a token is no token: nothing may be connected on it.
        if body.access_token.trim().is_empty() {
            return Err(GraphError::transient(
                "the code exchange answered without an access token",
            ));
        }
        Ok(AccessToken::new(body.access_token))
    }

    async fn debug_token(&self, token: &AccessToken) -> Result<TokenFacts, GraphError> {
        let secret = self.cfg.app_secret.get().await?;
        let app_token = format!("{}|{}", self.cfg.app_id, secret.expose_secret());
        let body: DebugTokenBody = self
            .call(DEBUG_TOKEN, Retry::Idempotent, || {
                Ok(self.request(Method::GET, "debug_token", None)?.query(&[
                    ("input_token", token.expose()),
                    ("access_token", app_token.as_str()),
                ]))
            })
            .await?;
        let d = body.data;
        Ok(TokenFacts {
            app_id: d.app_id,
            is_valid: d.is_valid,
            expires_at: d
                .expires_at
                .filter(|t| *t > 0)
                .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0)),
            scopes: d.scopes,
            granular_scopes: d.granular_scopes,
        })
    }

    async fn waba_numbers(
        &self,
        token: &AccessToken,
        waba: &WabaId,
    ) -> Result<Vec<WabaNumber>, GraphError> {
        let path = format!("{waba}/phone_numbers");
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page: Page<NumberBody> = self
                .call("list WABA numbers", Retry::Idempotent, || {
                    let mut q = vec![("fields", "id,display_phone_number,verified_name,quality_rating,name_status,platform_type,code_verification_status")];
                    if let Some(a) = &after {
                        q.push(("after", a.as_str()));
                    }
                    Ok(self.request(Method::GET, &path, Some(token))?.query(&q))
                })
                .await?;
            for n in page.data {
                if let Some(id) = PhoneNumberId::parse(&n.id) {
                    out.push(WabaNumber {
                        id,
                        profile: n.profile(),
                    });
                }
            }
            let next = page
                .paging
                .filter(|p| p.next.is_some())
                .and_then(|p| p.cursors)
                .and_then(|c| c.after);
            match next {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        Ok(out)
    }

    async fn subscribe_app(&self, token: &AccessToken, waba: &WabaId) -> Result<(), GraphError> {
        let path = format!("{waba}/subscribed_apps");
        let s: Success = self
            .call("subscribe webhooks", Retry::Idempotent, || {
                self.request(Method::POST, &path, Some(token))
            })
            .await?;
        expect_success("subscribe webhooks", s)
    }

    async fn subscribed_apps(
        &self,
        token: &AccessToken,
        waba: &WabaId,
    ) -> Result<Vec<String>, GraphError> {
        let path = format!("{waba}/subscribed_apps");
        let page: Page<Value> = self
            .call("list subscriptions", Retry::Idempotent, || {
                self.request(Method::GET, &path, Some(token))
            })
            .await?;
        Ok(page.data.iter().filter_map(subscribed_app_id).collect())
    }

    async fn unsubscribe_app(&self, token: &AccessToken, waba: &WabaId) -> Result<(), GraphError> {
        let path = format!("{waba}/subscribed_apps");
        let s: Success = self
            .call("unsubscribe webhooks", Retry::Idempotent, || {
                self.request(Method::DELETE, &path, Some(token))
            })
            .await?;
        expect_success("unsubscribe webhooks", s)
    }

    async fn register(
        &self,
        token: &AccessToken,
        phone: &PhoneNumberId,
        pin: &str,
    ) -> Result<(), GraphError> {
        let path = format!("{phone}/register");
        let body = serde_json::json!({"messaging_product": "whatsapp", "pin": pin});
        // Not retried here: every attempt counts against Meta's 10 per 72 h.
        let s: Success = self
            .call("register number", Retry::Never, || {
                Ok(self.request(Method::POST, &path, Some(token))?.json(&body))
            })
            .await?;
        expect_success("register number", s)
    }

    async fn deregister(
        &self,
        token: &AccessToken,
        phone: &PhoneNumberId,
    ) -> Result<(), GraphError> {
        let path = format!("{phone}/deregister");
        // Not retried: it counts against the same budget as registration.
        let s: Success = self
            .call("deregister number", Retry::Never, || {
                self.request(Method::POST, &path, Some(token))
            })
            .await?;
        expect_success("deregister number", s)
    }

    async fn waba_info(&self, token: &AccessToken, waba: &WabaId) -> Result<WabaInfo, GraphError> {
        let path = waba.to_string();
        let body: WabaBody = self
            .call("read WABA", Retry::Idempotent, || {
                Ok(self
                    .request(Method::GET, &path, Some(token))?
                    .query(&[("fields", "account_review_status")]))
            })
            .await?;
        Ok(WabaInfo {
            account_review_status: body.account_review_status,
        })
    }

    async fn profile(
        &self,
        token: &AccessToken,
        phone: &PhoneNumberId,
    ) -> Result<Profile, GraphError> {
        let path = phone.to_string();
        let body: NumberBody = self
            .call("read number profile", Retry::Idempotent, || {
                Ok(self
                    .request(Method::GET, &path, Some(token))?
                    .query(&[("fields", PROFILE_FIELDS)]))
            })
            .await?;
        Ok(body.profile())
    }

    async fn profile_and_health(
        &self,
        token: &AccessToken,
        phone: &PhoneNumberId,
    ) -> (
        Result<Profile, GraphError>,
        Result<MessagingHealth, GraphError>,
    ) {
        const WHAT: &str = "read number health";
        let path = phone.to_string();
        let body: serde_json::Value = match self
            .call(WHAT, Retry::Idempotent, || {
                Ok(self
                    .request(Method::GET, &path, Some(token))?
                    .query(&[("fields", PROFILE_AND_HEALTH_FIELDS)]))
            })
            .await
        {
            Ok(body) => body,
            Err(e) => return (Err(e.clone()), Err(e)),
        };
        // Each part on its own: an answer whose one part we cannot use keeps the other
        // (a BLOCKED health beside a profile of an unexpected shape is still down).
        let unusable = |part: &str| {
            GraphError::of_kind(
                GraphErrorKind::Other,
                format!("{WHAT}: unexpected shape of {part}"),
            )
        };
        let profile = NumberBody::deserialize(&body)
            .map(NumberBody::profile)
            .map_err(|_| unusable("the profile"));
        let health = HealthBody::deserialize(&body)
            .map_err(|_| unusable("health_status"))
            .and_then(|b| messaging_health(b.health_status));
        (profile, health)
    }

    async fn app_secret(&self) -> Result<SecretString, GraphError> {
        self.cfg.app_secret.get().await
    }

    fn app_id(&self) -> &str {
        &self.cfg.app_id
    }
}

/// `health_status` as the port speaks of it (an unknown `can_send_message` is no answer).
fn messaging_health(status: HealthStatusBody) -> Result<MessagingHealth, GraphError> {
    let can_send = CanSend::parse(&status.can_send_message).ok_or_else(|| {
        GraphError::of_kind(
            GraphErrorKind::Other,
            "read number health: unknown can_send_message",
        )
    })?;
    let entities = status
        .entities
        .into_iter()
        .map(|e| EntityHealth {
            entity_type: truncate(&e.entity_type),
            can_send: e.can_send_message.as_deref().and_then(CanSend::parse),
            errors: e
                .errors
                .into_iter()
                .map(|i| HealthIssue {
                    code: i.error_code,
                    description: truncate(&i.error_description),
                })
                .collect(),
            additional_info: e.additional_info.iter().map(|s| truncate(s)).collect(),
        })
        .collect();
    Ok(MessagingHealth { can_send, entities })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribed_apps_parse_flat_and_nested() {
        let flat = serde_json::json!({"id": "123", "name": "x"});
        let nested = serde_json::json!({"whatsapp_business_api_data": {"id": "456", "name": "y", "link": "z"}});
        assert_eq!(subscribed_app_id(&flat).as_deref(), Some("123"));
        assert_eq!(subscribed_app_id(&nested).as_deref(), Some("456"));
        assert_eq!(subscribed_app_id(&serde_json::json!({})), None);
    }
}

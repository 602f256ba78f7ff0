//! A simulated Meta for `pipes dev` and tests: the Graph API calls the platform makes
//! (under `/sandbox/graph/{version}/...`), control endpoints for people and tests
//! (`/sandbox/signups`, revoke, health, faults, latency, call counts), and a stand-in for
//! Meta's JS SDK (`/sandbox/sdk.js`). State can persist in a JSON file so a restarted
//! `pipes dev` keeps the tokens it handed out.

mod graph;
pub mod state;
mod timer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use pipes_core::Clock;
use serde::Deserialize;
use serde_json::json;

pub use state::{
    Fault, FaultKind, SANDBOX_APP_ID, SANDBOX_APP_SECRET, SANDBOX_CONFIG_ID, Scenario,
    SignupRequest, SignupResult,
};

/// Where the simulated Graph API is mounted, relative to the server's base URL.
pub const GRAPH_PATH: &str = "/sandbox/graph";

struct Inner {
    state: Mutex<state::State>,
    path: Option<PathBuf>,
    clock: Arc<dyn Clock>,
    /// Graph requests being answered now, and the most seen at once.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Graph requests answered, and the time they were held in all (entry to answer,
    /// with the simulated latency): what Meta's side took, for benchmarks.
    answered: AtomicU64,
    held_nanos: AtomicU64,
    /// The first Graph request's entry and the last one's answer, in nanoseconds since
    /// `created` (`u64::MAX` and 0 before any): when Meta's side was busy.
    created: std::time::Instant,
    first_entered: AtomicU64,
    last_answered: AtomicU64,
    /// Holds each Graph call for the simulated latency.
    timer: timer::Timer,
    /// Where Meta's webhooks go (the running server's `/webhooks/meta`).
    webhook_target: Mutex<Option<String>>,
}

impl Inner {
    fn new(state: state::State, path: Option<PathBuf>, clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Mutex::new(state),
            path,
            clock,
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            held_nanos: AtomicU64::new(0),
            created: std::time::Instant::now(),
            first_entered: AtomicU64::new(u64::MAX),
            last_answered: AtomicU64::new(0),
            timer: timer::Timer::default(),
            webhook_target: Mutex::default(),
        }
    }

    fn since_created(&self, at: std::time::Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.created).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Counts one Graph request in flight for as long as it lives, and the time it was held.
pub(crate) struct InFlight<'a>(&'a Inner, std::time::Instant);

impl InFlight<'_> {
    /// Waits until `latency` after the request's handler started.
    pub(crate) async fn hold(&self, latency: std::time::Duration) {
        self.0.timer.until(self.1 + latency).await;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        let now = std::time::Instant::now();
        let held = u64::try_from((now - self.1).as_nanos()).unwrap_or(u64::MAX);
        self.0.held_nanos.fetch_add(held, Ordering::Relaxed);
        self.0.answered.fetch_add(1, Ordering::Relaxed);
        let since = self.0.since_created(now);
        self.0.last_answered.fetch_max(since, Ordering::Relaxed);
    }
}

/// The simulated Meta; cheap to clone.
#[derive(Clone)]
pub struct Sandbox(Arc<Inner>);

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sandbox({:?})", self.0.path)
    }
}

impl Sandbox {
    pub fn in_memory(clock: Arc<dyn Clock>) -> Self {
        Self(Arc::new(Inner::new(state::State::default(), None, clock)))
    }

    /// A sandbox whose state lives in `path` (loaded if present, saved on changes).
    pub fn persistent(path: PathBuf, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => state::State::default(),
            Err(e) => return Err(e),
        };
        Ok(Self(Arc::new(Inner::new(state, Some(path), clock))))
    }

    /// Where `POST /sandbox/webhooks` delivers (the server's `/webhooks/meta` URL).
    pub fn set_webhook_target(&self, url: impl Into<String>) {
        *self
            .0
            .webhook_target
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(url.into());
    }

    /// The app secret Meta signs webhooks with now (a rotated one after
    /// `rotate_app_secret`).
    pub fn signing_secret(&self) -> String {
        self.lock()
            .rotated_app_secret
            .clone()
            .unwrap_or_else(|| SANDBOX_APP_SECRET.to_owned())
    }

    /// Signs `body` as Meta does and posts it to the webhook target; the server's
    /// status and body.
    pub async fn send_webhook(&self, body: &[u8]) -> Result<(u16, String), String> {
        let target = self
            .0
            .webhook_target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or("no webhook target: the sandbox runs outside a server")?;
        let signature = pipes_core::webhooks::sign(self.signing_secret().as_bytes(), body);
        let res = reqwest::Client::new()
            .post(&target)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| format!("delivery failed: {e}"))?;
        let status = res.status().as_u16();
        Ok((status, res.text().await.unwrap_or_default()))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, state::State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn enter(&self) -> InFlight<'_> {
        let now = self.0.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let entered = std::time::Instant::now();
        let since = self.0.since_created(entered);
        self.0.first_entered.fetch_min(since, Ordering::Relaxed);
        InFlight(&self.0, entered)
    }

    /// The mean time a Graph request was held, from its handler's start to its answer
    /// (the latency as the sandbox delivered it: never less than the latency set, a
    /// little more when the CPU is busy), over every request
    /// since the sandbox started or [`Sandbox::reset_max_in_flight`]; `None` before the
    /// first. A mean per call: a check that waits for the slowest of several calls
    /// waits a little longer.
    pub fn mean_held_ms(&self) -> Option<f64> {
        let n = self.0.answered.load(Ordering::Relaxed);
        (n > 0).then(|| self.0.held_nanos.load(Ordering::Relaxed) as f64 / n as f64 / 1e6)
    }

    /// When the first Graph request (since the sandbox started or the last reset)
    /// entered and the last one was answered; `None` before one was answered.
    pub fn graph_window(&self) -> Option<(std::time::Instant, std::time::Instant)> {
        let first = self.0.first_entered.load(Ordering::Relaxed);
        let last = self.0.last_answered.load(Ordering::Relaxed);
        let at = |nanos| self.0.created + std::time::Duration::from_nanos(nanos);
        (first <= last).then(|| (at(first), at(last)))
    }

    /// The most Graph requests this sandbox answered at once (since the last reset).
    pub fn max_in_flight(&self) -> u64 {
        self.0.max_in_flight.load(Ordering::SeqCst)
    }

    /// Starts a measurement afresh: the peak in flight and the held-time counters.
    pub fn reset_max_in_flight(&self) {
        self.0.max_in_flight.store(0, Ordering::SeqCst);
        self.0.answered.store(0, Ordering::Relaxed);
        self.0.held_nanos.store(0, Ordering::Relaxed);
        self.0.first_entered.store(u64::MAX, Ordering::Relaxed);
        self.0.last_answered.store(0, Ordering::Relaxed);
    }

    /// A finished signup whose code was already exchanged: the business token, for
    /// seeding many numbers quickly (benchmarks, load tests).
    pub fn connect(&self, req: SignupRequest) -> Result<(SignupResult, String), String> {
        let now = self.now();
        let mut state = self.lock();
        let result = state.signup(req, now)?;
        let code = state.codes.get_mut(&result.code).ok_or("no code")?;
        code.used = true;
        let token = code.token.clone();
        drop(state);
        self.save();
        Ok((result, token))
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.0.clock.now()
    }

    /// Writes the state file (atomically, by rename), if this sandbox has one.
    pub(crate) fn save(&self) {
        let Some(path) = &self.0.path else { return };
        let bytes = match serde_json::to_vec(&*self.lock()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "sandbox state not saved");
                return;
            }
        };
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path)) {
            tracing::warn!(error = %e, "sandbox state not saved");
        }
    }

    /// Runs one finished Embedded Signup (see `POST /sandbox/signups`).
    pub fn signup(&self, req: SignupRequest) -> Result<SignupResult, String> {
        let now = self.now();
        let res = self.lock().signup(req, now);
        self.save();
        res
    }

    /// The owner revokes our access to the number's WABA.
    pub fn revoke(&self, phone: &str) -> bool {
        let found = self.lock().revoke(phone);
        self.save();
        found
    }

    /// Sets fields of a number as Meta would report them; `false` for an unknown number.
    pub fn update_number(&self, phone: &str, update: &NumberUpdate) -> bool {
        let mut state = self.lock();
        let Some(n) = state.numbers.get_mut(phone) else {
            return false;
        };
        let fields = [
            (&update.can_send_message, &mut n.can_send_message),
            (&update.status, &mut n.status),
            (&update.name_status, &mut n.name_status),
            (&update.quality_rating, &mut n.quality_rating),
            (&update.platform_type, &mut n.platform_type),
            (
                &update.code_verification_status,
                &mut n.code_verification_status,
            ),
        ];
        for (new, field) in fields {
            if let Some(v) = new {
                field.clone_from(v);
            }
        }
        if update.two_step_verification == Some(false) {
            // The owner turned two-step verification off in WhatsApp Manager.
            n.registered_pin = None;
            n.wrong_pin_guesses = 0;
        }
        drop(state);
        self.save();
        true
    }

    /// Sets what Meta reports of a WABA; `false` for an unknown WABA.
    pub fn update_waba(&self, waba: &str, update: &WabaUpdate) -> bool {
        let mut state = self.lock();
        let Some(w) = state.wabas.get_mut(waba) else {
            return false;
        };
        if let Some(v) = &update.can_send_message {
            w.can_send_message.clone_from(v);
        }
        if let Some(v) = &update.account_review_status {
            w.account_review_status.clone_from(v);
        }
        drop(state);
        self.save();
        true
    }

    /// Rotates the Meta app's secret on Meta's side only (as an operator who rotated it
    /// in the App Dashboard but not in the platform's configuration): from now on Meta
    /// refuses the platform's app credentials. `restore` undoes it.
    pub fn rotate_app_secret(&self, rotated: bool) {
        self.lock().rotated_app_secret =
            rotated.then(|| format!("rotated-{}", pipes_core::random::base62(16)));
        self.save();
    }

    /// Makes every token reaching the number's WABA expire at `at`.
    pub fn set_token_expiry(&self, phone: &str, at: Option<DateTime<Utc>>) -> bool {
        let mut state = self.lock();
        let Some(waba) = state.numbers.get(phone).map(|n| n.waba_id.clone()) else {
            return false;
        };
        for t in state
            .tokens
            .values_mut()
            .filter(|t| t.waba_ids.contains(&waba))
        {
            t.expires_at = at;
        }
        drop(state);
        self.save();
        true
    }

    /// Removes our app from the WABA's webhook subscriptions (as a person might).
    pub fn drop_subscription(&self, waba: &str) -> bool {
        let found = self
            .lock()
            .wabas
            .get_mut(waba)
            .map(|w| w.subscribed_apps.remove(SANDBOX_APP_ID))
            .is_some();
        self.save();
        found
    }

    /// Subscribes our app to the WABA's webhooks (as a finished setup would have).
    pub fn subscribe(&self, waba: &str) -> bool {
        let found = self
            .lock()
            .wabas
            .get_mut(waba)
            .map(|w| w.subscribed_apps.insert(SANDBOX_APP_ID.to_owned()))
            .is_some();
        self.save();
        found
    }

    pub fn is_subscribed(&self, waba: &str) -> bool {
        self.lock()
            .wabas
            .get(waba)
            .is_some_and(|w| w.subscribed_apps.contains(SANDBOX_APP_ID))
    }

    /// Drops every pending fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn add_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Makes `percent` of Graph calls (the code exchange spared) fail at random.
    pub fn set_fault_rate(&self, percent: u8) {
        self.lock().fault_rate = percent.min(100);
    }

    pub fn set_latency_ms(&self, ms: u64) {
        self.lock().latency_ms = ms;
    }

    /// Calls served of one kind, e.g. `POST register` or `GET health_status`.
    pub fn calls(&self, kind: &str) -> u64 {
        self.lock().calls.get(kind).copied().unwrap_or(0)
    }

    pub fn all_calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.lock().calls.clone()
    }
}

/// Fields of a number a test or person may change (`POST /sandbox/numbers/{id}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumberUpdate {
    pub can_send_message: Option<String>,
    pub status: Option<String>,
    pub name_status: Option<String>,
    pub quality_rating: Option<String>,
    pub platform_type: Option<String>,
    pub code_verification_status: Option<String>,
    /// `false`: the owner turned two-step verification off (our PIN then registers).
    pub two_step_verification: Option<bool>,
}

/// Fields of a WABA a test or person may change (`POST /sandbox/wabas/{id}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WabaUpdate {
    /// The WABA entity's `can_send_message` in `health_status`.
    pub can_send_message: Option<String>,
    /// `APPROVED`, `PENDING` or `REJECTED`.
    pub account_review_status: Option<String>,
}

fn problem(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": "sandbox", "message": message}})),
    )
        .into_response()
}

async fn signups(AxState(s): AxState<Sandbox>, body: Option<Json<SignupRequest>>) -> Response {
    match s.signup(body.map(|Json(b)| b).unwrap_or_default()) {
        Ok(r) => Json(r).into_response(),
        Err(m) => problem(StatusCode::BAD_REQUEST, &m),
    }
}

async fn revoke(AxState(s): AxState<Sandbox>, Path(phone): Path<String>) -> Response {
    if s.revoke(&phone) {
        Json(json!({"revoked": true})).into_response()
    } else {
        problem(StatusCode::NOT_FOUND, "unknown number")
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthBody {
    can_send_message: String,
}

async fn health(
    AxState(s): AxState<Sandbox>,
    Path(phone): Path<String>,
    Json(b): Json<HealthBody>,
) -> Response {
    if !matches!(
        b.can_send_message.as_str(),
        "AVAILABLE" | "LIMITED" | "BLOCKED"
    ) {
        return problem(
            StatusCode::BAD_REQUEST,
            "canSendMessage is AVAILABLE, LIMITED or BLOCKED",
        );
    }
    let update = NumberUpdate {
        can_send_message: Some(b.can_send_message),
        ..NumberUpdate::default()
    };
    if s.update_number(&phone, &update) {
        Json(json!({"updated": true})).into_response()
    } else {
        problem(StatusCode::NOT_FOUND, "unknown number")
    }
}

async fn update_number(
    AxState(s): AxState<Sandbox>,
    Path(phone): Path<String>,
    Json(b): Json<NumberUpdate>,
) -> Response {
    if s.update_number(&phone, &b) {
        Json(json!({"updated": true})).into_response()
    } else {
        problem(StatusCode::NOT_FOUND, "unknown number")
    }
}

async fn update_waba(
    AxState(s): AxState<Sandbox>,
    Path(waba): Path<String>,
    Json(b): Json<WabaUpdate>,
) -> Response {
    if s.update_waba(&waba, &b) {
        Json(json!({"updated": true})).into_response()
    } else {
        problem(StatusCode::NOT_FOUND, "unknown WABA")
    }
}

async fn rotate_secret(AxState(s): AxState<Sandbox>) -> Response {
    s.rotate_app_secret(true);
    Json(json!({"rotated": true})).into_response()
}

async fn restore_secret(AxState(s): AxState<Sandbox>) -> Response {
    s.rotate_app_secret(false);
    Json(json!({"rotated": false})).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FaultBody {
    path: String,
    #[serde(default)]
    method: Option<String>,
    kind: FaultKind,
    #[serde(default = "one")]
    count: u32,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    regain_minutes: Option<u32>,
}

fn one() -> u32 {
    1
}

async fn faults(AxState(s): AxState<Sandbox>, Json(b): Json<FaultBody>) -> Response {
    s.add_fault(Fault {
        path: b.path,
        method: b.method,
        kind: b.kind,
        remaining: b.count,
        code: b.code,
        regain_minutes: b.regain_minutes,
    });
    Json(json!({"queued": b.count})).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LatencyBody {
    ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FaultRateBody {
    percent: u8,
}

async fn fault_rate(AxState(s): AxState<Sandbox>, Json(b): Json<FaultRateBody>) -> Response {
    s.set_fault_rate(b.percent);
    Json(json!({"faultRate": b.percent.min(100)})).into_response()
}

async fn latency(AxState(s): AxState<Sandbox>, Json(b): Json<LatencyBody>) -> Response {
    s.set_latency_ms(b.ms);
    Json(json!({"latencyMs": b.ms})).into_response()
}

async fn calls(AxState(s): AxState<Sandbox>) -> Response {
    Json(json!({"calls": s.all_calls()})).into_response()
}

/// `POST /sandbox/webhooks`: either a whole delivery as Meta sends it (`payload`), or
/// one change (`field`, `value`, and `entryId`: the WABA, or for `PARTNER_*` events
/// the partner's business) wrapped the way Meta wraps it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookBody {
    payload: Option<serde_json::Value>,
    field: Option<String>,
    value: Option<serde_json::Value>,
    entry_id: Option<String>,
}

async fn webhooks(AxState(s): AxState<Sandbox>, Json(b): Json<WebhookBody>) -> Response {
    let payload = match (b.payload, b.field, b.value) {
        (Some(p), None, None) => p,
        (None, Some(field), Some(value)) => json!({
            "object": "whatsapp_business_account",
            "entry": [{
                "id": b.entry_id.unwrap_or_else(|| "0".into()),
                "time": s.now().timestamp(),
                "changes": [{"value": value, "field": field}],
            }],
        }),
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "send either payload, or field and value (with entryId)",
            );
        }
    };
    let body = payload.to_string();
    match s.send_webhook(body.as_bytes()).await {
        Ok((status, answer)) => {
            Json(json!({"delivered": status == 200, "status": status, "answer": answer}))
                .into_response()
        }
        Err(m) => problem(StatusCode::BAD_GATEWAY, &m),
    }
}

/// The stand-in for Meta's JS SDK.
pub const SDK_JS: &str = include_str!("sdk.js");

async fn sdk() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        SDK_JS,
    )
        .into_response()
}

/// Every sandbox route, to merge into the local server.
pub fn router(sandbox: Sandbox) -> Router {
    Router::new()
        .route("/sandbox/graph/{version}/{*path}", any(graph::handle))
        .route("/sandbox/signups", post(signups))
        .route("/sandbox/numbers/{phone}", post(update_number))
        .route("/sandbox/numbers/{phone}/revoke", post(revoke))
        .route("/sandbox/numbers/{phone}/health", post(health))
        .route("/sandbox/wabas/{waba}", post(update_waba))
        .route("/sandbox/app-secret/rotate", post(rotate_secret))
        .route("/sandbox/app-secret/restore", post(restore_secret))
        .route("/sandbox/faults", post(faults))
        .route("/sandbox/latency", post(latency))
        .route("/sandbox/fault-rate", post(fault_rate))
        .route("/sandbox/calls", get(calls))
        .route("/sandbox/webhooks", post(webhooks))
        .route("/sandbox/sdk.js", get(sdk))
        .with_state(sandbox)
}

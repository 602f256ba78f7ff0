//! The number owner's routes: the hosted signup page (`GET /apps/{slug}?token=`) and the
//! signup callback (`POST /v1/signup/callback`). Both are public: the token authenticates.

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pipes_core::session::{AbandonEvent, SessionStatus};
use pipes_core::usecases::signup::{
    AbandonInput, Deadline, FinishInput, FinishKind, PageError, complete_signup_within,
    open_signup_page, record_abandon, record_finish,
};
use pipes_core::{Platform, random};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ApiError;
use crate::extract::ApiJson;
use crate::html::{document, error_page, escape, script_json};

pub const META_SDK_URL: &str = "https://connect.facebook.net/en_US/sdk.js";

pub(crate) fn routes() -> Router<Platform> {
    Router::new()
        .route("/apps/{slug}", get(page))
        .route("/v1/signup/callback", post(callback))
        .route("/v1/signup/progress", post(progress))
}

/// The public posts' limits: per client IP, then per signup token.
async fn limit_public(
    state: &Platform,
    ip: &crate::limits::ClientIp,
    token: &str,
) -> Result<(), ApiError> {
    crate::limits::per_ip(state, ip)
        .await
        .map_err(ApiError::rate_limited)?;
    crate::limits::per_token(state, token)
        .await
        .map_err(ApiError::rate_limited)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProgressBody {
    token: String,
    waba_id: String,
}

/// The page saw Meta's flow finish (sent before the code is posted, and kept alive if
/// the window closes), so an interrupted signup can be recognised from Meta's webhook.
async fn progress(
    State(state): State<Platform>,
    ip: crate::limits::ClientIp,
    ApiJson(body): ApiJson<ProgressBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    limit_public(&state, &ip, &body.token).await?;
    record_finish(&*state.store, &*state.clock, &body.token, &body.waba_id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "recorded"}))))
}

const SIGNUP_JS: &str = include_str!("signup.js");

fn content_security_policy(nonce: &str, sandbox: bool) -> String {
    let (script, connect, frame, img) = if sandbox {
        (String::new(), String::new(), "'none'", "'self' data:")
    } else {
        (
            " https://connect.facebook.net".to_owned(),
            " https://*.facebook.com https://graph.facebook.com".to_owned(),
            "https://*.facebook.com",
            "'self' data: https://*.facebook.com https://*.fbcdn.net",
        )
    };
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'{script}; connect-src 'self'{connect}; \
         frame-src {frame}; img-src {img}; style-src 'self' 'unsafe-inline'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    )
}

/// An error page loads its inline style and its empty `data:` icon, nothing else.
const ERROR_PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'";

/// The headers every hosted page and error page carries.
fn page_response(status: StatusCode, html: String, csp: String) -> Response {
    let mut res = (status, Html(html)).into_response();
    let h = res.headers_mut();
    let pairs = [
        (header::CACHE_CONTROL, "no-store".to_owned()),
        (header::REFERRER_POLICY, "no-referrer".to_owned()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::X_FRAME_OPTIONS, "DENY".to_owned()),
        (header::CONTENT_SECURITY_POLICY, csp),
    ];
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    res
}

fn page_error(e: PageError) -> Response {
    let (status, heading, text) = match e {
        PageError::UnknownApp => (
            StatusCode::NOT_FOUND,
            "Link not found",
            "This signup link does not point to a known service.",
        ),
        PageError::UnknownToken => (
            StatusCode::NOT_FOUND,
            "Link not valid",
            "This signup link is not valid. It may have been mistyped or belong to another service.",
        ),
        PageError::Expired => (
            StatusCode::GONE,
            "Link expired",
            "This signup link has expired.",
        ),
        PageError::Used => (
            StatusCode::GONE,
            "Link already used",
            "This signup link was already used to connect a WhatsApp number.",
        ),
        PageError::Store(e) => {
            tracing::error!(error = %e, "hosted page: store failure");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "We could not load this page. Please try again in a minute.",
            )
        }
    };
    page_response(status, error_page(heading, text), ERROR_PAGE_CSP.to_owned())
}

async fn page(
    State(state): State<Platform>,
    ip: crate::limits::ClientIp,
    slug: Result<Path<String>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // A slug that does not decode is no App's: the unknown-App page, never axum's
    // plain-text rejection.
    let slug = slug.map(|Path(s)| s).unwrap_or_default();
    if let Err(l) = crate::limits::per_ip(&state, &ip).await {
        let mut res = page_response(
            StatusCode::TOO_MANY_REQUESTS,
            error_page(
                "Too many requests",
                "Too many requests came from your network. Please wait a minute, then open the link again.",
            ),
            ERROR_PAGE_CSP.to_owned(),
        );
        if let Ok(v) = HeaderValue::from_str(&l.retry_after.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    let token = query.get("token").map(String::as_str);
    let (app, session) =
        match open_signup_page(&*state.store, &*state.store, &*state.clock, &slug, token).await {
            Ok(found) => found,
            Err(e) => return page_error(e),
        };
    let nonce = random::base62(22);
    let cfg = &state.meta;
    let config = json!({
        "token": token.unwrap_or_default(),
        "callbackUrl": "/v1/signup/callback",
        "progressUrl": "/v1/signup/progress",
        "metaAppId": cfg.app_id,
        "configId": cfg.config_id,
        "graphVersion": cfg.graph_version,
        "sandbox": cfg.sandbox,
    });
    let cancelled = session
        .redirect_url
        .with_query(&[("status", "cancelled"), ("sessionId", session.id.as_str())]);
    let name = escape(app.name.as_str());
    let interrupted = if session.status_at(state.clock.now()) == SessionStatus::Interrupted {
        "<p class=\"notice\" id=\"interrupted\" role=\"status\">Meta finished connecting your \
         account, but the last step did not reach us. Select <strong>Connect WhatsApp</strong> \
         once more to finish; it is shorter the second time.</p>"
    } else {
        ""
    };
    let banner = if cfg.sandbox {
        "<p class=\"sandbox\" id=\"sandbox-banner\">Sandbox mode: a simulated Meta stands in; \
         no Meta account is used and no real number is connected.</p>"
    } else {
        ""
    };
    let body = format!(
        "<main>{banner}{interrupted}<h1>Connect WhatsApp to <span id=\"app-name\">{name}</span></h1>\
         <p><span>{name}</span> asks to send and receive WhatsApp messages for your business. \
         Meta will ask you to log in, choose your business and the WhatsApp number to connect.</p>\
         <p><button id=\"connect\" type=\"button\" disabled>Connect WhatsApp</button></p>\
         <p id=\"status\" role=\"status\" aria-live=\"polite\"></p>\
         <div id=\"retry\" hidden><p><button id=\"try-again\" type=\"button\">Try again</button> \
         <a id=\"back\" class=\"secondary\" href=\"{back}\">Back to {name}</a></p></div></main>",
        back = escape(cancelled.as_str()),
    );
    let sdk = if cfg.sandbox {
        "/sandbox/sdk.js"
    } else {
        META_SDK_URL
    };
    let scripts = format!(
        "<script type=\"application/json\" id=\"pipes-config\">{}</script>\
         <script nonce=\"{nonce}\">{SIGNUP_JS}</script>\
         <script nonce=\"{nonce}\" async defer crossorigin=\"anonymous\" src=\"{sdk}\"></script>",
        script_json(&config)
    );
    let title = format!("Connect WhatsApp · {}", app.name.as_str());
    page_response(
        StatusCode::OK,
        document(&title, &body, &scripts),
        content_security_policy(&nonce, cfg.sandbox),
    )
}

/// When the invocation must have answered (the Lambda's deadline); absent locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvocationDeadline(pub std::time::SystemTime);

/// Meta's code lives 30 s: no completion is worth running longer than this.
pub const SIGNUP_BUDGET: std::time::Duration = std::time::Duration::from_secs(25);
/// Left before the Lambda deadline to release the claim and answer.
pub const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

/// How long this completion may run: [`SIGNUP_BUDGET`], or less when the invocation's
/// deadline comes sooner (less [`DEADLINE_MARGIN`]).
pub fn signup_budget(deadline: Option<InvocationDeadline>) -> std::time::Duration {
    let left = deadline.map(|InvocationDeadline(at)| {
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(DEADLINE_MARGIN)
    });
    left.map_or(SIGNUP_BUDGET, |l| l.min(SIGNUP_BUDGET))
}

/// The callback body: one shape for every event; which fields are required depends
/// on `event`. On a finish, the ids may be missing (the page got no session message).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallbackBody {
    token: String,
    event: String,
    code: Option<String>,
    waba_id: Option<String>,
    phone_number_id: Option<String>,
    business_id: Option<String>,
    step: Option<String>,
    /// Meta's support reference: `error_code` in newer docs, `error_id` in older ones.
    #[serde(alias = "errorId")]
    error_code: Option<Value>,
    error_message: Option<String>,
    meta_session_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CallbackResponse {
    status: &'static str,
    session_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number_id: Option<String>,
    redirect_url: String,
}

fn required(field: &'static str, v: Option<String>) -> Result<String, ApiError> {
    v.ok_or_else(|| ApiError::invalid(field, "is required"))
}

async fn callback(
    State(state): State<Platform>,
    ip: crate::limits::ClientIp,
    deadline: Option<axum::Extension<InvocationDeadline>>,
    ApiJson(body): ApiJson<CallbackBody>,
) -> Result<Json<CallbackResponse>, ApiError> {
    limit_public(&state, &ip, &body.token).await?;
    let event = match body.event.as_str() {
        "CANCEL" => Some(AbandonEvent::Cancel),
        "ERROR" => Some(AbandonEvent::Error),
        finish if FinishKind::parse(finish).is_some() => None,
        _ => {
            return Err(ApiError::invalid(
                "event",
                "must be CANCEL, ERROR, or one of Meta's finish events (FINISH, FINISH_ONLY_WABA, FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING, FINISH_OBO_MIGRATION, FINISH_GRANT_ONLY_API_ACCESS)",
            ));
        }
    };
    let Some(event) = event else {
        let input = FinishInput {
            token: body.token,
            code: required("code", body.code)?,
            kind: FinishKind::parse(&body.event).unwrap_or_default(),
            waba_id: body.waba_id,
            phone_number_id: body.phone_number_id,
            business_id: body.business_id,
        };
        let deps = state.signup();
        let budget = signup_budget(deadline.map(|axum::Extension(d)| d));
        let stop: Deadline = Box::pin(tokio::time::sleep(budget));
        let done = complete_signup_within(deps, input, Some(stop)).await?;
        return Ok(Json(CallbackResponse {
            status: "completed",
            session_id: done.session_id.to_string(),
            phone_number_id: Some(done.phone_number_id.to_string()),
            redirect_url: done.redirect_url.into(),
        }));
    };
    let error_code = match body.error_code {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(ApiError::invalid(
                "errorCode",
                "expected a string or a number",
            ));
        }
    };
    let input = AbandonInput {
        token: body.token,
        event: Some(event),
        step: body.step,
        error_code,
        error_message: body.error_message,
        meta_session_id: body.meta_session_id,
    };
    let recorded = record_abandon(state.signup(), input).await?;
    Ok(Json(CallbackResponse {
        status: "pending",
        session_id: recorded.session_id.to_string(),
        phone_number_id: None,
        redirect_url: recorded.redirect_url.into(),
    }))
}

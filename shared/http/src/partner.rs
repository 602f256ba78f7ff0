//! The partner API authenticated by app key: minting signup tokens and reading sessions.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use pipes_core::SignupSession;
use pipes_core::session::{Abandon, AbandonEvent, SessionFailure, SessionStatus};
use pipes_core::usecases::{IssueTokenRequest, get_session, issue_token};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ApiError;
use crate::extract::{ApiJson, ApiPath, PartnerApp};
use pipes_core::Platform;

pub(crate) fn routes() -> Router<Platform> {
    Router::new()
        .route("/v1/apps/token", post(issue))
        .route("/v1/sessions/{session_id}", get(session))
}

/// RFC 3339 in UTC with millisecond precision, as every time in the API is written.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IssueBody {
    redirect_url: String,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IssueResponse {
    token: String,
    session_id: String,
    signup_url: String,
    expires_at: String,
}

async fn issue(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
    ApiJson(body): ApiJson<IssueBody>,
) -> Result<impl IntoResponse, ApiError> {
    let req = IssueTokenRequest {
        redirect_url: body.redirect_url,
        metadata: body.metadata,
        expires_in: body.expires_in,
    };
    let issued = issue_token(
        &*state.store,
        &*state.clock,
        &state.public_base_url,
        &app,
        req,
    )
    .await?;
    // The token is a credential: no cache may keep the answer.
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(IssueResponse {
            token: issued.token.expose().to_owned(),
            session_id: issued.session_id.to_string(),
            signup_url: issued.signup_url,
            expires_at: rfc3339(issued.expires_at),
        }),
    ))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionResponse {
    session_id: String,
    status: &'static str,
    redirect_url: String,
    metadata: Value,
    created_at: String,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<SessionFailure>,
    /// The WABA Meta's flow finished with, once the page reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    waba_id: Option<String>,
    /// What the owner should do (an interrupted signup: open the same link again).
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
    abandons: Vec<AbandonView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AbandonView {
    at: String,
    event: AbandonEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta_session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    waba_id: Option<String>,
}

impl From<Abandon> for AbandonView {
    fn from(a: Abandon) -> Self {
        Self {
            at: rfc3339(a.at),
            event: a.event,
            step: a.step,
            error_code: a.error_code,
            error_message: a.error_message,
            meta_session_id: a.meta_session_id,
            waba_id: a.waba_id.map(|w| w.to_string()),
        }
    }
}

impl SessionResponse {
    fn of(s: SignupSession, now: DateTime<Utc>) -> Self {
        let status = s.status_at(now);
        Self {
            status: status.as_str(),
            waba_id: s.finished_waba().map(|w| w.to_string()),
            message: (status == SessionStatus::Interrupted).then_some(
                "Meta finished the signup but our callback never arrived: the owner opens the same signup link once more to finish",
            ),
            session_id: s.id.to_string(),
            redirect_url: s.redirect_url.as_str().to_owned(),
            metadata: s.metadata.into(),
            created_at: rfc3339(s.created_at),
            expires_at: rfc3339(s.expires_at),
            completed_at: s.completed_at.map(rfc3339),
            phone_number_id: s.phone_number_id,
            error: s.error,
            abandons: s.abandons.into_iter().map(AbandonView::from).collect(),
        }
    }
}

async fn session(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
    ApiPath(session_id): ApiPath<String>,
) -> Result<Json<SessionResponse>, ApiError> {
    let s = get_session(&*state.store, &app, &session_id).await?;
    Ok(Json(SessionResponse::of(s, state.clock.now())))
}

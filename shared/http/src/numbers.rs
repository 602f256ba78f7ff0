//! The partner's numbers (app key): list, get, history, check now, remove.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use pipes_core::usecases::numbers::{
    ListRequest, check_now, encode_cursor, get_number, list_numbers, number_history, remove_number,
    request_setup,
};
use pipes_core::{Number, Platform};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ApiError;
use crate::extract::{ApiPath, ApiQuery, PartnerApp};
use crate::partner::rfc3339;

pub(crate) fn routes() -> Router<Platform> {
    Router::new()
        .route("/v1/numbers", get(list))
        .route("/v1/numbers/{phone}", get(one).delete(remove))
        .route("/v1/numbers/{phone}/health-check", post(check))
        .route("/v1/numbers/{phone}/history", get(history))
        .route("/v1/numbers/{phone}/setup", post(setup))
}

/// A number as API.md shows it (never its token or PIN).
pub fn number_view(n: &Number) -> Value {
    n.api_view()
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    numbers: Vec<Value>,
    next_cursor: Option<String>,
}

async fn list(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ListResponse>, ApiError> {
    let req = ListRequest {
        status: q.status,
        limit: q.limit,
        cursor: q.cursor,
    };
    let page = list_numbers(&*state.store, &app, req).await?;
    Ok(Json(ListResponse {
        numbers: page.numbers.iter().map(number_view).collect(),
        next_cursor: page.next_after.as_ref().map(encode_cursor),
    }))
}

async fn one(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
    ApiPath(phone): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let n = get_number(&*state.store, &app, &phone).await?;
    Ok(Json(number_view(&n)))
}

async fn check(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
    ApiPath(phone): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    // Checks spend the Meta app's rate limit every tenant shares: a budget per App.
    crate::limits::per_app_checks(&state, &app.id)
        .await
        .map_err(ApiError::rate_limited)?;
    let n = check_now(state.check(), &app, &phone).await?;
    Ok(Json(number_view(&n)))
}

async fn setup(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
    ApiPath(phone): ApiPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let n = request_setup(&*state.store, &*state.queue, &*state.clock, &app, &phone).await?;
    Ok((StatusCode::ACCEPTED, Json(number_view(&n))))
}

async fn history(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
    ApiPath(phone): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let events = number_history(&*state.store, &app, &phone).await?;
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "at": rfc3339(e.at),
                "from": e.from.as_str(),
                "to": e.to.as_str(),
                "reason": e.reason.map(|r| r.as_str()),
                "message": e.message,
            })
        })
        .collect();
    Ok(Json(json!({ "events": events })))
}

async fn remove(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
    ApiPath(phone): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    remove_number(
        &*state.store,
        &*state.queue,
        state.emitter(),
        &*state.clock,
        &app,
        &phone,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

//! The App's webhook endpoint and event log (app key): `PUT/GET/DELETE
//! /v1/webhook-endpoint`, `POST /v1/webhook-endpoint/rotate-secret`, `POST
//! /v1/webhook-endpoint/test`, `GET /v1/events`, `GET /v1/events/{id}`, `POST
//! /v1/events/{id}/redeliver`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use pipes_core::Platform;
use pipes_core::events::Endpoint;
use pipes_core::number::rfc3339;
use pipes_core::usecases::events::{
    EndpointError, event_view, get_event, list_events, put_endpoint, redeliver, rotate_secret,
    send_ping,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, PartnerApp};

pub(crate) fn routes() -> Router<Platform> {
    Router::new()
        .route(
            "/v1/webhook-endpoint",
            get(show).put(register).delete(remove),
        )
        .route("/v1/webhook-endpoint/rotate-secret", post(rotate))
        .route("/v1/webhook-endpoint/test", post(test))
        .route("/v1/events", get(list))
        .route("/v1/events/{id}", get(one))
        .route("/v1/events/{id}/redeliver", post(again))
}

impl From<EndpointError> for ApiError {
    fn from(e: EndpointError) -> Self {
        match e {
            EndpointError::InvalidUrl(m) => ApiError::invalid("url", m),
            EndpointError::Invalid { field, message } => ApiError::invalid(field, message),
            EndpointError::NoEndpoint => ApiError::new(
                StatusCode::NOT_FOUND,
                "no_webhook_endpoint",
                "no webhook endpoint is registered: PUT /v1/webhook-endpoint first",
            ),
            EndpointError::EventNotFound => ApiError::not_found("event"),
            EndpointError::Store(s) => s.into(),
            EndpointError::Crypto(c) => {
                tracing::error!(error = %c, "endpoint secret could not be sealed or opened");
                ApiError::unavailable()
            }
            EndpointError::Queue => ApiError::unavailable(),
        }
    }
}

/// The endpoint as shown (never its secret, except once when it is created or rotated).
pub fn endpoint_view(e: &Endpoint, secret: Option<&SecretString>) -> Value {
    let mut v = json!({
        "url": e.url.as_str(),
        "createdAt": rfc3339(e.created_at),
        "failingSince": e.failing_since.map(rfc3339),
        "previousSecretExpiresAt": e.previous.as_ref().map(|(_, until)| rfc3339(*until)),
    });
    if let Some(s) = secret {
        v["secret"] = json!(s.expose_secret());
    }
    v
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointBody {
    url: String,
}

async fn register(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
    ApiJson(body): ApiJson<EndpointBody>,
) -> Result<Json<Value>, ApiError> {
    let (endpoint, secret) = put_endpoint(state.endpoints(), &app.id, &body.url).await?;
    Ok(Json(endpoint_view(&endpoint, secret.as_ref())))
}

async fn show(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
) -> Result<Json<Value>, ApiError> {
    let endpoint = state
        .store
        .endpoint(&app.id)
        .await?
        .ok_or(EndpointError::NoEndpoint)?;
    Ok(Json(endpoint_view(&endpoint, None)))
}

async fn remove(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_endpoint(&app.id).await? {
        tracing::info!(app_id = %app.id, "webhook endpoint removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(EndpointError::NoEndpoint.into())
    }
}

async fn rotate(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
) -> Result<Json<Value>, ApiError> {
    let (endpoint, secret) = rotate_secret(state.endpoints(), &app.id).await?;
    Ok(Json(endpoint_view(&endpoint, Some(&secret))))
}

async fn test(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let event = send_ping(state.endpoints(), &app.id).await?;
    Ok((StatusCode::ACCEPTED, Json(event_view(&event, false))))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = list_events(
        &*state.store,
        &*state.clock,
        &app.id,
        q.kind.as_deref(),
        q.limit.as_deref(),
        q.cursor.as_deref(),
    )
    .await?;
    Ok(Json(json!({
        "events": page.events.iter().map(|e| event_view(e, false)).collect::<Vec<_>>(),
        "nextCursor": page.next_before,
    })))
}

async fn one(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let event = get_event(&*state.store, &app.id, &id).await?;
    Ok(Json(event_view(&event, true)))
}

async fn again(
    State(state): State<Platform>,
    PartnerApp(app): PartnerApp,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let event = redeliver(state.endpoints(), &app.id, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(event_view(&event, false))))
}

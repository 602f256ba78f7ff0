//! Meta's webhooks: the verification handshake (`GET /webhooks/meta`) and deliveries
//! (`POST /webhooks/meta`: signature checked over the raw body, each change stored and
//! queued, then acknowledged).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pipes_core::Platform;
use pipes_core::usecases::inbound::{ReceiveError, receive_delivery};
use pipes_core::webhooks::MAX_DELIVERY_BYTES;
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::ApiError;

pub(crate) fn routes() -> Router<Platform> {
    Router::new()
        .route("/webhooks/meta", get(verify).post(deliver))
        .layer(DefaultBodyLimit::max(MAX_DELIVERY_BYTES))
}

/// Meta's handshake: `hub.mode=subscribe` and our verify token → the challenge.
async fn verify(
    State(state): State<Platform>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let expected = state.webhook_verify_token.as_ref();
    let given = q.get("hub.verify_token");
    let ok = q.get("hub.mode").map(String::as_str) == Some("subscribe")
        && match (expected, given) {
            (Some(e), Some(g)) => bool::from(e.expose_secret().as_bytes().ct_eq(g.as_bytes())),
            _ => false,
        };
    // Meta's challenges are numbers; nothing else is echoed back.
    let challenge = q
        .get("hub.challenge")
        .filter(|c| (1..=64).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()));
    match (ok, challenge) {
        (true, Some(challenge)) => {
            tracing::info!("Meta webhook verification answered");
            (
                StatusCode::OK,
                [
                    (
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; charset=utf-8",
                    ),
                    (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                challenge.clone(),
            )
                .into_response()
        }
        _ => {
            tracing::warn!("Meta webhook verification refused");
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the verification token does not match",
            )
            .into_response()
        }
    }
}

async fn deliver(
    State(state): State<Platform>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is larger than Meta sends",
        )
    })?;
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    match receive_delivery(state.receive(), &body, signature).await {
        Ok(r) => Ok(Json(json!({"received": r.changes}))),
        Err(ReceiveError::BadSignature) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "X-Hub-Signature-256 is missing or does not match the body",
        )),
        Err(ReceiveError::TooLarge) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is larger than Meta sends",
        )),
        Err(ReceiveError::Unavailable(why)) => {
            tracing::error!(why, "Meta webhook not stored; Meta will deliver it again");
            Err(ApiError::unavailable())
        }
    }
}

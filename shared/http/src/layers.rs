//! What wraps every router: request ids, access spans without query strings (tokens
//! travel in them), panic containment, and JSON 404/405 fallbacks.

use axum::Router;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub(crate) fn healthz() -> Router {
    Router::new().route(
        "/healthz",
        get(|| async { axum::Json(json!({"status": "ok"})) }),
    )
}

fn span_for<B>(req: &Request<B>) -> tracing::Span {
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The path only: query strings carry signup tokens.
    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
}

fn panicked(_: Box<dyn std::any::Any + Send>) -> axum::response::Response {
    tracing::error!("handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "an internal error occurred",
    )
    .into_response()
}

pub(crate) fn finish(router: Router) -> Router {
    router
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(CatchPanicLayer::custom(panicked))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(span_for))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

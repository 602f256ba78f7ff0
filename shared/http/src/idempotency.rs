//! The `Idempotency-Key` layer on the App's POST routes: authenticates once (the
//! handler's extractor reuses it), fingerprints the request, and runs it, replays the
//! stored response, or refuses (409 while the first run is going, 422 for a different
//! request under the same key). See `pipes_core::usecases::idempotency`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pipes_core::usecases::authenticate_key;
use pipes_core::usecases::idempotency::{
    IdemError, Start, fingerprint, finish, key_hash, release, start,
};
use pipes_core::{App, KeyId, Platform};

use crate::ApiError;

pub const HEADER: &str = "idempotency-key";
/// Marks a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";
/// The largest request and response the layer holds (requests are capped lower anyway).
const MAX_BYTES: usize = 1024 * 1024;

/// The App the layer authenticated, for the handler's extractor.
#[derive(Debug, Clone)]
pub struct Authenticated(pub App, pub KeyId);

impl From<IdemError> for ApiError {
    fn from(e: IdemError) -> Self {
        match e {
            IdemError::InvalidKey(m) => ApiError::invalid("Idempotency-Key", m),
            IdemError::InUse => ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still running; retry shortly",
            ),
            IdemError::Reused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            ),
            IdemError::Store(s) => s.into(),
            IdemError::Crypto(c) => {
                tracing::error!(error = %c, "an idempotent response could not be sealed or opened");
                ApiError::unavailable()
            }
        }
    }
}

pub(crate) async fn idempotent(State(p): State<Platform>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(raw) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let key = match raw
        .to_str()
        .map_err(|_| ())
        .and_then(|k| key_hash(k).map_err(|_| ()))
    {
        Ok(k) => k,
        Err(()) => {
            return ApiError::from(IdemError::InvalidKey(
                "must be 1 to 255 visible ASCII characters",
            ))
            .into_response();
        }
    };
    let (mut parts, body) = req.into_parts();
    let (app, key_id) = match authenticate_key(&*p.store, crate::extract::bearer(&parts)).await {
        Ok(found) => found,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // Every keyed request counts against the App's limit, replays and refusals too,
    // and before the claim: a 429 is never stored as the key's answer.
    if let Err(l) = pipes_core::usecases::limits::admit_app(&*p.store, &*p.clock, &app).await {
        return ApiError::rate_limited(l).into_response();
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BYTES).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
        .into_response();
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    // The key that sent it is part of the request: another key of the App (a revoked
    // one's successor, say) never gets its answer replayed.
    let target = format!("{}#{target}", key_id.as_str());
    let hash = fingerprint(parts.method.as_str(), &target, &bytes);
    let deps = p.idempotency();
    match start(deps, &app.id, &key, &hash).await {
        Err(e) => ApiError::from(e).into_response(),
        Ok(Start::Replay { status, body }) => {
            let mut res =
                (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(REPLAYED, HeaderValue::from_static("true"));
            res
        }
        Ok(Start::Run) => {
            let app_id = app.id.clone();
            parts.extensions.insert(Authenticated(app, key_id));
            let res = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            let (res_parts, res_body) = res.into_parts();
            let Ok(out) = axum::body::to_bytes(res_body, MAX_BYTES).await else {
                let _ = release(deps, &app_id, &key).await;
                return ApiError::unavailable().into_response();
            };
            let outcome = if res_parts.status.is_server_error()
                || res_parts.status == StatusCode::TOO_MANY_REQUESTS
            {
                // Ours to fail, or a limit that passes (the per-App health-check budget
                // answers inside the handler): the same key may be tried again.
                release(deps, &app_id, &key).await
            } else {
                finish(deps, &app_id, &key, res_parts.status.as_u16(), &out).await
            };
            if let Err(e) = outcome {
                // The answer stands; the key frees itself when its lease ends.
                tracing::error!(error = %e, "idempotency key not settled");
            }
            Response::from_parts(res_parts, Body::from(out))
        }
    }
}

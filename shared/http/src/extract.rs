//! Request extractors that turn bad input into API.md's errors: the JSON body (size,
//! content type, field-naming parse errors) and the partner's app key.

use axum::body::{Body, to_bytes};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use pipes_core::App;
use pipes_core::KeyId;
use pipes_core::usecases::authenticate_key;
use serde::de::DeserializeOwned;

use crate::ApiError;
use pipes_core::Platform;

/// Largest request body accepted (API.md): larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body of type `T`, read with the size limit and parsed so that a wrong field
/// is named in the 400 without echoing the value the caller sent.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body must be at most {MAX_BODY_BYTES} bytes"),
    )
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be JSON with Content-Type: application/json",
            ));
        }
        let bytes = to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| too_large())?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses `bytes` as a JSON object of type `T`; errors name the field and what was
/// expected (serde would otherwise also accept an array for a struct).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|_| ApiError::invalid("body", "is not valid JSON"))?;
    if !value.is_object() {
        return Err(ApiError::invalid("body", "expected a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let text = e.inner().to_string();
        let path = e.path().to_string();
        if let Some(field) = text
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            let field = match path.as_str() {
                "." => field.to_owned(),
                parent => format!("{parent}.{field}"),
            };
            return ApiError::invalid(&field, "is required");
        }
        let field = if path == "." { "body" } else { path.as_str() };
        // serde's text is "invalid type: <what was sent>, expected <what>": keep only
        // the expectation so that the caller's value is never echoed back.
        let expected = text
            .split_once(", expected ")
            .map(|(_, exp)| exp.split(" at line ").next().unwrap_or(exp))
            .map(plain_expectation);
        match expected {
            Some(exp) => ApiError::invalid(field, format!("expected {exp}")),
            None => ApiError::invalid(field, "has an invalid value"),
        }
    })
}

/// serde's type names in words a partner reads.
fn plain_expectation(exp: &str) -> String {
    match exp {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        e if e.starts_with("struct ") || e.starts_with("a map") => "a JSON object".into(),
        e => e.to_owned(),
    }
}

/// The key presented as `Authorization: Bearer ak_...`, if any.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The App authenticated by `Authorization: Bearer ak_...`.
#[derive(Debug, Clone)]
pub struct PartnerApp(pub App);

impl<S> FromRequestParts<S> for PartnerApp
where
    S: Send + Sync,
    Platform: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let PartnerKey(app, _) = PartnerKey::from_request_parts(parts, state).await?;
        Ok(Self(app))
    }
}

/// [`PartnerApp`] and the id of the key it presented (login links record it).
#[derive(Debug, Clone)]
pub struct PartnerKey(pub App, pub KeyId);

impl<S> FromRequestParts<S> for PartnerKey
where
    S: Send + Sync,
    Platform: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let state = Platform::from_ref(state);
        // Authenticated (and counted) already by the Idempotency-Key layer: one key
        // lookup and one count per request.
        if let Some(crate::idempotency::Authenticated(app, key)) = parts.extensions.get() {
            return Ok(Self(app.clone(), key.clone()));
        }
        let store: &dyn pipes_core::AppStore = &*state.store;
        let (app, key) = authenticate_key(store, bearer(parts)).await?;
        // The App's own rate limit.
        pipes_core::usecases::limits::admit_app(&*state.store, &*state.clock, &app)
            .await
            .map_err(ApiError::rate_limited)?;
        Ok(Self(app, key))
    }
}

/// A bodiless request's body, for tests and lambda adapters.
pub fn empty() -> Body {
    Body::empty()
}

/// A path parameter; one that does not decode (invalid percent-encoded UTF-8) is a 400
/// in API.md's error body, not axum's plain-text rejection.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Self(v))
            .map_err(|_| ApiError::invalid("path", "is malformed"))
    }
}

/// A query string; one that does not decode (a repeated parameter, invalid encoding) is
/// a 400 in API.md's error body.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|_| ApiError::invalid("query", "is malformed"))
    }
}

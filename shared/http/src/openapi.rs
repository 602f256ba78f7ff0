//! `GET /openapi.json`: the OpenAPI 3.1 description of the public API. The file in the
//! repository (`shared/http/openapi.json`) names `pipes dev` and a templated host as its
//! servers; the served copy names the deployment's own base URL instead, so a client
//! generated from it talks to the service that served it.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pipes_core::Platform;
use serde_json::{Value, json};

/// The description as kept in the repository.
pub const DESCRIPTION: &str = include_str!("../openapi.json");

pub(crate) fn routes() -> Router<Platform> {
    // Rendered on the first request, not at cold start (it parses 170 KB), and kept by
    // this router: one platform, one base URL.
    let rendered: Arc<OnceLock<Bytes>> = Arc::default();
    Router::new().route(
        "/openapi.json",
        get(move |State(p): State<Platform>| serve(p, rendered.clone())),
    )
}

/// The description with `servers` set to `base` (the deployment's public base URL).
pub fn for_base_url(base: &str) -> Result<String, serde_json::Error> {
    let mut doc: Value = serde_json::from_str(DESCRIPTION)?;
    doc["servers"] = json!([{ "url": base, "description": "this deployment" }]);
    serde_json::to_string(&doc)
}

async fn serve(p: Platform, rendered: Arc<OnceLock<Bytes>>) -> Response {
    let body = match rendered.get() {
        Some(body) => body.clone(),
        None => {
            let base = p.public_base_url.join("/");
            match for_base_url(base.as_str().trim_end_matches('/')) {
                Ok(body) => rendered.get_or_init(|| Bytes::from(body)).clone(),
                Err(e) => {
                    tracing::error!(error = %e, "the OpenAPI description does not parse");
                    return crate::ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "an internal error occurred",
                    )
                    .into_response();
                }
            }
        }
    };
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_is_openapi_3_1_and_names_the_base_url() {
        let served: Value =
            serde_json::from_str(&for_base_url("https://connect.example.com").unwrap()).unwrap();
        assert_eq!(served["openapi"], "3.1.0");
        assert_eq!(served["servers"][0]["url"], "https://connect.example.com");
        assert!(served["paths"]["/v1/apps/token"]["post"].is_object());
    }
}

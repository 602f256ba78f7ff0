//! `GET /openapi.json`: the OpenAPI 3.1 description of the public API. The file in the
//! repository (`shared/http/openapi.json`) names `pipes dev` and a templated host as its
//! servers; the served copy names the deployment's own base URL instead, so a client
//! generated from it talks to the service that served it.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pipes_core::Platform;
use serde_json::{Value, json};

/// The description as kept in the repository.
pub const DESCRIPTION: &str = include_str!("../openapi.json");

pub(crate) fn routes() -> Router<Platform> {
    Router::new().route("/openapi.json", get(serve))
}

/// The description with `servers` set to `base` (the deployment's public base URL).
pub fn for_base_url(base: &str) -> Result<String, serde_json::Error> {
    let mut doc: Value = serde_json::from_str(DESCRIPTION)?;
    doc["servers"] = json!([{ "url": base, "description": "this deployment" }]);
    serde_json::to_string(&doc)
}

async fn serve(State(p): State<Platform>) -> Response {
    // One deployment, one base URL: rendered once per process (and again only if a
    // process serves several, as tests do).
    static RENDERED: OnceLock<(String, String)> = OnceLock::new();
    let base = p.public_base_url.join("/").to_string();
    let base = base.trim_end_matches('/');
    let body = match RENDERED.get() {
        Some((cached, body)) if cached == base => body.clone(),
        _ => match for_base_url(base) {
            Ok(body) => {
                // The first base URL is kept; another is rendered on each request.
                let _ = RENDERED.set((base.to_owned(), body.clone()));
                body
            }
            Err(e) => {
                tracing::error!(error = %e, "the OpenAPI description does not parse");
                return crate::ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred",
                )
                .into_response();
            }
        },
    };
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
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

//! The HTTP face of the platform: axum routers that run unchanged under Lambda
//! (`lambda_http::run`), the local server (`axum::serve`) and tests, plus the one place
//! where errors become responses.

pub mod error;
pub mod extract;
mod layers;
mod partner;

use std::sync::Arc;

use axum::Router;
use pipes_core::usecases::PublicBaseUrl;
use pipes_core::{Clock, Store};

pub use error::ApiError;

/// What every handler may use; built once at start-up.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub public_base_url: PublicBaseUrl,
}

/// The token-issuer's routes: `POST /v1/apps/token`, `GET /v1/sessions/{id}`.
pub fn token_issuer_router(state: ApiState) -> Router {
    layers::finish(partner::routes().with_state(state))
}

/// Every route the platform serves, for the local server.
pub fn local_router(state: ApiState) -> Router {
    layers::finish(partner::routes().with_state(state).merge(layers::healthz()))
}

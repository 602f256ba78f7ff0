//! The HTTP face of the platform: axum routers that run unchanged under Lambda
//! (`lambda_http::run`), the local server (`axum::serve`) and tests, plus the one place
//! where errors become responses.

pub mod error;
pub mod extract;
pub mod html;
mod layers;
pub mod numbers;
mod partner;
pub mod signup;

use std::sync::Arc;

use axum::Router;
use pipes_core::usecases::PublicBaseUrl;
use pipes_core::usecases::health::HealthPolicy;
use pipes_core::{Clock, Store};

pub use error::ApiError;
pub use numbers::NumbersState;
pub use signup::{InvocationDeadline, PageConfig, SignupState};

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

/// The signup-callback's routes: the hosted page and `POST /v1/signup/callback`.
pub fn signup_router(state: SignupState) -> Router {
    layers::finish(signup::routes().with_state(state))
}

/// The numbers-api's routes: `/v1/numbers...`.
pub fn numbers_router(state: NumbersState) -> Router {
    layers::finish(numbers::routes().with_state(state))
}

/// Every route the platform serves, for the local server; `extra` holds routes of
/// the host's own (the sandbox in local mode).
pub fn local_router(signup: SignupState, policy: HealthPolicy, extra: Router) -> Router {
    let numbers = NumbersState {
        api: signup.api.clone(),
        graph: signup.graph.clone(),
        envelope: signup.envelope.clone(),
        queue: signup.queue.clone(),
        policy,
    };
    let partner = partner::routes().with_state(signup.api.clone());
    layers::finish(
        partner
            .merge(numbers::routes().with_state(numbers))
            .merge(signup::routes().with_state(signup))
            .merge(layers::healthz())
            .merge(extra),
    )
}

//! The HTTP face of the platform: axum routers that run unchanged under Lambda
//! (`lambda_http::run`), the local server (`axum::serve`) and tests, plus the one place
//! where errors become responses.

pub mod dashboard;
pub mod error;
pub mod events;
pub mod extract;
pub mod html;
mod layers;
pub mod numbers;
mod partner;
pub mod signup;
pub mod webhooks;

use axum::Router;
use pipes_core::Platform;

pub use error::ApiError;
pub use signup::InvocationDeadline;

/// The token-issuer's routes: `POST /v1/apps/token`, `GET /v1/sessions/{id}`.
pub fn token_issuer_router(platform: Platform) -> Router {
    layers::finish(partner::routes().with_state(platform))
}

/// The signup-callback's routes: the hosted page, `POST /v1/signup/callback` and
/// Meta's webhooks (`/webhooks/meta`): the public routes Meta and owners call.
pub fn signup_router(platform: Platform) -> Router {
    layers::finish(
        signup::routes()
            .merge(webhooks::routes())
            .with_state(platform),
    )
}

/// The numbers-api's routes: `/v1/numbers...`, the webhook endpoint and the event log.
pub fn numbers_router(platform: Platform) -> Router {
    layers::finish(
        numbers::routes()
            .merge(events::routes())
            .with_state(platform),
    )
}

/// The dashboard function's routes: the owner's pages and `POST /v1/dashboard/login-links`.
pub fn dashboard_router(platform: Platform) -> Router {
    layers::finish(dashboard::routes().with_state(platform))
}

/// Every route the platform serves, for the local server; `extra` holds routes of
/// the host's own (the sandbox in local mode).
pub fn local_router(platform: Platform, extra: Router) -> Router {
    layers::finish(
        partner::routes()
            .merge(numbers::routes())
            .merge(events::routes())
            .merge(signup::routes())
            .merge(webhooks::routes())
            .merge(dashboard::routes())
            .with_state(platform)
            .merge(layers::healthz())
            .merge(extra),
    )
}

//! The HTTP face of the platform: axum routers that run unchanged under Lambda
//! (`lambda_http::run`), the local server (`axum::serve`) and tests, plus the one place
//! where errors become responses.

pub mod dashboard;
pub mod error;
pub mod events;
pub mod extract;
pub mod html;
pub mod idempotency;
mod layers;
pub mod limits;
pub mod numbers;
pub mod openapi;
mod partner;
pub mod signup;
pub mod webhooks;

use axum::Router;
use pipes_core::Platform;

pub use error::ApiError;
pub use signup::InvocationDeadline;

/// The token-issuer's routes: `POST /v1/apps/token`, `GET /v1/sessions/{id}` and the
/// API's description, `GET /openapi.json`.
pub fn token_issuer_router(platform: Platform) -> Router {
    layers::finish(
        idempotent(partner::routes(), &platform)
            .merge(openapi::routes())
            .with_state(platform),
    )
}

/// The App's routes with the `Idempotency-Key` layer on their POSTs.
fn idempotent(routes: Router<Platform>, platform: &Platform) -> Router<Platform> {
    routes.route_layer(axum::middleware::from_fn_with_state(
        platform.clone(),
        idempotency::idempotent,
    ))
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
        idempotent(numbers::routes().merge(events::routes()), &platform).with_state(platform),
    )
}

/// The dashboard function's routes: the owner's pages and `POST /v1/dashboard/login-links`.
pub fn dashboard_router(platform: Platform) -> Router {
    layers::finish(
        dashboard::routes()
            .merge(idempotent(dashboard::api_routes(), &platform))
            .with_state(platform),
    )
}

/// Every route the platform serves, for the local server; `extra` holds routes of
/// the host's own (the sandbox in local mode).
pub fn local_router(platform: Platform, extra: Router) -> Router {
    layers::finish(
        idempotent(
            partner::routes()
                .merge(numbers::routes())
                .merge(events::routes())
                .merge(dashboard::api_routes()),
            &platform,
        )
        .merge(signup::routes())
        .merge(webhooks::routes())
        .merge(dashboard::routes())
        .merge(openapi::routes())
        .with_state(platform)
        .merge(layers::healthz())
        .merge(extra),
    )
}

//! Lambda `token-issuer`: `POST /v1/apps/token` and `GET /v1/sessions/{id}` on DynamoDB.
//! Only wiring: configuration, the store and the shared router.

use std::sync::Arc;

use pipes_adapters::config;
use pipes_core::SystemClock;
use pipes_http::{ApiState, token_issuer_router};

#[tokio::main]
/// Errors surface through anyhow so a failed cold start prints its cause plainly
/// ("TABLE_NAME is not set") in the function's log.
async fn main() -> anyhow::Result<()> {
    lambda_http::tracing::init_default_subscriber();
    let state = ApiState {
        public_base_url: config::public_base_url()?,
        store: Arc::new(config::dynamo_store(&config::aws().await)?),
        clock: Arc::new(SystemClock),
    };
    lambda_http::run(token_issuer_router(state))
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

//! Lambda `numbers-api`: the partner's numbers over HTTP. Only wiring: configuration
//! (the Meta app secret from SSM, for checks on demand), adapters and the shared router.

use std::sync::Arc;

use pipes_adapters::config::{self, AwsPlatform};
use pipes_core::SystemClock;
use pipes_core::usecases::health::HealthPolicy;
use pipes_http::{ApiState, NumbersState, numbers_router};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_http::tracing::init_default_subscriber();
    let p = AwsPlatform::from_env().await?;
    let state = NumbersState {
        api: ApiState {
            public_base_url: config::public_base_url()?,
            store: Arc::new(p.store),
            clock: Arc::new(SystemClock),
        },
        graph: Arc::new(p.graph),
        envelope: p.envelope,
        queue: Arc::new(p.queue),
        policy: HealthPolicy::default(),
    };
    lambda_http::run(numbers_router(state))
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

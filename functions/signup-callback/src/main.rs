//! Lambda `signup-callback`: the hosted signup page and `POST /v1/signup/callback` on
//! DynamoDB, KMS, SQS and the Graph API. Only wiring: configuration (the Meta app secret
//! from SSM at cold start), adapters and the shared router.

use std::sync::Arc;

use pipes_adapters::config::{self, AwsPlatform};
use pipes_core::SystemClock;
use pipes_http::{ApiState, InvocationDeadline, PageConfig, SignupState, signup_router};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_http::tracing::init_default_subscriber();
    let p = AwsPlatform::from_env().await?;
    let page = PageConfig {
        meta_app_id: p.meta.app_id.clone(),
        config_id: p.meta.config_id.clone(),
        graph_version: p.meta.graph_version.clone(),
        sandbox: false,
    };
    let state = SignupState {
        api: ApiState {
            public_base_url: config::public_base_url()?,
            store: Arc::new(p.store),
            clock: Arc::new(SystemClock),
        },
        graph: Arc::new(p.graph),
        envelope: p.envelope,
        queue: Arc::new(p.queue),
        page,
    };
    let app = signup_router(state).layer(axum::middleware::map_request(invocation_deadline));
    lambda_http::run(app).await.map_err(|e| anyhow::anyhow!(e))
}

/// Hands the invocation's deadline to the routes, so a completion stops in time.
async fn invocation_deadline(mut req: axum::extract::Request) -> axum::extract::Request {
    if let Some(ctx) = req.extensions().get::<lambda_http::Context>() {
        let at = ctx.deadline();
        req.extensions_mut().insert(InvocationDeadline(at));
    }
    req
}

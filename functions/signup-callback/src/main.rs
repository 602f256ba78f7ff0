//! Lambda `signup-callback`: the hosted signup page and `POST /v1/signup/callback` on
//! DynamoDB, KMS, SQS and the Graph API. Only wiring: configuration (the Meta app secret
//! from SSM at cold start), adapters and the shared router.

use std::sync::Arc;

use pipes_adapters::config::{self, MetaConfig};
use pipes_core::SystemClock;
use pipes_core::crypto::Envelope;
use pipes_http::{ApiState, PageConfig, SignupState, signup_router};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_http::tracing::init_default_subscriber();
    let aws = config::aws().await;
    let meta = MetaConfig::from_env_and_ssm(&aws).await?;
    let state = SignupState {
        api: ApiState {
            public_base_url: config::public_base_url()?,
            store: Arc::new(config::dynamo_store(&aws)?),
            clock: Arc::new(SystemClock),
        },
        graph: Arc::new(meta.graph_client()?),
        envelope: Envelope::new(Arc::new(config::kms_wrapper(&aws)?)),
        queue: Arc::new(config::setup_queue(&aws)?),
        page: PageConfig {
            meta_app_id: meta.app_id.clone(),
            config_id: meta.config_id.clone(),
            graph_version: meta.graph_version.clone(),
            sandbox: false,
        },
    };
    lambda_http::run(signup_router(state))
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

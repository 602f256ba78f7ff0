//! Lambda `dashboard`: the App owner's pages and `POST /v1/dashboard/login-links`.
//! Only wiring: the composition root and the shared router.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_http::tracing::init_default_subscriber();
    let platform = pipes_adapters::root::aws().await?;
    lambda_http::run(pipes_http::dashboard_router(platform))
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

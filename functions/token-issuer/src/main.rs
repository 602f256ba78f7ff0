//! Lambda `token-issuer`: `POST /v1/apps/token` and `GET /v1/sessions/{id}` on DynamoDB.
//! Only wiring: the composition root and the shared router. Errors surface through
//! anyhow so a failed cold start prints its cause plainly ("TABLE_NAME is not set").

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_http::tracing::init_default_subscriber();
    let platform = pipes_adapters::root::aws().await?;
    lambda_http::run(pipes_http::token_issuer_router(platform))
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

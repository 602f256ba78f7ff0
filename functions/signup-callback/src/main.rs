//! Lambda `signup-callback`: the hosted signup page and `POST /v1/signup/callback`.
//! Only wiring: the composition root, the shared router, and the invocation's deadline
//! handed to the routes so a completion stops in time.

use pipes_http::InvocationDeadline;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_http::tracing::init_default_subscriber();
    let platform = pipes_adapters::root::aws().await?;
    let app = pipes_http::signup_router(platform)
        .layer(axum::middleware::map_request(invocation_deadline));
    lambda_http::run(app).await.map_err(|e| anyhow::anyhow!(e))
}

async fn invocation_deadline(mut req: axum::extract::Request) -> axum::extract::Request {
    if let Some(ctx) = req.extensions().get::<lambda_http::Context>() {
        let at = ctx.deadline();
        req.extensions_mut().insert(InvocationDeadline(at));
    }
    req
}

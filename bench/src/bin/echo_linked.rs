//! The floor with the token issuer's code linked in but not run: the same bare
//! `lambda_runtime` echo function as `echo`, whose executable also carries everything
//! the token issuer's init runs (the AWS SDK, rustls and aws-lc, the composition root,
//! the router, the tracing subscriber) behind a branch its environment never takes.
//! `cold_start` measures it between the floor and the functions, which splits a
//! function's init over the floor into what a larger executable costs to start
//! (mapping, relocating and first touching it) and what init does.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Never set by `cold_start`: the branch keeps the token issuer's init in the
    // executable (the compiler cannot drop it) without running it.
    if std::env::var_os("ECHO_LINKED_RUN_TOKEN_ISSUER").is_some() {
        lambda_http::tracing::init_default_subscriber();
        let platform = pipes_adapters::root::aws().await.map_err(Error::from)?;
        return lambda_http::run(pipes_http::token_issuer_router(platform)).await;
    }
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}

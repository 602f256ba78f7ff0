//! The floor for cold starts: a bare `lambda_runtime` function that answers its event
//! with itself. Every function's init time and memory are measured against it
//! (`cold_start`).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}

//! What a cold start spends its init on: one phase per run, in a fresh process, so each
//! pays its own one-time costs (`cold_start` measures the whole). Needs the function
//! environment (TABLE_NAME, KMS_KEY_ID, ... as in template.yaml); prints the phase's
//! milliseconds. Phases: `sdk-config` (aws_config::load_from_env), `sdk-config-env`
//! (region and credentials from the environment only), `sdk-clients` (the four
//! clients over an env-only config), `dynamodb-client` (the one client built at init,
//! alone), `reqwest` (the Graph client's HTTP client), `subscriber` (the runtime's
//! tracing subscriber), `root` (the whole composition root, as a function's main runs
//! it), `router` (the token issuer's router, alone).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

#[tokio::main]
async fn main() {
    let phase = std::env::args().nth(1).unwrap_or_else(|| "root".into());
    let start = Instant::now();
    match phase.as_str() {
        "sdk-config" => drop(aws_config::load_from_env().await),
        "sdk-config-env" => drop(pipes_adapters::config::lambda_aws().await),
        "sdk-clients" => {
            let conf = pipes_adapters::config::lambda_aws().await;
            drop(aws_sdk_dynamodb::Client::new(&conf));
            drop(aws_sdk_kms::Client::new(&conf));
            drop(aws_sdk_sqs::Client::new(&conf));
            drop(aws_sdk_ssm::Client::new(&conf));
        }
        "reqwest" => drop(reqwest::Client::builder().build().unwrap()),
        "dynamodb-client" => {
            let conf = pipes_adapters::config::lambda_aws().await;
            let start = Instant::now();
            drop(aws_sdk_dynamodb::Client::new(&conf));
            return print(start);
        }
        "subscriber" => lambda_http::tracing::init_default_subscriber(),
        "router" => {
            let platform = pipes_adapters::root::aws().await.unwrap();
            let start = Instant::now();
            drop(pipes_http::token_issuer_router(platform));
            return print(start);
        }
        "root" => drop(pipes_adapters::root::aws().await.unwrap()),
        other => panic!("unknown phase {other}"),
    }
    print(start);
}

fn print(start: Instant) {
    println!("{:.3}", start.elapsed().as_secs_f64() * 1000.0);
}

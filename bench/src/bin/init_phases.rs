//! What a cold start spends its init on: one phase per run, in a fresh process, so each
//! pays its own one-time costs (`cold_start` measures the whole). Needs the function
//! environment (TABLE_NAME, KMS_KEY_ID, ... as in template.yaml); prints the phase's
//! milliseconds. Phases: `sdk-config` (aws_config::load_from_env), `sdk-config-env`
//! (region and credentials from the environment only), `sdk-clients` (the four
//! clients over an env-only config), `reqwest` (the Graph client's HTTP client),
//! `root` (the whole composition root, as a function's main runs it).
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
        "root" => drop(pipes_adapters::root::aws().await.unwrap()),
        other => panic!("unknown phase {other}"),
    }
    println!("{:.3}", start.elapsed().as_secs_f64() * 1000.0);
}

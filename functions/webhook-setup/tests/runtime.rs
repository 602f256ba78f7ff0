//! The real `webhook-setup` bootstrap against a local Lambda Runtime API with the SQS
//! batch sample: the setup job runs against the sandbox, the malformed one alone fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use pipes_core::{HealthStatus, PhoneNumberId};
use pipes_tests::runtime_api::{LambdaHarness, Outcome};
use pipes_tests::{Backend, TestApp};

const BINARY: &str = env!("CARGO_BIN_EXE_webhook-setup");
const BATCH: &str = include_str!("../../../events/webhook-setup/sqs-batch.json");

#[tokio::test]
async fn the_bootstrap_runs_a_batch_and_reports_only_the_malformed_message() {
    let t = TestApp::spawn(Backend::aws().await).await;
    let (token, _) = t.signup_token().await;
    let signup = t.sandbox_signup();
    assert_eq!(t.finish(&token, &signup).await.status, 200);

    let mut lambda = LambdaHarness::start().await;
    lambda
        .spawn_as(
            "WebhookSetupFunction",
            Path::new(BINARY),
            &t.function_env().await,
        )
        .await;
    let event = BATCH
        .replace("app_SAMPLEsampleSAMPLE00", t.app.id.as_str())
        .replace("100000000000003", &signup.phone_number_id);
    let outcome = lambda.invoke(serde_json::from_str(&event).unwrap()).await;
    let Outcome::Response { body, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        body,
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": "6f1c0b2e-0c7a-4a8e-9d55-1d1c9f0e0002"}]})
    );
    let phone = PhoneNumberId::parse(&signup.phone_number_id).unwrap();
    let n = t.store.number(&t.app.id, &phone).await.unwrap().unwrap();
    assert_eq!(n.health.status, HealthStatus::Healthy);
    assert!(t.sandbox.is_subscribed(&signup.waba_id));
    lambda.assert_least_privilege();
}

#[tokio::test]
async fn a_missing_receive_count_setting_fails_the_cold_start() {
    let t = TestApp::spawn(Backend::aws().await).await;
    let env: Vec<_> = t
        .function_env()
        .await
        .into_iter()
        .filter(|(k, _)| *k != "SETUP_MAX_RECEIVE_COUNT")
        .collect();
    let mut lambda = LambdaHarness::start().await;
    lambda.spawn(Path::new(BINARY), &env);
    let (status, stderr) = lambda.wait_exit();
    assert!(!status.success());
    assert!(
        stderr.contains("SETUP_MAX_RECEIVE_COUNT is not set"),
        "{stderr}"
    );
}

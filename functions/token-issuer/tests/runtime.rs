//! The real `token-issuer` bootstrap binary, run against a local Lambda Runtime API with
//! the sample events and DynamoDB on moto's server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use pipes_core::usecases::admin;
use pipes_core::{Clock, SystemClock};
use pipes_tests::runtime_api::{LambdaHarness, Outcome};
use pipes_tests::{Backend, TestApp};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_token-issuer");
const POST_TOKEN: &str = include_str!("../../../events/token-issuer/post-apps-token.json");
const GET_SESSION: &str = include_str!("../../../events/token-issuer/get-session.json");
const GET_OPENAPI: &str = include_str!("../../../events/token-issuer/get-openapi.json");
const SAMPLE_KEY: &str = "ak_SAMPLEsampleSAMPLEsampleSAMPLE00";
const SAMPLE_SESSION: &str = "ses_SAMPLEsampleSAMPLE00";

fn response(outcome: Outcome) -> (u64, Value) {
    match outcome {
        Outcome::Response { body, .. } => {
            let status = body["statusCode"].as_u64().unwrap();
            let inner = serde_json::from_str(body["body"].as_str().unwrap()).unwrap();
            (status, inner)
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

#[tokio::test]
async fn the_bootstrap_answers_the_sample_events_from_dynamodb() {
    answers_the_sample_events(Path::new(BINARY)).await;
}

/// The arm64 bootstrap `sam build` makes, run under Debian's qemu-aarch64 (with the
/// arm64 C library) the way `sam local invoke` would run it in a container: the same
/// events get the same answers, and its AWS calls fit its policy. Needs the cross build:
/// `scripts/smoke-arm64` builds it and runs this test.
#[tokio::test]
#[ignore = "needs the arm64 build and qemu-user: run scripts/smoke-arm64"]
async fn the_arm64_bootstrap_answers_under_qemu() {
    let bootstrap = std::env::var("PIPES_ARM64_BOOTSTRAP")
        .expect("PIPES_ARM64_BOOTSTRAP names the arm64 bootstrap to run");
    let header = std::fs::read(&bootstrap).expect("the arm64 bootstrap exists");
    // ELF, 64-bit, e_machine 183 (EM_AARCH64): the cross build, not the host's.
    assert_eq!(
        &header[..5],
        b"\x7fELF\x02",
        "{bootstrap} is not a 64-bit ELF"
    );
    assert_eq!(
        u16::from_le_bytes([header[18], header[19]]),
        183,
        "{bootstrap} is not arm64"
    );
    let wrapper = std::env::temp_dir().join(format!("bootstrap-under-qemu-{}", std::process::id()));
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec qemu-aarch64 -L /usr/aarch64-linux-gnu '{bootstrap}'\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    answers_the_sample_events(&wrapper).await;
    std::fs::remove_file(&wrapper).ok();
}

async fn answers_the_sample_events(binary: &Path) {
    let t = TestApp::spawn(Backend::aws().await).await;
    let created = admin::create_app(&*t.store, SystemClock.now(), "acme", "Acme", &[])
        .await
        .unwrap();
    let key = created.key.expose();

    let mut lambda = LambdaHarness::start().await;
    lambda
        .spawn_as("TokenIssuerFunction", binary, &t.function_env().await)
        .await;
    let event: Value = serde_json::from_str(&POST_TOKEN.replace(SAMPLE_KEY, key)).unwrap();
    let (status, issued) = response(lambda.invoke(event).await);
    assert_eq!(status, 200, "{issued}");
    let token = issued["token"].as_str().unwrap();
    assert_eq!(
        issued["signupUrl"],
        format!("{}/apps/acme?token={token}", pipes_tests::BASE_URL)
    );

    let session_id = issued["sessionId"].as_str().unwrap();
    let event = GET_SESSION
        .replace(SAMPLE_KEY, key)
        .replace(SAMPLE_SESSION, session_id);
    let (status, session) = response(lambda.invoke(serde_json::from_str(&event).unwrap()).await);
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["status"], "pending");
    assert_eq!(session["metadata"]["partnerId"], "p_123");

    // With an Idempotency-Key, a retried request gets the same link (kept sealed).
    let mut event: Value = serde_json::from_str(&POST_TOKEN.replace(SAMPLE_KEY, key)).unwrap();
    event["headers"]["idempotency-key"] = "order-7".into();
    let (status, first) = response(lambda.invoke(event.clone()).await);
    assert_eq!(status, 200, "{first}");
    let (status, again) = response(lambda.invoke(event).await);
    assert_eq!((status, &again), (200, &first));

    // The placeholder key in the sample is not a real key.
    let (status, err) = response(
        lambda
            .invoke(serde_json::from_str(POST_TOKEN).unwrap())
            .await,
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );

    // The API's description, with this deployment as its server.
    let (status, description) = response(
        lambda
            .invoke(serde_json::from_str(GET_OPENAPI).unwrap())
            .await,
    );
    assert_eq!(status, 200);
    assert_eq!(description["openapi"], "3.1.0");
    assert_eq!(description["servers"][0]["url"], pipes_tests::BASE_URL);
    lambda.assert_least_privilege();
}

#[tokio::test]
async fn a_missing_setting_fails_the_cold_start_loudly() {
    let mut lambda = LambdaHarness::start().await;
    lambda.spawn(
        Path::new(BINARY),
        &[("PUBLIC_BASE_URL", "https://connect.pipes.test")],
    );
    let (status, stderr) = lambda.wait_exit();
    assert!(!status.success());
    assert!(stderr.contains("TABLE_NAME is not set"), "{stderr}");
}

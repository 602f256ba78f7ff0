//! The real `numbers-api` bootstrap against a local Lambda Runtime API with the
//! events/ samples: list, get, history, check now, a new setup attempt and remove, on
//! moto and the sandbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use pipes_tests::runtime_api::{LambdaHarness, Outcome};
use pipes_tests::{Backend, TestApp};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_numbers-api");
const SAMPLE_KEY: &str = "ak_SAMPLEsampleSAMPLEsampleSAMPLE00";

fn event(file: &str, key: &str, phone: &str) -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../events/numbers-api")
            .join(file),
    )
    .unwrap();
    serde_json::from_str(
        &text
            .replace(SAMPLE_KEY, key)
            .replace("100000000000003", phone),
    )
    .unwrap()
}

fn response(outcome: Outcome) -> (u64, Value) {
    let Outcome::Response { body, .. } = outcome else {
        panic!("{outcome:?}")
    };
    let status = body["statusCode"].as_u64().unwrap();
    let inner = body["body"]
        .as_str()
        .filter(|b| !b.is_empty())
        .map_or(Value::Null, |b| serde_json::from_str(b).unwrap());
    (status, inner)
}

#[tokio::test]
async fn the_bootstrap_serves_the_numbers_routes() {
    let t = TestApp::spawn(Backend::aws().await).await;
    let (token, _) = t.signup_token().await;
    let signup = t.sandbox_signup();
    assert_eq!(t.finish(&token, &signup).await.status, 200);
    t.run_jobs().await;
    let (key, phone) = (t.key.expose(), signup.phone_number_id.as_str());

    let mut lambda = LambdaHarness::start().await;
    lambda
        .spawn_as(
            "NumbersApiFunction",
            Path::new(BINARY),
            &t.function_env().await,
        )
        .await;
    let (status, list) = response(lambda.invoke(event("list-numbers.json", key, phone)).await);
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["numbers"][0]["phoneNumberId"], phone);
    let (status, one) = response(lambda.invoke(event("get-number.json", key, phone)).await);
    assert_eq!(
        (status, one["health"]["status"].as_str()),
        (200, Some("healthy"))
    );
    t.sandbox.revoke(phone);
    let (status, checked) = response(lambda.invoke(event("health-check.json", key, phone)).await);
    assert_eq!(
        (status, checked["health"]["reason"].as_str()),
        (200, Some("token_invalid"))
    );
    let (status, history) = response(
        lambda
            .invoke(event("number-history.json", key, phone))
            .await,
    );
    assert_eq!(
        (status, history["events"].as_array().unwrap().len()),
        (200, 2)
    );
    // A number whose registration waits for its owner: the App asks for a new attempt.
    let (token, _) = t.signup_token().await;
    let waiting = t
        .sandbox
        .signup(pipes_sandbox::SignupRequest {
            scenario: Some(pipes_sandbox::Scenario::TwoStepPinSet),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(t.finish(&token, &waiting).await.status, 200);
    t.run_jobs().await;
    let (status, retried) = response(
        lambda
            .invoke(event("request-setup.json", key, &waiting.phone_number_id))
            .await,
    );
    assert_eq!(
        (status, retried["health"]["status"].as_str()),
        (202, Some("pending")),
        "{retried}"
    );
    let (status, _) = response(lambda.invoke(event("remove-number.json", key, phone)).await);
    assert_eq!(status, 204);
    let (_, gone) = response(lambda.invoke(event("get-number.json", key, phone)).await);
    assert_eq!(gone["health"]["status"], "removed");
    lambda.assert_least_privilege();
}

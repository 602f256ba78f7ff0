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

    // The webhook endpoint and the event log.
    let (status, created) = response(
        lambda
            .invoke(event("put-webhook-endpoint.json", key, phone))
            .await,
    );
    assert_eq!(status, 200, "{created}");
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let (status, shown) = response(
        lambda
            .invoke(event("get-webhook-endpoint.json", key, phone))
            .await,
    );
    assert_eq!((status, shown.get("secret")), (200, None), "{shown}");
    let (status, rotated) = response(
        lambda
            .invoke(event("rotate-webhook-secret.json", key, phone))
            .await,
    );
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["secret"], created["secret"]);
    let mut keyed = event("test-webhook-endpoint.json", key, phone);
    keyed["headers"]["idempotency-key"] = "ping-1".into();
    let (status, ping) = response(lambda.invoke(keyed.clone()).await);
    assert_eq!(
        (status, ping["type"].as_str()),
        (202, Some("ping")),
        "{ping}"
    );
    let (_, again) = response(lambda.invoke(keyed).await);
    assert_eq!(again["id"], ping["id"], "the same ping, queued once");
    let (status, listed) = response(lambda.invoke(event("list-events.json", key, phone)).await);
    assert_eq!(status, 200, "{listed}");
    let changed = listed["events"].as_array().unwrap();
    assert!(
        changed.iter().all(|e| e["type"] == "number.health_changed") && !changed.is_empty(),
        "{listed}"
    );
    let id = changed[0]["id"].as_str().unwrap();
    let one = |file: &str| {
        let mut e = event(file, key, phone);
        let text = e.to_string().replace("evt_SAMPLEsampleSAMPLEsample00", id);
        e = serde_json::from_str(&text).unwrap();
        e
    };
    let (status, got) = response(lambda.invoke(one("get-event.json")).await);
    assert_eq!((status, got["id"].as_str()), (200, Some(id)), "{got}");
    let (status, again) = response(lambda.invoke(one("redeliver-event.json")).await);
    assert_eq!(
        (status, again["delivery"]["status"].as_str()),
        (202, Some("pending")),
        "{again}"
    );
    let (status, _) = response(
        lambda
            .invoke(event("delete-webhook-endpoint.json", key, phone))
            .await,
    );
    assert_eq!(status, 204);
    lambda.assert_least_privilege();
}

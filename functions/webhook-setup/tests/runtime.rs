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

/// Meta's webhook changes and partner-event deliveries through the real bootstrap:
/// a `PARTNER_ADDED` whose callback never came interrupts the signup that reported its
/// WABA, a `PARTNER_REMOVED` takes the connected number down, and the events they
/// emit are delivered (to an endpoint on a forbidden address: refused and rescheduled).
#[tokio::test]
async fn the_bootstrap_acts_on_meta_changes_and_delivers_events() {
    use pipes_core::events::DeliveryStatus;
    use pipes_core::webhooks::parse_delivery;
    use serde_json::json;

    let t = TestApp::spawn(Backend::aws().await).await;
    t.register_endpoint("https://127.0.0.1:9/hooks").await;
    let (token, _) = t.signup_token().await;
    let connected = t.sandbox_signup();
    assert_eq!(t.finish(&token, &connected).await.status, 200);
    t.run_jobs().await;
    let (lost_token, lost_session) = t.signup_token().await;
    let lost = t.sandbox_signup();
    assert_eq!(
        t.report_finish(&lost_token, &lost.waba_id).await.status,
        202
    );
    let now = chrono::Utc::now().timestamp();
    let payload = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "35602282435505", "time": now, "changes": [{"field": "account_update",
            "value": {"event": "PARTNER_ADDED", "waba_info": {"waba_id": lost.waba_id, "owner_business_id": "1"}}}]},
        {"id": "35602282435505", "time": now + 1, "changes": [{"field": "account_update",
            "value": {"event": "PARTNER_REMOVED", "waba_info": {"waba_id": connected.waba_id, "owner_business_id": "1"}}}]}
    ]});
    assert_eq!(t.meta_webhook(&payload).await.status, 200);
    let jobs: Vec<String> = parse_delivery(payload.to_string().as_bytes(), chrono::Utc::now())
        .unwrap()
        .iter()
        .map(|c| json!({"type": "inbound", "changeId": c.id}).to_string())
        .collect();

    let mut lambda = LambdaHarness::start().await;
    lambda
        .spawn_as(
            "WebhookSetupFunction",
            Path::new(BINARY),
            &t.function_env().await,
        )
        .await;
    let event = serde_json::to_value(pipes_tests::sqs_event_of(&jobs)).unwrap();
    let Outcome::Response { body, .. } = lambda.invoke(event).await else {
        panic!("no response")
    };
    assert_eq!(body, json!({"batchItemFailures": []}));
    let session = t.get_session(&lost_session).await.json();
    assert_eq!(session["status"], "interrupted", "{session}");
    assert_eq!(session["wabaId"], lost.waba_id.as_str());
    let phone = PhoneNumberId::parse(&connected.phone_number_id).unwrap();
    let n = t.store.number(&t.app.id, &phone).await.unwrap().unwrap();
    assert_eq!(n.health.status, HealthStatus::Down);
    assert_eq!(
        n.health.reason,
        Some(pipes_core::HealthReason::AccessRemoved)
    );

    // The events these emitted, delivered by the same function.
    let client = aws_sdk_sqs::Client::new(&pipes_tests::emulator().await);
    let events_url = t
        .backend
        .events_sqs
        .as_ref()
        .unwrap()
        .queue_url()
        .to_owned();
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let msgs = pipes_tests::receive_batch(&client, &events_url).await;
        if msgs.is_empty() {
            break;
        }
        bodies.extend(msgs.iter().filter_map(|m| m.body.clone()));
    }
    assert!(bodies.len() >= 3, "{bodies:?}");
    let event = serde_json::to_value(pipes_tests::sqs_event_of(&bodies)).unwrap();
    let Outcome::Response { body, .. } = lambda.invoke(event).await else {
        panic!("no response")
    };
    assert_eq!(body, json!({"batchItemFailures": []}));
    let page = t
        .store
        .list_events(&t.app.id, None, 50, None, chrono::Utc::now())
        .await
        .unwrap();
    let kinds: Vec<&str> = page.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"signup.interrupted"), "{kinds:?}");
    assert!(kinds.contains(&"number.health_changed"), "{kinds:?}");
    for e in &page.events {
        assert_eq!(e.delivery, DeliveryStatus::Pending, "{e:?}");
        assert_eq!(e.attempts.len(), 1);
        assert!(
            e.attempts[0]
                .detail
                .as_deref()
                .unwrap_or_default()
                .contains("forbidden address"),
            "{:?}",
            e.attempts[0]
        );
    }
    lambda.assert_least_privilege();
}

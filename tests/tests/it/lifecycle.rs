//! The webhook-setup worker taking a signed-up number to healthy, on the sandbox and
//! both backends (the local job table, and SQS batches with partial failures on moto).

use chrono::Duration;
use pipes_core::meta::AccessToken;
use pipes_core::number::HealthReason;
use pipes_core::queue::{Job, JobQueue};
use pipes_core::usecases::health::open_token;
use pipes_core::{HealthStatus, Number, PhoneNumberId};
use pipes_sandbox::{Fault, FaultKind, NumberUpdate, SignupRequest, SignupResult};
use pipes_tests::{Backend, TestApp};

/// Signs a new number up through the callback; returns the sandbox's view of it.
async fn signed_up(t: &TestApp) -> SignupResult {
    let (token, _) = t.signup_token().await;
    let signup = t.sandbox_signup();
    assert_eq!(t.finish(&token, &signup).await.status, 200);
    signup
}

async fn number(t: &TestApp, s: &SignupResult) -> Number {
    let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
    t.store.number(&t.app.id, &phone).await.unwrap().unwrap()
}

async fn business_token(t: &TestApp, s: &SignupResult) -> AccessToken {
    open_token(&t.envelope, &number(t, s).await)
        .await
        .unwrap()
        .unwrap()
}

async fn fresh_signup_reaches_healthy(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let s = signed_up(&t).await;
    let before = t.sandbox.all_calls();
    assert!(t.run_jobs().await >= 1);
    let n = number(&t, &s).await;
    assert_eq!(n.health.status, HealthStatus::Healthy, "{:?}", n.health);
    assert!(n.setup.webhook_subscribed && n.setup.registered && n.setup.completed_at.is_some());
    assert_eq!(n.setup.last_error, None);
    assert_eq!(n.profile.status.as_deref(), Some("CONNECTED"));
    assert_eq!(n.profile.verified_name.as_deref(), Some("Sandbox Business"));
    assert_eq!(n.profile.quality_rating.as_deref(), Some("GREEN"));
    assert!(n.profile.display_phone_number.is_some());
    assert!(n.sealed_pin.is_some(), "the PIN is kept, sealed");
    assert!(t.sandbox.is_subscribed(&s.waba_id));
    let after = t.sandbox.all_calls();
    let made = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    assert_eq!(made("POST subscribed_apps"), 1);
    assert_eq!(made("POST register"), 1);
    assert_eq!(made("GET number"), 1, "the profile before registering");
    assert_eq!(
        made("GET health_status"),
        1,
        "the first check: the profile and the health in one call"
    );
    assert_eq!(made("GET debug_token"), 1);
    assert_eq!(made("GET subscribed_apps"), 1);
    assert_eq!(
        made("GET waba"),
        1,
        "the WABA's review status, in the first check"
    );
    let history = t
        .store
        .history(&t.app.id, &n.phone_number_id, 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].from, history[0].to),
        (HealthStatus::Pending, HealthStatus::Healthy)
    );
}

#[tokio::test]
async fn a_fresh_signup_reaches_healthy_on_the_local_worker() {
    fresh_signup_reaches_healthy(Backend::embedded()).await;
}

#[tokio::test]
async fn a_fresh_signup_reaches_healthy_through_sqs() {
    fresh_signup_reaches_healthy(Backend::aws().await).await;
}

async fn same_job_twice(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let s = signed_up(&t).await;
    let n = number(&t, &s).await;
    let job = Job::Setup {
        app_id: t.app.id.clone(),
        phone_number_id: n.phone_number_id.clone(),
    };
    t.backend.queue.enqueue(&job).await.unwrap();
    // Both copies are delivered (on SQS in one batch, concurrently: the second waits
    // for the first's lease and is delivered again).
    assert!(t.run_jobs().await >= 2);
    t.backend.queue.enqueue(&job).await.unwrap();
    t.run_jobs().await;
    assert_eq!(t.sandbox.calls("POST subscribed_apps"), 1);
    assert_eq!(t.sandbox.calls("POST register"), 1);
    assert_eq!(t.sandbox.calls("GET health_status"), 1);
    assert_eq!(number(&t, &s).await.health.status, HealthStatus::Healthy);
}

#[tokio::test]
async fn the_same_job_delivered_twice_makes_each_graph_call_once() {
    same_job_twice(Backend::embedded()).await;
}

#[tokio::test]
async fn the_same_job_delivered_twice_through_sqs_makes_each_graph_call_once() {
    same_job_twice(Backend::aws().await).await;
}

#[tokio::test]
async fn a_transient_failure_on_subscribe_is_retried_then_succeeds() {
    let t = TestApp::spawn(Backend::aws().await).await;
    let s = signed_up(&t).await;
    // More 5xx than the client's own retries: the first delivery fails.
    t.sandbox
        .add_fault(Fault::new("subscribed_apps", FaultKind::ServerError, 3).on("POST"));
    assert_eq!(t.run_jobs_once().await, 1);
    let n = number(&t, &s).await;
    assert_eq!(n.health.status, HealthStatus::Pending);
    assert!(
        n.setup
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("subscribe webhooks")),
        "{:?}",
        n.setup
    );
    t.run_jobs().await;
    let n = number(&t, &s).await;
    assert_eq!(n.health.status, HealthStatus::Healthy);
    assert_eq!(n.setup.last_error, None);
    assert_eq!(t.sandbox.calls("POST subscribed_apps"), 4);
}

#[tokio::test]
async fn a_revoked_token_during_setup_ends_down() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t).await;
    t.sandbox.revoke(&s.phone_number_id);
    assert_eq!(
        t.run_jobs().await,
        1,
        "one delivery: down is final, not retried"
    );
    let n = number(&t, &s).await;
    assert_eq!(
        (n.health.status, n.health.reason),
        (HealthStatus::Down, Some(HealthReason::TokenInvalid))
    );
    let history = t
        .store
        .history(&t.app.id, &n.phone_number_id, 10)
        .await
        .unwrap();
    assert_eq!(
        (history[0].from, history[0].to),
        (HealthStatus::Pending, HealthStatus::Down)
    );
    assert_eq!(
        t.backend
            .embedded
            .as_ref()
            .unwrap()
            .dead_jobs()
            .await
            .unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn an_exhausted_registration_budget_defers_rather_than_fails() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t).await;
    let token = business_token(&t, &s).await;
    let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
    // Ten registrations elsewhere spend Meta's budget: ours is the eleventh in 72 h.
    for _ in 0..10 {
        t.graph.register(&token, &phone, "000000").await.unwrap();
    }
    t.sandbox.update_number(
        &s.phone_number_id,
        &NumberUpdate {
            status: Some("PENDING".into()),
            platform_type: Some("NOT_APPLICABLE".into()),
            ..NumberUpdate::default()
        },
    );
    assert_eq!(t.run_jobs().await, 1);
    let n = number(&t, &s).await;
    assert_eq!(n.health.status, HealthStatus::Pending);
    assert_eq!(n.health.reason, Some(HealthReason::RegistrationDeferred));
    assert!(
        n.setup
            .retry_after
            .is_some_and(|r| r > pipes_core::Clock::now(&t.clock))
    );
    assert!(!n.setup.registered);
    assert_eq!(
        t.backend
            .embedded
            .as_ref()
            .unwrap()
            .dead_jobs()
            .await
            .unwrap(),
        vec![],
        "deferred, not failed"
    );

    // Our own record of attempts also keeps us inside the budget without calling Meta.
    let mut spent = n.clone();
    spent.setup.retry_after = None;
    spent.setup.register_attempts = vec![pipes_core::Clock::now(&t.clock); 10];
    spent.version = n.version + 1;
    t.store.save_number(&spent, n.version, None).await.unwrap();
    let calls = t.sandbox.calls("POST register");
    t.backend
        .queue
        .enqueue(&Job::Setup {
            app_id: t.app.id.clone(),
            phone_number_id: phone.clone(),
        })
        .await
        .unwrap();
    t.run_jobs().await;
    assert_eq!(t.sandbox.calls("POST register"), calls);
    let n = number(&t, &s).await;
    assert_eq!(n.health.reason, Some(HealthReason::RegistrationDeferred));
    let until = n.setup.retry_after.unwrap();
    assert!(until - pipes_core::Clock::now(&t.clock) > Duration::hours(71));
}

/// Meta reviews display names while the number is in use: a pending name is a signal,
/// not a reason to hold registration back.
#[tokio::test]
async fn a_display_name_in_review_does_not_hold_registration_back() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t).await;
    t.sandbox.update_number(
        &s.phone_number_id,
        &NumberUpdate {
            name_status: Some("PENDING_REVIEW".into()),
            ..NumberUpdate::default()
        },
    );
    t.run_jobs().await;
    let n = number(&t, &s).await;
    assert_eq!(
        (n.health.status, n.health.reason),
        (HealthStatus::Healthy, None)
    );
    assert!(
        n.health
            .message
            .as_deref()
            .unwrap()
            .contains("in Meta's review"),
        "{:?}",
        n.health.message
    );
    assert_eq!(t.sandbox.calls("POST register"), 1);
}

#[tokio::test]
async fn a_malformed_message_fails_alone_in_its_batch() {
    let t = TestApp::spawn(Backend::aws().await).await;
    let a = signed_up(&t).await;
    let sqs = t.backend.sqs.as_ref().unwrap();
    let client = aws_sdk_sqs::Client::new(&pipes_tests::emulator().await);
    client
        .send_message()
        .queue_url(sqs.queue_url())
        .message_body("{not json")
        .send()
        .await
        .unwrap();
    let b = signed_up(&t).await;
    let msgs = pipes_tests::receive_batch(&client, sqs.queue_url()).await;
    assert_eq!(msgs.len(), 3);
    let malformed = msgs
        .iter()
        .find(|m| m.body() == Some("{not json"))
        .unwrap()
        .message_id()
        .unwrap()
        .to_owned();
    let response =
        pipes_adapters::sqs_worker::handle_batch(t.worker_deps(), pipes_tests::sqs_event(&msgs), 5)
            .await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, vec![malformed]);
    assert_eq!(number(&t, &a).await.health.status, HealthStatus::Healthy);
    assert_eq!(number(&t, &b).await.health.status, HealthStatus::Healthy);
}

#[tokio::test]
async fn after_the_last_delivery_the_number_shows_the_setup_error() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t).await;
    t.sandbox
        .add_fault(Fault::new("subscribed_apps", FaultKind::ServerError, 1000).on("POST"));
    let store = t.backend.embedded.as_ref().unwrap();
    for _ in 0..pipes_adapters::local_worker::MAX_ATTEMPTS {
        assert_eq!(t.run_jobs_once().await, 1);
        t.clock.advance(Duration::minutes(5));
    }
    assert_eq!(t.run_jobs_once().await, 0, "dead after the last delivery");
    assert_eq!(store.dead_jobs().await.unwrap().len(), 1);
    let n = number(&t, &s).await;
    assert_eq!(
        (n.health.status, n.health.reason),
        (HealthStatus::Pending, Some(HealthReason::SetupFailed))
    );
    assert!(n.setup.last_error.unwrap().contains("subscribe webhooks"));
}

#[tokio::test]
async fn sqs_moves_a_message_to_the_dead_letter_queue_after_max_receives() {
    let t = TestApp::spawn(Backend::aws().await).await;
    let conf = pipes_tests::emulator().await;
    let client = aws_sdk_sqs::Client::new(&conf);
    let name = format!(
        "pipes-test-dlq-{}",
        pipes_core::random::base62(8).to_lowercase()
    );
    let dlq = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let main = client
        .create_queue()
        .queue_name(format!("{name}-main"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            format!("{{\"deadLetterTargetArn\":\"{dlq_arn}\",\"maxReceiveCount\":\"2\"}}"),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let s = t.sandbox.signup(SignupRequest::default()).unwrap();
    let (token, _) = t.signup_token().await;
    assert_eq!(t.finish(&token, &s).await.status, 200);
    t.sandbox
        .add_fault(Fault::new("subscribed_apps", FaultKind::ServerError, 1000).on("POST"));
    let job = Job::Setup {
        app_id: t.app.id.clone(),
        phone_number_id: PhoneNumberId::parse(&s.phone_number_id).unwrap(),
    };
    pipes_adapters::sqs::SqsQueue::new(client.clone(), main.clone())
        .enqueue(&job)
        .await
        .unwrap();
    for round in 1..=3 {
        let msgs = client
            .receive_message()
            .queue_url(&main)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if round == 3 {
            assert!(
                msgs.is_empty(),
                "moved to the dead-letter queue after 2 receives"
            );
            break;
        }
        let response = pipes_adapters::sqs_worker::handle_batch(
            t.worker_deps(),
            pipes_tests::sqs_event(&msgs),
            2,
        )
        .await;
        assert_eq!(response.batch_item_failures.len(), 1);
    }
    let dead = client
        .receive_message()
        .queue_url(&dlq)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 1);
    let n = number(&t, &s).await;
    assert_eq!(
        n.health.reason,
        Some(HealthReason::SetupFailed),
        "the final receive recorded the failure"
    );
    assert!(n.setup.last_error.is_some());
}

/// One signup can be followed through the logs of the three functions it touches by
/// its ids: the callback's completion span, then the worker's span per SQS message,
/// its setup and its first check, each carrying appId, phoneNumberId (and sessionId).
#[tokio::test]
async fn one_signup_can_be_followed_through_the_logs_by_its_ids() {
    let logs = pipes_tests::LogCapture::global();
    let t = TestApp::spawn(Backend::aws().await).await;
    let (token, session_id) = t.signup_token().await;
    let s = t.sandbox_signup();
    assert_eq!(t.finish(&token, &s).await.status, 200);
    t.run_jobs().await;
    let text = logs.text();
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&s.phone_number_id) && l.contains(t.app.id.as_str()))
        .collect();
    let has = |parts: &[&str]| ours.iter().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(
        has(&["complete_signup_within{", &session_id, "signup completed"]),
        "{ours:#?}"
    );
    assert!(
        has(&[
            "sqs_message{message_id=",
            "handle_job{job=\"setup\"}",
            "run_setup{",
            "setup completed"
        ]),
        "{ours:#?}"
    );
    assert!(has(&["check_number{", "health changed"]), "{ours:#?}");
}

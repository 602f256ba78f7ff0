//! What reading the code and injecting faults found, each pinned by a test: a setup's
//! lease given back on every exit and never spending a retry, an unreadable token that
//! is a failed check rather than a stalled sweep, expired failed sessions, and the
//! scenarios peers' suites cover (a removed number never checked, a revoked number
//! reconnected to healthy).

use std::time::Duration as StdDuration;

use chrono::Duration;
use pipes_core::number::HealthReason;
use pipes_core::queue::Job;
use pipes_core::usecases::jobs::handle_job;
use pipes_core::usecases::setup::{SetupError, SetupOutcome, run_setup};
use pipes_core::usecases::sweep::SweepConfig;
use pipes_core::{Clock, HealthStatus, Number, PhoneNumberId};
use pipes_sandbox::SignupResult;
use pipes_tests::{Backend, TestApp};

on_both_stores! {
    a_setup_failing_after_its_lease_gives_the_lease_back => lease_given_back;
    an_unreadable_token_is_a_failed_check_and_the_sweep_moves_on => unreadable_token;
    a_revoked_number_reconnected_through_a_new_link_is_healthy_again => reconnect_after_down;
    the_sweep_never_checks_a_removed_number => removed_never_checked;
}

async fn signed_up(t: &TestApp) -> SignupResult {
    let (token, _) = t.signup_token().await;
    let s = t.sandbox_signup();
    assert_eq!(t.finish(&token, &s).await.status, 200);
    s
}

/// Removes the number through the API.
async fn remove(t: &TestApp, s: &SignupResult) {
    let req = t
        .authed(
            http::Method::DELETE,
            &format!("/v1/numbers/{}", s.phone_number_id),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(t.send(req).await.status, 204);
}

async fn number(t: &TestApp, s: &SignupResult) -> Number {
    let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
    t.store.number(&t.app.id, &phone).await.unwrap().unwrap()
}

fn everything_due() -> SweepConfig {
    SweepConfig {
        safety_margin: StdDuration::ZERO,
        horizon: Duration::days(3650),
        ..SweepConfig::default()
    }
}

/// Fault injection found setups stuck: a delivery that failed on a path returning
/// early after taking the 2-minute lease (here a version conflict with a concurrent
/// write) kept it, and every redelivery spent a retry on "another delivery is running".
async fn lease_given_back(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let s = signed_up(&t).await;
    let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
    t.sandbox.set_latency_ms(300);
    let bump = async {
        tokio::time::sleep(StdDuration::from_millis(120)).await;
        let n = t.store.number(&t.app.id, &phone).await.unwrap().unwrap();
        assert!(n.setup.lease_until.is_some(), "the setup holds its lease");
        let next = n.revision(t.clock.now());
        t.store.save_number(&next, n.version, None).await.unwrap();
    };
    let (result, ()) = tokio::join!(run_setup(t.worker_deps(), &t.app.id, &phone), bump);
    assert!(matches!(result, Err(SetupError::Retry(_))), "{result:?}");
    assert_eq!(number(&t, &s).await.setup.lease_until, None, "given back");
    t.sandbox.set_latency_ms(0);
    // At once, not 2 minutes later.
    let again = run_setup(t.worker_deps(), &t.app.id, &phone).await.unwrap();
    assert_eq!(again, SetupOutcome::Completed(HealthStatus::Healthy));
}

/// A delivery finding the setup leased by another is not a failure: it is queued again
/// for the lease's end and spends none of the job's deliveries.
#[tokio::test]
async fn a_busy_setup_is_queued_for_later_without_spending_a_delivery() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t).await;
    let store = t.backend.embedded.as_ref().unwrap();
    // The callback's job: taken (as a worker would), not run yet.
    let now = t.clock.now();
    let taken = store
        .take_jobs(now, 10, now + Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let n = number(&t, &s).await;
    let mut leased = n.revision(now);
    let until = now + Duration::minutes(2);
    leased.setup.lease_until = Some(until);
    t.store.save_number(&leased, n.version, None).await.unwrap();
    assert!(
        handle_job(t.worker_deps(), &taken[0].body, true)
            .await
            .is_ok()
    );
    store.ack_job(taken[0].id).await.unwrap(); // as the worker does with an Ok
    let job: Job = serde_json::from_str(&taken[0].body).unwrap();
    assert!(matches!(job, Job::Setup { .. }));
    assert_eq!(
        number(&t, &s).await.setup.last_error,
        None,
        "not recorded as a failure, even on the last delivery"
    );
    let early = store.take_jobs(now, 10, now).await.unwrap();
    assert!(early.is_empty(), "queued for the lease's end: {early:?}");
    let later = store
        .take_jobs(until + Duration::seconds(1), 10, until)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].attempts, 1, "a fresh message");
}

/// A token the key service cannot open (a damaged record, a KMS failure) is a failed
/// check: the next check moves on, three make the number degraded, and the sweep's
/// other due numbers are checked meanwhile. Before, the error left the number due and
/// 500 of them blocked every other due number on every run.
async fn unreadable_token(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let a = signed_up(&t).await;
    let b = signed_up(&t).await;
    t.run_jobs().await;
    // Number a gets number b's sealed token: it opens for neither (bound to its record).
    let (na, nb) = (number(&t, &a).await, number(&t, &b).await);
    let mut damaged = na.revision(t.clock.now());
    damaged.sealed_token = nb.sealed_token.clone();
    t.store
        .save_number(&damaged, na.version, None)
        .await
        .unwrap();
    for round in 1..=3u32 {
        t.clock.advance(Duration::hours(2));
        let report = t.sweep(everything_due(), None).await;
        assert_eq!(report.checked, 2, "round {round}: both checked");
        let n = number(&t, &a).await;
        assert_eq!(n.health.consecutive_failures, round);
        assert!(n.health.next_check_at.unwrap() > t.clock.now(), "moved on");
        assert_eq!(number(&t, &b).await.health.status, HealthStatus::Healthy);
    }
    let n = number(&t, &a).await;
    assert_eq!(
        (n.health.status, n.health.reason),
        (HealthStatus::Degraded, Some(HealthReason::CheckFailing))
    );
    assert!(n.health.message.unwrap().contains("could not be opened"));
}

async fn reconnect_after_down(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let s = signed_up(&t).await;
    t.run_jobs().await;
    t.sandbox.revoke(&s.phone_number_id);
    t.clock.advance(Duration::hours(2));
    t.sweep(everything_due(), None).await;
    let down = number(&t, &s).await;
    assert_eq!(
        (down.health.status, down.health.reason),
        (HealthStatus::Down, Some(HealthReason::TokenInvalid))
    );
    // The owner runs Embedded Signup again for the same number through a new link.
    let (token, _) = t.signup_token().await;
    let again = t.sandbox_signup_for(&s.phone_number_id);
    assert_eq!(t.finish(&token, &again).await.status, 200);
    t.run_jobs().await;
    let n = number(&t, &s).await;
    assert_eq!(n.health.status, HealthStatus::Healthy, "{:?}", n.health);
    assert_ne!(n.health.reason, Some(HealthReason::TokenInvalid));
    assert!(n.version > down.version);
}

async fn removed_never_checked(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let s = signed_up(&t).await;
    t.run_jobs().await;
    remove(&t, &s).await;
    t.run_jobs().await;
    let before = t.sandbox.calls("GET health_status");
    t.clock.advance(Duration::days(2));
    let report = t.sweep(everything_due(), None).await;
    assert_eq!(report.checked, 0);
    assert_eq!(t.sandbox.calls("GET health_status"), before);
    assert_eq!(number(&t, &s).await.health.status, HealthStatus::Removed);
}

/// A registration that failed (Meta's 5xx after the PIN was stored) is retried with the
/// same PIN: the one Meta may already have.
#[tokio::test]
async fn a_retried_registration_reuses_the_stored_pin() {
    use pipes_sandbox::{Fault, FaultKind};
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t).await;
    t.sandbox
        .add_fault(Fault::new("register", FaultKind::ServerError, 1).on("POST"));
    t.run_jobs_once().await;
    let first = number(&t, &s).await;
    assert!(!first.setup.registered);
    let sealed = first
        .sealed_pin
        .clone()
        .expect("the PIN was stored before the call");
    t.clock.advance(Duration::minutes(5));
    t.run_jobs().await;
    let done = number(&t, &s).await;
    assert!(done.setup.registered, "{:?}", done.setup);
    assert_eq!(done.sealed_pin, Some(sealed), "the same PIN, not a new one");
    assert_eq!(
        t.sandbox.calls("POST register"),
        2,
        "one failed, one with the same PIN"
    );
}

/// A number Meta reports registered for Cloud API already (or a WhatsApp Business app
/// number) is not registered again: no register call at all.
#[tokio::test]
async fn an_already_registered_number_skips_registration() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t).await;
    let update = pipes_sandbox::NumberUpdate {
        platform_type: Some("CLOUD_API".into()),
        ..Default::default()
    };
    assert!(t.sandbox.update_number(&s.phone_number_id, &update));
    t.run_jobs().await;
    let n = number(&t, &s).await;
    assert_eq!(n.health.status, HealthStatus::Healthy);
    assert!(n.setup.registered);
    assert_eq!(t.sandbox.calls("POST register"), 0);
    assert!(n.sealed_pin.is_none(), "no PIN was made");
}

/// Meta refusing the unsubscribe during a teardown (our access is gone already) ends the
/// teardown; it does not spin until the dead-letter queue.
#[tokio::test]
async fn meta_refusing_the_unsubscribe_ends_the_teardown() {
    use pipes_sandbox::{Fault, FaultKind};
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t).await;
    t.run_jobs().await;
    let mut refused = Fault::new("subscribed_apps", FaultKind::Error, 5).on("DELETE");
    refused.code = Some(200); // permission error: our app no longer has access
    t.sandbox.add_fault(refused);
    remove(&t, &s).await;
    assert_eq!(t.run_jobs_once().await, 1);
    let store = t.backend.embedded.as_ref().unwrap();
    assert!(store.dead_jobs().await.unwrap().is_empty());
    let now = t.clock.now() + Duration::hours(1);
    assert!(
        store.take_jobs(now, 10, now).await.unwrap().is_empty(),
        "done, not retried"
    );
    assert_eq!(t.sandbox.calls("DELETE subscribed_apps"), 1);
}

/// The store failing while a link is claimed: a clean 503 (API.md's body), nothing
/// half-written, and the same link works once the store is back.
#[tokio::test]
async fn a_store_outage_while_claiming_a_link_is_a_clean_503() {
    use std::sync::Arc;
    use tower::ServiceExt;
    let t = TestApp::spawn(Backend::aws().await).await;
    let (token, session_id) = t.signup_token().await;
    let s = t.sandbox_signup();
    // The same platform, its table behind an endpoint that refuses connections.
    let down = pipes_adapters::config::lambda_aws_at(Some("http://127.0.0.1:1".into())).await;
    let table = t.backend.table.clone().unwrap();
    let mut platform = t.platform.clone();
    platform.store = Arc::new(pipes_adapters::DynamoStore::from_conf(&down, table));
    let router = pipes_http::local_router(platform, axum::Router::new());
    let req = http::Request::post("/v1/signup/callback")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(
            serde_json::json!({"token": token, "event": "FINISH", "code": s.code,
                "wabaId": s.waba_id, "phoneNumberId": s.phone_number_id})
            .to_string(),
        ))
        .unwrap();
    let started = std::time::Instant::now();
    let res = router.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 503);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "unavailable");
    eprintln!(
        "a store outage answered 503 in {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(
        t.sandbox.calls("GET oauth/access_token"),
        0,
        "the code was not spent"
    );
    assert_eq!(t.get_session(&session_id).await.json()["status"], "pending");
    assert_eq!(t.finish(&token, &s).await.status, 200);
}

/// A number re-onboarded under another WABA leaves the old one: its membership moves
/// in the completion's transaction, and the old WABA is unsubscribed once no live
/// number of it remains.
/// (The local worker: on SQS a setup that lost a version race with the teardown may
/// wait out a 2-minute lease before it finishes, which this test does not wait for.)
#[tokio::test]
async fn a_number_moved_to_another_waba_leaves_the_old_one() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t).await;
    t.run_jobs().await;
    let old = pipes_core::WabaId::parse(&s.waba_id).unwrap();
    assert!(t.sandbox.is_subscribed(&s.waba_id));
    // The owner moved the number to a new WABA and connects it again.
    let (token, _) = t.signup_token().await;
    let moved = t
        .sandbox
        .signup(pipes_sandbox::SignupRequest {
            phone_number_id: Some(s.phone_number_id.clone()),
            waba_id: Some("4242424242".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(t.finish(&token, &moved).await.status, 200);
    // The old WABA's teardown and the new setup run side by side; a version conflict
    // between them is retried, so run the jobs until nothing is left.
    for _ in 0..5 {
        t.run_jobs().await;
        if number(&t, &s).await.health.status == HealthStatus::Healthy {
            break;
        }
        t.clock.advance(Duration::minutes(3));
    }
    let n = number(&t, &s).await;
    assert_eq!(n.waba_id.as_str(), "4242424242");
    assert_eq!(n.health.status, HealthStatus::Healthy);
    assert!(t.store.live_numbers_in_waba(&old).await.unwrap().is_empty());
    let new = pipes_core::WabaId::parse("4242424242").unwrap();
    assert_eq!(t.store.live_numbers_in_waba(&new).await.unwrap().len(), 1);
    assert!(
        !t.sandbox.is_subscribed(&s.waba_id),
        "the old WABA was unsubscribed"
    );
    assert!(t.sandbox.is_subscribed("4242424242"));
}

/// Removed, then connected again before the removal's teardown ran: the stale teardown
/// completes (the live number keeps the subscription) instead of retrying into the
/// dead-letter queue.
#[tokio::test]
async fn a_stale_teardown_of_a_reconnected_number_completes() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t).await;
    t.run_jobs().await;
    remove(&t, &s).await;
    // Connected again at once, before any worker ran.
    let (token, _) = t.signup_token().await;
    let again = t.sandbox_signup_for(&s.phone_number_id);
    assert_eq!(t.finish(&token, &again).await.status, 200);
    t.run_jobs().await;
    let store = t.backend.embedded.as_ref().unwrap();
    assert!(store.dead_jobs().await.unwrap().is_empty());
    let later = t.clock.now() + Duration::hours(1);
    assert!(
        store.take_jobs(later, 10, later).await.unwrap().is_empty(),
        "nothing retrying"
    );
    assert_eq!(number(&t, &s).await.health.status, HealthStatus::Healthy);
    assert!(t.sandbox.is_subscribed(&s.waba_id));
    assert_eq!(t.sandbox.calls("DELETE subscribed_apps"), 0);
}

/// The page's `businessId` comes from the browser: a business Meta's token does not name
/// is not recorded (the number's owner could type anything there).
#[tokio::test]
async fn a_business_id_meta_does_not_vouch_for_is_not_recorded() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (token, _) = t.signup_token().await;
    let s = t.sandbox_signup();
    let res = t
        .post_json(
            "/v1/signup/callback",
            serde_json::json!({"token": token, "event": "FINISH", "code": s.code,
                "wabaId": s.waba_id, "phoneNumberId": s.phone_number_id, "businessId": "9999999"}),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(number(&t, &s).await.business_id, None);
    // The business Meta names is kept.
    let (token, _) = t.signup_token().await;
    let again = t.sandbox_signup_for(&s.phone_number_id);
    assert_eq!(t.finish(&token, &again).await.status, 200);
    assert_eq!(
        number(&t, &s).await.business_id.map(|b| b.to_string()),
        Some(again.business_id)
    );
}

/// A removal's teardown keeps the token no longer than needed: never in the queue
/// message, sealed on the removed record until the teardown is done, then gone.
#[tokio::test]
async fn a_teardown_keeps_the_token_only_until_it_is_done() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t).await;
    t.run_jobs().await;
    remove(&t, &s).await;
    let jobs = t.backend.queued_work().await;
    let body = serde_json::to_string(&jobs).unwrap();
    assert!(
        body.contains("teardown") && !body.contains("sealedToken"),
        "{body}"
    );
    let removed = number(&t, &s).await;
    let waba = pipes_core::WabaId::parse(&s.waba_id).unwrap();
    assert!(removed.sealed_token.is_none() && removed.teardown_tokens.contains_key(&waba));
    // (Peeking at the job table hid its jobs until the real time of the peek.)
    t.clock.advance(Duration::minutes(1));
    t.run_jobs().await;
    let done = number(&t, &s).await;
    assert!(
        done.teardown_tokens.is_empty(),
        "dropped once the teardown is done"
    );
    assert!(!t.sandbox.is_subscribed(&s.waba_id));
}

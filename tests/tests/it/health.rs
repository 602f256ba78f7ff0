//! CheckHealth and the sweep on the sandbox: every health reason, transient failures,
//! stale writes, grace, and sweeps over many numbers (once each, bounded concurrency,
//! few KMS calls, throttled WABAs, deadlines, fan-out, stalled setups).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use pipes_core::number::HealthReason;
use pipes_core::usecases::health::{check_health, check_number};
use pipes_core::usecases::sweep::SweepConfig;
use pipes_core::{Clock, HealthStatus, Number, PhoneNumberId};
use pipes_sandbox::{Fault, FaultKind, NumberUpdate, SignupResult};
use pipes_tests::{Backend, TestApp};

use crate::kms::CountingWrapper;

async fn healthy_number(t: &TestApp) -> SignupResult {
    let (token, _) = t.signup_token().await;
    let s = t.sandbox_signup();
    assert_eq!(t.finish(&token, &s).await.status, 200);
    t.run_jobs().await;
    assert_eq!(number(t, &s).await.health.status, HealthStatus::Healthy);
    s
}

async fn number(t: &TestApp, s: &SignupResult) -> Number {
    let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
    t.store.number(&t.app.id, &phone).await.unwrap().unwrap()
}

async fn check(t: &TestApp, s: &SignupResult) -> (HealthStatus, Option<HealthReason>) {
    let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
    let n = check_health(t.worker_deps().check(), &t.app.id, &phone)
        .await
        .unwrap()
        .number;
    (n.health.status, n.health.reason)
}

fn health(t: &TestApp, s: &SignupResult, can_send: &str) {
    t.sandbox.update_number(
        &s.phone_number_id,
        &NumberUpdate {
            can_send_message: Some(can_send.into()),
            ..NumberUpdate::default()
        },
    );
}

fn no_sweep_limits() -> SweepConfig {
    SweepConfig {
        safety_margin: StdDuration::ZERO,
        ..SweepConfig::default()
    }
}

#[tokio::test]
async fn a_revoked_token_is_down_at_the_next_sweep() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = healthy_number(&t).await;
    t.sandbox.revoke(&s.phone_number_id);
    assert_eq!(
        t.sweep(no_sweep_limits(), None).await.checked,
        0,
        "not due yet"
    );
    t.clock.advance(Duration::minutes(67));
    let report = t.sweep(no_sweep_limits(), None).await;
    assert_eq!((report.checked, report.became_down), (1, 1));
    let n = number(&t, &s).await;
    assert_eq!(
        (n.health.status, n.health.reason),
        (HealthStatus::Down, Some(HealthReason::TokenInvalid))
    );
    assert_eq!(
        n.health.next_check_at,
        Some(t.clock.now() + Duration::hours(6))
    );
}

#[tokio::test]
async fn blocked_is_down_limited_is_degraded_and_available_is_healthy_again() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = healthy_number(&t).await;
    health(&t, &s, "BLOCKED");
    assert_eq!(
        check(&t, &s).await,
        (HealthStatus::Down, Some(HealthReason::MetaBlocked))
    );
    assert!(
        number(&t, &s)
            .await
            .health
            .message
            .unwrap()
            .contains("restricted"),
        "Meta's explanation is kept"
    );
    health(&t, &s, "LIMITED");
    assert_eq!(
        check(&t, &s).await,
        (HealthStatus::Degraded, Some(HealthReason::MetaLimited))
    );
    assert_eq!(
        number(&t, &s).await.health.next_check_at,
        Some(t.clock.now() + Duration::minutes(15))
    );
    health(&t, &s, "AVAILABLE");
    assert_eq!(check(&t, &s).await, (HealthStatus::Healthy, None));
    let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
    let history: Vec<_> = t
        .store
        .history(&t.app.id, &phone, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.from, e.to))
        .collect();
    use HealthStatus::*;
    assert_eq!(
        history,
        [
            (Degraded, Healthy),
            (Down, Degraded),
            (Healthy, Down),
            (Pending, Healthy)
        ]
    );
}

#[tokio::test]
async fn a_token_expiring_in_three_days_is_degraded() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = healthy_number(&t).await;
    t.sandbox
        .set_token_expiry(&s.phone_number_id, Some(t.clock.now() + Duration::days(3)));
    assert_eq!(
        check(&t, &s).await,
        (HealthStatus::Degraded, Some(HealthReason::TokenExpiring))
    );
    t.sandbox
        .set_token_expiry(&s.phone_number_id, Some(t.clock.now() + Duration::days(30)));
    assert_eq!(check(&t, &s).await, (HealthStatus::Healthy, None));
    t.sandbox.set_token_expiry(
        &s.phone_number_id,
        Some(t.clock.now() - Duration::seconds(1)),
    );
    assert_eq!(
        check(&t, &s).await,
        (HealthStatus::Down, Some(HealthReason::TokenInvalid))
    );
}

#[tokio::test]
async fn a_lost_subscription_is_repaired_once_and_degrades_only_if_that_fails() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = healthy_number(&t).await;
    t.sandbox.drop_subscription(&s.waba_id);
    let before = t.sandbox.calls("POST subscribed_apps");
    assert_eq!(check(&t, &s).await, (HealthStatus::Healthy, None));
    assert!(t.sandbox.is_subscribed(&s.waba_id));
    assert_eq!(
        t.sandbox.calls("POST subscribed_apps"),
        before + 1,
        "repaired with one call"
    );
    assert_eq!(check(&t, &s).await, (HealthStatus::Healthy, None));
    assert_eq!(
        t.sandbox.calls("POST subscribed_apps"),
        before + 1,
        "nothing to repair now"
    );

    t.clock.advance(Duration::minutes(20)); // past the grace period
    t.sandbox.drop_subscription(&s.waba_id);
    t.sandbox
        .add_fault(Fault::new("subscribed_apps", FaultKind::ServerError, 3).on("POST"));
    assert_eq!(
        check(&t, &s).await,
        (
            HealthStatus::Degraded,
            Some(HealthReason::WebhookUnsubscribed)
        )
    );
}

#[tokio::test]
async fn transient_failures_degrade_after_three_and_never_mark_down() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = healthy_number(&t).await;
    t.sandbox
        .add_fault(Fault::new(&s.phone_number_id, FaultKind::ServerError, 1000).on("GET"));
    assert_eq!(check(&t, &s).await, (HealthStatus::Healthy, None));
    assert_eq!(check(&t, &s).await, (HealthStatus::Healthy, None));
    let n = number(&t, &s).await;
    assert_eq!(n.health.consecutive_failures, 2);
    assert_eq!(
        n.health.next_check_at,
        Some(t.clock.now() + Duration::minutes(5)),
        "retried sooner"
    );
    assert_eq!(
        check(&t, &s).await,
        (HealthStatus::Degraded, Some(HealthReason::CheckFailing))
    );
    for _ in 0..3 {
        assert_eq!(
            check(&t, &s).await.0,
            HealthStatus::Degraded,
            "never down on transient failures"
        );
    }
    t.sandbox.clear_faults();
    assert_eq!(check(&t, &s).await, (HealthStatus::Healthy, None));
    assert_eq!(number(&t, &s).await.health.consecutive_failures, 0);
}

#[tokio::test]
async fn a_stale_check_loses_to_a_newer_one() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = healthy_number(&t).await;
    let stale = number(&t, &s).await;
    health(&t, &s, "BLOCKED");
    assert_eq!(check(&t, &s).await.0, HealthStatus::Down);
    health(&t, &s, "AVAILABLE");
    // A slow check that read the record before the newer write finishes now.
    let outcome = check_number(t.worker_deps().check(), stale).await.unwrap();
    assert!(!outcome.written);
    assert_eq!(
        outcome.number.health.status,
        HealthStatus::Down,
        "the newer result stands"
    );
    assert_eq!(number(&t, &s).await.health.status, HealthStatus::Down);
}

#[tokio::test]
async fn lagging_meta_data_does_not_degrade_a_fresh_number() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = healthy_number(&t).await;
    t.sandbox.update_number(
        &s.phone_number_id,
        &NumberUpdate {
            status: Some("PENDING".into()),
            ..NumberUpdate::default()
        },
    );
    assert_eq!(
        check(&t, &s).await,
        (HealthStatus::Healthy, None),
        "within the grace period"
    );
    t.clock.advance(Duration::minutes(16));
    assert_eq!(
        check(&t, &s).await,
        (HealthStatus::Degraded, Some(HealthReason::NotConnected))
    );
}

#[tokio::test]
async fn a_sweep_with_more_checks_in_flight_than_a_page_still_checks_every_due_number() {
    // 200 slots put up to 600 numbers in flight (read, checked, written): more than the
    // default page of 500, so a page read while they are still due must reach beyond.
    let t = TestApp::spawn(Backend::embedded()).await;
    t.seed_due_numbers(1500, 3, 10).await;
    t.sandbox.set_latency_ms(50);
    let cfg = SweepConfig {
        concurrency: 200,
        ..no_sweep_limits()
    };
    let report = t.sweep(cfg, None).await;
    assert_eq!(
        (report.checked, report.stopped_early),
        (1500, false),
        "{report:?}"
    );
    // Each was checked and written (the sandbox's call counts include the Graph
    // client's retries when 1,000 requests in flight overrun a loaded machine).
    let due = t.store.due_numbers(t.clock.now(), 10).await.unwrap();
    assert!(due.is_empty(), "{} still due", due.len());
    assert!(t.sandbox.calls("GET health_status") >= 1500);
}

#[tokio::test]
async fn a_sweep_over_2000_numbers_checks_each_once_within_limits_and_few_kms_calls() {
    let conf = pipes_tests::emulator().await;
    let kms = Arc::new(CountingWrapper::new(pipes_tests::kms_wrapper(&conf).await));
    let mut backend = Backend::embedded();
    backend.wrapper = kms.clone();
    let t = TestApp::spawn(backend).await;
    t.seed_due_numbers(2000, 4, 10).await;
    let seeding_unwraps = kms.unwrapped.load(Ordering::SeqCst);
    assert_eq!(
        kms.generated.load(Ordering::SeqCst),
        4,
        "one data key per App"
    );
    // A fresh process: nothing cached.
    let t = t.with_fresh_envelope();
    t.sandbox.set_latency_ms(50);
    t.sandbox.reset_max_in_flight();
    let cfg = SweepConfig {
        concurrency: 32,
        ..no_sweep_limits()
    };
    let started = Instant::now();
    let report = t.sweep(cfg, None).await;
    let took = started.elapsed();
    assert_eq!(report.checked, 2000, "{report:?}");
    assert_eq!(report.by_status.get("healthy"), Some(&2000));
    assert_eq!(
        t.sandbox.calls("GET health_status"),
        2000,
        "each due number exactly once"
    );
    assert_eq!(t.sandbox.calls("GET debug_token"), 2000);
    let max = t.sandbox.max_in_flight();
    assert!(
        max <= 4 * 32,
        "at most 32 checks (4 calls each) in flight, saw {max}"
    );
    assert!(max > 32, "checks ran concurrently, saw {max}");
    // The benchmark's "latency as delivered": never under the latency set.
    let held = t.sandbox.mean_held_ms().unwrap();
    assert!(
        held >= 50.0,
        "the sandbox held each call {held} ms on average"
    );
    let unwraps = kms.unwrapped.load(Ordering::SeqCst) - seeding_unwraps;
    assert!(
        unwraps <= 4,
        "KMS Decrypt calls grow with data keys (4), not numbers: {unwraps}"
    );
    eprintln!(
        "sweep of 2000 numbers at 50 ms per Graph call, concurrency 32: {took:?}, {unwraps} KMS decrypts"
    );
    assert_eq!(t.sweep(cfg, None).await.checked, 0, "nothing due any more");
}

#[tokio::test]
async fn a_stalled_setup_is_driven_again() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (token, _) = t.signup_token().await;
    let s = t.sandbox_signup();
    assert_eq!(t.finish(&token, &s).await.status, 200);
    // The setup job is lost (the worker never ran it).
    let store = t.backend.embedded.as_ref().unwrap();
    let jobs = store
        .take_jobs(t.clock.now(), 10, t.clock.now() + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        t.sweep(no_sweep_limits(), None).await.redriven,
        0,
        "not stalled yet"
    );
    t.clock.advance(Duration::minutes(11));
    assert_eq!(t.sweep(no_sweep_limits(), None).await.redriven, 1);
    t.run_jobs().await;
    assert_eq!(number(&t, &s).await.health.status, HealthStatus::Healthy);
}

#[tokio::test]
async fn a_throttled_waba_is_left_alone_until_meta_allows_again() {
    let t = TestApp::spawn(Backend::embedded()).await;
    t.seed_due_numbers(3, 1, 3).await;
    t.sandbox.add_fault(
        Fault::new("subscribed_apps", FaultKind::Throttle, 1)
            .on("GET")
            .throttle(80008, 30),
    );
    let cfg = SweepConfig {
        concurrency: 1,
        ..no_sweep_limits()
    };
    let report = t.sweep(cfg, None).await;
    assert_eq!(
        (report.checked, report.throttled_skips),
        (1, 2),
        "{report:?}"
    );
    assert_eq!(
        t.sandbox.calls("GET health_status"),
        1,
        "the WABA was not called again"
    );
    let due = t
        .store
        .due_numbers(t.clock.now() + Duration::minutes(29), 10)
        .await
        .unwrap();
    assert!(due.is_empty(), "all wait for the regain time");
    t.clock.advance(Duration::minutes(31));
    assert_eq!(t.sweep(cfg, None).await.checked, 3);
}

#[tokio::test]
async fn a_sweep_stops_before_its_deadline_and_leaves_the_rest_due() {
    let t = TestApp::spawn(Backend::embedded()).await;
    t.seed_due_numbers(60, 1, 60).await;
    t.sandbox.set_latency_ms(100);
    let cfg = SweepConfig {
        concurrency: 2,
        safety_margin: StdDuration::from_millis(200),
        ..SweepConfig::default()
    };
    let report = t
        .sweep(cfg, Some(Instant::now() + StdDuration::from_millis(900)))
        .await;
    assert!(report.stopped_early, "{report:?}");
    assert!(report.checked > 0 && report.checked < 60, "{report:?}");
    let left = t.store.due_numbers(t.clock.now(), 100).await.unwrap().len();
    assert_eq!(
        left,
        60 - report.checked,
        "the rest stays due for the next run"
    );
}

#[tokio::test]
async fn beyond_what_one_run_does_the_sweep_fans_out_check_jobs() {
    let t = TestApp::spawn(Backend::embedded()).await;
    t.seed_due_numbers(25, 1, 25).await;
    let cfg = SweepConfig {
        max_inline: 10,
        fan_out_batch: 10,
        ..no_sweep_limits()
    };
    let report = t.sweep(cfg, None).await;
    assert_eq!((report.checked, report.fanned_out), (10, 15), "{report:?}");
    assert_eq!(
        t.sweep(cfg, None).await.fanned_out,
        0,
        "fanned-out numbers are not queued twice"
    );
    assert_eq!(t.run_jobs().await, 2, "two check jobs");
    assert_eq!(
        t.sandbox.calls("GET health_status"),
        25,
        "every number checked once"
    );
}

//! Suites that try to break it (docs/RELIABILITY.md has their figures and commands):
//! Graph faults over many signups, races, and a whole lifecycle's logs at TRACE. The
//! CI runs short versions (5 trials, 10 signups); `PIPES_TRIALS` sets the size (`PIPES_TRIALS=100
//! cargo test -p pipes-tests --test it reliability -- --nocapture` for the long run).

use std::time::Duration as StdDuration;

use axum::body::Body;
use chrono::Duration;
use http::{Method, Request, StatusCode, header};
use pipes_core::number::HealthReason;
use pipes_core::usecases::sweep::SweepConfig;
use pipes_core::{Clock, HealthStatus, PhoneNumberId};
use pipes_tests::{Backend, LogCapture, TestApp};
use serde_json::json;

/// Trials per race, and signups for the fault suite (a tenth of 200 by default).
fn trials(default: usize) -> usize {
    std::env::var("PIPES_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn everything_due() -> SweepConfig {
    SweepConfig {
        safety_margin: StdDuration::ZERO,
        horizon: Duration::days(3650),
        ..SweepConfig::default()
    }
}

/// 20 % of Graph calls failing (5xx, dropped answers, throttles with usage headers; the
/// code exchange spared) over many signups: every signup ends completed or cleanly
/// retryable (the owner retries with a fresh code), every number ends healthy once the
/// faults stop, and no number was ever marked down.
#[tokio::test]
async fn twenty_percent_graph_faults_lose_no_signup_and_mark_nothing_down() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let signups = trials(5).max(1) * 2;
    t.sandbox.set_fault_rate(20);
    let mut phones = Vec::new();
    let (mut completed_first_time, mut retried) = (0, 0);
    for _ in 0..signups {
        let (token, _) = t.signup_token().await;
        let mut s = t.sandbox_signup();
        let mut tries = 0;
        loop {
            tries += 1;
            let res = t.finish(&token, &s).await;
            if res.status == StatusCode::OK {
                break;
            }
            // Cleanly retryable: Meta's failure (502/503), the link still usable.
            assert!(
                matches!(res.status.as_u16(), 502 | 503),
                "{}: {}",
                res.status,
                String::from_utf8_lossy(&res.body)
            );
            assert!(tries < 10, "the owner gave up");
            s = t.sandbox_signup_for(&s.phone_number_id);
        }
        if tries == 1 {
            completed_first_time += 1;
        } else {
            retried += 1;
        }
        phones.push(PhoneNumberId::parse(&s.phone_number_id).unwrap());
    }
    // The worker and the sweep run through the faults for a while ...
    for _ in 0..6 {
        t.run_jobs().await;
        t.clock.advance(Duration::minutes(11));
        t.sweep(everything_due(), None).await;
    }
    // ... then Meta recovers.
    t.sandbox.set_fault_rate(0);
    for _ in 0..6 {
        t.clock.advance(Duration::minutes(11));
        t.run_jobs().await;
        t.sweep(everything_due(), None).await;
    }
    t.run_jobs().await;
    let mut false_downs = 0;
    for phone in &phones {
        let n = t.store.number(&t.app.id, phone).await.unwrap().unwrap();
        assert_eq!(
            n.health.status,
            HealthStatus::Healthy,
            "{phone}: {:?}",
            n.health
        );
        let history = t.store.history(&t.app.id, phone, 100).await.unwrap();
        false_downs += history
            .iter()
            .filter(|e| e.to == HealthStatus::Down)
            .count();
    }
    eprintln!(
        "faults: {signups} signups at 20% Graph faults: {completed_first_time} completed at once, \
         {retried} after the owner retried; {} numbers healthy after recovery; {false_downs} false downs",
        phones.len()
    );
    assert_eq!(false_downs, 0);
}

/// Twenty concurrent completions of one token, many times over: exactly one number.
#[tokio::test]
async fn concurrent_completions_of_one_token_make_exactly_one_number() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let rounds = trials(5);
    for _ in 0..rounds {
        let (token, session_id) = t.signup_token().await;
        let s = t.sandbox_signup();
        let results = futures_util::future::join_all((0..20).map(|_| t.finish(&token, &s))).await;
        let ok = results
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count();
        assert_eq!(
            ok,
            1,
            "{:?}",
            results.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
        assert!(t.store.number(&t.app.id, &phone).await.unwrap().is_some());
        assert_eq!(
            t.get_session(&session_id).await.json()["status"],
            "completed"
        );
    }
    let numbers = t
        .store
        .list_numbers(&t.app.id, None, 1000, None)
        .await
        .unwrap()
        .numbers
        .len();
    eprintln!("races: {rounds} trials x 20 concurrent completions: {numbers} numbers");
    assert_eq!(numbers, rounds);
}

/// Two Apps racing to connect the same number: exactly one owns it.
#[tokio::test]
async fn two_apps_racing_for_one_number_leave_exactly_one_owner() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (other, other_key) = t.other_app().await;
    let rounds = trials(5);
    for _ in 0..rounds {
        let first = t.sandbox_signup();
        let second = t.sandbox_signup_for(&first.phone_number_id);
        let (mine, _) = t.signup_token().await;
        let theirs = t
            .issue_as(&other_key, json!({"redirectUrl": "https://o.example/done"}))
            .await
            .json();
        let theirs = theirs["token"].as_str().unwrap().to_owned();
        let (a, b) = tokio::join!(t.finish(&mine, &first), t.finish(&theirs, &second));
        let statuses = [a.status, b.status];
        assert_eq!(
            statuses.iter().filter(|s| **s == StatusCode::OK).count(),
            1,
            "{statuses:?}"
        );
        let loser = if a.status == StatusCode::OK { &b } else { &a };
        assert_eq!(loser.error_code(), "number_linked_to_another_app");
        let phone = PhoneNumberId::parse(&first.phone_number_id).unwrap();
        let owner = t.store.number_owner(&phone).await.unwrap().unwrap();
        assert!(owner == t.app.id || owner == other.id);
    }
    eprintln!("races: {rounds} trials of two Apps racing for one number: one owner each time");
}

/// A check racing a removal: a removed number never comes back.
#[tokio::test]
async fn a_check_racing_a_removal_never_brings_the_number_back() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let rounds = trials(5);
    t.sandbox.set_latency_ms(5);
    for _ in 0..rounds {
        let (token, _) = t.signup_token().await;
        let s = t.sandbox_signup();
        assert_eq!(t.finish(&token, &s).await.status, StatusCode::OK);
        t.run_jobs().await;
        let uri = format!("/v1/numbers/{}", s.phone_number_id);
        let check = t
            .authed(Method::POST, &format!("{uri}/health-check"))
            .body(Body::empty())
            .unwrap();
        let remove = t.authed(Method::DELETE, &uri).body(Body::empty()).unwrap();
        let (_, removed) = tokio::join!(t.send(check), t.send(remove));
        assert_eq!(removed.status, StatusCode::NO_CONTENT);
        t.run_jobs().await;
        t.clock.advance(Duration::days(1));
        t.sweep(everything_due(), None).await;
        let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
        let n = t.store.number(&t.app.id, &phone).await.unwrap().unwrap();
        assert_eq!(n.health.status, HealthStatus::Removed);
        assert!(n.sealed_token.is_none());
        assert_eq!(t.store.number_owner(&phone).await.unwrap(), None);
    }
    eprintln!("races: {rounds} trials of a check racing a removal: removed each time");
}

/// A whole lifecycle with every log line captured at TRACE: the app key, signup tokens,
/// Meta's code, the business token, the app secret, the endpoint's signing secret, a
/// login link's token, the dashboard cookie and the webhook verify token appear in none.
#[tokio::test]
async fn a_whole_lifecycle_at_trace_logs_no_secret() {
    let logs = LogCapture::global();
    let t = TestApp::spawn(Backend::embedded()).await;
    let (_, endpoint_secret) = t.register_endpoint("http://127.0.0.1:9/hooks").await;
    let (token, session_id) = t.signup_token().await;
    let page = t
        .send(
            Request::get(format!("/apps/{}?token={token}", t.app.slug))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let s = t.sandbox_signup();
    assert_eq!(
        t.report_finish(&token, &s.waba_id).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(t.finish(&token, &s).await.status, StatusCode::OK);
    t.run_jobs().await;
    t.run_events().await;
    // A keyed retry (its answer holds a token) and a rotated secret.
    let keyed = |idem: &'static str| {
        t.authed(Method::POST, "/v1/apps/token")
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", idem)
            .body(Body::from(
                json!({"redirectUrl": "https://partner.example/x"}).to_string(),
            ))
            .unwrap()
    };
    let issued = t.send(keyed("k")).await.json();
    t.send(keyed("k")).await;
    let rotated = t
        .send(
            t.authed(Method::POST, "/v1/webhook-endpoint/rotate-secret")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .json();
    // Meta's webhooks, the verify handshake, a check and a removal.
    let verify = t
        .send(
            Request::get(format!(
                "/webhooks/meta?hub.mode=subscribe&hub.challenge=42&hub.verify_token={}",
                pipes_tests::VERIFY_TOKEN
            ))
            .body(Body::empty())
            .unwrap(),
        )
        .await;
    assert_eq!(verify.status, StatusCode::OK);
    let payload = json!({"object": "whatsapp_business_account", "entry": [{"id": s.waba_id,
        "time": t.clock.now().timestamp(), "changes": [{"field": "account_update",
        "value": {"event": "ACCOUNT_RESTRICTION", "restriction_info": []}}]}]});
    assert_eq!(t.meta_webhook(&payload).await.status, StatusCode::OK);
    t.run_jobs().await;
    t.run_events().await;
    // The dashboard: a login link, its cookie.
    let link = t
        .send(
            t.authed(Method::POST, "/v1/dashboard/login-links")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .json()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let u = url::Url::parse(&link).unwrap();
    let login_token = u
        .query_pairs()
        .find(|(k, _)| k == "token")
        .unwrap()
        .1
        .into_owned();
    let opened = t
        .send(
            Request::get(format!("{}?{}", u.path(), u.query().unwrap()))
                .header("sec-fetch-dest", "document")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let cookie = opened.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split('=')
        .nth(1)
        .unwrap()
        .to_owned();
    let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
    let n = t.store.number(&t.app.id, &phone).await.unwrap().unwrap();
    let business = pipes_core::usecases::health::open_token(&t.envelope, &n)
        .await
        .unwrap()
        .unwrap();
    t.clock.advance(Duration::hours(2));
    t.sweep(everything_due(), None).await;
    let text = logs.text();
    assert!(text.contains(&session_id), "logs were captured");
    assert!(text.contains("TRACE") || text.contains("DEBUG") || text.contains("INFO"));
    for (what, secret) in [
        ("app key", t.key.expose().to_owned()),
        ("signup token", token.clone()),
        (
            "idempotent token",
            issued["token"].as_str().unwrap().to_owned(),
        ),
        ("Meta code", s.code.clone()),
        ("business token", business.expose().to_owned()),
        ("app secret", pipes_sandbox::SANDBOX_APP_SECRET.to_owned()),
        ("endpoint secret", endpoint_secret.clone()),
        (
            "rotated secret",
            rotated["secret"].as_str().unwrap().to_owned(),
        ),
        ("login link token", login_token),
        ("dashboard cookie", cookie),
        ("verify token", pipes_tests::VERIFY_TOKEN.to_owned()),
    ] {
        assert!(!text.contains(&secret), "the {what} reached the logs");
    }
    let n = t.store.number(&t.app.id, &phone).await.unwrap().unwrap();
    assert_ne!(n.health.reason, Some(HealthReason::TokenInvalid));
}

/// AWS failing mid-flow (every DynamoDB, SQS and KMS request answered 503 for a while):
/// requests fail fast with 503 and write nothing, the setup waiting in the queue and
/// the sweep fail without harm, and once AWS is back the same links finish and every
/// number ends healthy.
#[tokio::test]
async fn an_aws_outage_mid_flow_fails_fast_and_everything_finishes_after() {
    let recorder = pipes_tests::iam::Recorder::start().await;
    let t = TestApp::spawn(Backend::aws_through(&recorder).await).await;
    let (token_a, session_a) = t.signup_token().await;
    let a = t.sandbox_signup();
    assert_eq!(t.finish(&token_a, &a).await.status, StatusCode::OK);
    let (token_b, session_b) = t.signup_token().await;
    let b = t.sandbox_signup();

    recorder.set_down(true);
    let started = std::time::Instant::now();
    let minted = t
        .issue(json!({"redirectUrl": "https://partner.example/x"}))
        .await;
    assert_eq!(minted.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(minted.error_code(), "unavailable");
    let finished = t.finish(&token_b, &b).await;
    assert_eq!(finished.status, StatusCode::SERVICE_UNAVAILABLE);
    let fast = started.elapsed();
    assert_eq!(
        t.sandbox.calls("GET oauth/access_token"),
        1,
        "b's code was not spent"
    );
    // The worker and the sweep meet the outage too.
    t.run_jobs_once().await;
    t.clock.advance(Duration::hours(2));
    let report = pipes_core::usecases::sweep::sweep(t.worker_deps(), everything_due(), None).await;
    assert!(
        report.is_err(),
        "the sweep says it failed (its Lambda errors, the alarm fires)"
    );
    recorder.set_down(false);

    assert_eq!(t.get_session(&session_b).await.json()["status"], "pending");
    // The owner tries again (Meta's code lived 30 s: a fresh one), with the same link.
    let b = t.sandbox_signup_for(&b.phone_number_id);
    assert_eq!(t.finish(&token_b, &b).await.status, StatusCode::OK);
    t.clock.advance(Duration::minutes(11));
    t.run_jobs().await;
    t.sweep(everything_due(), None).await;
    t.run_jobs().await;
    for (s, session) in [(&a, &session_a), (&b, &session_b)] {
        let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
        let n = t.store.number(&t.app.id, &phone).await.unwrap().unwrap();
        assert_eq!(n.health.status, HealthStatus::Healthy, "{:?}", n.health);
        assert_eq!(t.get_session(session).await.json()["status"], "completed");
    }
    eprintln!(
        "outage: two requests answered 503 in {} ms together; the sweep during it failed and \
         left everything due; both numbers healthy after recovery",
        fast.as_millis()
    );
}

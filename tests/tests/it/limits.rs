//! Rate limits on both stores: an App over its own limit, the per-App budget of
//! on-demand health checks, a signup token hammering the callback, one client IP
//! flooding the public pages. Over a limit: 429 `rate_limited` with `Retry-After`,
//! nothing changed; the next window admits again.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use chrono::Duration;
use http::{Method, Request, StatusCode, header};
use pipes_core::usecases::admin;
use pipes_tests::{Backend, TestApp, TestResponse};
use serde_json::json;

on_both_stores! {
    an_app_over_its_rate_gets_429_with_retry_after_and_nothing_changes => app_rate;
    on_demand_checks_have_a_budget_per_app => check_budget;
    a_signup_token_and_a_client_ip_are_limited_on_the_public_routes => public_limits;
}

fn assert_limited(res: &TestResponse) {
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.error_code(), "rate_limited");
    let after: u64 = res.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&after), "{after}");
}

async fn app_rate(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    admin::update_app(
        &*t.store,
        &t.app,
        admin::AppUpdate {
            rate_per_second: Some(1),
            rate_burst: Some(3),
            ..admin::AppUpdate::default()
        },
    )
    .await
    .unwrap();
    // Aligned to the start of a 3-second window.
    let now = pipes_core::Clock::now(&t.clock);
    let into = now.timestamp_millis().rem_euclid(3000);
    t.clock.advance(Duration::milliseconds(3000 - into));
    let body = json!({"redirectUrl": "https://partner.example/done"});
    for _ in 0..3 {
        assert_eq!(t.issue(body.clone()).await.status, StatusCode::OK);
    }
    let since = pipes_core::Clock::now(&t.clock) - Duration::hours(1);
    let before = t
        .store
        .recent_sessions(&t.app.id, since, 100)
        .await
        .unwrap();
    let limited = t.issue(body.clone()).await;
    assert_limited(&limited);
    assert_eq!(
        t.store
            .recent_sessions(&t.app.id, since, 100)
            .await
            .unwrap(),
        before,
        "nothing was created"
    );
    // Other Apps are not affected.
    let (_, other) = t.other_app().await;
    assert_eq!(
        t.issue_as(&other, body.clone()).await.status,
        StatusCode::OK
    );
    t.clock.advance(Duration::seconds(3));
    assert_eq!(t.issue(body).await.status, StatusCode::OK);
}

async fn check_budget(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (token, _) = t.signup_token().await;
    let s = t.sandbox_signup();
    assert_eq!(t.finish(&token, &s).await.status, StatusCode::OK);
    t.run_jobs().await;
    let now = pipes_core::Clock::now(&t.clock);
    let into = now.timestamp_millis().rem_euclid(120_000);
    t.clock.advance(Duration::milliseconds(120_000 - into));
    let check = || {
        t.authed(
            Method::POST,
            &format!("/v1/numbers/{}/health-check", s.phone_number_id),
        )
        .body(Body::empty())
        .unwrap()
    };
    for _ in 0..10 {
        assert_eq!(t.send(check()).await.status, StatusCode::OK);
    }
    let calls = t.sandbox.calls("GET health_status");
    assert_limited(&t.send(check()).await);
    assert_eq!(
        t.sandbox.calls("GET health_status"),
        calls,
        "Meta not called"
    );
    // Reading is not limited by the check budget.
    let read = t
        .authed(Method::GET, &format!("/v1/numbers/{}", s.phone_number_id))
        .body(Body::empty())
        .unwrap();
    assert_eq!(t.send(read).await.status, StatusCode::OK);
    // A retry with an Idempotency-Key is not kept at its 429: the limit passes.
    let keyed = || {
        t.authed(
            Method::POST,
            &format!("/v1/numbers/{}/health-check", s.phone_number_id),
        )
        .header("Idempotency-Key", "check-after-the-limit")
        .body(Body::empty())
        .unwrap()
    };
    assert_limited(&t.send(keyed()).await);
    t.clock.advance(Duration::minutes(2));
    let after = t.send(keyed()).await;
    assert_eq!(after.status, StatusCode::OK);
    assert!(!after.headers.contains_key("idempotent-replayed"));
    assert_eq!(t.send(check()).await.status, StatusCode::OK);
}

async fn public_limits(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (token, session_id) = t.signup_token().await;
    let now = pipes_core::Clock::now(&t.clock);
    let into = now.timestamp_millis().rem_euclid(60_000);
    t.clock.advance(Duration::milliseconds(60_000 - into));
    let cancel = json!({"token": token, "event": "CANCEL", "step": "PHONE_NUMBER_SETUP"});
    for _ in 0..30 {
        assert_eq!(
            t.post_json("/v1/signup/callback", cancel.clone())
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_limited(&t.post_json("/v1/signup/callback", cancel.clone()).await);
    let recorded = t.get_session(&session_id).await.json()["abandons"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(recorded, 30, "the refused one was not recorded");
    // One client IP flooding the hosted page: refused after its limit, others served.
    let page = |ip: [u8; 4]| {
        let mut req = Request::get(format!("/apps/{}?token=tok_x", t.app.slug))
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 4000))));
        req
    };
    for _ in 0..300 {
        assert_eq!(
            t.send(page([198, 51, 100, 7])).await.status,
            StatusCode::NOT_FOUND
        );
    }
    let limited = t.send(page([198, 51, 100, 7])).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    assert!(String::from_utf8_lossy(&limited.body).contains("Too many requests"));
    assert_eq!(
        t.send(page([198, 51, 100, 8])).await.status,
        StatusCode::NOT_FOUND
    );
}

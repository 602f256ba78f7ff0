//! `Idempotency-Key` on the App's POSTs, on both stores: the same key and request
//! within 24 h get the same answer (the same signup token), a different request under
//! the key 422, one while the first runs 409, a failure on our side frees the key.

use axum::body::Body;
use chrono::Duration;
use http::{Method, Request, StatusCode, header};
use pipes_core::usecases::idempotency::{fingerprint, key_hash};
use pipes_core::{AppKey, Clock};
use pipes_tests::{Backend, TestApp, TestResponse};
use serde_json::{Value, json};

on_both_stores! {
    a_retried_token_request_gets_the_same_link => same_link;
    a_key_reused_for_another_request_or_still_running_is_refused => refused;
    keys_are_per_app_and_expire_after_a_day => per_app_and_expiry;
}

async fn issue_with(t: &TestApp, key: &AppKey, idem: &str, body: Value) -> TestResponse {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/apps/token")
        .header(header::AUTHORIZATION, format!("Bearer {}", key.expose()))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", idem)
        .body(Body::from(body.to_string()))
        .unwrap();
    t.send(req).await
}

fn link() -> Value {
    json!({"redirectUrl": "https://partner.example/done", "metadata": {"customer": "c_1"}})
}

async fn same_link(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let first = issue_with(&t, &t.key, "order-1234", link()).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = issue_with(&t, &t.key, "order-1234", link()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(again.json(), first.json(), "the same sessionId and token");
    // One session, not two.
    let since = t.clock.now() - Duration::hours(1);
    let sessions = t.store.recent_sessions(&t.app.id, since, 10).await.unwrap();
    assert_eq!(sessions.len(), 1);
    // The stored answer is sealed: the token is nowhere in the store's file.
    if let Some(e) = &t.backend.embedded {
        let raw = std::fs::read(e.path()).unwrap();
        let token = first.json()["token"].as_str().unwrap().to_owned();
        assert!(
            !raw.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token is stored in the clear"
        );
    }
    // A POST without the header is not deduplicated; a GET ignores it.
    assert_eq!(t.issue(link()).await.status, StatusCode::OK);
    let s = t
        .get_session(first.json()["sessionId"].as_str().unwrap())
        .await;
    assert_eq!(s.status, StatusCode::OK);
}

async fn refused(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    assert_eq!(
        issue_with(&t, &t.key, "k-1", link()).await.status,
        StatusCode::OK
    );
    let other = issue_with(
        &t,
        &t.key,
        "k-1",
        json!({"redirectUrl": "https://partner.example/elsewhere"}),
    )
    .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.error_code(), "idempotency_key_reused");
    // A request holding the key (claimed, not finished) makes the next one wait.
    let body = link().to_string();
    let (_, key_id) = t.store.live_key(&t.key.hash()).await.unwrap().unwrap();
    let target = format!("{}#/v1/apps/token", key_id.as_str());
    let hash = fingerprint("POST", &target, body.as_bytes());
    let now = t.clock.now();
    t.store
        .claim_idempotency(
            &t.app.id,
            &key_hash("k-2").unwrap(),
            &hash,
            now,
            now + Duration::seconds(60),
            now + Duration::hours(24),
        )
        .await
        .unwrap();
    let busy = issue_with(&t, &t.key, "k-2", link()).await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    assert_eq!(busy.error_code(), "idempotency_key_in_use");
    // A run that died: its lease over, the same request runs.
    t.clock.advance(Duration::seconds(61));
    assert_eq!(
        issue_with(&t, &t.key, "k-2", link()).await.status,
        StatusCode::OK
    );
    for bad in ["", "with space", &"x".repeat(256)] {
        let res = issue_with(&t, &t.key, bad, link()).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(res.error_code(), "invalid_request");
    }
    // A bad request is an answer too: replayed, and it created nothing.
    let invalid = issue_with(&t, &t.key, "k-3", json!({"redirectUrl": "nope"})).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    let replay = issue_with(&t, &t.key, "k-3", json!({"redirectUrl": "nope"})).await;
    assert_eq!(
        (replay.status, replay.json()),
        (invalid.status, invalid.json())
    );
    // Without a valid app key the key is never looked at.
    let req = Request::post("/v1/apps/token")
        .header("idempotency-key", "k-1")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(link().to_string()))
        .unwrap();
    assert_eq!(t.send(req).await.status, StatusCode::UNAUTHORIZED);
}

async fn per_app_and_expiry(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (_, other_key) = t.other_app().await;
    let mine = issue_with(&t, &t.key, "shared-key", link()).await.json();
    let theirs = issue_with(&t, &other_key, "shared-key", link())
        .await
        .json();
    assert_ne!(mine["sessionId"], theirs["sessionId"], "keys are per App");
    t.clock.advance(Duration::hours(25));
    let later = issue_with(&t, &t.key, "shared-key", link()).await.json();
    assert_ne!(
        later["sessionId"], mine["sessionId"],
        "a key lasts 24 hours"
    );
    // Other POSTs take keys too: a test ping sent twice is queued once.
    let ping = |idem: &'static str| {
        t.authed(Method::POST, "/v1/webhook-endpoint/test")
            .header("idempotency-key", idem)
            .body(Body::empty())
            .unwrap()
    };
    t.register_endpoint("https://partner.example/hooks").await;
    let a = t.send(ping("ping-1")).await.json();
    let b = t.send(ping("ping-1")).await.json();
    assert_eq!(a["id"], b["id"]);
}

//! The numbers API over HTTP: pagination, filters, isolation between Apps, health
//! checks on demand, history, and removal (with re-onboarding and WABA teardown).

use std::collections::HashSet;

use axum::body::Body;
use http::{Method, StatusCode};
use pipes_core::{HealthStatus, PhoneNumberId};
use pipes_sandbox::{SignupRequest, SignupResult};
use pipes_tests::{Backend, TestApp, TestResponse};
use serde_json::Value;

async fn signed_up(t: &TestApp, req: SignupRequest) -> SignupResult {
    let (token, _) = t.signup_token().await;
    let signup = t.sandbox.signup(req).unwrap();
    assert_eq!(t.finish(&token, &signup).await.status, 200);
    signup
}

async fn call(t: &TestApp, method: Method, uri: &str) -> TestResponse {
    t.send(t.authed(method, uri).body(Body::empty()).unwrap())
        .await
}

#[tokio::test]
async fn paging_over_120_numbers_returns_each_exactly_once() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let mut expected = HashSet::new();
    for _ in 0..120 {
        expected.insert(
            signed_up(&t, SignupRequest::default())
                .await
                .phone_number_id,
        );
    }
    let mut seen = Vec::new();
    let mut uri = "/v1/numbers?limit=25".to_owned();
    let mut pages = 0;
    loop {
        let res = call(&t, Method::GET, &uri).await;
        assert_eq!(res.status, StatusCode::OK);
        let v = res.json();
        let numbers = v["numbers"].as_array().unwrap();
        assert!(numbers.len() <= 25);
        seen.extend(
            numbers
                .iter()
                .map(|n| n["phoneNumberId"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        match v["nextCursor"].as_str() {
            Some(c) => uri = format!("/v1/numbers?limit=25&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 120, "no duplicates");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), expected);
    let default = call(&t, Method::GET, "/v1/numbers").await.json();
    assert_eq!(
        default["numbers"].as_array().unwrap().len(),
        50,
        "default limit"
    );
}

#[tokio::test]
async fn numbers_are_filtered_by_status_and_shown_as_the_api_says() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let a = signed_up(&t, SignupRequest::default()).await;
    t.run_jobs().await;
    let b = signed_up(&t, SignupRequest::default()).await;
    let healthy = call(&t, Method::GET, "/v1/numbers?status=healthy")
        .await
        .json();
    let ids: Vec<&str> = healthy["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["phoneNumberId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.phone_number_id.as_str()]);
    let pending = call(&t, Method::GET, "/v1/numbers?status=pending")
        .await
        .json();
    assert_eq!(pending["numbers"][0]["phoneNumberId"], b.phone_number_id);
    assert_eq!(pending["nextCursor"], Value::Null);

    let n = call(
        &t,
        Method::GET,
        &format!("/v1/numbers/{}", a.phone_number_id),
    )
    .await
    .json();
    assert_eq!(n["appId"], t.app.id.as_str());
    assert_eq!(n["wabaId"], a.waba_id);
    assert_eq!(n["businessId"], a.business_id);
    assert_eq!(n["verifiedName"], "Sandbox Business");
    assert_eq!(n["qualityRating"], "GREEN");
    assert_eq!(n["health"]["status"], "healthy");
    assert_eq!(n["health"]["reason"], Value::Null);
    assert!(n["health"]["nextCheckAt"].is_string() && n["health"]["lastCheckedAt"].is_string());
    assert_eq!(n["setup"]["webhookSubscribed"], true);
    assert_eq!(n["setup"]["registered"], true);
    assert!(
        n["token"]["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "whatsapp_business_management")
    );
    assert_eq!(n["token"]["expiresAt"], Value::Null);
    let text = n.to_string();
    assert!(
        !text.contains("EAAS") && !text.contains("v1."),
        "no token or sealed data in the view"
    );
}

#[tokio::test]
async fn bad_list_parameters_are_400s() {
    let t = TestApp::spawn(Backend::embedded()).await;
    for (query, field) in [
        ("status=bogus", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
    ] {
        let res = call(&t, Method::GET, &format!("/v1/numbers?{query}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            res.json()["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field)
        );
    }
}

#[tokio::test]
async fn another_apps_number_is_not_found_everywhere() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t, SignupRequest::default()).await;
    let (_, other_key) = t.other_app().await;
    let id = &s.phone_number_id;
    for (method, uri) in [
        (Method::GET, format!("/v1/numbers/{id}")),
        (Method::GET, format!("/v1/numbers/{id}/history")),
        (Method::POST, format!("/v1/numbers/{id}/health-check")),
        (Method::DELETE, format!("/v1/numbers/{id}")),
        (Method::GET, "/v1/numbers/not-a-number".to_owned()),
    ] {
        let req = http::Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header("authorization", format!("Bearer {}", other_key.expose()))
            .body(Body::empty())
            .unwrap();
        let res = t.send(req).await;
        assert_eq!(
            (res.status, res.error_code().as_str()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {uri}"
        );
    }
    let theirs = http::Request::get("/v1/numbers")
        .header("authorization", format!("Bearer {}", other_key.expose()))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        t.send(theirs).await.json()["numbers"],
        serde_json::json!([])
    );
    let mine = call(&t, Method::GET, &format!("/v1/numbers/{id}"))
        .await
        .json();
    assert_eq!(
        mine["health"]["status"], "pending",
        "untouched by the other App"
    );
    let unauth = t
        .send(
            http::Request::get("/v1/numbers")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(unauth.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_check_on_demand_finds_a_revoked_token_and_records_history() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t, SignupRequest::default()).await;
    t.run_jobs().await;
    t.sandbox.revoke(&s.phone_number_id);
    let res = call(
        &t,
        Method::POST,
        &format!("/v1/numbers/{}/health-check", s.phone_number_id),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let n = res.json();
    assert_eq!(n["health"]["status"], "down");
    assert_eq!(n["health"]["reason"], "token_invalid");
    let h = call(
        &t,
        Method::GET,
        &format!("/v1/numbers/{}/history", s.phone_number_id),
    )
    .await
    .json();
    let events = h["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (
            events[0]["from"].as_str(),
            events[0]["to"].as_str(),
            events[0]["reason"].as_str()
        ),
        (Some("healthy"), Some("down"), Some("token_invalid"))
    );
    assert_eq!(
        (events[1]["from"].as_str(), events[1]["to"].as_str()),
        (Some("pending"), Some("healthy"))
    );
}

#[tokio::test]
async fn removing_a_number_destroys_its_token_and_frees_it_for_signup_again() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let s = signed_up(&t, SignupRequest::default()).await;
    t.run_jobs().await;
    let uri = format!("/v1/numbers/{}", s.phone_number_id);
    let res = call(&t, Method::DELETE, &uri).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert!(res.body.is_empty());
    let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
    let stored = t.store.number(&t.app.id, &phone).await.unwrap().unwrap();
    assert_eq!(
        (stored.sealed_token, stored.sealed_pin),
        (None, None),
        "secrets destroyed at once"
    );
    assert_eq!(stored.health.status, HealthStatus::Removed);
    assert_eq!(
        call(&t, Method::GET, &uri).await.json()["health"]["status"],
        "removed"
    );
    assert_eq!(
        call(&t, Method::DELETE, &uri).await.status,
        StatusCode::NO_CONTENT,
        "removing twice is fine"
    );
    let check = call(&t, Method::POST, &format!("{uri}/health-check")).await;
    assert_eq!(
        (check.status, check.error_code().as_str()),
        (StatusCode::CONFLICT, "number_removed")
    );
    t.run_jobs().await;
    assert!(
        !t.sandbox.is_subscribed(&s.waba_id),
        "its WABA had no other number"
    );

    // The same number connects again.
    let again = signed_up(
        &t,
        SignupRequest {
            phone_number_id: Some(s.phone_number_id.clone()),
            ..SignupRequest::default()
        },
    )
    .await;
    assert_eq!(again.phone_number_id, s.phone_number_id);
    assert_eq!(
        call(&t, Method::GET, &uri).await.json()["health"]["status"],
        "pending"
    );
    t.run_jobs().await;
    let n = call(&t, Method::GET, &uri).await.json();
    assert_eq!(n["health"]["status"], "healthy");
    assert!(t.sandbox.is_subscribed(&s.waba_id));
    let statuses: Vec<String> = call(&t, Method::GET, &format!("{uri}/history"))
        .await
        .json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}>{}",
                e["from"].as_str().unwrap(),
                e["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            "pending>healthy",
            "removed>pending",
            "healthy>removed",
            "pending>healthy"
        ]
    );
}

#[tokio::test]
async fn the_waba_stays_subscribed_until_its_last_number_is_removed() {
    let t = TestApp::spawn(Backend::aws().await).await;
    let first = signed_up(&t, SignupRequest::default()).await;
    let second = signed_up(
        &t,
        SignupRequest {
            waba_id: Some(first.waba_id.clone()),
            ..SignupRequest::default()
        },
    )
    .await;
    assert_eq!(second.waba_id, first.waba_id);
    t.run_jobs().await;
    assert!(t.sandbox.is_subscribed(&first.waba_id));

    assert_eq!(
        call(
            &t,
            Method::DELETE,
            &format!("/v1/numbers/{}", first.phone_number_id)
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    t.run_jobs().await;
    assert!(
        t.sandbox.is_subscribed(&first.waba_id),
        "the second number still needs it"
    );
    assert_eq!(t.sandbox.calls("DELETE subscribed_apps"), 0);

    assert_eq!(
        call(
            &t,
            Method::DELETE,
            &format!("/v1/numbers/{}", second.phone_number_id)
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    t.run_jobs().await;
    assert!(!t.sandbox.is_subscribed(&first.waba_id));
    assert_eq!(t.sandbox.calls("DELETE subscribed_apps"), 1);
}

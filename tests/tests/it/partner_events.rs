//! Partner events through the real HTTP path, on both stores: the endpoint's routes,
//! signed deliveries to a real local receiver, failures and the retry schedule, a
//! rotated secret, the event log, redelivery, SSRF refusals, and signed redirects.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use chrono::Duration;
use http::{Method, Request, StatusCode};
use pipes_core::Clock;
use pipes_core::events::{DeliveryStatus, EndpointUrl, RETRY_SCHEDULE, hmac_sha256};
use pipes_core::usecases::events::EventSender;
use pipes_tests::{Backend, TestApp, TestResponse};
use serde_json::{Value, json};

on_both_stores! {
    the_endpoint_is_registered_shown_rotated_and_removed => endpoint_routes;
    a_health_change_reaches_the_endpoint_signed => signed_delivery;
    a_failing_endpoint_is_retried_and_recovers => failing_then_recovering;
    the_event_log_lists_filters_pages_and_redelivers => event_log;
    the_redirect_after_signup_is_signed_when_the_app_has_an_endpoint => signed_redirect;
}

/// A partner's endpoint on loopback: answers with the scripted statuses (then 200),
/// after `delay`, and keeps what it received.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    delay: Arc<Mutex<std::time::Duration>>,
}

impl Receiver {
    async fn start() -> (Self, String) {
        let r = Receiver::default();
        let app = axum::Router::new()
            .route("/hooks", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, url)
    }

    fn answer(&self, statuses: &[u16]) {
        self.script.lock().unwrap().extend(statuses);
    }

    fn received(&self) -> Vec<(HeaderMap, Bytes)> {
        self.got.lock().unwrap().clone()
    }
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let delay = *r.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    r.got.lock().unwrap().push((headers, body));
    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
    (StatusCode::from_u16(status).unwrap(), "thanks")
}

/// What the README tells partners to do: split the header, recompute, compare, and
/// refuse anything older than 5 minutes.
fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let expected = hex::encode(hmac_sha256(
        secret.as_bytes(),
        &[t.to_string().as_bytes(), b".", body],
    ));
    (now - t).abs() <= 300 && sigs.contains(&expected)
}

async fn call(t: &TestApp, method: Method, uri: &str, body: Option<Value>) -> TestResponse {
    let mut req = t.authed(method, uri);
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    t.send(req.body(body).unwrap()).await
}

async fn connect(t: &TestApp) -> pipes_sandbox::SignupResult {
    let (token, _) = t.signup_token().await;
    let s = t.sandbox_signup();
    assert_eq!(t.finish(&token, &s).await.status, StatusCode::OK);
    t.run_jobs().await;
    s
}

async fn endpoint_routes(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let none = call(&t, Method::GET, "/v1/webhook-endpoint", None).await;
    assert_eq!(
        (none.status, none.error_code().as_str()),
        (StatusCode::NOT_FOUND, "no_webhook_endpoint")
    );
    for bad in [
        json!({"url": "http://partner.example/hooks"}),
        json!({"url": "https://user:pw@partner.example/hooks"}),
        json!({"url": "ftp://partner.example/hooks"}),
        json!({"url": "not a url"}),
        json!({"url": 3}),
        json!({"url": "https://partner.example/h", "extra": 1}),
    ] {
        let res = call(&t, Method::PUT, "/v1/webhook-endpoint", Some(bad.clone())).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(res.error_code(), "invalid_request", "{bad}");
    }
    let created = call(
        &t,
        Method::PUT,
        "/v1/webhook-endpoint",
        Some(json!({"url": "https://partner.example/hooks"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK);
    let v = created.json();
    let secret = v["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    let shown = call(&t, Method::GET, "/v1/webhook-endpoint", None)
        .await
        .json();
    assert_eq!(shown["url"], "https://partner.example/hooks");
    assert!(shown.get("secret").is_none(), "the secret is shown once");
    // The secret is stored sealed, never as written.
    let stored = t.store.endpoint(&t.app.id).await.unwrap().unwrap();
    assert!(!stored.secret.encode().contains(&secret[6..]));
    // A new URL keeps the secret (and does not show it).
    let moved = call(
        &t,
        Method::PUT,
        "/v1/webhook-endpoint",
        Some(json!({"url": "https://partner.example/v2/hooks"})),
    )
    .await
    .json();
    assert_eq!(moved["url"], "https://partner.example/v2/hooks");
    assert!(moved.get("secret").is_none());
    let rotated = call(&t, Method::POST, "/v1/webhook-endpoint/rotate-secret", None)
        .await
        .json();
    assert_ne!(rotated["secret"], secret.as_str());
    assert!(rotated["previousSecretExpiresAt"].is_string());
    assert_eq!(
        call(&t, Method::DELETE, "/v1/webhook-endpoint", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&t, Method::DELETE, "/v1/webhook-endpoint", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    for uri in [
        "/v1/webhook-endpoint/rotate-secret",
        "/v1/webhook-endpoint/test",
    ] {
        assert_eq!(
            call(&t, Method::POST, uri, None).await.error_code(),
            "no_webhook_endpoint"
        );
    }
    let anon = t
        .send(
            Request::get("/v1/webhook-endpoint")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}

async fn signed_delivery(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (receiver, url) = Receiver::start().await;
    let (_, secret) = t.register_endpoint(&url).await;
    let s = connect(&t).await;
    t.sandbox.revoke(&s.phone_number_id);
    let check = call(
        &t,
        Method::POST,
        &format!("/v1/numbers/{}/health-check", s.phone_number_id),
        None,
    )
    .await;
    assert_eq!(check.status, StatusCode::OK);
    t.run_events().await;
    let got = receiver.received();
    let kinds: Vec<String> = got
        .iter()
        .map(|(_, b)| {
            serde_json::from_slice::<Value>(b).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for kind in [
        "signup.completed",
        "number.connected",
        "number.health_changed",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    let now = t.clock.now().timestamp();
    for (headers, body) in &got {
        let sig = headers["pipes-signature"].to_str().unwrap();
        assert!(verify(&secret, sig, body, now), "{sig}");
        assert!(!verify("whsec_other", sig, body, now));
        assert!(!verify(&secret, sig, b"{}", now));
        assert!(
            !verify(&secret, sig, body, now + 301),
            "a replay after 5 minutes"
        );
        assert_eq!(headers["content-type"], "application/json");
    }
    let down = got
        .iter()
        .map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap())
        .find(|v| v["type"] == "number.health_changed" && v["data"]["to"] == "down")
        .expect("the number going down was sent");
    assert_eq!(down["appId"], t.app.id.as_str());
    assert!(down["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(down["data"]["phoneNumberId"], s.phone_number_id.as_str());
    assert_eq!(down["data"]["from"], "healthy");
    assert_eq!(down["data"]["reason"], "token_invalid");
    assert!(down["createdAt"].is_string());
    let connected = got
        .iter()
        .map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap())
        .find(|v| v["type"] == "number.connected")
        .unwrap();
    assert_eq!(
        connected["data"]["number"]["phoneNumberId"],
        s.phone_number_id.as_str()
    );
    assert!(
        !String::from_utf8_lossy(
            &got.iter()
                .flat_map(|(_, b)| b.to_vec())
                .collect::<Vec<u8>>()
        )
        .contains("EAAS"),
        "no business token in any event"
    );
    // A rotated secret: both sign for 24 h, then only the new one.
    let rotated = call(&t, Method::POST, "/v1/webhook-endpoint/rotate-secret", None)
        .await
        .json();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&t, Method::POST, "/v1/webhook-endpoint/test", None)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    t.run_events().await;
    let (headers, body) = receiver.received().last().cloned().unwrap();
    let sig = headers["pipes-signature"].to_str().unwrap().to_owned();
    assert_eq!(sig.matches("v1=").count(), 2, "{sig}");
    assert!(verify(&secret, &sig, &body, now) && verify(&new_secret, &sig, &body, now));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["type"],
        "ping"
    );
    t.clock.advance(Duration::hours(25));
    call(&t, Method::POST, "/v1/webhook-endpoint/test", None).await;
    t.run_events().await;
    let (headers, body) = receiver.received().last().cloned().unwrap();
    let sig = headers["pipes-signature"].to_str().unwrap().to_owned();
    let now = t.clock.now().timestamp();
    assert_eq!(sig.matches("v1=").count(), 1);
    assert!(verify(&new_secret, &sig, &body, now) && !verify(&secret, &sig, &body, now));
}

async fn failing_then_recovering(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (receiver, url) = Receiver::start().await;
    t.register_endpoint(&url).await;
    receiver.answer(&[500, 503]);
    let ping = call(&t, Method::POST, "/v1/webhook-endpoint/test", None)
        .await
        .json();
    let id = ping["id"].as_str().unwrap().to_owned();
    assert_eq!(t.run_events().await, 1);
    let e = t.store.event(&t.app.id, &id).await.unwrap().unwrap();
    assert_eq!(e.delivery, DeliveryStatus::Pending);
    assert_eq!(e.attempts[0].status, Some(500));
    assert_eq!(e.attempts[0].detail.as_deref(), Some("thanks"));
    assert_eq!(
        e.next_attempt_at,
        Some(e.attempts[0].at + RETRY_SCHEDULE[0]),
        "the first retry after 10 s"
    );
    if t.backend.embedded.is_none() {
        // SQS holds the retry for its DelaySeconds in real time; the schedule itself
        // is run through on the embedded store below.
        return;
    }
    t.clock.advance(Duration::seconds(11));
    t.run_events().await;
    t.clock.advance(Duration::seconds(61));
    t.run_events().await;
    let e = t.store.event(&t.app.id, &id).await.unwrap().unwrap();
    assert_eq!(e.delivery, DeliveryStatus::Delivered);
    let statuses: Vec<Option<u16>> = e.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(503), Some(200)]);
    let view = call(&t, Method::GET, &format!("/v1/events/{id}"), None)
        .await
        .json();
    assert_eq!(view["delivery"]["status"], "delivered");
    assert_eq!(view["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(receiver.received().len(), 3);
}

/// The whole schedule on the embedded store (SQS's delays are real time): every
/// attempt at its time, then `failed`, the endpoint flagged; the next success clears it.
#[tokio::test]
async fn an_endpoint_that_never_answers_2xx_fails_after_the_schedule_and_is_flagged() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (receiver, url) = Receiver::start().await;
    t.register_endpoint(&url).await;
    receiver.answer(&[500; 20]);
    let ping = call(&t, Method::POST, "/v1/webhook-endpoint/test", None)
        .await
        .json();
    let id = ping["id"].as_str().unwrap().to_owned();
    let start = t.clock.now();
    t.run_events().await;
    for wait in RETRY_SCHEDULE {
        t.clock.advance(wait + Duration::seconds(1));
        t.run_events().await;
    }
    let e = t.store.event(&t.app.id, &id).await.unwrap().unwrap();
    assert_eq!(e.delivery, DeliveryStatus::Failed);
    assert_eq!(e.attempts.len(), RETRY_SCHEDULE.len() + 1);
    let gaps: Vec<i64> = e
        .attempts
        .windows(2)
        .map(|w| (w[1].at - w[0].at).num_seconds())
        .collect();
    assert_eq!(
        gaps,
        [
            11, 61, 301, 1801, 7201, 21601, 43201, 43201, 43201, 43201, 43201, 43201
        ],
        "10 s, 1 min, 5 min, 30 min, 2 h, 6 h, then 12-hourly for 3 days (each as run, +1 s)"
    );
    assert!(e.attempts.last().unwrap().at - start < Duration::days(4));
    let shown = call(&t, Method::GET, "/v1/webhook-endpoint", None)
        .await
        .json();
    assert!(shown["failingSince"].is_string(), "{shown}");
    // The partner fixes its endpoint and asks for the event again.
    receiver.script.lock().unwrap().clear();
    let again = call(
        &t,
        Method::POST,
        &format!("/v1/events/{id}/redeliver"),
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    t.run_events().await;
    let e = t.store.event(&t.app.id, &id).await.unwrap().unwrap();
    assert_eq!(e.delivery, DeliveryStatus::Delivered);
    let shown = call(&t, Method::GET, "/v1/webhook-endpoint", None)
        .await
        .json();
    assert!(shown["failingSince"].is_null());
}

/// An endpoint slower than 10 s is a failure (timed out), retried like any other.
#[tokio::test]
async fn an_endpoint_slower_than_ten_seconds_times_out() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (receiver, url) = Receiver::start().await;
    t.register_endpoint(&url).await;
    *receiver.delay.lock().unwrap() = std::time::Duration::from_secs(11);
    let ping = call(&t, Method::POST, "/v1/webhook-endpoint/test", None)
        .await
        .json();
    t.run_events().await;
    let e = t
        .store
        .event(&t.app.id, ping["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.delivery, DeliveryStatus::Pending);
    assert_eq!(e.attempts[0].status, None);
    assert_eq!(
        e.attempts[0].detail.as_deref(),
        Some("timed out after 10 s")
    );
    assert!(e.attempts[0].duration_ms >= 10_000);
}

/// The production sender refuses loopback, private, link-local and metadata addresses,
/// whether named literally or through DNS, and follows no redirect.
#[tokio::test]
async fn deliveries_never_reach_private_addresses_or_follow_redirects() {
    let sender = pipes_adapters::event_sender::HttpEventSender::new(false);
    for url in [
        "https://127.0.0.1:9/h",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/h",
        "https://[::1]:9/h",
        "https://[fd00:ec2::254]/h",
        "https://localhost:9/h",
    ] {
        let r = sender
            .send(
                &EndpointUrl::parse(url, false).unwrap(),
                "t=1,v1=00",
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(r.status, None, "{url}");
        assert!(
            r.detail
                .as_deref()
                .unwrap_or_default()
                .contains("forbidden address"),
            "{url}: {r:?}"
        );
    }
    // A redirect is an answer (a failure), not followed.
    let (receiver, target) = Receiver::start().await;
    let app = axum::Router::new().route(
        "/moved",
        post(move || {
            let target = target.clone();
            async move { (StatusCode::FOUND, [(http::header::LOCATION, target)], "") }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/moved", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dev = pipes_adapters::event_sender::HttpEventSender::new(true);
    let r = dev
        .send(
            &EndpointUrl::parse(&url, true).unwrap(),
            "t=1,v1=00",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.status, Some(302));
    assert!(!r.succeeded());
    assert!(
        receiver.received().is_empty(),
        "the redirect was not followed"
    );
}

async fn event_log(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let s = connect(&t).await;
    let other = t.other_app().await;
    // Without an endpoint, events are kept (no_endpoint once their delivery ran).
    t.run_events().await;
    let all = call(&t, Method::GET, "/v1/events", None).await.json();
    let events = all["events"].as_array().unwrap();
    assert!(events.len() >= 3, "{all}");
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    assert!(
        events
            .iter()
            .all(|e| e["delivery"]["status"] == "no_endpoint")
    );
    let page = call(&t, Method::GET, "/v1/events?limit=1", None)
        .await
        .json();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    let cursor = page["nextCursor"].as_str().unwrap();
    let next = call(
        &t,
        Method::GET,
        &format!("/v1/events?limit=1&cursor={cursor}"),
        None,
    )
    .await
    .json();
    assert_eq!(next["events"][0]["id"], ids[1]);
    let completed = call(&t, Method::GET, "/v1/events?type=signup.completed", None)
        .await
        .json();
    assert_eq!(completed["events"].as_array().unwrap().len(), 1);
    assert_eq!(
        completed["events"][0]["data"]["phoneNumberId"],
        s.phone_number_id.as_str()
    );
    for bad in [
        "type=nope",
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=../../x",
    ] {
        let res = call(&t, Method::GET, &format!("/v1/events?{bad}"), None).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let one = call(&t, Method::GET, &format!("/v1/events/{}", ids[0]), None).await;
    assert_eq!(one.status, StatusCode::OK);
    assert!(one.json()["attempts"].is_array());
    for missing in ["evt_000000000000aaaaaaaaaaaaaaaaaaaa", "nope"] {
        let res = call(&t, Method::GET, &format!("/v1/events/{missing}"), None).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
    }
    // Another App sees none of them.
    let req = Request::get(format!("/v1/events/{}", ids[0]))
        .header("authorization", format!("Bearer {}", other.1.expose()))
        .body(Body::empty())
        .unwrap();
    assert_eq!(t.send(req).await.status, StatusCode::NOT_FOUND);
    // Redelivery needs an endpoint; with one, the event is sent.
    let res = call(
        &t,
        Method::POST,
        &format!("/v1/events/{}/redeliver", ids[0]),
        None,
    )
    .await;
    assert_eq!(res.error_code(), "no_webhook_endpoint");
    let (receiver, url) = Receiver::start().await;
    t.register_endpoint(&url).await;
    let res = call(
        &t,
        Method::POST,
        &format!("/v1/events/{}/redeliver", ids[0]),
        None,
    )
    .await;
    assert_eq!(res.status, StatusCode::ACCEPTED);
    t.run_events().await;
    assert_eq!(receiver.received().len(), 1);
    let sent: Value = serde_json::from_slice(&receiver.received()[0].1).unwrap();
    assert_eq!(sent["id"], ids[0]);
}

async fn signed_redirect(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (token, _) = t.signup_token().await;
    let s = t.sandbox_signup();
    let unsigned = t
        .post_json(
            "/v1/signup/callback",
            json!({"token": token, "event": "CANCEL", "step": "PHONE_NUMBER_SETUP"}),
        )
        .await
        .json();
    assert!(
        !unsigned["redirectUrl"]
            .as_str()
            .unwrap()
            .contains("signature=")
    );
    let (_, secret) = t.register_endpoint("https://partner.example/hooks").await;
    let done = t.finish(&token, &s).await.json();
    let url = url::Url::parse(done["redirectUrl"].as_str().unwrap()).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let signature = pairs
        .iter()
        .find(|(k, _)| k == "signature")
        .map(|(_, v)| v.clone())
        .expect("signed");
    // As documented: our parameters (not the partner's own `x`), sorted, k=v joined by &.
    let ours: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(k, _)| ["status", "sessionId", "phoneNumberId"].contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(ours.len(), 3);
    assert_eq!(
        signature,
        pipes_core::events::redirect_signature(secret.as_bytes(), &ours)
    );
    let mut forged = ours.clone();
    forged[0].1 = "failed";
    assert_ne!(
        signature,
        pipes_core::events::redirect_signature(secret.as_bytes(), &forged)
    );
}

/// The README's verification snippet, run as a partner would run it, against a real
/// signature: it accepts the delivery, and refuses another secret, a changed body and a
/// replay older than 5 minutes.
#[test]
fn the_readme_verification_example_works() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let snippet = readme
        .split("<!-- verify:start -->")
        .nth(1)
        .and_then(|r| r.split("<!-- verify:end -->").next())
        .unwrap()
        .replace("```python", "")
        .replace("```", "");
    assert!(snippet.lines().filter(|l| !l.trim().is_empty()).count() <= 10);
    let now = chrono::Utc::now().timestamp();
    let body = br#"{"id":"evt_1","type":"ping"}"#;
    let fresh = pipes_core::events::signature_header(&[b"whsec_a", b"whsec_b"], now, body);
    let stale = pipes_core::events::signature_header(&[b"whsec_a"], now - 301, body);
    let script = format!(
        "{snippet}\nbody = {body:?}.encode()\n\
         print(verify('whsec_a', {fresh:?}, body), verify('whsec_b', {fresh:?}, body), \
         verify('whsec_c', {fresh:?}, body), verify('whsec_a', {fresh:?}, body + b' '), \
         verify('whsec_a', {stale:?}, body), verify('whsec_a', 'v1=00', body))",
        body = String::from_utf8_lossy(body),
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 (scripts/test needs it for moto)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "True True False False False False"
    );
}

/// A redelivery while a retry is waiting starts a new run and the old run's job is
/// dropped (one event never has two runs going); a flag set by a failing run never
/// brings back an endpoint the App removed meanwhile; an endpoint streaming a huge
/// answer costs one KiB.
#[tokio::test]
async fn one_run_at_a_time_and_the_worker_never_rewrites_the_endpoint() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (receiver, url) = Receiver::start().await;
    t.register_endpoint(&url).await;
    receiver.answer(&[500]);
    let ping = call(&t, Method::POST, "/v1/webhook-endpoint/test", None)
        .await
        .json();
    let id = ping["id"].as_str().unwrap().to_owned();
    t.run_events().await; // attempt 1 fails; attempt 2 waits 10 s
    assert_eq!(
        call(
            &t,
            Method::POST,
            &format!("/v1/events/{id}/redeliver"),
            None
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    t.run_events().await; // the new run's first attempt succeeds
    t.clock.advance(Duration::seconds(11));
    t.run_events().await; // the old run's attempt 2: dropped
    let e = t.store.event(&t.app.id, &id).await.unwrap().unwrap();
    assert_eq!(e.delivery, DeliveryStatus::Delivered);
    assert_eq!((e.run, e.run_attempts), (1, 1));
    assert_eq!(receiver.received().len(), 2, "one per run, no more");
    // A run that ends failed flags the endpoint only if it still exists.
    receiver.answer(&[500; 20]);
    call(&t, Method::POST, "/v1/webhook-endpoint/test", None).await;
    t.run_events().await;
    assert_eq!(
        call(&t, Method::DELETE, "/v1/webhook-endpoint", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    t.store
        .set_endpoint_failing(&t.app.id, Some(t.clock.now()))
        .await
        .unwrap();
    assert!(t.store.endpoint(&t.app.id).await.unwrap().is_none());
    // A huge answer: the first KiB is kept, the rest never read into memory.
    let app = axum::Router::new().route(
        "/big",
        post(|| async {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::iter(
                (0..1024).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            Body::from_stream(stream)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let big = format!("http://{}/big", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let r = pipes_adapters::event_sender::HttpEventSender::new(true)
        .send(
            &EndpointUrl::parse(&big, true).unwrap(),
            "t=1,v1=00",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.status, Some(200));
    assert_eq!(
        r.detail.unwrap().len(),
        pipes_core::events::MAX_RESPONSE_KEPT
    );
}

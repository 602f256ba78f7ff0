//! The sample events in `events/` are real API Gateway (HTTP API, payload 2.0) events:
//! they parse with lambda_http and, with a live key and session put in, the shared
//! router answers them as the Lambda would.

use axum::body::Body;
use http::{HeaderValue, StatusCode, header};
use pipes_tests::{Backend, TestApp};
use serde_json::json;

const POST_TOKEN: &str = include_str!("../../../events/token-issuer/post-apps-token.json");
const GET_SESSION: &str = include_str!("../../../events/token-issuer/get-session.json");

/// The event as the router sees it under `lambda_http::run`, with our key in it.
fn request(event: &str, key: &str, session_id: Option<&str>) -> http::Request<Body> {
    let event = match session_id {
        Some(id) => event.replace("ses_SAMPLEsampleSAMPLE00", id),
        None => event.to_owned(),
    };
    let req = lambda_http::request::from_str(&event).expect("a valid API Gateway v2 event");
    let (mut parts, body) = req.into_parts();
    parts.headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
    );
    http::Request::from_parts(parts, Body::from(body.to_vec()))
}

#[tokio::test]
async fn the_sample_events_are_served_by_the_token_issuer_router() {
    let t = TestApp::spawn(Backend::embedded()).await;

    let res = t.send(request(POST_TOKEN, t.key.expose(), None)).await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&res.body)
    );
    let issued = res.json();
    let id = issued["sessionId"].as_str().unwrap();

    let res = t.send(request(GET_SESSION, t.key.expose(), Some(id))).await;
    assert_eq!(res.status, StatusCode::OK);
    let s = res.json();
    assert_eq!(s["metadata"], json!({"partnerId": "p_123"}));
    assert_eq!(s["redirectUrl"], "https://partner.example/onboarding/done");
}

#[tokio::test]
async fn the_sample_events_key_is_a_placeholder_that_does_not_authenticate() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let req = lambda_http::request::from_str(POST_TOKEN).unwrap();
    let (parts, body) = req.into_parts();
    let res = t
        .send(http::Request::from_parts(parts, Body::from(body.to_vec())))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

//! The sandbox answers in Meta's shapes and with Meta's semantics: checked through the
//! real Graph client, and against Meta's OpenAPI description in docs/reference.

use std::sync::Arc;

use chrono::Duration;
use pipes_adapters::graph::{GraphClient, GraphConfig};
use pipes_core::meta::{AccessToken, AuthCode, CanSend, GraphErrorKind, MetaGraph};
use pipes_core::{PhoneNumberId, WabaId};
use pipes_sandbox::{
    Fault, FaultKind, NumberUpdate, SANDBOX_APP_ID, SANDBOX_APP_SECRET, Sandbox, SignupRequest,
    SignupResult,
};
use pipes_tests::ManualClock;

const OPENAPI: &str =
    include_str!("../../../docs/reference/meta-business-messaging-api_v23.0.yaml");

/// The property names of one schema in the OpenAPI file (a small, indentation-based read).
fn schema_properties(schema: &str) -> Vec<String> {
    let start = OPENAPI
        .find(&format!("\n    {schema}:\n"))
        .expect("schema in the file");
    let block = &OPENAPI[start + 1..];
    let props = block.find("      properties:\n").expect("properties");
    let mut names = Vec::new();
    for line in block[props..].lines().skip(1) {
        if !line.starts_with("        ") && !line.trim().is_empty() {
            break;
        }
        let name = line
            .strip_prefix("        ")
            .and_then(|l| l.strip_suffix(':'));
        if let Some(name) = name.filter(|n| !n.starts_with(' ')) {
            names.push(name.to_owned());
        }
    }
    names
}

async fn sandbox() -> (Sandbox, GraphClient, ManualClock, String) {
    let clock = ManualClock::new();
    let sandbox = Sandbox::in_memory(Arc::new(clock.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = pipes_sandbox::router(sandbox.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let base = format!("http://{addr}{}", pipes_sandbox::GRAPH_PATH);
    let mut cfg = GraphConfig::new(
        base.parse().unwrap(),
        SANDBOX_APP_ID,
        SANDBOX_APP_SECRET.to_owned().into(),
    );
    cfg.backoff = std::time::Duration::from_millis(5);
    (
        sandbox,
        GraphClient::new(cfg).unwrap(),
        clock,
        format!("http://{addr}"),
    )
}

/// A sandbox with one finished signup whose code the Graph client exchanged.
async fn connected() -> (Sandbox, GraphClient, ManualClock, SignupResult, AccessToken) {
    let (sandbox, graph, clock, _) = sandbox().await;
    let s = sandbox.signup(SignupRequest::default()).unwrap();
    let token = graph
        .exchange_code(&AuthCode::parse(&s.code).unwrap())
        .await
        .unwrap();
    (sandbox, graph, clock, s, token)
}

#[tokio::test]
async fn number_fields_are_those_of_metas_phone_number_info() {
    let known = schema_properties("PhoneNumberInfo");
    assert!(known.contains(&"verified_name".to_owned()), "{known:?}");
    let (sandbox, _, _, base) = sandbox().await;
    let s = sandbox.signup(SignupRequest::default()).unwrap();
    let client = reqwest::Client::new();
    let code = client
        .get(format!("{base}/sandbox/graph/v25.0/oauth/access_token"))
        .query(&[
            ("client_id", SANDBOX_APP_ID),
            ("client_secret", SANDBOX_APP_SECRET),
            ("code", s.code.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let token = code["access_token"].as_str().unwrap();
    let listed: serde_json::Value = client
        .get(format!(
            "{base}/sandbox/graph/v25.0/{}/phone_numbers",
            s.waba_id
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = listed["data"][0].as_object().unwrap();
    for field in item.keys().filter(|k| *k != "platform_type") {
        assert!(known.contains(field), "{field} is not in PhoneNumberInfo");
    }
    let error: serde_json::Value = client
        .get(format!("{base}/sandbox/graph/v25.0/999/phone_numbers"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let required = ["message", "type", "code"];
    for field in required {
        assert!(
            error["error"].get(field).is_some(),
            "GraphAPIError needs {field}: {error}"
        );
    }
    assert_eq!(
        (
            error["error"]["code"].as_i64(),
            error["error"]["error_subcode"].as_i64()
        ),
        (Some(100), Some(33))
    );
}

#[tokio::test]
async fn codes_live_thirty_seconds_and_are_single_use() {
    let (sandbox, graph, clock, _) = sandbox().await;
    let s = sandbox.signup(SignupRequest::default()).unwrap();
    let code = AuthCode::parse(&s.code).unwrap();
    let token = graph.exchange_code(&code).await.unwrap();
    let again = graph.exchange_code(&code).await.unwrap_err();
    assert_eq!((again.code, again.subcode), (Some(100), Some(36009)));

    let late = sandbox.signup(SignupRequest::default()).unwrap();
    clock.advance(Duration::seconds(31));
    assert!(
        graph
            .exchange_code(&AuthCode::parse(&late.code).unwrap())
            .await
            .is_err()
    );

    let facts = graph.debug_token(&token).await.unwrap();
    assert!(facts.is_valid && facts.app_id == SANDBOX_APP_ID);
    assert!(facts.covers_waba(&WabaId::parse(&s.waba_id).unwrap()));
}

#[tokio::test]
async fn revocation_invalidates_the_token() {
    let (sandbox, graph, _, s, token) = connected().await;
    let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
    assert_eq!(
        graph.health(&token, &phone).await.unwrap().can_send,
        CanSend::Available
    );
    assert!(sandbox.revoke(&s.phone_number_id));
    assert!(!graph.debug_token(&token).await.unwrap().is_valid);
    let err = graph.health(&token, &phone).await.unwrap_err();
    assert_eq!(
        (err.kind, err.code, err.subcode),
        (GraphErrorKind::TokenInvalid, Some(190), Some(463))
    );
}

#[tokio::test]
async fn registration_is_limited_to_ten_in_seventy_two_hours() {
    let (_sandbox, graph, clock, s, token) = connected().await;
    let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
    for _ in 0..10 {
        graph.register(&token, &phone, "123456").await.unwrap();
    }
    let err = graph.register(&token, &phone, "123456").await.unwrap_err();
    assert_eq!(
        (err.kind, err.code),
        (GraphErrorKind::Throttled, Some(133016))
    );
    clock.advance(Duration::hours(72));
    graph.register(&token, &phone, "123456").await.unwrap();
    let profile = graph.profile(&token, &phone).await.unwrap();
    assert_eq!(profile.status.as_deref(), Some("CONNECTED"));
}

#[tokio::test]
async fn health_and_subscriptions_follow_the_controls() {
    let (sandbox, graph, _, s, token) = connected().await;
    let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
    let waba = WabaId::parse(&s.waba_id).unwrap();
    for (set, want) in [
        ("BLOCKED", CanSend::Blocked),
        ("LIMITED", CanSend::Limited),
        ("AVAILABLE", CanSend::Available),
    ] {
        sandbox.update_number(
            &s.phone_number_id,
            &NumberUpdate {
                can_send_message: Some(set.into()),
                ..NumberUpdate::default()
            },
        );
        let h = graph.health(&token, &phone).await.unwrap();
        let (can_send, why) = h.verdict();
        assert_eq!((h.can_send, can_send), (want, want));
        assert_eq!(why.is_empty(), want == CanSend::Available, "{h:?}");
        assert_eq!(h.entities.len(), 4, "all four entities: {h:?}");
    }
    assert_eq!(
        graph.subscribed_apps(&token, &waba).await.unwrap(),
        Vec::<String>::new()
    );
    graph.subscribe_app(&token, &waba).await.unwrap();
    assert_eq!(
        graph.subscribed_apps(&token, &waba).await.unwrap(),
        [SANDBOX_APP_ID]
    );
    graph.unsubscribe_app(&token, &waba).await.unwrap();
    assert!(!sandbox.is_subscribed(&s.waba_id));
    let unknown = AccessToken::new("EAASnot-a-token");
    assert_eq!(
        graph
            .subscribed_apps(&unknown, &waba)
            .await
            .unwrap_err()
            .kind,
        GraphErrorKind::TokenInvalid
    );
}

#[tokio::test]
async fn faults_fail_the_next_calls_then_clear() {
    let (sandbox, graph, _, s, token) = connected().await;
    let waba = WabaId::parse(&s.waba_id).unwrap();
    sandbox.add_fault(Fault::new("subscribed_apps", FaultKind::ServerError, 1).on("POST"));
    // The client retries the transient failure and succeeds.
    graph.subscribe_app(&token, &waba).await.unwrap();
    assert_eq!(sandbox.calls("POST subscribed_apps"), 2);
    sandbox.add_fault(Fault::new("subscribed_apps", FaultKind::Throttle, 1).throttle(80008, 3));
    let err = graph.subscribed_apps(&token, &waba).await.unwrap_err();
    assert_eq!(err.kind, GraphErrorKind::Throttled);
    assert_eq!(err.retry_after, Some(std::time::Duration::from_secs(180)));
}

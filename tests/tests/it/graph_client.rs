//! The Graph client against scripted HTTP answers on 127.0.0.1: retries, timeouts,
//! throttling headers, classification, and that no secret or URL leaks into errors.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pipes_adapters::graph::{GraphClient, GraphConfig};
use pipes_core::meta::{AccessToken, AuthCode, GraphErrorKind, MetaGraph};
use pipes_core::{PhoneNumberId, WabaId};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Scripted {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn answer(status: u16, body: Value) -> Scripted {
    Scripted {
        status,
        headers: vec![],
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

/// What the server saw of one request: method, path, query, Authorization header.
type Seen = (String, String, String, Option<String>);

#[derive(Debug, Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Scripted>>>,
    /// (method, path, query, authorization header) of each request.
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn serve_one(State(s): State<Script>, req: Request) -> Response {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.seen.lock().unwrap().push((
        req.method().to_string(),
        req.uri().path().to_owned(),
        req.uri().query().unwrap_or("").to_owned(),
        auth,
    ));
    let next = s.answers.lock().unwrap().pop_front();
    let Some(a) = next else {
        return (StatusCode::IM_A_TEAPOT, "script ran out").into_response();
    };
    tokio::time::sleep(a.delay).await;
    let mut headers = HeaderMap::new();
    for (k, v) in a.headers {
        headers.insert(
            HeaderName::from_static(k),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (StatusCode::from_u16(a.status).unwrap(), headers, a.body).into_response()
}

async fn scripted(answers: Vec<Scripted>) -> (GraphClient, Script) {
    let script = Script::default();
    script.answers.lock().unwrap().extend(answers);
    let app = Router::new().fallback(serve_one).with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut cfg = GraphConfig::new(
        format!("http://{addr}").parse().unwrap(),
        "1234",
        "super-secret-app-secret".to_owned().into(),
    );
    cfg.timeout = Duration::from_millis(500);
    cfg.backoff = Duration::from_millis(5);
    (GraphClient::new(cfg).unwrap(), script)
}

fn token() -> AccessToken {
    AccessToken::new("EAAGbusiness-token-value")
}

fn valid_token_body() -> Value {
    json!({"data": {"app_id": "1234", "is_valid": true, "expires_at": 0, "scopes": ["whatsapp_business_management"],
        "granular_scopes": [{"scope": "whatsapp_business_management", "target_ids": ["555"]}]}})
}

fn transient() -> Scripted {
    answer(
        500,
        json!({"error": {"message": "An unexpected error has occurred.", "type": "OAuthException", "code": 2, "is_transient": true}}),
    )
}

#[tokio::test]
async fn transient_failures_of_idempotent_calls_are_retried() {
    let (client, script) = scripted(vec![transient(), answer(200, valid_token_body())]).await;
    let facts = client.debug_token(&token()).await.unwrap();
    assert!(facts.is_valid && facts.expires_at.is_none());
    assert!(facts.covers_waba(&WabaId::parse("555").unwrap()));
    assert_eq!(script.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn retries_are_bounded() {
    let (client, script) = scripted(vec![transient(), transient(), transient(), transient()]).await;
    let err = client
        .profile(&token(), &PhoneNumberId::parse("42").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind, GraphErrorKind::Transient);
    assert_eq!(
        script.seen.lock().unwrap().len(),
        3,
        "one try and two retries"
    );
}

#[tokio::test]
async fn the_code_exchange_is_never_retried_and_never_leaks_its_secrets() {
    let (client, script) =
        scripted(vec![transient(), answer(200, json!({"access_token": "x"}))]).await;
    let code = AuthCode::parse("AQsingle-use-code").unwrap();
    let err = client.exchange_code(&code).await.unwrap_err();
    assert_eq!(script.seen.lock().unwrap().len(), 1);
    let (_, path, query, auth) = script.seen.lock().unwrap()[0].clone();
    assert_eq!(path, "/v25.0/oauth/access_token");
    assert!(query.contains("client_id=1234") && query.contains("code=AQsingle-use-code"));
    assert!(!query.contains("redirect_uri") && auth.is_none());
    let text = format!("{err} {err:?}");
    for secret in ["super-secret-app-secret", "AQsingle-use-code", "http://"] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[tokio::test]
async fn throttling_carries_the_time_to_regain_access() {
    let mut throttled = answer(
        400,
        json!({"error": {"message": "Too many calls", "type": "OAuthException", "code": 80008}}),
    );
    throttled.headers.push((
        "x-business-use-case-usage",
        json!({"555": [{"type": "whatsapp_business_management", "call_count": 100, "estimated_time_to_regain_access": 7}]}).to_string(),
    ));
    let (client, script) = scripted(vec![throttled]).await;
    let err = client
        .subscribe_app(&token(), &WabaId::parse("555").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind, GraphErrorKind::Throttled);
    assert_eq!(err.retry_after, Some(Duration::from_secs(7 * 60)));
    assert_eq!(
        script.seen.lock().unwrap().len(),
        1,
        "a throttled call is not hammered"
    );
}

#[tokio::test]
async fn errors_are_classified_by_code_not_status() {
    let cases = [
        (
            400,
            json!({"error": {"message": "m", "type": "OAuthException", "code": 190, "error_subcode": 463}}),
            GraphErrorKind::TokenInvalid,
        ),
        (
            200,
            json!({"error": {"message": "m", "type": "OAuthException", "code": 100, "error_subcode": 33}}),
            GraphErrorKind::NotFound,
        ),
        (
            403,
            json!({"error": {"message": "m", "type": "OAuthException", "code": 200}}),
            GraphErrorKind::Permission,
        ),
        (
            400,
            json!({"error": {"message": "m", "type": "OAuthException", "code": 133016}}),
            GraphErrorKind::Throttled,
        ),
        (
            400,
            json!({"error": {"message": "m", "type": "OAuthException", "code": 368}}),
            GraphErrorKind::Policy,
        ),
    ];
    for (status, body, kind) in cases {
        let (client, _) = scripted(vec![answer(status, body.clone())]).await;
        let err = client
            .register(&token(), &PhoneNumberId::parse("42").unwrap(), "123456")
            .await
            .unwrap_err();
        assert_eq!(err.kind, kind, "{body}");
    }
}

#[tokio::test]
async fn timeouts_and_garbage_are_transient() {
    let mut slow = answer(200, valid_token_body());
    slow.delay = Duration::from_secs(3);
    let (client, script) = scripted(vec![slow.clone(), slow.clone(), slow]).await;
    let err = client.debug_token(&token()).await.unwrap_err();
    assert_eq!(err.kind, GraphErrorKind::Transient);
    assert!(err.message.contains("timed out"), "{err}");
    assert!(!err.message.contains("EAAG") && !err.message.contains("secret"));
    assert_eq!(script.seen.lock().unwrap().len(), 3);

    let garbage = Scripted {
        status: 502,
        headers: vec![],
        body: "<html>bad gateway</html>".into(),
        delay: Duration::ZERO,
    };
    let (client, _) = scripted(vec![garbage.clone(), garbage.clone(), garbage]).await;
    let (profile, health) = client
        .profile_and_health(&token(), &PhoneNumberId::parse("42").unwrap())
        .await;
    assert_eq!(profile.unwrap_err().kind, GraphErrorKind::Transient);
    assert_eq!(health.unwrap_err().kind, GraphErrorKind::Transient);
}

#[tokio::test]
async fn the_business_token_travels_as_a_bearer_header() {
    let (client, script) = scripted(vec![answer(
        200,
        json!({"id": "42", "display_phone_number": "+1 555", "status": "CONNECTED"}),
    )])
    .await;
    let p = client
        .profile(&token(), &PhoneNumberId::parse("42").unwrap())
        .await
        .unwrap();
    assert_eq!(p.status.as_deref(), Some("CONNECTED"));
    let (method, path, query, auth) = script.seen.lock().unwrap()[0].clone();
    assert_eq!((method.as_str(), path.as_str()), ("GET", "/v25.0/42"));
    assert!(!query.contains("EAAG"));
    assert_eq!(auth.as_deref(), Some("Bearer EAAGbusiness-token-value"));
}

#[tokio::test]
async fn a_checks_profile_and_health_come_from_one_call_on_the_number() {
    let mut body = meta_sample("health-limited.json");
    body["status"] = json!("CONNECTED");
    body["quality_rating"] = json!("GREEN");
    let (client, script) = scripted(vec![answer(200, body)]).await;
    let (profile, health) = client
        .profile_and_health(&token(), &PhoneNumberId::parse("106540352242922").unwrap())
        .await;
    let (profile, health) = (profile.unwrap(), health.unwrap());
    assert_eq!(profile.status.as_deref(), Some("CONNECTED"));
    assert_eq!(profile.quality_rating.as_deref(), Some("GREEN"));
    assert_eq!(health.can_send, pipes_core::meta::CanSend::Limited);
    let seen = script.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (method, path, query, _) = &seen[0];
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("GET", "/v25.0/106540352242922")
    );
    let fields: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "fields")
        .map(|(_, v)| v.split(',').map(str::to_owned).collect())
        .unwrap();
    for field in ["health_status", "status", "quality_rating", "verified_name"] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
}

/// One call, two parts: a part of Meta's answer we cannot use fails alone, so a
/// BLOCKED health still counts when the profile beside it has an unexpected shape, and
/// the profile is kept when the health is unknown.
#[tokio::test]
async fn a_part_of_the_numbers_answer_that_cannot_be_used_fails_alone() {
    let phone = PhoneNumberId::parse("42").unwrap();
    let blocked = json!({"can_send_message": "BLOCKED", "entities": [{"entity_type": "PHONE_NUMBER", "can_send_message": "BLOCKED", "errors": [{"error_code": 141010, "error_description": "The Business has been restricted."}]}]});
    let (client, _) = scripted(vec![answer(
        200,
        json!({"id": "42", "status": {"unexpected": true}, "health_status": blocked}),
    )])
    .await;
    let (profile, health) = client.profile_and_health(&token(), &phone).await;
    assert_eq!(profile.unwrap_err().kind, GraphErrorKind::Other);
    assert_eq!(
        health.unwrap().verdict().0,
        pipes_core::meta::CanSend::Blocked
    );

    let (client, _) = scripted(vec![answer(
        200,
        json!({"id": "42", "status": "CONNECTED", "health_status": {"can_send_message": "SOMETHING_NEW"}}),
    )])
    .await;
    let (profile, health) = client.profile_and_health(&token(), &phone).await;
    assert_eq!(profile.unwrap().status.as_deref(), Some("CONNECTED"));
    assert_eq!(health.unwrap_err().kind, GraphErrorKind::Other);
}

#[tokio::test]
async fn subscriptions_parse_in_both_shapes_meta_uses() {
    let body = json!({"data": [
        {"whatsapp_business_api_data": {"id": "1234", "name": "us", "link": "l"}},
        {"id": "999", "name": "someone else"},
    ]});
    let (client, _) = scripted(vec![answer(200, body)]).await;
    let apps = client
        .subscribed_apps(&token(), &WabaId::parse("555").unwrap())
        .await
        .unwrap();
    assert_eq!(apps, ["1234", "999"]);
}

#[tokio::test]
async fn waba_numbers_follow_cursor_paging() {
    let page1 = json!({"data": [{"id": "1", "display_phone_number": "+1"}], "paging": {"cursors": {"after": "CUR"}, "next": "https://graph.example/next"}});
    let page2 = json!({"data": [{"id": "2", "display_phone_number": "+2"}], "paging": {"cursors": {"after": "END"}}});
    let (client, script) = scripted(vec![answer(200, page1), answer(200, page2)]).await;
    let numbers = client
        .waba_numbers(&token(), &WabaId::parse("555").unwrap())
        .await
        .unwrap();
    let ids: Vec<&str> = numbers.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["1", "2"]);
    assert!(script.seen.lock().unwrap()[1].2.contains("after=CUR"));
}

/// One of Meta's documented samples (`tests/fixtures/meta/`, each with its source).
fn meta_sample(name: &str) -> Value {
    let path = format!("{}/fixtures/meta/{name}", env!("CARGO_MANIFEST_DIR"));
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        file["source"]
            .as_str()
            .unwrap()
            .starts_with("https://developers.facebook.com/")
    );
    file["payload"].clone()
}

#[tokio::test]
async fn metas_health_samples_give_the_messaging_verdict_of_their_entities() {
    use pipes_core::meta::CanSend;
    let phone = PhoneNumberId::parse("106540352242922").unwrap();
    for (sample, want, mentions) in [
        ("health-available.json", CanSend::Available, ""),
        (
            "health-limited.json",
            CanSend::Limited,
            "PHONE_NUMBER: Your display name has not been approved yet",
        ),
        // Aggregate BLOCKED for SIP calling only: every entity can send messages.
        ("health-sip-blocked.json", CanSend::Available, ""),
        // A template's block is not the number's (MESSAGE_TEMPLATE is no number entity).
        ("health-blocked-template.json", CanSend::Available, ""),
    ] {
        let (client, _) = scripted(vec![answer(200, meta_sample(sample))]).await;
        let health = client.profile_and_health(&token(), &phone).await.1.unwrap();
        let (can_send, why) = health.verdict();
        assert_eq!(can_send, want, "{sample}: {health:?}");
        assert!(why.starts_with(mentions), "{sample}: {why}");
        assert!(
            !why.contains("138024") && !why.contains("SIP"),
            "{sample}: {why}"
        );
    }
}

#[tokio::test]
async fn metas_debug_token_samples_name_the_shared_waba_by_membership() {
    let (client, _) = scripted(vec![
        answer(200, meta_sample("debug-token-user.json")),
        answer(200, meta_sample("debug-token-system-user.json")),
    ])
    .await;
    let user = client.debug_token(&token()).await.unwrap();
    // Meta lists the newest WABA first.
    assert_eq!(user.shared_waba(), WabaId::parse("102289599326934"));
    assert!(user.covers_waba(&WabaId::parse("101569239400667").unwrap()));
    assert!(!user.covers_waba(&WabaId::parse("999").unwrap()));
    assert_eq!(user.expires_at.map(|t| t.timestamp()), Some(1_665_090_000));
    let system = client.debug_token(&token()).await.unwrap();
    assert_eq!(system.shared_waba(), None, "no target ids: nothing to name");
    assert!(system.covers_waba(&WabaId::parse("999").unwrap()));
    assert_eq!(system.expires_at, None, "0 means never");
}

#[tokio::test]
async fn metas_phone_numbers_subscribed_apps_and_register_samples_parse() {
    let (client, _) = scripted(vec![
        answer(200, meta_sample("phone-numbers.json")),
        answer(200, meta_sample("subscribed-apps.json")),
        answer(200, meta_sample("register-success.json")),
        answer(400, meta_sample("error-133016.json")),
    ])
    .await;
    let waba = WabaId::parse("102290129340398").unwrap();
    let numbers = client.waba_numbers(&token(), &waba).await.unwrap();
    let ids: Vec<&str> = numbers.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["1906385232743451", "1913623884432103"]);
    assert_eq!(
        numbers[0].profile.verified_name.as_deref(),
        Some("Jasper's Market")
    );
    // Meta's sample truncates the ids with "...": they are read as given.
    let apps = client.subscribed_apps(&token(), &waba).await.unwrap();
    assert_eq!(apps, ["67084...", "52565..."]);
    let phone = PhoneNumberId::parse("1906385232743451").unwrap();
    client.register(&token(), &phone, "581063").await.unwrap();
    let err = client
        .register(&token(), &phone, "581063")
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.code),
        (GraphErrorKind::Throttled, Some(133_016))
    );
    assert!(
        err.details
            .unwrap()
            .starts_with("Registration or Deregistration failed")
    );
}

#[tokio::test]
async fn our_rejected_app_credentials_are_told_apart_from_the_owners_token() {
    let client_secret = json!({"error": {"message": "Error validating client secret.", "type": "OAuthException", "code": 1, "fbtrace_id": "A"}});
    let bad_app_token = json!({"error": {"message": "Invalid OAuth access token signature.", "type": "OAuthException", "code": 190, "fbtrace_id": "B"}});
    let owner_token = json!({"error": {"message": "Error validating access token", "type": "OAuthException", "code": 190, "error_subcode": 463}});
    let (client, _) = scripted(vec![
        answer(400, client_secret),
        answer(400, bad_app_token),
        answer(401, owner_token),
    ])
    .await;
    let code = AuthCode::parse("AQcode").unwrap();
    let exchange = client.exchange_code(&code).await.unwrap_err();
    assert_eq!(exchange.kind, GraphErrorKind::AppCredentials);
    let describe = client.debug_token(&token()).await.unwrap_err();
    assert_eq!(describe.kind, GraphErrorKind::AppCredentials);
    // The same 190 on a call made with the owner's token is the owner's token.
    let profile = client
        .profile(&token(), &PhoneNumberId::parse("42").unwrap())
        .await
        .unwrap_err();
    assert_eq!(profile.kind, GraphErrorKind::TokenInvalid);
}

/// Whatever Meta answers (any status, any JSON), every call of the Graph client ends in
/// an answer or a classified error, never a panic.
#[tokio::test]
async fn arbitrary_graph_answers_never_panic_the_client() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let leaf = proptest::prop_oneof![
        proptest::strategy::Just(Value::Null),
        proptest::arbitrary::any::<i64>().prop_map(|n| json!(n)),
        ".{0,20}".prop_map(Value::String),
        proptest::arbitrary::any::<bool>().prop_map(Value::Bool),
    ];
    let keys = proptest::prop_oneof![
        proptest::strategy::Just("data".to_owned()),
        proptest::strategy::Just("error".to_owned()),
        proptest::strategy::Just("code".to_owned()),
        proptest::strategy::Just("access_token".to_owned()),
        proptest::strategy::Just("granular_scopes".to_owned()),
        proptest::strategy::Just("target_ids".to_owned()),
        proptest::strategy::Just("is_valid".to_owned()),
        proptest::strategy::Just("health_status".to_owned()),
        proptest::strategy::Just("entities".to_owned()),
        proptest::strategy::Just("can_send_message".to_owned()),
        proptest::strategy::Just("success".to_owned()),
        ".{0,8}",
    ];
    let body = leaf.prop_recursive(4, 48, 6, move |inner| {
        proptest::prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(keys.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let status = proptest::prop_oneof![
        proptest::strategy::Just(200u16),
        proptest::strategy::Just(400u16),
        proptest::strategy::Just(500u16),
        100u16..600,
    ];
    for _ in 0..48 {
        let answers: Vec<Scripted> = (0..12)
            .map(|_| {
                let b = body.new_tree(&mut runner).unwrap().current();
                let s = status.new_tree(&mut runner).unwrap().current();
                answer(s, b)
            })
            .collect();
        let (client, _) = scripted(answers).await;
        let waba = pipes_core::WabaId::parse("555").unwrap();
        let phone = pipes_core::PhoneNumberId::parse("777").unwrap();
        let _ = client
            .exchange_code(&pipes_core::meta::AuthCode::parse("AQx").unwrap())
            .await;
        let _ = client.debug_token(&token()).await;
        let _ = client.waba_numbers(&token(), &waba).await;
        let _ = client.subscribed_apps(&token(), &waba).await;
        let _ = client.profile_and_health(&token(), &phone).await;
        let _ = client.profile(&token(), &phone).await;
    }
}

/// Meta answering the code exchange 200 without an `access_token` is an error, not a
/// token: nothing is connected on an empty answer.
#[tokio::test]
async fn an_exchange_answer_without_a_token_is_an_error() {
    for body in [
        json!({"token_type": "bearer"}),
        json!({"access_token": ""}),
        json!({"access_token": null}),
        json!({}),
    ] {
        let (client, _) = scripted(vec![answer(200, body.clone())]).await;
        let code = AuthCode::parse("AQcode").unwrap();
        assert!(client.exchange_code(&code).await.is_err(), "{body}");
    }
}

/// A token whose granular scopes name no WABA (a system user's, reaching everything)
/// cannot say which WABA the owner shared: the code-only path refuses it rather than
/// guessing.
#[tokio::test]
async fn granular_scopes_naming_no_waba_name_no_shared_waba() {
    let body: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/meta/debug-token-system-user.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let (client, _) = scripted(vec![answer(200, body["payload"].clone())]).await;
    let facts = client.debug_token(&token()).await.unwrap();
    assert_eq!(facts.shared_waba(), None);
}

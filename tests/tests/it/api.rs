//! The partner API over HTTP (in process): issuing tokens, reading sessions, and every
//! kind of bad input, each of which gets API.md's error body and changes nothing.

use axum::body::Body;
use chrono::{DateTime, Duration, Utc};
use http::{Method, Request, StatusCode, header};
use pipes_core::usecases::admin;
use pipes_core::{AppKey, Clock};
use pipes_tests::{BASE_URL, Backend, LogCapture, TestApp, raw_rows};
use serde_json::{Value, json};

struct Fixture {
    t: TestApp,
    db: std::path::PathBuf,
}

impl Fixture {
    async fn new() -> Self {
        Self::with_origins(&[]).await
    }

    async fn with_origins(origins: &[&str]) -> Self {
        let backend = Backend::embedded();
        let db = backend.embedded.as_ref().unwrap().path().to_owned();
        let t = TestApp::spawn_with_origins(backend, origins).await;
        Self { t, db }
    }

    fn rows(&self) -> String {
        raw_rows(&self.db)
    }

    /// Sends `req` and asserts it is refused with `status`/`code` and leaves every
    /// stored row as it was.
    async fn refused(&self, req: Request<Body>, status: StatusCode, code: &str) -> Value {
        let before = self.rows();
        let res = self.t.send(req).await;
        assert_eq!(res.status, status, "{}", String::from_utf8_lossy(&res.body));
        assert_eq!(res.error_code(), code);
        assert!(res.headers.contains_key("x-request-id"));
        assert_eq!(
            self.rows(),
            before,
            "a refused request changed stored state"
        );
        res.json()
    }

    fn post_json(&self, body: impl Into<Body>) -> Request<Body> {
        self.t
            .authed(Method::POST, "/v1/apps/token")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .unwrap()
    }

    async fn refused_body(&self, body: Value, code: &str, field: &str) {
        let v = self
            .refused(
                self.post_json(body.to_string()),
                StatusCode::BAD_REQUEST,
                code,
            )
            .await;
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{field}: {message}");
    }
}

fn ok_body() -> Value {
    json!({"redirectUrl": "https://partner.example/onboarding/done"})
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .to_utc()
}

#[tokio::test]
async fn issuing_a_token_returns_a_signup_link_and_a_pending_session() {
    let f = Fixture::new().await;
    let res =
        f.t.issue(json!({
            "redirectUrl": "https://partner.example/onboarding/done",
            "metadata": {"partnerId": "p_123"},
        }))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    // The token is a credential: no cache keeps the answer.
    assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");
    let v = res.json();
    let token = v["token"].as_str().unwrap();
    assert!(pipes_core::SignupToken::parse(token).is_some(), "{token}");
    let session_id = v["sessionId"].as_str().unwrap();
    assert!(pipes_core::SessionId::parse(session_id).is_some());
    assert_eq!(
        v["signupUrl"],
        format!("{BASE_URL}/apps/{}?token={token}", f.t.app.slug)
    );
    assert_eq!(
        time(&v["expiresAt"]),
        f.t.clock.now() + Duration::seconds(86_400)
    );

    let s = f.t.get_session(session_id).await;
    assert_eq!(s.status, StatusCode::OK);
    let s = s.json();
    assert_eq!(s["sessionId"], session_id);
    assert_eq!(s["status"], "pending");
    assert_eq!(s["redirectUrl"], "https://partner.example/onboarding/done");
    assert_eq!(s["metadata"], json!({"partnerId": "p_123"}));
    assert_eq!(time(&s["createdAt"]), f.t.clock.now());
    assert_eq!(s["abandons"], json!([]));
    assert!(s.get("completedAt").is_none() && s.get("phoneNumberId").is_none());
    assert!(
        !s.to_string().contains(token),
        "the session view leaks the token"
    );
}

#[tokio::test]
async fn tokens_and_sessions_are_distinct_each_time() {
    let f = Fixture::new().await;
    let a = f.t.issue(ok_body()).await.json();
    let b = f.t.issue(ok_body()).await.json();
    assert_ne!(a["token"], b["token"]);
    assert_ne!(a["sessionId"], b["sessionId"]);
}

#[tokio::test]
async fn a_session_reads_expired_once_its_lifetime_is_over() {
    let f = Fixture::new().await;
    let v =
        f.t.issue(json!({"redirectUrl": "https://p.example/", "expiresIn": 300}))
            .await
            .json();
    assert_eq!(
        time(&v["expiresAt"]),
        f.t.clock.now() + Duration::seconds(300)
    );
    let id = v["sessionId"].as_str().unwrap();
    f.t.clock.advance(Duration::seconds(299));
    assert_eq!(f.t.get_session(id).await.json()["status"], "pending");
    f.t.clock.advance(Duration::seconds(1));
    assert_eq!(f.t.get_session(id).await.json()["status"], "expired");
}

#[tokio::test]
async fn missing_malformed_unknown_and_revoked_keys_get_the_same_401() {
    let f = Fixture::new().await;
    let created = admin::create_key(&*f.t.store, f.t.clock.now(), &f.t.app)
        .await
        .unwrap();
    admin::revoke_key(
        &*f.t.store,
        f.t.clock.now(),
        &f.t.app,
        created.key_id.as_str(),
    )
    .await
    .unwrap();
    let revoked = created.key.expose().to_owned();
    let unknown = AppKey::generate().expose().to_owned();
    let headers: [Option<String>; 7] = [
        None,
        Some("Bearer".into()),
        Some("Bearer garbage".into()),
        Some(format!("Basic {unknown}")),
        Some(format!("Bearer {unknown}")),
        Some(format!("Bearer {revoked}")),
        Some(format!("Bearer {}x", f.t.key.expose())),
    ];
    let mut bodies = Vec::new();
    for h in headers {
        let mut req =
            Request::post("/v1/apps/token").header(header::CONTENT_TYPE, "application/json");
        if let Some(h) = &h {
            req = req.header(header::AUTHORIZATION, h);
        }
        let req = req.body(Body::from(ok_body().to_string())).unwrap();
        bodies.push(
            f.refused(req, StatusCode::UNAUTHORIZED, "unauthorized")
                .await,
        );
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");

    let get = Request::get("/v1/sessions/ses_AAAAAAAAAAAAAAAAAAAA")
        .body(Body::empty())
        .unwrap();
    f.refused(get, StatusCode::UNAUTHORIZED, "unauthorized")
        .await;
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let f = Fixture::new().await;
    for body in ["{", "not json", "{\"redirectUrl\": }", ""] {
        let v = f
            .refused(
                f.post_json(body),
                StatusCode::BAD_REQUEST,
                "invalid_request",
            )
            .await;
        assert!(
            v["error"]["message"].as_str().unwrap().starts_with("body"),
            "{v}"
        );
    }
    f.refused_body(json!([1, 2]), "invalid_request", "body")
        .await;
    f.refused_body(json!("s"), "invalid_request", "body").await;
}

#[tokio::test]
async fn bad_redirect_urls_are_refused_naming_the_field() {
    let f = Fixture::new().await;
    let long = format!("https://partner.example/{}", "a".repeat(2048));
    f.refused_body(json!({}), "invalid_request", "redirectUrl")
        .await;
    for bad in [
        json!("/relative/done"),
        json!("javascript:alert(1)"),
        json!("http://partner.example/done"),
        json!("https://user:pass@partner.example/done"),
        json!(long),
        json!(42),
        json!(null),
    ] {
        f.refused_body(
            json!({"redirectUrl": bad}),
            "invalid_request",
            "redirectUrl",
        )
        .await;
    }
}

#[tokio::test]
async fn local_http_redirects_are_only_for_apps_in_development() {
    let f = Fixture::new().await;
    // The platform serves on https: a production App's links send owners to https only.
    for local in ["http://localhost:8080/done", "http://127.0.0.1/done"] {
        f.refused_body(
            json!({"redirectUrl": local}),
            "invalid_request",
            "redirectUrl",
        )
        .await;
    }
    admin::update_app(
        &*f.t.store,
        &f.t.app,
        admin::AppUpdate {
            development: Some(true),
            ..admin::AppUpdate::default()
        },
    )
    .await
    .unwrap();
    for good in ["http://localhost:8080/done", "http://127.0.0.1/done"] {
        assert_eq!(
            f.t.issue(json!({"redirectUrl": good})).await.status,
            StatusCode::OK,
            "{good}"
        );
    }
}

#[tokio::test]
async fn redirects_off_the_apps_allowed_origins_are_refused() {
    let f = Fixture::with_origins(&["https://partner.example"]).await;
    f.refused_body(
        json!({"redirectUrl": "https://elsewhere.example/done"}),
        "redirect_not_allowed",
        "redirectUrl",
    )
    .await;
    assert_eq!(f.t.issue(ok_body()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_metadata_is_refused() {
    let f = Fixture::new().await;
    let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}});
    for bad in [
        json!([1]),
        json!("s"),
        json!(7),
        json!({"x": "y".repeat(4100)}),
        deep,
    ] {
        let mut body = ok_body();
        body["metadata"] = bad;
        f.refused_body(body, "invalid_request", "metadata").await;
    }
}

#[tokio::test]
async fn bad_lifetimes_are_refused() {
    let f = Fixture::new().await;
    for bad in [
        json!(299),
        json!(2_592_001),
        json!(600.5),
        json!("600"),
        json!(-1),
    ] {
        let mut body = ok_body();
        body["expiresIn"] = bad;
        f.refused_body(body, "invalid_request", "expiresIn").await;
    }
}

#[tokio::test]
async fn error_messages_do_not_echo_what_was_sent() {
    let f = Fixture::new().await;
    let secretish = "tok_THISVALUEMUSTNOTBEECHOEDBACKXXXXXX";
    let mut body = ok_body();
    body["expiresIn"] = json!(secretish);
    let v = f
        .refused(
            f.post_json(body.to_string()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    assert!(!v.to_string().contains(secretish), "{v}");
}

#[tokio::test]
async fn a_one_mebibyte_body_is_a_413() {
    let f = Fixture::new().await;
    let big = json!({"redirectUrl": "https://p.example/", "metadata": {"x": "y".repeat(1 << 20)}});
    f.refused(
        f.post_json(big.to_string()),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    // Without a Content-Length (streamed), the limit still holds.
    let stream = futures_stream(big.to_string().into_bytes());
    f.refused(
        f.post_json(stream),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

fn futures_stream(bytes: Vec<u8>) -> Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(8192).map(|c| Ok(c.to_vec())).collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_a_415() {
    let f = Fixture::new().await;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = f.t.authed(Method::POST, "/v1/apps/token");
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.body(Body::from(ok_body().to_string())).unwrap();
        f.refused(
            req,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    let req =
        f.t.authed(Method::POST, "/v1/apps/token")
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(Body::from(ok_body().to_string()))
            .unwrap();
    assert_eq!(f.t.send(req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn another_apps_session_is_not_found() {
    let f = Fixture::new().await;
    let id = f.t.issue(ok_body()).await.json()["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, other_key) = f.t.other_app().await;
    let req = Request::get(format!("/v1/sessions/{id}"))
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", other_key.expose()),
        )
        .body(Body::empty())
        .unwrap();
    let theirs = f.refused(req, StatusCode::NOT_FOUND, "not_found").await;
    for unknown in ["ses_AAAAAAAAAAAAAAAAAAAA", "nonsense"] {
        let req =
            f.t.authed(Method::GET, &format!("/v1/sessions/{unknown}"))
                .body(Body::empty())
                .unwrap();
        let v = f.refused(req, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(
            v, theirs,
            "another App's session must look like an unknown one"
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_json_errors_with_request_ids() {
    let f = Fixture::new().await;
    let res =
        f.t.send(Request::get("/v2/nothing").body(Body::empty()).unwrap())
            .await;
    assert_eq!(
        (res.status, res.error_code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let res =
        f.t.send(
            Request::delete("/v1/apps/token")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.error_code(), "method_not_allowed");
    assert!(res.headers.contains_key("x-request-id"));

    let res =
        f.t.send(Request::get("/healthz").body(Body::empty()).unwrap())
            .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json(), json!({"status": "ok"}));
    let id = res.headers["x-request-id"].to_str().unwrap().to_owned();
    let again =
        f.t.send(Request::get("/healthz").body(Body::empty()).unwrap())
            .await;
    assert_ne!(again.headers["x-request-id"].to_str().unwrap(), id);
}

#[tokio::test]
async fn a_callers_request_id_is_kept() {
    let f = Fixture::new().await;
    let req = Request::get("/healthz")
        .header("x-request-id", "req-123")
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.t.send(req).await.headers["x-request-id"], "req-123");
}

#[tokio::test]
async fn logs_never_contain_tokens_or_app_keys() {
    let f = Fixture::new().await;
    let logs = LogCapture::global();
    let v = f.t.issue(ok_body()).await.json();
    let token = v["token"].as_str().unwrap().to_owned();
    f.t.get_session(v["sessionId"].as_str().unwrap()).await;
    let unknown = AppKey::generate();
    let req = Request::post("/v1/apps/token")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", unknown.expose()),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(ok_body().to_string()))
        .unwrap();
    f.t.send(req).await;
    let text = logs.text();
    assert!(
        text.contains("signup token issued"),
        "logs were not captured: {text}"
    );
    for secret in [token.as_str(), f.t.key.expose(), unknown.expose()] {
        assert!(!text.contains(secret), "a secret reached the logs:\n{text}");
    }
}

#[tokio::test]
async fn the_api_works_the_same_on_dynamodb() {
    let t = TestApp::spawn(Backend::aws().await).await;
    let v = t.issue(ok_body()).await.json();
    let s = t.get_session(v["sessionId"].as_str().unwrap()).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.json()["status"], "pending");
    let res = t.issue(json!({"redirectUrl": "ftp://x"})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

/// Arbitrary bodies and headers on every route that takes outside input: each answers
/// with a status below 500 and, for an error, API.md's error body; nothing panics.
#[tokio::test]
async fn arbitrary_requests_get_clear_answers_never_a_server_error() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let t = pipes_tests::TestApp::spawn(pipes_tests::Backend::embedded()).await;
    let mut runner = TestRunner::deterministic();
    let text = proptest::prop_oneof![
        ".{0,120}",
        "\\{\"[a-zA-Z]{1,12}\": ?(\"[^\"]{0,20}\"|[0-9]{1,6}|null|true|\\[\\]|\\{\\})\\}",
        "\\{\"token\": \"tok_[A-Za-z0-9]{0,40}\", \"event\": \"[A-Z_]{0,20}\"(, \"code\": \"[^\"]{0,10}\")?\\}",
        "\\{\"redirectUrl\": \"[^\"]{0,60}\"(, \"metadata\": \\{\\})?(, \"expiresIn\": -?[0-9]{1,12})?\\}",
        "\\{\"url\": \"[^\"]{0,60}\"\\}",
    ];
    let content_type = proptest::prop_oneof![
        proptest::strategy::Just("application/json"),
        proptest::strategy::Just("text/plain"),
        proptest::strategy::Just("application/json; charset=utf-8"),
        proptest::strategy::Just(""),
    ];
    let routes = [
        (Method::POST, "/v1/apps/token", true),
        (Method::POST, "/v1/signup/callback", false),
        (Method::POST, "/v1/signup/progress", false),
        (Method::PUT, "/v1/webhook-endpoint", true),
        (Method::POST, "/v1/webhook-endpoint/test", true),
        (Method::POST, "/webhooks/meta", false),
        (Method::POST, "/v1/dashboard/login-links", true),
        (Method::GET, "/v1/events?limit=x&cursor=%FF", true),
    ];
    for _ in 0..40 {
        for (method, uri, keyed) in &routes {
            let body = text.new_tree(&mut runner).unwrap().current();
            let ct = content_type.new_tree(&mut runner).unwrap().current();
            let mut req = Request::builder().method(method.clone()).uri(*uri);
            if *keyed {
                req = req.header(header::AUTHORIZATION, format!("Bearer {}", t.key.expose()));
            }
            if !ct.is_empty() {
                req = req.header(header::CONTENT_TYPE, ct);
            }
            if uri.starts_with("/webhooks") {
                // Signed as Meta would: the body itself is what is arbitrary.
                req = req.header(
                    "x-hub-signature-256",
                    pipes_core::webhooks::sign(
                        pipes_sandbox::SANDBOX_APP_SECRET.as_bytes(),
                        body.as_bytes(),
                    ),
                );
            }
            let res = t.send(req.body(Body::from(body.clone())).unwrap()).await;
            assert!(
                res.status.as_u16() < 500,
                "{method} {uri} {body:?}: {}",
                res.status
            );
            if res.status.is_client_error() {
                assert!(!res.error_code().is_empty(), "{method} {uri} {body:?}");
            }
        }
    }
}

/// What axum cannot decode (a repeated query parameter, invalid percent-encoded UTF-8 in
/// a path) is a 400 in API.md's error body, not a plain-text rejection; the hosted page
/// answers such a slug as it answers an unknown App.
#[tokio::test]
async fn undecodable_paths_and_queries_get_the_error_body() {
    let t = pipes_tests::TestApp::spawn(pipes_tests::Backend::embedded()).await;
    for uri in [
        "/v1/events?type=a&type=b",
        "/v1/numbers?status=a&status=b",
        "/v1/numbers/%FF",
        "/v1/events/%FF",
        "/v1/sessions/%FF",
    ] {
        let res = t
            .send(t.authed(Method::GET, uri).body(Body::empty()).unwrap())
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(res.error_code(), "invalid_request", "{uri}");
    }
    let page = t
        .send(
            Request::get("/apps/%FF?token=tok_x")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

//! Signup end to end on the sandbox Meta: the hosted page, the callback, and every way a
//! completion can fail, on the embedded backend and on AWS (DynamoDB, KMS, SQS on moto).

use std::collections::HashMap;

use axum::body::Body;
use chrono::Duration;
use http::{Request, StatusCode, header};
use pipes_core::crypto::{SecretBinding, SecretPurpose};
use pipes_core::queue::Job;
use pipes_core::{HealthStatus, PhoneNumberId, SessionStatus};
use pipes_sandbox::{Fault, FaultKind};
use pipes_tests::{Backend, LogCapture, TestApp, TestResponse};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

fn query(url: &str) -> HashMap<String, String> {
    let url = url::Url::parse(url).unwrap();
    url.query_pairs().into_owned().collect()
}

async fn page(t: &TestApp, slug: &str, token: &str) -> TestResponse {
    t.send(
        Request::get(format!("/apps/{slug}?token={token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn whole_flow(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (token, session_id) = t.signup_token().await;

    let res = page(&t, t.app.slug.as_str(), &token).await;
    assert_eq!(res.status, StatusCode::OK);
    let html = String::from_utf8(res.body.clone()).unwrap();
    assert!(
        html.contains("<span id=\"app-name\">Acme CRM</span>"),
        "{html}"
    );
    assert!(html.contains("id=\"sandbox-banner\""));
    assert!(html.contains("src=\"/sandbox/sdk.js\""));
    // The page carries a one-time token: never indexed.
    assert!(html.contains("<meta name=\"robots\" content=\"noindex,nofollow\">"));
    let csp = res.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert_eq!(
        html.matches(&format!("nonce=\"{nonce}\"")).count(),
        2,
        "every script carries the nonce"
    );
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-eval"));
    assert!(!html.contains("onclick"), "no inline handlers");
    assert_eq!(res.headers[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");

    let signup = t.sandbox_signup();
    let res = t.finish(&token, &signup).await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&res.body)
    );
    let v = res.json();
    assert_eq!(v["status"], "completed");
    assert_eq!(v["sessionId"], session_id);
    assert_eq!(v["phoneNumberId"], signup.phone_number_id);
    let redirect = v["redirectUrl"].as_str().unwrap();
    assert!(
        redirect.starts_with("https://partner.example/done?"),
        "{redirect}"
    );
    let q = query(redirect);
    assert_eq!(q["x"], "1");
    assert_eq!(q["status"], "success");
    assert_eq!(q["sessionId"], session_id);
    assert_eq!(q["phoneNumberId"], signup.phone_number_id);

    let s = t.get_session(&session_id).await.json();
    assert_eq!(s["status"], "completed");
    assert_eq!(s["phoneNumberId"], signup.phone_number_id);
    assert!(s["completedAt"].is_string());

    let phone = PhoneNumberId::parse(&signup.phone_number_id).unwrap();
    let number = t
        .store
        .number(&t.app.id, &phone)
        .await
        .unwrap()
        .expect("number stored");
    assert_eq!(number.health.status, HealthStatus::Pending);
    assert_eq!(number.waba_id.as_str(), signup.waba_id);
    assert_eq!(
        number.business_id.as_ref().map(|b| b.to_string()),
        Some(signup.business_id.clone())
    );
    assert!(
        number.profile.display_phone_number.is_some(),
        "profile from the WABA listing"
    );
    assert_eq!(number.session_id.as_str(), session_id);
    let sealed = number.sealed_token.as_ref().expect("token kept, sealed");
    let binding = SecretBinding {
        purpose: SecretPurpose::BusinessToken,
        app_id: &t.app.id,
        phone_number_id: &phone,
    };
    let opened = t.envelope.open_string(binding, sealed).await.unwrap();
    assert!(
        opened.expose_secret().starts_with("EAAS"),
        "the business token from the sandbox"
    );
    assert_eq!(
        t.store.number_owner(&phone).await.unwrap(),
        Some(t.app.id.clone())
    );

    let jobs = t.backend.queued_work().await;
    assert_eq!(
        jobs,
        vec![Job::Setup {
            app_id: t.app.id.clone(),
            phone_number_id: phone
        }]
    );
    // The link is used now.
    assert_eq!(
        page(&t, t.app.slug.as_str(), &token).await.status,
        StatusCode::GONE
    );
}

#[tokio::test]
async fn the_whole_flow_on_the_embedded_backend() {
    whole_flow(Backend::embedded()).await;
}

#[tokio::test]
async fn the_whole_flow_on_aws() {
    whole_flow(Backend::aws().await).await;
}

async fn twenty_concurrent(backend: Backend) {
    let t = std::sync::Arc::new(TestApp::spawn(backend).await);
    let (token, _) = t.signup_token().await;
    let signup = t.sandbox_signup();
    let tasks = (0..20).map(|_| {
        let (t, token, signup) = (t.clone(), token.clone(), signup.clone());
        tokio::spawn(async move { t.finish(&token, &signup).await })
    });
    let results = futures_util::future::join_all(tasks).await;
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for r in results {
        let r = r.unwrap();
        if r.status != StatusCode::OK {
            assert!(
                ["signup_in_progress", "token_used"].contains(&r.error_code().as_str()),
                "{}",
                String::from_utf8_lossy(&r.body)
            );
        }
        *by_status.entry(r.status.as_u16()).or_default() += 1;
    }
    assert_eq!(by_status.get(&200), Some(&1), "{by_status:?}");
    let jobs = t.backend.queued_work().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        t.sandbox.calls("GET oauth/access_token"),
        1,
        "only the winner exchanges the code"
    );
}

#[tokio::test]
async fn twenty_concurrent_completions_make_one_number_embedded() {
    twenty_concurrent(Backend::embedded()).await;
}

#[tokio::test]
async fn twenty_concurrent_completions_make_one_number_on_aws() {
    twenty_concurrent(Backend::aws().await).await;
}

#[tokio::test]
async fn unknown_expired_and_used_tokens_are_refused() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let signup = t.sandbox_signup();
    let unknown = pipes_core::SignupToken::generate();
    let res = t.finish(unknown.expose(), &signup).await;
    assert_eq!(
        (res.status, res.error_code().as_str()),
        (StatusCode::NOT_FOUND, "token_not_found")
    );
    let res = t.finish("garbage", &signup).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);

    let v = t
        .issue(json!({"redirectUrl": "https://p.example/", "expiresIn": 300}))
        .await
        .json();
    let short = v["token"].as_str().unwrap().to_owned();
    t.clock.advance(Duration::seconds(301));
    let fresh = t.sandbox_signup();
    let res = t.finish(&short, &fresh).await;
    assert_eq!(
        (res.status, res.error_code().as_str()),
        (StatusCode::GONE, "token_expired")
    );
    assert_eq!(
        page(&t, t.app.slug.as_str(), &short).await.status,
        StatusCode::GONE
    );
    assert_eq!(
        t.sandbox.calls("GET oauth/access_token"),
        0,
        "refused before Meta is called"
    );

    let (token, _) = t.signup_token().await;
    let signup = t.sandbox_signup();
    assert_eq!(t.finish(&token, &signup).await.status, StatusCode::OK);
    let again = t.sandbox_signup();
    let res = t.finish(&token, &again).await;
    assert_eq!(
        (res.status, res.error_code().as_str()),
        (StatusCode::GONE, "token_used")
    );
}

#[tokio::test]
async fn the_page_refuses_bad_links_with_html_errors() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (token, _) = t.signup_token().await;
    let (other, other_key) = t.other_app().await;
    let theirs = t
        .issue_as(&other_key, json!({"redirectUrl": "https://o.example/"}))
        .await
        .json();
    let their_token = theirs["token"].as_str().unwrap();
    for (slug, tok, status) in [
        ("no-such-app", token.as_str(), StatusCode::NOT_FOUND),
        (
            t.app.slug.as_str(),
            "tok_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            StatusCode::NOT_FOUND,
        ),
        (t.app.slug.as_str(), "", StatusCode::NOT_FOUND),
        (t.app.slug.as_str(), their_token, StatusCode::NOT_FOUND),
        (other.slug.as_str(), token.as_str(), StatusCode::NOT_FOUND),
    ] {
        let res = page(&t, slug, tok).await;
        assert_eq!(res.status, status, "{slug} {tok}");
        let html = String::from_utf8(res.body).unwrap();
        assert!(
            html.contains("id=\"error-heading\"") && html.contains("fresh one"),
            "{html}"
        );
        assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");
        assert!(
            !html.contains(tok) || tok.is_empty(),
            "the token is not echoed"
        );
        // Not indexed; its one load (the empty icon) allowed by its CSP, nothing more.
        assert!(html.contains("<meta name=\"robots\" content=\"noindex,nofollow\">"));
        assert!(html.contains("<link rel=\"icon\" href=\"data:,\">"));
        assert_eq!(
            res.headers[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'"
        );
    }
}

#[tokio::test]
async fn the_page_escapes_what_it_interpolates() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let created = pipes_core::usecases::admin::create_app(
        &*t.store,
        pipes_core::Clock::now(&t.clock),
        "evil-name",
        "<script>alert(1)</script> & \"Co\"",
        &[],
    )
    .await
    .unwrap();
    let v = t
        .issue_as(
            &created.key,
            json!({"redirectUrl": "https://p.example/a?b=\"><script>x</script>"}),
        )
        .await;
    assert_eq!(
        v.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&v.body)
    );
    let token = v.json()["token"].as_str().unwrap().to_owned();
    let html = String::from_utf8(page(&t, "evil-name", &token).await.body).unwrap();
    assert!(!html.contains("<script>alert(1)</script>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Co&quot;"));
    assert!(!html.contains("<script>x</script>"));
}

#[tokio::test]
async fn a_reused_code_is_a_422_and_a_fresh_code_then_succeeds() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (first, _) = t.signup_token().await;
    let signup = t.sandbox_signup();
    assert_eq!(t.finish(&first, &signup).await.status, StatusCode::OK);

    let (token, session_id) = t.signup_token().await;
    let res = t.finish(&token, &signup).await;
    assert_eq!(
        (res.status, res.error_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "code_rejected")
    );
    let s = t.get_session(&session_id).await.json();
    assert_eq!(s["status"], "pending", "the claim is released");
    assert_eq!(s["error"]["code"], "code_rejected");

    // A code older than 30 seconds is refused the same way.
    let stale = t.sandbox_signup();
    t.clock.advance(Duration::seconds(31));
    let res = t.finish(&token, &stale).await;
    assert_eq!(
        (res.status, res.error_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "code_rejected")
    );

    // Meta failing the exchange itself is Meta's fault: 502, the link still usable.
    let failed = t.sandbox_signup();
    t.sandbox
        .add_fault(Fault::new("oauth/access_token", FaultKind::ServerError, 1));
    let res = t.finish(&token, &failed).await;
    assert_eq!(
        (res.status, res.error_code().as_str()),
        (StatusCode::BAD_GATEWAY, "token_exchange_failed")
    );

    let fresh = t.sandbox_signup();
    let res = t.finish(&token, &fresh).await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&res.body)
    );
    let s = t.get_session(&session_id).await.json();
    assert_eq!(s["status"], "completed");
    assert!(
        s.get("error").is_none(),
        "a completed session carries no stale error: {s}"
    );
}

#[tokio::test]
async fn a_waba_the_token_does_not_cover_or_a_number_outside_it_is_a_422() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (token, session_id) = t.signup_token().await;
    let mine = t.sandbox_signup();
    let elsewhere = t.sandbox_signup();

    let mut wrong_waba = mine.clone();
    wrong_waba.waba_id = elsewhere.waba_id.clone();
    let res = t.finish(&token, &wrong_waba).await;
    assert_eq!(
        (res.status, res.error_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "meta_validation_failed")
    );
    let s = t.get_session(&session_id).await.json();
    assert_eq!(
        (s["status"].as_str(), s["error"]["code"].as_str()),
        (Some("failed"), Some("meta_validation_failed"))
    );

    let fresh = t.sandbox_signup_for(&mine.phone_number_id);
    let mut outside = fresh.clone();
    outside.phone_number_id = elsewhere.phone_number_id.clone();
    let res = t.finish(&token, &outside).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    let phone = PhoneNumberId::parse(&elsewhere.phone_number_id).unwrap();
    assert_eq!(t.store.number(&t.app.id, &phone).await.unwrap(), None);
    assert_eq!(t.backend.queued_work().await, vec![]);

    // A failed session can still be completed properly.
    let good = t.sandbox_signup_for(&mine.phone_number_id);
    assert_eq!(t.finish(&token, &good).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_number_another_app_holds_is_a_409_recorded_on_the_session() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (token, _) = t.signup_token().await;
    let signup = t.sandbox_signup();
    assert_eq!(t.finish(&token, &signup).await.status, StatusCode::OK);

    let (_, other_key) = t.other_app().await;
    let theirs = t
        .issue_as(&other_key, json!({"redirectUrl": "https://o.example/"}))
        .await
        .json();
    let again = t.sandbox_signup_for(&signup.phone_number_id);
    let res = t.finish(theirs["token"].as_str().unwrap(), &again).await;
    assert_eq!(
        (res.status, res.error_code().as_str()),
        (StatusCode::CONFLICT, "number_linked_to_another_app")
    );
    let id = pipes_core::SessionId::parse(theirs["sessionId"].as_str().unwrap()).unwrap();
    let s = t.store.session(&id).await.unwrap().unwrap();
    assert_eq!(s.status, SessionStatus::Failed);
    assert_eq!(s.error.unwrap().code, "number_linked_to_another_app");
    assert_eq!(
        t.backend.queued_work().await.len(),
        1,
        "only the first signup's job"
    );
}

#[tokio::test]
async fn signing_up_an_existing_number_again_updates_the_record() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (first, _) = t.signup_token().await;
    let signup = t.sandbox_signup();
    assert_eq!(t.finish(&first, &signup).await.status, StatusCode::OK);
    let phone = PhoneNumberId::parse(&signup.phone_number_id).unwrap();
    let before = t.store.number(&t.app.id, &phone).await.unwrap().unwrap();

    let (second, second_session) = t.signup_token().await;
    let again = t.sandbox_signup_for(&signup.phone_number_id);
    assert_eq!(t.finish(&second, &again).await.status, StatusCode::OK);
    let after = t.store.number(&t.app.id, &phone).await.unwrap().unwrap();
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.session_id.as_str(), second_session);
    assert_eq!(after.connected_at, before.connected_at);
    assert_ne!(
        after.sealed_token, before.sealed_token,
        "the new token replaces the old"
    );
    assert_eq!(after.health.status, HealthStatus::Pending);
    assert_eq!(t.backend.queued_work().await.len(), 2);
}

#[tokio::test]
async fn cancel_then_finish_on_one_token() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (token, session_id) = t.signup_token().await;
    let res = t
        .post_json(
            "/v1/signup/callback",
            json!({"token": token, "event": "CANCEL", "step": "PHONE_NUMBER_SETUP"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let v = res.json();
    assert_eq!(v["status"], "pending");
    let q = query(v["redirectUrl"].as_str().unwrap());
    assert_eq!(
        (q["status"].as_str(), q["sessionId"].as_str()),
        ("cancelled", session_id.as_str())
    );

    let res = t
        .post_json(
            "/v1/signup/callback",
            json!({"token": token, "event": "ERROR", "errorCode": 524126, "errorMessage": "Something broke", "metaSessionId": "abc"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        query(res.json()["redirectUrl"].as_str().unwrap())["status"],
        "error"
    );

    let s = t.get_session(&session_id).await.json();
    assert_eq!(s["status"], "pending");
    let abandons = s["abandons"].as_array().unwrap();
    assert_eq!(abandons.len(), 2);
    assert_eq!(abandons[0]["event"], "CANCEL");
    assert_eq!(abandons[0]["step"], "PHONE_NUMBER_SETUP");
    assert_eq!(abandons[1]["event"], "ERROR");
    assert_eq!(abandons[1]["errorCode"], "524126");
    assert_eq!(abandons[1]["metaSessionId"], "abc");
    assert!(abandons[0]["at"].is_string());

    let signup = t.sandbox_signup();
    assert_eq!(t.finish(&token, &signup).await.status, StatusCode::OK);
    let res = t
        .post_json(
            "/v1/signup/callback",
            json!({"token": token, "event": "CANCEL"}),
        )
        .await;
    assert_eq!(
        (res.status, res.error_code().as_str()),
        (StatusCode::GONE, "token_used")
    );
}

#[tokio::test]
async fn bad_callbacks_are_400s_that_change_nothing() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (token, session_id) = t.signup_token().await;
    let signup = t.sandbox_signup();
    let base = json!({"token": token, "event": "FINISH", "code": signup.code, "wabaId": signup.waba_id, "phoneNumberId": signup.phone_number_id});
    let mut cases: Vec<(Value, &str)> = Vec::new();
    for (field, bad) in [
        ("code", Value::Null),
        ("wabaId", json!("abc")),
        ("phoneNumberId", json!("12x")),
        ("event", json!("NOPE")),
        ("businessId", json!("x")),
    ] {
        let mut b = base.clone();
        if bad.is_null() {
            b.as_object_mut().unwrap().remove(field);
        } else {
            b[field] = bad;
        }
        cases.push((b, field));
    }
    let mut long = json!({"token": token, "event": "CANCEL"});
    long["step"] = json!("S".repeat(65));
    cases.push((long, "step"));
    for (body, field) in cases {
        let res = t.post_json("/v1/signup/callback", body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{field}");
        let v = res.json();
        assert!(
            v["error"]["message"].as_str().unwrap().starts_with(field),
            "{field}: {v}"
        );
    }
    let s = t.get_session(&session_id).await.json();
    assert_eq!(
        (
            s["status"].as_str(),
            s["abandons"].as_array().unwrap().len()
        ),
        (Some("pending"), 0)
    );
    assert_eq!(t.sandbox.calls("GET oauth/access_token"), 0);
    // The code is still good: nothing above spent it.
    assert_eq!(t.finish(&token, &signup).await.status, StatusCode::OK);
}

#[tokio::test]
async fn logs_of_a_signup_hold_no_token_code_or_secret() {
    let logs = LogCapture::global();
    let t = TestApp::spawn(Backend::embedded()).await;
    let (token, session_id) = t.signup_token().await;
    let signup = t.sandbox_signup();
    let reused = t.finish(&token, &signup).await;
    assert_eq!(reused.status, StatusCode::OK);
    let (second, _) = t.signup_token().await;
    assert_eq!(
        t.finish(&second, &signup).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let phone = PhoneNumberId::parse(&signup.phone_number_id).unwrap();
    let number = t.store.number(&t.app.id, &phone).await.unwrap().unwrap();
    let binding = SecretBinding {
        purpose: SecretPurpose::BusinessToken,
        app_id: &t.app.id,
        phone_number_id: &phone,
    };
    let business = t
        .envelope
        .open_string(binding, number.sealed_token.as_ref().unwrap())
        .await
        .unwrap();
    let text = logs.text();
    assert!(text.contains(&session_id), "logs were captured");
    for secret in [
        token.as_str(),
        second.as_str(),
        signup.code.as_str(),
        business.expose_secret(),
        pipes_sandbox::SANDBOX_APP_SECRET,
        t.key.expose(),
    ] {
        assert!(!text.contains(secret), "a secret reached the logs");
    }
}

#[tokio::test]
async fn a_completion_past_its_deadline_releases_the_claim_at_once() {
    use pipes_core::usecases::signup::{
        Deadline, FinishInput, FinishKind, SignupError, complete_signup_within,
    };
    let t = TestApp::spawn(Backend::embedded()).await;
    let (token, session_id) = t.signup_token().await;
    let signup = t.sandbox_signup();
    t.sandbox.set_latency_ms(300);
    let deps = t.platform.signup();
    let input = FinishInput {
        token: token.clone(),
        code: signup.code.clone(),
        kind: FinishKind::Finish,
        waba_id: Some(signup.waba_id.clone()),
        phone_number_id: Some(signup.phone_number_id.clone()),
        business_id: None,
    };
    let deadline: Deadline = Box::pin(tokio::time::sleep(std::time::Duration::from_millis(100)));
    let err = complete_signup_within(deps, input, Some(deadline))
        .await
        .unwrap_err();
    assert!(matches!(err, SignupError::DeadlineExceeded), "{err:?}");
    let s = t.get_session(&session_id).await.json();
    assert_eq!(s["status"], "pending", "released, not left completing: {s}");
    assert_eq!(s["error"]["code"], "deadline_exceeded");
    // The owner retries at once (a fresh code), not after the 60 s lease.
    t.sandbox.set_latency_ms(0);
    let again = t.sandbox_signup_for(&signup.phone_number_id);
    assert_eq!(t.finish(&token, &again).await.status, StatusCode::OK);
}

#[test]
fn the_signup_budget_fits_inside_the_invocation() {
    use pipes_http::InvocationDeadline;
    use pipes_http::signup::{SIGNUP_BUDGET, signup_budget};
    use std::time::{Duration as Std, SystemTime};
    let in_secs = |s: u64| Some(InvocationDeadline(SystemTime::now() + Std::from_secs(s)));
    let lambda = signup_budget(in_secs(15));
    assert!(
        lambda <= Std::from_secs(13) && lambda > Std::from_millis(12_900),
        "{lambda:?}"
    );
    assert_eq!(signup_budget(in_secs(120)), SIGNUP_BUDGET);
    assert_eq!(signup_budget(None), SIGNUP_BUDGET);
    assert_eq!(signup_budget(in_secs(1)), Std::ZERO);
}

/// A junk code must learn nothing about which numbers are connected: another App's
/// number and an unknown number get the same answer.
#[tokio::test]
async fn a_junk_code_cannot_probe_other_apps_numbers() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let (token, _) = t.signup_token().await;
    let signup = t.sandbox_signup();
    assert_eq!(t.finish(&token, &signup).await.status, StatusCode::OK);
    let (_, other_key) = t.other_app().await;
    let mut answers = Vec::new();
    for phone in [signup.phone_number_id.as_str(), "1999999999999"] {
        let theirs = t
            .issue_as(&other_key, json!({"redirectUrl": "https://o.example/"}))
            .await
            .json();
        let res = t
            .post_json(
                "/v1/signup/callback",
                json!({"token": theirs["token"], "event": "FINISH", "code": "AQjunk",
                    "wabaId": signup.waba_id, "phoneNumberId": phone}),
            )
            .await;
        answers.push((res.status, res.json()));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn every_finish_meta_documents_is_accepted_and_both_error_reference_names_are_kept() {
    let t = TestApp::spawn(Backend::embedded()).await;
    for event in [
        "FINISH_OBO_MIGRATION",
        "FINISH_GRANT_ONLY_API_ACCESS",
        "FINISH_ONLY_WABA",
    ] {
        let (token, _) = t.signup_token().await;
        let s = t.sandbox_signup();
        let res = t
            .post_json(
                "/v1/signup/callback",
                json!({"token": token, "event": event, "code": s.code, "wabaId": s.waba_id,
                    "phoneNumberId": s.phone_number_id, "businessId": s.business_id}),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{event}: {:?}", res.json());
    }
    let (token, session_id) = t.signup_token().await;
    for reference in ["errorCode", "errorId"] {
        let mut body = json!({"token": token, "event": "ERROR",
            "errorMessage": "Your verified name violates WhatsApp guidelines.",
            "metaSessionId": "f34b51dab5e0498"});
        body[reference] = json!("524126");
        let res = t.post_json("/v1/signup/callback", body).await;
        assert_eq!(res.status, StatusCode::OK, "{reference}");
    }
    let s = t.get_session(&session_id).await.json();
    let abandons = s["abandons"].as_array().unwrap();
    assert_eq!(abandons.len(), 2);
    for a in abandons {
        assert_eq!(
            (&a["event"], &a["errorCode"], &a["metaSessionId"]),
            (&json!("ERROR"), &json!("524126"), &json!("f34b51dab5e0498"))
        );
    }
}

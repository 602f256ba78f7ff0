//! Every scenario of META.md through the real HTTP path (callback, numbers API, worker,
//! sweep) on the sandbox's scripted situations, on both stores: how Meta's flow can
//! finish, registration errors retrying cannot fix, health as Meta reports it, and our
//! own credentials being refused.

use chrono::Duration;
use pipes_core::number::HealthReason;
use pipes_core::usecases::sweep::SweepConfig;
use pipes_core::{HealthStatus, Number, PhoneNumberId};
use pipes_sandbox::{Fault, FaultKind, Scenario, SignupRequest, SignupResult};
use pipes_tests::{Backend, TestApp, TestResponse};
use serde_json::{Value, json};

on_both_stores! {
    a_finish_without_a_number_asks_the_owner_to_add_one_and_the_same_link_works_after => no_number_then_same_link;
    a_code_that_arrives_alone_onboards_the_wabas_only_number => code_only;
    several_numbers_and_no_id_ask_the_owner_to_pick => ambiguous;
    a_whatsapp_business_app_number_is_onboarded_and_never_registered => coexistence;
    a_number_with_a_pin_set_elsewhere_waits_for_the_owner_with_one_register_call => pin_mismatch;
    each_scripted_registration_error_gets_metas_outcome => registration_waits;
    health_follows_every_entity_and_the_profile => health_signals;
    a_rotated_app_secret_marks_no_number_down => rotated_secret;
}

fn signup(t: &TestApp, scenario: Option<Scenario>) -> SignupResult {
    t.sandbox
        .signup(SignupRequest {
            scenario,
            ..SignupRequest::default()
        })
        .unwrap()
}

async fn callback(t: &TestApp, body: Value) -> TestResponse {
    t.post_json("/v1/signup/callback", body).await
}

async fn number(t: &TestApp, phone: &str) -> Number {
    let phone = PhoneNumberId::parse(phone).unwrap();
    t.store.number(&t.app.id, &phone).await.unwrap().unwrap()
}

async fn session(t: &TestApp, id: &str) -> Value {
    t.get_session(id).await.json()
}

async fn no_number_then_same_link(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (token, session_id) = t.signup_token().await;
    let s = signup(&t, Some(Scenario::NoNumber));
    assert_eq!(s.phone_number_id, "");
    // Meta's FINISH_ONLY_WABA sample without the number: only the WABA.
    let res = callback(
        &t,
        json!({"token": token, "event": "FINISH_ONLY_WABA", "code": s.code, "wabaId": s.waba_id}),
    )
    .await;
    assert_eq!(res.status, 422);
    assert_eq!(res.error_code(), "no_phone_number");
    assert!(
        res.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WhatsApp Manager")
    );
    let ses = session(&t, &session_id).await;
    assert_eq!(ses["status"], "pending", "{ses}");
    assert_eq!(ses["error"]["code"], "no_phone_number");

    // The owner adds a number in WhatsApp Manager and opens the same link again.
    let again = t
        .sandbox
        .signup(SignupRequest {
            waba_id: Some(s.waba_id.clone()),
            ..SignupRequest::default()
        })
        .unwrap();
    let res = callback(
        &t,
        json!({"token": token, "event": "FINISH_ONLY_WABA", "code": again.code, "wabaId": s.waba_id}),
    )
    .await;
    assert_eq!(res.status, 200, "{:?}", res.json());
    assert_eq!(res.json()["phoneNumberId"], again.phone_number_id);
    assert_eq!(session(&t, &session_id).await["status"], "completed");
}

async fn code_only(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (token, _) = t.signup_token().await;
    let s = signup(&t, None);
    let before = t.sandbox.all_calls();
    let res = callback(
        &t,
        json!({"token": token, "event": "FINISH", "code": s.code}),
    )
    .await;
    assert_eq!(res.status, 200, "{:?}", res.json());
    assert_eq!(res.json()["phoneNumberId"], s.phone_number_id);
    let n = number(&t, &s.phone_number_id).await;
    assert_eq!(
        n.waba_id.as_str(),
        s.waba_id,
        "the WABA from debug_token's scopes"
    );
    let after = t.sandbox.all_calls();
    let made = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    assert_eq!(made("GET debug_token"), 1);
    assert_eq!(made("GET phone_numbers"), 1);
}

async fn ambiguous(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (token, session_id) = t.signup_token().await;
    let s = signup(&t, Some(Scenario::SeveralNumbers));
    let res = callback(
        &t,
        json!({"token": token, "event": "FINISH", "code": s.code, "wabaId": s.waba_id}),
    )
    .await;
    assert_eq!(res.status, 422);
    assert_eq!(res.error_code(), "phone_number_ambiguous");
    assert_eq!(session(&t, &session_id).await["status"], "pending");
    // With the number Meta's message names, the same link completes.
    let again = t.sandbox_signup_for(&s.phone_number_id);
    let res = t.finish(&token, &again).await;
    assert_eq!(res.status, 200, "{:?}", res.json());
}

async fn coexistence(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (token, _) = t.signup_token().await;
    let s = signup(&t, Some(Scenario::BusinessApp));
    // Meta's coexistence sample carries only the WABA.
    let res = callback(
        &t,
        json!({"token": token, "event": "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING", "code": s.code, "wabaId": s.waba_id}),
    )
    .await;
    assert_eq!(res.status, 200, "{:?}", res.json());
    t.run_jobs().await;
    let n = number(&t, &s.phone_number_id).await;
    assert!(n.setup.coexistence && n.setup.registered);
    assert_eq!(n.health.status, HealthStatus::Healthy, "{:?}", n.health);
    assert_eq!(t.sandbox.calls("POST register"), 0);
    assert_eq!(t.sandbox.calls("POST deregister"), 0);
}

async fn pin_mismatch(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (token, _) = t.signup_token().await;
    let s = signup(&t, Some(Scenario::TwoStepPinSet));
    assert_eq!(t.finish(&token, &s).await.status, 200);
    t.run_jobs().await;
    let n = number(&t, &s.phone_number_id).await;
    assert_eq!(
        (n.health.status, n.health.reason),
        (
            HealthStatus::Degraded,
            Some(HealthReason::TwoStepPinMismatch)
        )
    );
    let message = n.health.message.clone().unwrap();
    assert!(
        message.contains("turn off two-step verification"),
        "{message}"
    );
    assert!(message.contains(&format!("/v1/numbers/{}/setup", s.phone_number_id)));
    assert_eq!(t.sandbox.calls("POST register"), 1);

    // Days of sweeps and redeliveries make no further register call.
    for _ in 0..3 {
        t.clock.advance(Duration::hours(8));
        t.sweep(SweepConfig::default(), None).await;
        t.run_jobs().await;
    }
    assert_eq!(t.sandbox.calls("POST register"), 1);
    let n = number(&t, &s.phone_number_id).await;
    assert_eq!(n.health.reason, Some(HealthReason::TwoStepPinMismatch));

    // Asking before the owner acted: one more refusal, and the wait again.
    let uri = format!("/v1/numbers/{}/setup", s.phone_number_id);
    let req = t
        .authed(http::Method::POST, &uri)
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(t.send(req).await.status, 202);
    t.run_jobs().await;
    assert_eq!(t.sandbox.calls("POST register"), 2);
    assert_eq!(
        number(&t, &s.phone_number_id).await.health.status,
        HealthStatus::Degraded
    );

    // The owner turns two-step verification off; the App asks again.
    let res = t
        .post_json(
            &format!("/sandbox/numbers/{}", s.phone_number_id),
            json!({"twoStepVerification": false}),
        )
        .await;
    assert_eq!(res.status, 200);
    let req = t
        .authed(http::Method::POST, &uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let res = t.send(req).await;
    assert_eq!(res.status, 202);
    assert_eq!(res.json()["health"]["status"], "pending");
    t.run_jobs().await;
    let n = number(&t, &s.phone_number_id).await;
    assert_eq!(n.health.status, HealthStatus::Healthy, "{:?}", n.health);
    assert_eq!(t.sandbox.calls("POST register"), 3);
    // Once set up, there is nothing to retry.
    let req = t
        .authed(http::Method::POST, &uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let res = t.send(req).await;
    assert_eq!(
        (res.status.as_u16(), res.error_code()),
        (409, "setup_complete".into())
    );
}

async fn registration_waits(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    // Unverified number: the owner must act (133006).
    let (token, _) = t.signup_token().await;
    let s = signup(&t, Some(Scenario::Unverified));
    assert_eq!(t.finish(&token, &s).await.status, 200);
    t.run_jobs().await;
    let n = number(&t, &s.phone_number_id).await;
    assert_eq!(n.health.reason, Some(HealthReason::NumberUnverified));
    assert!(n.setup.owner_action.is_some());

    // A deregistration left incomplete (133000): deregister, then register.
    let (token, _) = t.signup_token().await;
    let s = signup(&t, Some(Scenario::DeregistrationIncomplete));
    let before = (
        t.sandbox.calls("POST register"),
        t.sandbox.calls("POST deregister"),
    );
    assert_eq!(t.finish(&token, &s).await.status, 200);
    t.run_jobs().await;
    assert_eq!(
        number(&t, &s.phone_number_id).await.health.status,
        HealthStatus::Healthy
    );
    assert_eq!(t.sandbox.calls("POST register") - before.0, 2);
    assert_eq!(t.sandbox.calls("POST deregister") - before.1, 1);

    // Wait-and-retry codes: the next attempt no earlier than Meta says.
    for (code, wait) in [
        (133_016, Duration::hours(72)),
        (133_015, Duration::minutes(5)),
        (133_009, Duration::minutes(5)),
        (133_008, Duration::hours(12)),
    ] {
        let (token, _) = t.signup_token().await;
        let s = signup(&t, None);
        assert_eq!(t.finish(&token, &s).await.status, 200);
        let mut fault = Fault::new(
            format!("{}/register", s.phone_number_id),
            FaultKind::Error,
            1,
        );
        fault.code = Some(code);
        t.sandbox.add_fault(fault);
        let registers = t.sandbox.calls("POST register");
        t.run_jobs().await;
        let n = number(&t, &s.phone_number_id).await;
        assert_eq!(
            n.health.reason,
            Some(HealthReason::RegistrationDeferred),
            "{code}"
        );
        assert!(
            n.health
                .message
                .as_deref()
                .unwrap()
                .contains(&code.to_string())
        );
        assert_eq!(
            n.setup.retry_after,
            Some(pipes_core::Clock::now(&t.clock) + wait),
            "{code}"
        );
        // Swept, redelivered or asked for again before then: no call.
        t.sweep(SweepConfig::default(), None).await;
        t.run_jobs().await;
        let uri = format!("/v1/numbers/{}/setup", s.phone_number_id);
        let req = t
            .authed(http::Method::POST, &uri)
            .body(axum::body::Body::empty())
            .unwrap();
        let res = t.send(req).await;
        assert_eq!(
            (res.status.as_u16(), res.error_code()),
            (409, "setup_waiting".into()),
            "{code}"
        );
        t.run_jobs().await;
        assert_eq!(t.sandbox.calls("POST register"), registers + 1, "{code}");
    }
}

async fn health_signals(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let check = |phone: String| {
        let t = &t;
        async move {
            let uri = format!("/v1/numbers/{phone}/health-check");
            let req = t
                .authed(http::Method::POST, &uri)
                .body(axum::body::Body::empty())
                .unwrap();
            let res = t.send(req).await;
            assert_eq!(res.status, 200, "{:?}", res.json());
            let h = res.json()["health"].clone();
            (
                h["status"].as_str().unwrap().to_owned(),
                h["reason"].as_str().map(str::to_owned),
                h["message"].as_str().unwrap_or("").to_owned(),
            )
        }
    };
    let connect = |scenario: Option<Scenario>| {
        let t = &t;
        async move {
            let (token, _) = t.signup_token().await;
            let s = signup(t, scenario);
            assert_eq!(t.finish(&token, &s).await.status, 200);
            t.run_jobs().await;
            s
        }
    };
    // SIP calling blocked: Meta's aggregate says BLOCKED, the number can send.
    let sip = connect(Some(Scenario::SipBlocked)).await;
    assert_eq!(check(sip.phone_number_id.clone()).await.0, "healthy");

    let s = connect(None).await;
    let phone = s.phone_number_id.clone();
    let number_uri = format!("/sandbox/numbers/{phone}");
    let set_number = |body: Value| t.post_json(&number_uri, body);
    set_number(json!({"qualityRating": "RED"})).await;
    assert_eq!(check(phone.clone()).await.1.as_deref(), Some("quality_low"));
    set_number(json!({"qualityRating": "GREEN", "nameStatus": "DECLINED"})).await;
    assert_eq!(
        check(phone.clone()).await.1.as_deref(),
        Some("name_declined")
    );
    set_number(json!({"nameStatus": "APPROVED"})).await;
    assert_eq!(check(phone.clone()).await.0, "healthy");

    let waba = format!("/sandbox/wabas/{}", s.waba_id);
    t.post_json(&waba, json!({"canSendMessage": "BLOCKED"}))
        .await;
    let (status, reason, message) = check(phone.clone()).await;
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("down", Some("meta_blocked"))
    );
    assert!(
        message.contains("WABA: 131031"),
        "names the entity and Meta's code: {message}"
    );
    t.post_json(
        &waba,
        json!({"canSendMessage": "AVAILABLE", "accountReviewStatus": "REJECTED"}),
    )
    .await;
    let (status, reason, _) = check(phone.clone()).await;
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("down", Some("account_rejected"))
    );
    t.post_json(&waba, json!({"accountReviewStatus": "APPROVED"}))
        .await;
    assert_eq!(check(phone).await.0, "healthy");
}

async fn rotated_secret(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let mut phones = Vec::new();
    for _ in 0..3 {
        let (token, _) = t.signup_token().await;
        let s = signup(&t, None);
        assert_eq!(t.finish(&token, &s).await.status, 200);
        phones.push(s.phone_number_id);
    }
    t.run_jobs().await;
    assert_eq!(
        t.post_json("/sandbox/app-secret/rotate", json!({}))
            .await
            .status,
        200
    );

    // A signup now: our fault, 503, the session stays usable.
    let (token, session_id) = t.signup_token().await;
    let s = signup(&t, None);
    let res = t.finish(&token, &s).await;
    assert_eq!(
        (res.status.as_u16(), res.error_code()),
        (503, "meta_app_rejected".into())
    );
    assert_eq!(session(&t, &session_id).await["status"], "pending");

    // Every number due: the sweep stops at the first refusal and marks nothing down.
    t.clock.advance(Duration::hours(2));
    let before = t.sandbox.calls("GET debug_token");
    let cfg = SweepConfig {
        concurrency: 1,
        ..SweepConfig::default()
    };
    let report = t.sweep(cfg, None).await;
    assert!(report.app_credentials_rejected, "{report:?}");
    assert_eq!((report.transitions, report.became_down), (0, 0));
    assert_eq!(
        t.sandbox.calls("GET debug_token") - before,
        1,
        "the breaker stops the run"
    );
    for phone in &phones {
        let n = number(&t, phone).await;
        assert_eq!(n.health.status, HealthStatus::Healthy, "{:?}", n.health);
    }

    // Fixed: the same link completes, the next sweep checks everything.
    t.post_json("/sandbox/app-secret/restore", json!({})).await;
    let again = t.sandbox_signup();
    assert_eq!(t.finish(&token, &again).await.status, 200);
    t.clock.advance(Duration::minutes(10));
    let report = t.sweep(SweepConfig::default(), None).await;
    assert!(!report.app_credentials_rejected);
    assert!(report.checked >= 3, "{report:?}");
}

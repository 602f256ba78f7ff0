//! Meta's webhooks through the real HTTP path, on both stores: the handshake, the
//! signature, every documented payload of `tests/fixtures/meta/webhooks/` (signed as
//! Meta signs, with the sample's ids replaced by a test number's), duplicates and
//! out-of-order deliveries, interrupted signups, and the sandbox sending them itself.

use axum::body::Body;
use chrono::Duration;
use http::{Method, Request, StatusCode};
use pipes_core::events::EventType;
use pipes_core::ports::ChangeOutcome;
use pipes_core::usecases::inbound::INTERRUPT_GRACE;
use pipes_core::{Clock, HealthReason, HealthStatus, Number, PhoneNumberId};
use pipes_sandbox::SignupResult;
use pipes_tests::{Backend, TestApp, VERIFY_TOKEN};
use serde_json::{Value, json};

on_both_stores! {
    the_verification_handshake_answers_only_our_token => handshake;
    a_missing_or_wrong_signature_is_refused_and_nothing_is_stored => bad_signatures;
    every_documented_account_update_does_what_meta_means => documented_account_updates;
    quality_review_and_message_changes_do_what_meta_means => other_documented_fields;
    a_redelivered_or_older_change_is_processed_once_and_never_undoes_newer_state => duplicates_and_order;
    a_signup_whose_callback_never_came_is_interrupted_and_the_same_link_finishes_it => interrupted_signup;
    changes_naming_nothing_of_ours_are_kept_for_the_operator => unmatched;
}

/// A fixture's payload with its sample ids replaced by `n`'s.
fn fixture(name: &str, n: &Number) -> Value {
    let path = format!(
        "{}/fixtures/meta/webhooks/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let display: String = n
        .profile
        .display_phone_number
        .clone()
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let mut payload = v["payload"].to_string();
    for sample in [
        "102290129340398",
        "980198427658004",
        "495709166956424",
        "862475293675413",
    ] {
        payload = payload.replace(sample, n.waba_id.as_str());
    }
    payload = payload
        .replace("106540352242922", n.phone_number_id.as_str())
        .replace("15550783881", &display);
    let mut payload: Value = serde_json::from_str(&payload).unwrap();
    // Newer than the number's last status change (older ones are ignored: see below).
    for entry in payload["entry"].as_array_mut().unwrap() {
        if entry.get("time").is_some_and(Value::is_number) {
            entry["time"] = json!(n.health.since.timestamp() + 1);
        }
    }
    payload
}

async fn connect(t: &TestApp) -> Number {
    let (token, _) = t.signup_token().await;
    let s = t.sandbox_signup();
    assert_eq!(t.finish(&token, &s).await.status, StatusCode::OK);
    t.run_jobs().await;
    number(t, &s).await
}

async fn number(t: &TestApp, s: &SignupResult) -> Number {
    let phone = PhoneNumberId::parse(&s.phone_number_id).unwrap();
    t.store.number(&t.app.id, &phone).await.unwrap().unwrap()
}

async fn reread(t: &TestApp, n: &Number) -> Number {
    t.store
        .number(&n.app_id, &n.phone_number_id)
        .await
        .unwrap()
        .unwrap()
}

async fn deliver(t: &TestApp, payload: &Value) {
    let res = t.meta_webhook(payload).await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&res.body)
    );
    t.run_jobs().await;
}

async fn events_of(t: &TestApp, kind: EventType) -> Vec<pipes_core::events::Event> {
    t.store
        .list_events(&t.app.id, Some(kind), 100, None, t.clock.now())
        .await
        .unwrap()
        .events
}

async fn handshake(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let get = |q: String| {
        Request::builder()
            .method(Method::GET)
            .uri(format!("/webhooks/meta?{q}"))
            .body(Body::empty())
            .unwrap()
    };
    let ok = t
        .send(get(format!(
            "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={VERIFY_TOKEN}"
        )))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body, b"1158201444");
    for bad in [
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=vibecoding".to_owned(),
        format!("hub.mode=unsubscribe&hub.challenge=1&hub.verify_token={VERIFY_TOKEN}"),
        "hub.mode=subscribe&hub.challenge=1".to_owned(),
        format!("hub.mode=subscribe&hub.challenge=%3Cscript%3E&hub.verify_token={VERIFY_TOKEN}"),
    ] {
        let res = t.send(get(bad)).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        assert_eq!(res.error_code(), "forbidden");
    }
}

async fn bad_signatures(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let n = connect(&t).await;
    let payload = fixture("account-deleted", &n).to_string();
    let other = pipes_core::webhooks::sign(b"not-our-secret", payload.as_bytes());
    let of_other_body = pipes_core::webhooks::sign(
        pipes_sandbox::SANDBOX_APP_SECRET.as_bytes(),
        b"{\"object\":\"x\"}",
    );
    for sig in [
        Some(""),
        Some("sha256="),
        Some(other.as_str()),
        Some(of_other_body.as_str()),
    ] {
        let req = Request::post("/webhooks/meta")
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sig.unwrap())
            .body(Body::from(payload.clone()))
            .unwrap();
        let res = t.send(req).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        assert_eq!(res.error_code(), "invalid_signature");
    }
    let unsigned = Request::post("/webhooks/meta")
        .header("content-type", "application/json")
        .body(Body::from(payload.clone()))
        .unwrap();
    assert_eq!(t.send(unsigned).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.run_jobs().await, 0, "nothing was queued");
    assert_eq!(reread(&t, &n).await.health.status, HealthStatus::Healthy);
    // Larger than Meta sends: refused before anything is read.
    let huge = vec![b' '; pipes_core::webhooks::MAX_DELIVERY_BYTES + 1];
    let res = t.meta_webhook_raw(&huge, None).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
}

async fn documented_account_updates(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    use HealthStatus::*;
    let cases: &[(&str, HealthStatus, Option<HealthReason>)] = &[
        ("partner-removed", Down, Some(HealthReason::AccessRemoved)),
        (
            "partner-removed-business-app",
            Down,
            Some(HealthReason::AccessRemoved),
        ),
        (
            "partner-removed-coexistence",
            Down,
            Some(HealthReason::AccessRemoved),
        ),
        ("account-deleted", Down, Some(HealthReason::AccessRemoved)),
        (
            "account-offboarded",
            Down,
            Some(HealthReason::AccessRemoved),
        ),
        (
            "account-offboarded-coexistence",
            Down,
            Some(HealthReason::AccessRemoved),
        ),
        (
            "account-violation",
            Degraded,
            Some(HealthReason::AccountRestricted),
        ),
        (
            "account-restriction",
            Degraded,
            Some(HealthReason::AccountRestricted),
        ),
        // A reinstatement, a reconnection: looked at again, still healthy.
        ("disabled-update-reinstate", Healthy, None),
        ("account-reconnected", Healthy, None),
        ("account-reconnected-coexistence", Healthy, None),
        // Of no consequence to a connected number.
        ("partner-added-multi-partner", Healthy, None),
        ("partner-added-embedded-signup", Healthy, None),
        ("partner-app-installed", Healthy, None),
        ("partner-app-uninstalled", Healthy, None),
        ("partner-app-uninstalled-no-waba", Healthy, None),
    ];
    for (name, status, reason) in cases {
        let n = connect(&t).await;
        t.clock.advance(Duration::seconds(2));
        let checks_before = t.sandbox.calls("GET health_status");
        deliver(&t, &fixture(name, &n)).await;
        let after = reread(&t, &n).await;
        assert_eq!(after.health.status, *status, "{name}: {:?}", after.health);
        if let Some(r) = reason {
            assert_eq!(after.health.reason, Some(*r), "{name}");
            let history = t
                .store
                .history(&n.app_id, &n.phone_number_id, 10)
                .await
                .unwrap();
            assert_eq!(
                history[0].to, *status,
                "{name}: the change is in the history"
            );
        }
        if name.contains("reconnected") || name.contains("reinstate") {
            assert!(
                t.sandbox.calls("GET health_status") > checks_before,
                "{name}: an immediate check"
            );
        }
    }
    let down = events_of(&t, EventType::NumberHealthChanged).await;
    assert!(
        down.iter()
            .filter(|e| e.data["to"] == "down" && e.data["reason"] == "access_removed")
            .count()
            >= 6,
        "every removal told the App"
    );
    // The message carries Meta's details.
    let n = connect(&t).await;
    deliver(&t, &fixture("partner-removed-business-app", &n)).await;
    let msg = reread(&t, &n).await.health.message.unwrap();
    assert!(msg.contains("PRIMARY_INACTIVITY"), "{msg}");
    let n = connect(&t).await;
    deliver(&t, &fixture("account-restriction", &n)).await;
    let msg = reread(&t, &n).await.health.message.unwrap();
    assert!(
        msg.contains("RESTRICTED_BIZ_INITIATED_MESSAGING")
            && msg.contains("RESTRICTED_ADD_PHONE_NUMBER_ACTION"),
        "{msg}"
    );
    // A disable (not in Meta's samples, same shape): down, meta_blocked.
    let n = connect(&t).await;
    let mut disabled = fixture("disabled-update-reinstate", &n);
    disabled["entry"][0]["changes"][0]["value"]["ban_info"]["waba_ban_state"] = json!("DISABLE");
    deliver(&t, &disabled).await;
    let after = reread(&t, &n).await;
    assert_eq!(
        (after.health.status, after.health.reason),
        (Down, Some(HealthReason::MetaBlocked))
    );
    // Our own app uninstalled from the WABA: access is gone.
    let n = connect(&t).await;
    let mut ours = fixture("partner-app-uninstalled", &n);
    ours["entry"][0]["changes"][0]["value"]["waba_info"]["partner_app_id"] =
        json!(pipes_sandbox::SANDBOX_APP_ID);
    ours["entry"][0]["changes"][0]["value"]["waba_info"]["waba_id"] = json!(n.waba_id);
    deliver(&t, &ours).await;
    assert_eq!(reread(&t, &n).await.health.status, Down);
}

async fn other_documented_fields(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    // Quality: flagged → degraded; an upgrade → checked again.
    let n = connect(&t).await;
    let mut flagged = fixture("phone-number-quality-update", &n);
    flagged["entry"][0]["changes"][0]["value"]["event"] = json!("FLAGGED");
    deliver(&t, &flagged).await;
    let after = reread(&t, &n).await;
    assert_eq!(
        (after.health.status, after.health.reason),
        (HealthStatus::Degraded, Some(HealthReason::QualityLow))
    );
    let checks = t.sandbox.calls("GET health_status");
    deliver(&t, &fixture("phone-number-quality-update", &n)).await;
    assert!(t.sandbox.calls("GET health_status") > checks);
    assert_eq!(reread(&t, &n).await.health.status, HealthStatus::Healthy);
    // Review: rejected → down; approved → checked.
    let n = connect(&t).await;
    let mut rejected = fixture("account-review-update", &n);
    rejected["entry"][0]["changes"][0]["value"]["decision"] = json!("REJECTED");
    deliver(&t, &rejected).await;
    assert_eq!(
        reread(&t, &n).await.health.reason,
        Some(HealthReason::AccountRejected)
    );
    // Messages, statuses and name updates: forwarded to the App with Meta's value
    // untouched.
    let n = connect(&t).await;
    for name in [
        "messages-text",
        "messages-status",
        "phone-number-name-update",
    ] {
        let payload = fixture(name, &n);
        deliver(&t, &payload).await;
        let value = &payload["entry"][0]["changes"][0]["value"];
        let forwarded = events_of(&t, EventType::WhatsappWebhook).await;
        let e = forwarded
            .iter()
            .find(|e| &e.data["value"] == value)
            .unwrap_or_else(|| panic!("{name} was not forwarded: {forwarded:?}"));
        assert_eq!(e.data["field"], payload["entry"][0]["changes"][0]["field"]);
        assert_eq!(e.data["wabaId"], n.waba_id.as_str());
        if name.starts_with("messages") {
            assert_eq!(e.data["phoneNumberId"], n.phone_number_id.as_str());
        }
    }
    assert_eq!(reread(&t, &n).await.health.status, HealthStatus::Healthy);
}

async fn duplicates_and_order(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let n = connect(&t).await;
    let message = fixture("messages-text", &n);
    deliver(&t, &message).await;
    deliver(&t, &message).await;
    let forwarded = events_of(&t, EventType::WhatsappWebhook).await;
    assert_eq!(
        forwarded.len(),
        1,
        "Meta delivered it twice; the App hears once"
    );
    // A removal Meta sent before the number's last change arrives late: ignored.
    let mut late = fixture("partner-removed", &n);
    late["entry"][0]["time"] = json!(n.health.since.timestamp() - 60);
    deliver(&t, &late).await;
    assert_eq!(reread(&t, &n).await.health.status, HealthStatus::Healthy);
    // In order, it takes effect; a later reconnection checks again.
    let removed = fixture("partner-removed", &n);
    deliver(&t, &removed).await;
    let down = reread(&t, &n).await;
    assert_eq!(down.health.status, HealthStatus::Down);
    deliver(&t, &removed).await;
    assert_eq!(
        reread(&t, &n).await.version,
        down.version,
        "a redelivered removal writes nothing"
    );
}

async fn interrupted_signup(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    t.register_endpoint("http://127.0.0.1:9/hooks").await;
    let (token, session_id) = t.signup_token().await;
    let s = t.sandbox_signup();
    // The page saw Meta's FINISH and reported it; the window closed before the code
    // was posted.
    assert_eq!(
        t.report_finish(&token, &s.waba_id).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        t.report_finish(&token, "not-a-waba").await.status,
        StatusCode::BAD_REQUEST
    );
    let added = json!({"object": "whatsapp_business_account", "entry": [{
        "id": "35602282435505", "time": chrono::Utc::now().timestamp(),
        "changes": [{"field": "account_update", "value": {"event": "PARTNER_ADDED",
            "waba_info": {"waba_id": s.waba_id, "owner_business_id": s.business_id}}}]}]});
    assert_eq!(t.meta_webhook(&added).await.status, StatusCode::OK);
    if t.backend.embedded.is_some() {
        // Not before the grace period: a slow callback would still complete first.
        t.run_jobs().await;
        assert_eq!(t.get_session(&session_id).await.json()["status"], "pending");
        t.clock.advance(INTERRUPT_GRACE + Duration::seconds(1));
        t.run_jobs().await;
    } else {
        // SQS holds the message for the grace period (DelaySeconds): run the job as
        // the worker would receive it then.
        let change =
            pipes_core::webhooks::parse_delivery(added.to_string().as_bytes(), t.clock.now())
                .unwrap()
                .remove(0);
        pipes_core::usecases::inbound::process_change(t.worker_deps(), &change.id)
            .await
            .unwrap();
    }
    let v = t.get_session(&session_id).await.json();
    assert_eq!(v["status"], "interrupted", "{v}");
    assert_eq!(v["wabaId"], s.waba_id.as_str());
    assert!(v["message"].as_str().unwrap().contains("same signup link"));
    let interrupted = events_of(&t, EventType::SignupInterrupted).await;
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0].data["sessionId"], session_id.as_str());
    // The hosted page tells the owner to connect once more.
    let page = t
        .send(
            Request::get(format!("/apps/{}?token={token}", t.app.slug.as_str()))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("id=\"interrupted\""), "{html}");
    // Another App naming the same WABA makes it ambiguous: no App is told.
    let (_, other_key) = t.other_app().await;
    let issued = t
        .issue_as(
            &other_key,
            json!({"redirectUrl": "https://partner.example/done"}),
        )
        .await
        .json();
    let (token2, s2) = t.signup_token().await;
    let w2 = t.sandbox_signup();
    assert_eq!(
        t.report_finish(&token2, &w2.waba_id).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        t.report_finish(issued["token"].as_str().unwrap(), &w2.waba_id)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let added2 = json!({"object": "whatsapp_business_account", "entry": [{
        "id": "35602282435505", "time": t.clock.now().timestamp(),
        "changes": [{"field": "account_update", "value": {"event": "PARTNER_ADDED",
            "waba_info": {"waba_id": w2.waba_id, "owner_business_id": w2.business_id}}}]}]});
    assert_eq!(t.meta_webhook(&added2).await.status, StatusCode::OK);
    let change2 =
        pipes_core::webhooks::parse_delivery(added2.to_string().as_bytes(), t.clock.now())
            .unwrap()
            .remove(0);
    pipes_core::usecases::inbound::process_change(t.worker_deps(), &change2.id)
        .await
        .unwrap();
    assert_eq!(t.get_session(&s2).await.json()["status"], "pending");
    assert_eq!(events_of(&t, EventType::SignupInterrupted).await.len(), 1);
    // A report older than the window does not count either.
    let (token3, s3) = t.signup_token().await;
    let w3 = t.sandbox_signup();
    assert_eq!(
        t.report_finish(&token3, &w3.waba_id).await.status,
        StatusCode::ACCEPTED
    );
    t.clock
        .advance(pipes_core::usecases::inbound::FINISH_REPORT_WINDOW + Duration::minutes(1));
    let added3 = json!({"object": "whatsapp_business_account", "entry": [{
        "id": "35602282435505", "time": t.clock.now().timestamp(),
        "changes": [{"field": "account_update", "value": {"event": "PARTNER_ADDED",
            "waba_info": {"waba_id": w3.waba_id, "owner_business_id": w3.business_id}}}]}]});
    assert_eq!(t.meta_webhook(&added3).await.status, StatusCode::OK);
    let change3 =
        pipes_core::webhooks::parse_delivery(added3.to_string().as_bytes(), t.clock.now())
            .unwrap()
            .remove(0);
    pipes_core::usecases::inbound::process_change(t.worker_deps(), &change3.id)
        .await
        .unwrap();
    assert_eq!(t.get_session(&s3).await.json()["status"], "pending");
    // ... and the same link finishes it.
    let again = t.sandbox_signup_for(&s.phone_number_id);
    assert_eq!(t.finish(&token, &again).await.status, StatusCode::OK);
    assert_eq!(
        t.get_session(&session_id).await.json()["status"],
        "completed"
    );
}

async fn unmatched(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let payload = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "1", "time": 1, "changes": [{"field": "account_update", "value": {"event": "ACCOUNT_DELETED"}}]},
        {"id": "2", "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1", "phone_number_id": "777"}, "messages": []}}]},
        {"id": "3", "time": 1, "changes": [{"field": "account_update", "value": {"event": "PARTNER_ADDED",
            "waba_info": {"waba_id": "31337", "owner_business_id": "1"}}}]},
        {"id": "4", "time": 1, "changes": [{"field": "account_update", "value": {"event": "BRAND_NEW_EVENT"}}]}
    ]});
    assert_eq!(t.meta_webhook(&payload).await.status, StatusCode::OK);
    t.clock.advance(INTERRUPT_GRACE + Duration::seconds(1));
    t.run_jobs().await;
    if t.backend.embedded.is_none() {
        let change =
            pipes_core::webhooks::parse_delivery(payload.to_string().as_bytes(), t.clock.now())
                .unwrap()
                .remove(2);
        pipes_core::usecases::inbound::process_change(t.worker_deps(), &change.id)
            .await
            .unwrap();
    }
    let kept = t.store.unmatched_changes(10).await.unwrap();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(
        kept.iter()
            .all(|c| c.outcome == Some(ChangeOutcome::Unmatched))
    );
    assert!(events_of(&t, EventType::WhatsappWebhook).await.is_empty());
}

/// `POST /sandbox/webhooks` signs and sends to the running server, as under `pipes dev`.
#[tokio::test]
async fn the_sandbox_sends_signed_webhooks_to_the_running_server() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let n = connect(&t).await;
    let res = t
        .post_json(
            "/sandbox/webhooks",
            json!({"field": "account_update", "entryId": n.waba_id, "value": {"event": "ACCOUNT_DELETED"}}),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&res.body)
    );
    assert_eq!(res.json()["status"], 200);
    t.run_jobs().await;
    assert_eq!(reread(&t, &n).await.health.status, HealthStatus::Down);
    // Meta signing with a secret the platform does not have (rotated in the App
    // Dashboard only): refused.
    t.sandbox.rotate_app_secret(true);
    let res = t
        .post_json(
            "/sandbox/webhooks",
            json!({"payload": fixture("messages-text", &n)}),
        )
        .await;
    assert_eq!(res.json()["status"], 401);
    assert_eq!(
        t.post_json("/sandbox/webhooks", json!({"field": "x"}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

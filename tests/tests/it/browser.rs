//! The hosted page in headless Chromium (through chromedriver), driven through the
//! sandbox's stand-in for Meta's dialog: finish, and cancel then try again. Needs
//! Debian's `chromium` and `chromium-driver`; scripts/test installs them and requires
//! this test to run (PIPES_BROWSER=required); elsewhere it says plainly it was skipped.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use pipes_tests::{Backend, TestApp};
use serde_json::json;

struct Driver {
    child: Child,
    _profile: tempfile::TempDir,
    client: Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        let out = Command::new("sh")
            .args(["-c", &format!("command -v {n}")])
            .output()
            .ok()?;
        let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (!path.is_empty()).then_some(path)
    })
}

/// Starts chromedriver and a headless Chromium session, or says why it cannot.
async fn driver() -> Option<Driver> {
    let required = std::env::var("PIPES_BROWSER").is_ok_and(|v| v == "required");
    let (Some(driver), Some(chromium)) = (
        find(&["chromedriver"]),
        find(&["chromium", "chromium-browser"]),
    ) else {
        assert!(
            !required,
            "PIPES_BROWSER=required but chromium/chromedriver are not installed"
        );
        eprintln!(
            "SKIPPED browser test: chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        );
        return None;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(driver)
        .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().unwrap().clone();
    let mut last = None;
    for _ in 0..100 {
        // chromedriver speaks plain HTTP on loopback: no TLS connector needed.
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps.clone());
        match builder.connect(&format!("http://127.0.0.1:{port}")).await {
            Ok(client) => {
                return Some(Driver {
                    child,
                    _profile: profile,
                    client,
                });
            }
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start: {last:?}");
}

/// A partner's landing page, where the owner ends up.
async fn partner_site() -> String {
    let app = Router::new().route(
        "/done",
        get(|| async { axum::response::Html("<h1 id=\"landed\">back at the partner</h1>") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://127.0.0.1:{}/done", addr.port())
}

async fn wait_for_url(c: &Client, prefix: &str) -> String {
    for _ in 0..200 {
        let url = c.current_url().await.unwrap().to_string();
        if url.starts_with(prefix) {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never reached {prefix}");
}

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn click(c: &Client, id: &str) {
    let Ok(el) = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id(id))
        .await
    else {
        let url = c
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let page = c.source().await.unwrap_or_default();
        panic!("#{id} never appeared on {url}:\n{page}");
    };
    for _ in 0..100 {
        if el.is_enabled().await.unwrap() && el.is_displayed().await.unwrap() {
            el.click().await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("#{id} never became clickable");
}

/// The platform served on loopback, a partner site, and the browser on a fresh signup
/// link; returns the app, the partner's landing URL and the session id.
async fn open_signup_page(c: &Client) -> (TestApp, String, String) {
    let (t, done, session_id, _) = open_signup_link(c).await;
    (t, done, session_id)
}

/// As `open_signup_page`, also returning the link itself.
async fn open_signup_link(c: &Client) -> (TestApp, String, String, String) {
    let t = TestApp::spawn(Backend::embedded()).await;
    // The partner's site is plain http on loopback: an App in development.
    pipes_core::usecases::admin::update_app(
        &*t.store,
        &t.app,
        pipes_core::usecases::admin::AppUpdate {
            development: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let addr = t.serve().await;
    let done = partner_site().await;
    let issued = t.issue(json!({"redirectUrl": done})).await.json();
    let token = issued["token"].as_str().unwrap();
    let link = format!("http://{addr}/apps/{}?token={token}", t.app.slug);
    c.goto(&link).await.unwrap();
    let session_id = issued["sessionId"].as_str().unwrap().to_owned();
    (t, done, session_id, link)
}

#[tokio::test]
async fn a_number_owner_connects_through_the_page_and_lands_back_at_the_partner() {
    let Some(d) = driver().await else { return };
    let (t, done, session_id) = open_signup_page(&d.client).await;
    let session_id = session_id.as_str();
    let c = &d.client;
    let heading = c
        .find(Locator::Id("app-name"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "Acme CRM");
    click(c, "connect").await;
    click(c, "sbx-finish").await;
    let landed = wait_for_url(c, &done).await;
    let q = query(&landed);
    assert_eq!(q["status"], "success");
    assert_eq!(q["sessionId"], session_id);
    assert!(!q["phoneNumberId"].is_empty());
    assert_eq!(
        t.get_session(session_id).await.json()["status"],
        "completed"
    );
    c.clone().close().await.unwrap();
}

#[tokio::test]
async fn a_number_owner_cancels_then_tries_again() {
    let Some(d) = driver().await else { return };
    let (t, done, session_id) = open_signup_page(&d.client).await;
    let session_id = session_id.as_str();
    let c = &d.client;
    click(c, "connect").await;
    c.wait()
        .for_element(Locator::Id("sbx-step"))
        .await
        .unwrap()
        .select_by_value("PHONE_NUMBER_VERIFICATION")
        .await
        .unwrap();
    click(c, "sbx-cancel").await;
    click(c, "try-again").await;
    let back = c
        .find(Locator::Id("back"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(query(&back)["status"], "cancelled");
    click(c, "sbx-finish").await;
    let landed = wait_for_url(c, &done).await;
    assert_eq!(query(&landed)["status"], "success");

    let s = t.get_session(session_id).await.json();
    assert_eq!(s["status"], "completed");
    assert_eq!(s["abandons"][0]["event"], "CANCEL");
    assert_eq!(s["abandons"][0]["step"], "PHONE_NUMBER_VERIFICATION");
    c.clone().close().await.unwrap();
}

/// One of Meta's documented `WA_EMBEDDED_SIGNUP` messages (tests/fixtures/meta/), with
/// the ids of a sandbox signup in place of Meta's.
fn meta_message(name: &str, s: &pipes_sandbox::SignupResult) -> serde_json::Value {
    let path = format!("{}/fixtures/meta/{name}", env!("CARGO_MANIFEST_DIR"));
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut msg = file["payload"].clone();
    let data = msg["data"].as_object_mut().unwrap();
    for (key, value) in [
        ("phone_number_id", &s.phone_number_id),
        ("waba_id", &s.waba_id),
        ("business_id", &s.business_id),
    ] {
        if data.contains_key(key) {
            data.insert(key.into(), json!(value));
        }
    }
    msg
}

/// Signs the browser in to the dashboard of the App whose key is `key`: a login link
/// from the API, opened (a top-level navigation signs in at once).
async fn sign_in_as(t: &TestApp, c: &Client, base: &str, key: &str) {
    let req = http::Request::post("/v1/dashboard/login-links")
        .header(http::header::AUTHORIZATION, format!("Bearer {key}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let link = t.send(req).await.json()["url"].as_str().unwrap().to_owned();
    c.goto(&link).await.unwrap();
    wait_for_url(c, &format!("{base}/dashboard")).await;
}

/// Makes the page's next FB.login answer with `code` and post `message` (if any), as
/// Meta's dialog does, instead of opening the sandbox's dialog.
async fn script_meta(c: &Client, code: Option<&str>, message: Option<serde_json::Value>) {
    c.execute(
        "const [code, message] = arguments;
         window.FB.login = function (callback, options) {
           window.__loginOptions = options;
           if (message) window.postMessage(JSON.stringify(message), window.location.origin);
           setTimeout(function () {
             callback(code ? { status: 'connected', authResponse: { code: code } } : { status: 'unknown', authResponse: null });
           }, 20);
         };",
        vec![json!(code), message.unwrap_or(serde_json::Value::Null)],
    )
    .await
    .unwrap();
}

/// Meta's FINISH reaches the page but the code never does (the owner closed the window
/// at that moment): the page has already reported the WABA, so Meta's `PARTNER_ADDED`
/// finds this signup, marks it interrupted, and the page says so on the next visit.
#[tokio::test]
async fn the_page_reports_metas_finish_so_an_interrupted_signup_is_caught() {
    let Some(d) = driver().await else { return };
    let c = &d.client;
    let (t, _, session_id, link) = open_signup_link(c).await;
    // The token left the address bar once the page loaded.
    let shown = c.current_url().await.unwrap();
    assert!(shown.query().is_none(), "{shown}");
    let s = t.sandbox_signup();
    script_meta(c, None, Some(meta_message("es-finish.json", &s))).await;
    click(c, "connect").await;
    let mut reported = serde_json::Value::Null;
    for _ in 0..100 {
        reported = t.get_session(&session_id).await.json();
        if reported["wabaId"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reported["wabaId"], s.waba_id.as_str(), "{reported}");
    assert_eq!(reported["abandons"][0]["event"], "FINISH");
    let added = json!({"object": "whatsapp_business_account", "entry": [{
        "id": "35602282435505", "time": chrono::Utc::now().timestamp(),
        "changes": [{"field": "account_update", "value": {"event": "PARTNER_ADDED",
            "waba_info": {"waba_id": s.waba_id, "owner_business_id": s.business_id}}}]}]});
    assert_eq!(t.meta_webhook(&added).await.status, 200);
    t.clock
        .advance(pipes_core::usecases::inbound::INTERRUPT_GRACE + chrono::Duration::seconds(1));
    t.run_jobs().await;
    assert_eq!(
        t.get_session(&session_id).await.json()["status"],
        "interrupted"
    );
    c.goto(&link).await.unwrap();
    let notice = c
        .find(Locator::Id("interrupted"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(notice.contains("once more"), "{notice}");
    c.clone().close().await.unwrap();
}

#[tokio::test]
async fn metas_documented_finish_and_cancel_messages_drive_the_page() {
    use pipes_sandbox::{Scenario, SignupRequest};
    let Some(d) = driver().await else { return };
    let c = &d.client;
    for (sample, scenario) in [
        (Some("es-finish.json"), None),
        (Some("es-finish-only-waba.json"), None),
        (
            Some("es-finish-business-app.json"),
            Some(Scenario::BusinessApp),
        ),
        (Some("es-finish-grant-only.json"), None),
        // A code with no session message at all (an older configuration, a closed
        // window): posted alone after a short wait.
        (None, None),
    ] {
        let (t, done, session_id) = open_signup_page(c).await;
        let s = t
            .sandbox
            .signup(SignupRequest {
                scenario,
                ..SignupRequest::default()
            })
            .unwrap();
        script_meta(c, Some(&s.code), sample.map(|f| meta_message(f, &s))).await;
        click(c, "connect").await;
        let landed = wait_for_url(c, &done).await;
        let q = query(&landed);
        assert_eq!(
            (q["status"].as_str(), q["phoneNumberId"].as_str()),
            ("success", s.phone_number_id.as_str()),
            "{sample:?}"
        );
        assert_eq!(
            t.get_session(&session_id).await.json()["status"],
            "completed"
        );
    }
    for (sample, event) in [
        ("es-cancel-step.json", "CANCEL"),
        ("es-cancel-error-code.json", "ERROR"),
        ("es-cancel-error-id.json", "ERROR"),
    ] {
        let (t, _, session_id) = open_signup_page(c).await;
        let path = format!("{}/fixtures/meta/{sample}", env!("CARGO_MANIFEST_DIR"));
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        script_meta(c, None, Some(file["payload"].clone())).await;
        click(c, "connect").await;
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Id("try-again"))
            .await
            .unwrap();
        // The page asked Meta for the session message explicitly.
        let asked: serde_json::Value = c
            .execute("return window.__loginOptions.extras;", vec![])
            .await
            .unwrap();
        assert_eq!(asked, json!({"setup": {}, "sessionInfoVersion": "3"}));
        let mut abandon = serde_json::Value::Null;
        for _ in 0..100 {
            abandon = t.get_session(&session_id).await.json()["abandons"][0].clone();
            if !abandon.is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(abandon["event"], event, "{sample}");
        if event == "ERROR" {
            assert_eq!(abandon["errorCode"], "524126", "{sample}");
            assert_eq!(abandon["metaSessionId"], "f34b51dab5e0498", "{sample}");
        } else {
            assert_eq!(abandon["step"], "PHONE_NUMBER_SETUP");
        }
    }
    c.clone().close().await.unwrap();
}

#[tokio::test]
async fn the_sandbox_dialog_finishes_without_a_number_and_the_page_says_what_to_do() {
    let Some(d) = driver().await else { return };
    let (t, done, session_id) = open_signup_page(&d.client).await;
    let c = &d.client;
    click(c, "connect").await;
    c.wait()
        .for_element(Locator::Id("sbx-finish-type"))
        .await
        .unwrap()
        .select_by_value("FINISH_ONLY_WABA")
        .await
        .unwrap();
    click(c, "sbx-finish").await;
    let mut status = String::new();
    for _ in 0..100 {
        status = c
            .find(Locator::Id("status"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if status.contains("WhatsApp Manager") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(status.contains("WhatsApp Manager"), "{status}");
    assert_eq!(t.get_session(&session_id).await.json()["status"], "pending");
    click(c, "try-again").await;
    // The same link, a code only this time: the WABA's one number is found from Meta.
    c.wait()
        .for_element(Locator::Id("sbx-finish-type"))
        .await
        .unwrap()
        .select_by_value("CODE_ONLY")
        .await
        .unwrap();
    click(c, "sbx-finish").await;
    let landed = wait_for_url(c, &done).await;
    assert_eq!(query(&landed)["status"], "success");
    c.clone().close().await.unwrap();
}

/// The dashboard story in a browser: sign in with a link, Add Number through the
/// sandbox, see it turn healthy without a reload, revoke it in the sandbox and Check
/// now, see the warning and the reason, Reconnect, healthy again, Remove, gone; a
/// cross-site form post is refused; a second App's session never sees the number.
#[tokio::test]
async fn an_owner_runs_a_number_from_the_dashboard() {
    let Some(d) = driver().await else { return };
    let c = &d.client;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let t = TestApp::spawn_with(Backend::embedded(), &[], &base).await;
    let router = t.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });

    sign_in_as(&t, c, &base, t.key.expose()).await;
    let landed = c.current_url().await.unwrap();
    assert_eq!(landed.path(), "/dashboard", "{}", c.source().await.unwrap());

    // Add Number: the hosted page's Embedded Signup (the sandbox's dialog), then back.
    click(c, "add-number").await;
    click(c, "connect").await;
    click(c, "sbx-finish").await;
    wait_for_url(c, &format!("{base}/dashboard?added=1")).await;
    let phone = wait_for_row(&t, c, "healthy").await;

    // The owner's access is revoked; Check now shows it, with the reason and a warning.
    t.sandbox.revoke(&phone);
    c.goto(&format!("{base}/dashboard/numbers/{phone}"))
        .await
        .unwrap();
    click(c, "check-now").await;
    // The form post answers with the number's page again, now showing the check.
    let mut status = String::new();
    for _ in 0..100 {
        status = text_of(c, "status").await;
        if status == "down" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "down");
    assert!(
        text_of(c, "reason")
            .await
            .contains("connect the number again")
    );
    c.goto(&format!("{base}/dashboard")).await.unwrap();
    let warning = c.find(Locator::Id("warning")).await.unwrap();
    assert!(warning.is_displayed().await.unwrap());

    // A cross-site form post (another origin) is refused and changes nothing.
    let evil = partner_site().await;
    c.goto(&evil).await.unwrap();
    c.execute(
        "const [action] = arguments; const f = document.createElement('form');
         f.method = 'post'; f.action = action; document.body.appendChild(f); f.submit();",
        vec![json!(format!("{base}/dashboard/numbers/{phone}/remove"))],
    )
    .await
    .unwrap();
    for _ in 0..100 {
        if c.current_url().await.unwrap().as_str().starts_with(&base) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = c.source().await.unwrap();
    assert!(refused.contains("Request refused"), "{refused}");
    let number = t
        .store
        .number(
            &t.app.id,
            &pipes_core::PhoneNumberId::parse(&phone).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(number.is_live());

    // Reconnect: Embedded Signup bound to this number, back to its page, healthy.
    c.goto(&format!("{base}/dashboard/numbers/{phone}"))
        .await
        .unwrap();
    click(c, "reconnect").await;
    click(c, "connect").await;
    c.wait()
        .for_element(Locator::Id("sbx-phone"))
        .await
        .unwrap()
        .send_keys(&phone)
        .await
        .unwrap();
    click(c, "sbx-finish").await;
    wait_for_url(
        c,
        &format!("{base}/dashboard/numbers/{phone}?reconnected=1"),
    )
    .await;
    c.goto(&format!("{base}/dashboard")).await.unwrap();
    assert_eq!(wait_for_row(&t, c, "healthy").await, phone);

    // A second App's session (same browser, its own login link) never sees this number.
    let (_, other_key) = t.other_app().await;
    sign_in_as(&t, c, &base, other_key.expose()).await;
    let theirs = c.source().await.unwrap();
    assert!(theirs.contains("Other") && !theirs.contains(&phone));
    c.goto(&format!("{base}/dashboard/numbers/{phone}"))
        .await
        .unwrap();
    assert!(c.source().await.unwrap().contains("Number not found"));
    sign_in_as(&t, c, &base, t.key.expose()).await;

    // Remove (confirmed): gone from the list.
    c.goto(&format!("{base}/dashboard/numbers/{phone}"))
        .await
        .unwrap();
    click(c, "remove").await;
    c.accept_alert().await.unwrap();
    wait_for_url(c, &format!("{base}/dashboard")).await;
    let rows = || async {
        c.execute(
            "return document.querySelectorAll('#numbers tr').length;",
            vec![],
        )
        .await
        .unwrap()
    };
    for _ in 0..100 {
        if rows().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows().await, 0);
    c.clone().close().await.unwrap();
}

async fn text_of(c: &Client, id: &str) -> String {
    // Empty while the page is being replaced (a navigation after a form post).
    match c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id(id))
        .await
    {
        Ok(el) => el.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Runs the worker until the page's list shows a number with `status` (without a
/// reload: the page refreshes itself); returns its phone number id.
async fn wait_for_row(t: &TestApp, c: &Client, status: &str) -> String {
    for _ in 0..100 {
        t.run_jobs().await;
        // Read the rows in one go: the page replaces them every 2 seconds.
        let rows = c
            .execute(
                "return Array.from(document.querySelectorAll('#numbers tr')).map(function (r) {
                   return [r.getAttribute('data-id'), r.querySelector('.badge').textContent]; });",
                vec![],
            )
            .await
            .unwrap();
        for row in rows.as_array().into_iter().flatten() {
            if row[1] == status {
                return row[0].as_str().unwrap().to_owned();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {status} number appeared on the page");
}

#[tokio::test]
async fn an_owner_sets_tests_and_removes_the_webhook_endpoint_in_a_browser() {
    let Some(d) = driver().await else { return };
    let c = &d.client;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let t = TestApp::spawn_with(Backend::embedded(), &[], &base).await;
    let router = t.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    sign_in_as(&t, c, &base, t.key.expose()).await;

    c.goto(&format!("{base}/dashboard/webhooks")).await.unwrap();
    c.wait()
        .for_element(Locator::Id("url"))
        .await
        .unwrap()
        .send_keys("https://partner.example/hooks")
        .await
        .unwrap();
    click(c, "save-endpoint").await;
    // The signing secret is shown once, on the answer to the save.
    let mut secret = String::new();
    for _ in 0..100 {
        secret = text_of(c, "secret-value").await;
        if !secret.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(secret.starts_with("whsec_"), "{secret}");
    c.goto(&format!("{base}/dashboard/webhooks")).await.unwrap();
    assert_eq!(
        text_of(c, "endpoint-url").await,
        "https://partner.example/hooks"
    );
    assert!(!c.source().await.unwrap().contains("whsec_"));

    // Send test event: a ping in the event list.
    click(c, "send-test").await;
    let mut listed = String::new();
    for _ in 0..100 {
        listed = text_of(c, "events").await;
        if listed.contains("ping") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listed.contains("ping"), "{listed}");

    // Remove asks first (the page's script, allowed by its CSP), then the endpoint is gone.
    click(c, "remove-endpoint").await;
    c.accept_alert().await.unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if c.find(Locator::Id("no-endpoint")).await.is_ok() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "{}", c.source().await.unwrap());
    assert!(t.store.endpoint(&t.app.id).await.unwrap().is_none());
    c.clone().close().await.unwrap();
}

//! The App owner's dashboard over HTTP on both stores: login links (single use,
//! expiring), the session cookie, CSRF and origin checks on every change, one App never
//! seeing another's numbers, Add Number through the hosted page, keys, and logout.

use axum::body::Body;
use chrono::Duration;
use http::{Method, Request, StatusCode, header};
use pipes_tests::{BASE_URL, Backend, TestApp, TestResponse};
use serde_json::json;

on_both_stores! {
    a_login_link_signs_in_once_and_sets_a_host_only_cookie => login_flow;
    changes_need_the_csrf_token_and_our_origin => csrf;
    an_app_never_sees_another_apps_numbers => isolation;
    add_number_runs_the_hosted_page_and_comes_back => add_number;
    keys_are_created_once_shown_and_revoked => keys;
    the_signups_page_shows_the_funnel => signups_funnel;
    the_webhooks_page_sets_rotates_tests_and_removes_the_endpoint => webhooks_page;
}

async fn webhooks_page(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (cookie, csrf) = signed_in(&t).await;
    let empty = html(&get(&t, "/dashboard/webhooks", Some(&cookie)).await);
    assert!(empty.contains("id=\"no-endpoint\""), "{empty}");
    // Without the CSRF token or from elsewhere: refused, nothing set.
    let form = format!("url={}", urlencoding("https://partner.example/hooks"));
    let refused = post_form(&t, "/dashboard/webhooks", &cookie, &form, Some(BASE_URL)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let form = format!(
        "csrf={csrf}&url={}",
        urlencoding("https://partner.example/hooks")
    );
    let elsewhere = post_form(
        &t,
        "/dashboard/webhooks",
        &cookie,
        &form,
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
    assert!(t.store.endpoint(&t.app.id).await.unwrap().is_none());
    // A bad URL is explained; a good one shows the secret once.
    let bad = format!("csrf={csrf}&url={}", urlencoding("ftp://partner.example"));
    let res = post_form(&t, "/dashboard/webhooks", &cookie, &bad, Some(BASE_URL)).await;
    assert!(html(&res).contains("id=\"problem\""));
    let res = post_form(&t, "/dashboard/webhooks", &cookie, &form, Some(BASE_URL)).await;
    assert_eq!(res.status, StatusCode::OK);
    let page = html(&res);
    assert!(
        page.contains("id=\"new-secret\"") && page.contains("whsec_"),
        "{page}"
    );
    let again = html(&get(&t, "/dashboard/webhooks", Some(&cookie)).await);
    assert!(!again.contains("whsec_"), "the secret is shown once");
    assert!(again.contains("https://partner.example/hooks"));
    let rotated = post_form(
        &t,
        "/dashboard/webhooks/rotate",
        &cookie,
        &format!("csrf={csrf}"),
        Some(BASE_URL),
    )
    .await;
    assert!(html(&rotated).contains("whsec_"));
    let tested = post_form(
        &t,
        "/dashboard/webhooks/test",
        &cookie,
        &format!("csrf={csrf}"),
        Some(BASE_URL),
    )
    .await;
    assert_eq!(tested.status, StatusCode::SEE_OTHER);
    let listed = html(&get(&t, "/dashboard/webhooks", Some(&cookie)).await);
    assert!(listed.contains("<td>ping</td>"), "{listed}");
    let id = listed
        .split("/dashboard/events/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    let redelivered = post_form(
        &t,
        &format!("/dashboard/events/{id}/redeliver"),
        &cookie,
        &format!("csrf={csrf}"),
        Some(BASE_URL),
    )
    .await;
    assert_eq!(redelivered.status, StatusCode::SEE_OTHER);
    let missing = post_form(
        &t,
        "/dashboard/events/evt_000000000000aaaaaaaaaaaaaaaaaaaa/redeliver",
        &cookie,
        &format!("csrf={csrf}"),
        Some(BASE_URL),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let removed = post_form(
        &t,
        "/dashboard/webhooks/remove",
        &cookie,
        &format!("csrf={csrf}"),
        Some(BASE_URL),
    )
    .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    assert!(t.store.endpoint(&t.app.id).await.unwrap().is_none());
}

async fn login_url(t: &TestApp) -> String {
    let req = t
        .authed(Method::POST, "/v1/dashboard/login-links")
        .body(Body::empty())
        .unwrap();
    let res = t.send(req).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");
    let v = res.json();
    assert!(v["expiresAt"].is_string());
    v["url"].as_str().unwrap().to_owned()
}

fn path_of(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    }
}

async fn get(t: &TestApp, path: &str, cookie: Option<&str>) -> TestResponse {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    t.send(req.body(Body::empty()).unwrap()).await
}

async fn post_form(
    t: &TestApp,
    path: &str,
    cookie: &str,
    form: &str,
    origin: Option<&str>,
) -> TestResponse {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(o) = origin {
        req = req.header(header::ORIGIN, o);
    }
    t.send(req.body(Body::from(form.to_owned())).unwrap()).await
}

fn html(res: &TestResponse) -> String {
    String::from_utf8(res.body.clone()).unwrap()
}

fn token_of(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    u.query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// What the login page's form posts, from `origin`.
async fn post_login(t: &TestApp, token: &str, origin: Option<&str>) -> TestResponse {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/dashboard/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(o) = origin {
        req = req.header(header::ORIGIN, o);
    }
    let form = format!("token={}", urlencoding(token));
    t.send(req.body(Body::from(form)).unwrap()).await
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Opens a login link the way a browser navigates to it.
async fn follow_login(t: &TestApp, url: &str) -> TestResponse {
    let req = Request::get(path_of(url)).header("sec-fetch-dest", "document");
    t.send(req.body(Body::empty()).unwrap()).await
}

/// Signs in through a fresh login link; returns the cookie pair and the CSRF token.
async fn signed_in(t: &TestApp) -> (String, String) {
    signed_in_with(t, &login_url(t).await).await
}

/// Signs in through `url`; returns the cookie pair and the CSRF token.
async fn signed_in_with(t: &TestApp, url: &str) -> (String, String) {
    let res = follow_login(t, url).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let set = res.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    let pair = set.split(';').next().unwrap().to_owned();
    let page = html(&get(t, "/dashboard", Some(&pair)).await);
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    (pair, csrf)
}

async fn login_flow(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let url = login_url(&t).await;
    assert!(
        url.starts_with(&format!("{BASE_URL}/dashboard/login?token=dl_")),
        "{url}"
    );
    assert_eq!(
        get(&t, "/dashboard", None).await.headers[header::LOCATION],
        "/dashboard/signin"
    );

    // Embedded elsewhere (an image, a frame, a script's fetch), the link spends nothing:
    // it shows a Continue page whose same-origin POST signs in; a post from another
    // origin is refused.
    for dest in ["image", "iframe", "empty"] {
        let req = Request::get(path_of(&url)).header("sec-fetch-dest", dest);
        let embedded = t.send(req.body(Body::empty()).unwrap()).await;
        assert_eq!(embedded.status, 200, "{dest}");
        assert!(!embedded.headers.contains_key(header::SET_COOKIE));
        assert!(html(&embedded).contains("id=\"sign-in\""));
        assert_eq!(embedded.headers[header::REFERRER_POLICY], "no-referrer");
    }
    let token = token_of(&url);
    for origin in [None, Some("https://evil.example")] {
        let refused = post_login(&t, &token, origin).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{origin:?}");
        assert!(!refused.headers.contains_key(header::SET_COOKIE));
    }
    let continued = post_login(&t, &token_of(&login_url(&t).await), Some(BASE_URL)).await;
    assert_eq!(continued.status, StatusCode::SEE_OTHER);
    assert!(continued.headers.contains_key(header::SET_COOKIE));

    // A top-level navigation (or a client that does not say) signs in at once.
    let res = follow_login(&t, &url).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.headers[header::LOCATION], "/dashboard");
    let set = res.headers[header::SET_COOKIE].to_str().unwrap();
    // https base: the __Host- prefix, Secure, and no Domain.
    for part in [
        "__Host-pipes_dashboard=ds_",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Secure",
        "Max-Age=43200",
    ] {
        assert!(set.contains(part), "{part} in {set}");
    }
    assert!(!set.contains("Domain"));
    let cookie = set.split(';').next().unwrap();
    let page = get(&t, "/dashboard", Some(cookie)).await;
    assert_eq!(page.status, 200);
    let body = html(&page);
    assert!(body.contains("Acme CRM") && body.contains("id=\"add-number\""));
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'nonce-") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(body.contains("<meta name=\"robots\" content=\"noindex\">"));

    // The link is spent; junk and expired links say how to get a new one.
    let again = get(&t, &path_of(&url), None).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert!(html(&again).contains("login-link"));
    assert_eq!(
        get(&t, "/dashboard/login?token=dl_nope", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post_login(&t, "dl_nope", Some(BASE_URL)).await.status,
        StatusCode::NOT_FOUND
    );
    let stale = login_url(&t).await;
    t.clock.advance(Duration::minutes(16));
    assert_eq!(follow_login(&t, &stale).await.status, StatusCode::GONE);
    // The session lasts 12 hours.
    assert_eq!(get(&t, "/dashboard", Some(cookie)).await.status, 200);
    t.clock.advance(Duration::hours(12));
    assert_eq!(
        get(&t, "/dashboard", Some(cookie)).await.status,
        StatusCode::SEE_OTHER
    );
}

async fn csrf(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (token, _) = t.signup_token().await;
    let s = t.sandbox_signup();
    assert_eq!(t.finish(&token, &s).await.status, 200);
    let (cookie, csrf) = signed_in(&t).await;
    let path = format!("/dashboard/numbers/{}/remove", s.phone_number_id);
    let refused = [
        (String::new(), Some(BASE_URL)),
        (format!("csrf={csrf}"), Some("https://evil.example")),
        (format!("csrf={csrf}"), None),
        ("csrf=wrong".to_owned(), Some(BASE_URL)),
    ];
    for (form, origin) in refused {
        let res = post_form(&t, &path, &cookie, &form, origin).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{form} {origin:?}");
    }
    let n = t
        .store
        .number(
            &t.app.id,
            &pipes_core::PhoneNumberId::parse(&s.phone_number_id).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(n.is_live(), "nothing changed");
    let res = post_form(&t, &path, &cookie, &format!("csrf={csrf}"), Some(BASE_URL)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let n = t
        .store
        .number(&t.app.id, &n.phone_number_id)
        .await
        .unwrap()
        .unwrap();
    assert!(!n.is_live());
    // Logout ends the session (and needs the token too).
    assert_eq!(
        post_form(&t, "/dashboard/logout", &cookie, "", Some(BASE_URL))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let out = post_form(
        &t,
        "/dashboard/logout",
        &cookie,
        &format!("csrf={csrf}"),
        Some(BASE_URL),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        get(&t, "/dashboard", Some(&cookie)).await.headers[header::LOCATION],
        "/dashboard/signin"
    );
}

async fn isolation(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (token, _) = t.signup_token().await;
    let s = t.sandbox_signup();
    assert_eq!(t.finish(&token, &s).await.status, 200);
    let (_, other_key) = t.other_app().await;
    let req = Request::post("/v1/dashboard/login-links")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", other_key.expose()),
        )
        .body(Body::empty())
        .unwrap();
    let url = t.send(req).await.json()["url"].as_str().unwrap().to_owned();
    let (cookie, csrf) = signed_in_with(&t, &url).await;
    let page = html(&get(&t, "/dashboard", Some(&cookie)).await);
    assert!(page.contains("Other") && !page.contains(&s.phone_number_id));
    // Its valid session and CSRF token cannot touch the first App's number or keys.
    let first_key = t.store.list_keys(&t.app.id).await.unwrap()[0]
        .key_id
        .clone();
    for path in [
        format!("/dashboard/numbers/{}/check", s.phone_number_id),
        format!("/dashboard/numbers/{}/remove", s.phone_number_id),
        format!("/dashboard/numbers/{}/reconnect", s.phone_number_id),
        format!("/dashboard/keys/{first_key}/revoke"),
        // An id that does not decode names nothing either: the page, not plain text.
        "/dashboard/numbers/%FF/check".to_owned(),
        "/dashboard/events/%FF/redeliver".to_owned(),
    ] {
        let res = post_form(&t, &path, &cookie, &format!("csrf={csrf}"), Some(BASE_URL)).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}");
        if path.contains("%FF") {
            assert!(
                html(&res).contains("There is nothing at this address."),
                "{path}"
            );
        }
    }
    let res = get(&t, "/dashboard/numbers/%FF", Some(&cookie)).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(html(&res).contains("There is nothing at this address."));
    let mine = t
        .send(
            t.authed(Method::GET, "/v1/numbers")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(mine.status, 200, "the first App's key still works");
    let numbers = mine.json()["numbers"].clone();
    assert_eq!(numbers.as_array().map(Vec::len), Some(1), "{numbers}");
    assert_ne!(numbers[0]["health"]["status"], "removed", "{numbers}");
    let list = get(&t, "/dashboard/numbers.json", Some(&cookie))
        .await
        .json();
    assert_eq!(list["numbers"], json!([]));
    let theirs = get(
        &t,
        &format!("/dashboard/numbers/{}", s.phone_number_id),
        Some(&cookie),
    )
    .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    // A login link needs an app key.
    let anon = t
        .send(
            Request::post("/v1/dashboard/login-links")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}

async fn add_number(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (cookie, csrf) = signed_in(&t).await;
    let res = post_form(
        &t,
        "/dashboard/numbers/new",
        &cookie,
        &format!("csrf={csrf}"),
        Some(BASE_URL),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let signup_url = res.headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(
        signup_url.starts_with(&format!("{BASE_URL}/apps/{}?token=tok_", t.app.slug)),
        "{signup_url}"
    );
    let token = signup_url.split("token=").nth(1).unwrap();
    let s = t.sandbox_signup();
    let done = t.finish(token, &s).await.json();
    assert!(
        done["redirectUrl"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{BASE_URL}/dashboard?added=1&status=success")),
        "{done}"
    );
    t.run_jobs().await;
    let list = get(&t, "/dashboard/numbers.json", Some(&cookie))
        .await
        .json();
    assert_eq!(list["numbers"][0]["phoneNumberId"], s.phone_number_id);
    assert_eq!(list["numbers"][0]["health"]["status"], "healthy");
    let page = html(
        &get(
            &t,
            &format!("/dashboard/numbers/{}", s.phone_number_id),
            Some(&cookie),
        )
        .await,
    );
    assert!(
        page.contains("id=\"timeline\"") && page.contains("pending → healthy"),
        "{page}"
    );
}

async fn keys(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let (cookie, csrf) = signed_in(&t).await;
    let before: Vec<_> = t
        .store
        .list_keys(&t.app.id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    let page = post_form(
        &t,
        "/dashboard/keys",
        &cookie,
        &format!("csrf={csrf}"),
        Some(BASE_URL),
    )
    .await;
    assert_eq!(page.status, 200);
    let body = html(&page);
    let key = body
        .split("id=\"key-value\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
        .to_owned();
    assert!(key.starts_with("ak_"));
    // The new key works, and is never shown again.
    let req = Request::get("/v1/numbers")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(t.send(req).await.status, 200);
    assert!(!html(&get(&t, "/dashboard/keys", Some(&cookie)).await).contains(&key));
    // A session opened with a link the new key minted lasts only while that key does.
    let req = Request::post("/v1/dashboard/login-links")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let url = t.send(req).await.json()["url"].as_str().unwrap().to_owned();
    let (by_new_key, _) = signed_in_with(&t, &url).await;
    assert_eq!(get(&t, "/dashboard", Some(&by_new_key)).await.status, 200);
    let keys = t.store.list_keys(&t.app.id).await.unwrap();
    let newest = keys.iter().find(|k| !before.contains(&k.key_id)).unwrap();
    let res = post_form(
        &t,
        &format!("/dashboard/keys/{}/revoke", newest.key_id),
        &cookie,
        &format!("csrf={csrf}"),
        Some(BASE_URL),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let req = Request::get("/v1/numbers")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(t.send(req).await.status, StatusCode::UNAUTHORIZED);
    let evicted = get(&t, "/dashboard", Some(&by_new_key)).await;
    assert_eq!(evicted.status, StatusCode::SEE_OTHER);
    assert_eq!(evicted.headers[header::LOCATION], "/dashboard/signin");
    // The session opened with the first key's link goes on.
    assert_eq!(get(&t, "/dashboard", Some(&cookie)).await.status, 200);
}

async fn signups_funnel(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    // Three links: one cancelled at a step, one with Meta's error, one completed.
    let (cancelled, _) = t.signup_token().await;
    let body = json!({"token": cancelled, "event": "CANCEL", "step": "PHONE_NUMBER_VERIFICATION"});
    assert_eq!(t.post_json("/v1/signup/callback", body).await.status, 200);
    let (errored, _) = t.signup_token().await;
    let body = json!({"token": errored, "event": "ERROR", "errorCode": "524126", "errorMessage": "verified name"});
    assert_eq!(t.post_json("/v1/signup/callback", body).await.status, 200);
    let (done, _) = t.signup_token().await;
    assert_eq!(t.finish(&done, &t.sandbox_signup()).await.status, 200);
    let (cookie, _) = signed_in(&t).await;
    let page = html(&get(&t, "/dashboard/signups", Some(&cookie)).await);
    assert!(
        page.contains("Signup funnel: 3 started, 1 cancelled, 1 with errors, 1 completed"),
        "{page}"
    );
    assert!(page.contains("<code>PHONE_NUMBER_VERIFICATION</code>: 1"));
    assert!(page.contains("verified name") && page.contains("completed"));
}

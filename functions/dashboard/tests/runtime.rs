//! The real `dashboard` bootstrap against a local Lambda Runtime API with the events/
//! samples, on moto and the sandbox: a login link, signing in, the App page, a check
//! now, creating a key, and logging out, every AWS call checked against the function's
//! policy in template.yaml.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use pipes_tests::runtime_api::{LambdaHarness, Outcome};
use pipes_tests::{Backend, TestApp};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_dashboard");
const SAMPLE_KEY: &str = "ak_SAMPLEsampleSAMPLEsampleSAMPLE00";
const SAMPLE_LINK: &str = "dl_SAMPLEsampleSAMPLEsampleSAMPLE00";
const SAMPLE_COOKIE: &str = "ds_SAMPLEsampleSAMPLEsampleSAMPLE00";

fn event(file: &str, replace: &[(&str, &str)]) -> Value {
    let mut text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../events/dashboard")
            .join(file),
    )
    .unwrap();
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    serde_json::from_str(&text).unwrap()
}

/// (status, headers, cookies, body) of an API Gateway v2 response.
fn response(outcome: Outcome) -> (u64, Value, Vec<String>, String) {
    let Outcome::Response { body, .. } = outcome else {
        panic!("{outcome:?}")
    };
    let cookies = body["cookies"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (
        body["statusCode"].as_u64().unwrap(),
        body["headers"].clone(),
        cookies,
        body["body"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn the_bootstrap_signs_an_owner_in_and_serves_the_pages() {
    let t = TestApp::spawn(Backend::aws().await).await;
    let (token, _) = t.signup_token().await;
    let signup = t.sandbox_signup();
    assert_eq!(t.finish(&token, &signup).await.status, 200);
    t.run_jobs().await;
    let key = t.key.expose().to_owned();

    let mut lambda = LambdaHarness::start().await;
    lambda
        .spawn_as(
            "DashboardFunction",
            Path::new(BINARY),
            &t.function_env().await,
        )
        .await;
    let (status, _, _, body) = response(
        lambda
            .invoke(event("post-login-link.json", &[(SAMPLE_KEY, &key)]))
            .await,
    );
    assert_eq!(status, 200, "{body}");
    // A login link requested with an Idempotency-Key, twice: the same (sealed) answer.
    let mut keyed = event("post-login-link.json", &[(SAMPLE_KEY, &key)]);
    keyed["headers"]["idempotency-key"] = "login-1".into();
    let (_, _, _, first) = response(lambda.invoke(keyed.clone()).await);
    let (status, _, _, again) = response(lambda.invoke(keyed).await);
    assert_eq!((status, &again), (200, &first));
    let url: Value = serde_json::from_str(&body).unwrap();
    let link = url["url"]
        .as_str()
        .unwrap()
        .split("token=")
        .nth(1)
        .unwrap()
        .to_owned();

    let (status, headers, cookies, _) = response(
        lambda
            .invoke(event("get-login.json", &[(SAMPLE_LINK, &link)]))
            .await,
    );
    assert_eq!(
        (status, headers["location"].as_str()),
        (303, Some("/dashboard"))
    );
    let set = cookies
        .first()
        .cloned()
        .or_else(|| headers["set-cookie"].as_str().map(str::to_owned))
        .unwrap();
    let cookie = set
        .split(';')
        .next()
        .unwrap()
        .split('=')
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("ds_"));

    let (status, _, _, html) = response(
        lambda
            .invoke(event("get-dashboard.json", &[(SAMPLE_COOKIE, &cookie)]))
            .await,
    );
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&signup.phone_number_id));
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();

    // Check now (KMS, Meta's four calls, a versioned write), through the same event shape.
    let check_path = format!("/dashboard/numbers/{}/check", signup.phone_number_id);
    let check = event(
        "post-create-key.json",
        &[
            (SAMPLE_COOKIE, &cookie),
            ("SAMPLE_CSRF", &csrf),
            ("/dashboard/keys", &check_path),
        ],
    );
    let (status, headers, _, body) = response(lambda.invoke(check).await);
    assert_eq!(status, 303, "{body}");
    assert_eq!(
        headers["location"].as_str(),
        Some(check_path.trim_end_matches("/check"))
    );

    let signups = event(
        "get-dashboard.json",
        &[
            (SAMPLE_COOKIE, &cookie),
            ("\"/dashboard\"", "\"/dashboard/signups\""),
        ],
    );
    let (status, _, _, html) = response(lambda.invoke(signups).await);
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"funnel\""));

    let before = t.store.list_keys(&t.app.id).await.unwrap();
    let (status, _, _, html) = response(
        lambda
            .invoke(event(
                "post-create-key.json",
                &[(SAMPLE_COOKIE, &cookie), ("SAMPLE_CSRF", &csrf)],
            ))
            .await,
    );
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"key-value\">ak_"));

    // Revoke it: the listing and the lookup item, in one transaction.
    let keys = t.store.list_keys(&t.app.id).await.unwrap();
    let newest = keys.iter().find(|k| !before.contains(k)).unwrap();
    let newest = newest.key_id.to_string();
    let revoke_path = format!("/dashboard/keys/{newest}/revoke");
    let revoke = event(
        "post-create-key.json",
        &[
            (SAMPLE_COOKIE, &cookie),
            ("SAMPLE_CSRF", &csrf),
            ("/dashboard/keys", &revoke_path),
        ],
    );
    let (status, _, _, body) = response(lambda.invoke(revoke).await);
    assert_eq!(status, 303, "{body}");
    for k in t.store.list_keys(&t.app.id).await.unwrap() {
        assert_eq!(
            k.revoked_at.is_some(),
            k.key_id.to_string() == newest,
            "{k:?}"
        );
    }

    // The number's page and the list's live refresh.
    let number_path = format!("/dashboard/numbers/{}", signup.phone_number_id);
    for path in [number_path.as_str(), "/dashboard/numbers.json"] {
        let page = event(
            "get-dashboard.json",
            &[
                (SAMPLE_COOKIE, &cookie),
                ("\"/dashboard\"", &format!("\"{path}\"")),
            ],
        );
        let (status, _, _, body) = response(lambda.invoke(page).await);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains(&signup.phone_number_id), "{path}: {body}");
    }
    // The Webhooks page: set the endpoint (a sealed secret), rotate, test, redeliver.
    let set = event(
        "post-create-key.json",
        &[
            (SAMPLE_COOKIE, &cookie),
            (
                "csrf=SAMPLE_CSRF",
                &format!("csrf={csrf}&url=https%3A%2F%2Fpartner.example%2Fhooks"),
            ),
            ("/dashboard/keys", "/dashboard/webhooks"),
        ],
    );
    let (status, _, _, html) = response(lambda.invoke(set).await);
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"new-secret\""), "{html}");
    let post_to = |path: &str| {
        event(
            "post-create-key.json",
            &[
                (SAMPLE_COOKIE, &cookie),
                ("SAMPLE_CSRF", &csrf),
                ("/dashboard/keys", path),
            ],
        )
    };
    let (status, _, _, html) = response(lambda.invoke(post_to("/dashboard/webhooks/rotate")).await);
    assert_eq!(status, 200, "{html}");
    let (status, _, _, body) = response(lambda.invoke(post_to("/dashboard/webhooks/test")).await);
    assert_eq!(status, 303, "{body}");
    let page = event(
        "get-dashboard.json",
        &[
            (SAMPLE_COOKIE, &cookie),
            ("\"/dashboard\"", "\"/dashboard/webhooks\""),
        ],
    );
    let (status, _, _, html) = response(lambda.invoke(page).await);
    assert_eq!(status, 200, "{html}");
    let id = html
        .split("/dashboard/events/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    let (status, _, _, body) = response(
        lambda
            .invoke(post_to(&format!("/dashboard/events/{id}/redeliver")))
            .await,
    );
    assert_eq!(status, 303, "{body}");
    let (status, _, _, body) = response(lambda.invoke(post_to("/dashboard/webhooks/remove")).await);
    assert_eq!(status, 303, "{body}");

    // Add Number, Reconnect, Remove and logout: every other write the pages make.
    let post = |path: &str| {
        event(
            "post-create-key.json",
            &[
                (SAMPLE_COOKIE, &cookie),
                ("SAMPLE_CSRF", &csrf),
                ("/dashboard/keys", path),
            ],
        )
    };
    for path in [
        "/dashboard/numbers/new".to_owned(),
        format!("{number_path}/reconnect"),
        format!("{number_path}/remove"),
        "/dashboard/logout".to_owned(),
    ] {
        let (status, headers, _, body) = response(lambda.invoke(post(&path)).await);
        assert_eq!(status, 303, "{path}: {body}");
        assert!(headers["location"].is_string(), "{path}");
    }
    let phone = pipes_core::PhoneNumberId::parse(&signup.phone_number_id).unwrap();
    let left = t.store.number(&t.app.id, &phone).await.unwrap();
    assert!(
        left.as_ref()
            .is_none_or(|n| n.health.status == pipes_core::HealthStatus::Removed),
        "{left:?}"
    );
    lambda.assert_least_privilege();
}

//! The real `signup-callback` bootstrap against a local Lambda Runtime API with the
//! sample events: DynamoDB, KMS, SQS and SSM on moto's server, Meta played by the
//! sandbox on loopback (as `META_GRAPH_BASE_URL`), the app secret read from SSM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use pipes_core::usecases::{IssueTokenRequest, PublicBaseUrl, admin, issue_token};
use pipes_core::{Clock, SystemClock};
use pipes_sandbox::{
    SANDBOX_APP_ID, SANDBOX_APP_SECRET, SANDBOX_CONFIG_ID, Sandbox, SignupRequest,
};
use pipes_tests::runtime_api::{LambdaHarness, Outcome};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_signup-callback");
const PAGE: &str = include_str!("../../../events/signup-callback/get-signup-page.json");
const FINISH: &str = include_str!("../../../events/signup-callback/post-callback-finish.json");
const CANCEL: &str = include_str!("../../../events/signup-callback/post-callback-cancel.json");
const PROGRESS: &str = include_str!("../../../events/signup-callback/post-signup-progress.json");
const VERIFY: &str = include_str!("../../../events/signup-callback/get-webhooks-meta-verify.json");
const WEBHOOK: &str = include_str!("../../../events/signup-callback/post-webhooks-meta.json");
const VERIFY_TOKEN: &str = "verify-token-for-the-runtime-test";
const SAMPLE_TOKEN: &str = "tok_SAMPLEsampleSAMPLEsampleSAMPLE00";

fn response(outcome: Outcome) -> (u64, Value, String) {
    match outcome {
        Outcome::Response { body, .. } => {
            let status = body["statusCode"].as_u64().unwrap();
            (
                status,
                body["headers"].clone(),
                body["body"].as_str().unwrap_or("").to_owned(),
            )
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

#[tokio::test]
async fn the_bootstrap_serves_the_page_and_completes_a_signup() {
    let conf = pipes_tests::emulator().await;
    let store = pipes_tests::dynamo_store().await;
    let queue = pipes_tests::sqs_queue(&conf).await;
    let events_queue = pipes_tests::sqs_queue(&conf).await;
    let key_id = pipes_tests::kms_key(&conf).await;
    let parameter = format!(
        "/pipes-test/{}/meta-app-secret",
        pipes_core::random::base62(8)
    );
    aws_sdk_ssm::Client::new(&conf)
        .put_parameter()
        .name(&parameter)
        .value(SANDBOX_APP_SECRET)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();

    let sandbox = Sandbox::in_memory(Arc::new(SystemClock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let graph = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        pipes_sandbox::GRAPH_PATH
    );
    let router = pipes_sandbox::router(sandbox.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let created = admin::create_app(&store, SystemClock.now(), "acme", "Acme CRM", &[])
        .await
        .unwrap();
    let base = PublicBaseUrl::parse("https://connect.pipes.test").unwrap();
    let req = IssueTokenRequest {
        redirect_url: "https://partner.example/done".into(),
        ..Default::default()
    };
    let issued = issue_token(&store, &SystemClock, &base, &created.app, req)
        .await
        .unwrap();
    let token = issued.token.expose().to_owned();
    // The App has a webhook endpoint: redirects are signed with its secret (KMS-sealed).
    let envelope = pipes_core::crypto::Envelope::new(Arc::new(
        pipes_adapters::kms::KmsWrapper::new(aws_sdk_kms::Client::new(&conf), key_id.clone()),
    ));
    let endpoints = pipes_core::usecases::events::EndpointDeps {
        store: &store,
        queue: &events_queue,
        envelope: &envelope,
        clock: &SystemClock,
        allow_local_http: false,
    };
    let (_, secret) = pipes_core::usecases::events::put_endpoint(
        endpoints,
        &created.app.id,
        "https://partner.example/hooks",
    )
    .await
    .unwrap();
    assert!(secret.is_some());

    let mut lambda = LambdaHarness::start().await;
    lambda
        .spawn_as(
            "SignupCallbackFunction",
            Path::new(BINARY),
            &[
                ("TABLE_NAME", store.table()),
                ("PUBLIC_BASE_URL", "https://connect.pipes.test"),
                ("KMS_KEY_ID", &key_id),
                ("SETUP_QUEUE_URL", queue.queue_url()),
                ("EVENTS_QUEUE_URL", events_queue.queue_url()),
                ("META_WEBHOOK_VERIFY_TOKEN", VERIFY_TOKEN),
                ("META_APP_ID", SANDBOX_APP_ID),
                ("META_CONFIG_ID", SANDBOX_CONFIG_ID),
                ("META_APP_SECRET_PARAMETER", &parameter),
                ("META_GRAPH_BASE_URL", &graph),
            ],
        )
        .await;

    let event: Value = serde_json::from_str(&PAGE.replace(SAMPLE_TOKEN, &token)).unwrap();
    let (status, headers, html) = response(lambda.invoke(event).await);
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("Acme CRM") && html.contains("https://connect.facebook.net/en_US/sdk.js")
    );
    assert!(!html.contains("sandbox-banner"), "live mode on Lambda");
    assert!(
        headers["content-security-policy"]
            .as_str()
            .unwrap()
            .contains("'nonce-")
    );
    assert_eq!(headers["referrer-policy"], "no-referrer");

    let event: Value = serde_json::from_str(&CANCEL.replace(SAMPLE_TOKEN, &token)).unwrap();
    let (status, _, body) = response(lambda.invoke(event).await);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["redirectUrl"].as_str().unwrap().contains("&signature="),
        "the App has an endpoint: the redirect is signed: {body}"
    );

    let signup = sandbox.signup(SignupRequest::default()).unwrap();
    // The page reports Meta's finish before it posts the code.
    let progress = PROGRESS
        .replace(SAMPLE_TOKEN, &token)
        .replace("100000000000002", &signup.waba_id);
    let (status, _, body) = response(
        lambda
            .invoke(serde_json::from_str(&progress).unwrap())
            .await,
    );
    assert_eq!(status, 202, "{body}");
    let finish = FINISH
        .replace(SAMPLE_TOKEN, &token)
        .replace("AQ_SAMPLE_CODE", &signup.code)
        .replace("100000000000002", &signup.waba_id)
        .replace("100000000000003", &signup.phone_number_id)
        .replace("100000000000004", &signup.business_id);
    let (status, _, body) = response(lambda.invoke(serde_json::from_str(&finish).unwrap()).await);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "completed");

    let msgs = aws_sdk_sqs::Client::new(&conf)
        .receive_message()
        .queue_url(queue.queue_url())
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].body().unwrap().contains(&signup.phone_number_id));

    // The same number re-onboarded under another WABA: it leaves the old one.
    let issued2 = issue_token(
        &store,
        &SystemClock,
        &base,
        &created.app,
        IssueTokenRequest {
            redirect_url: "https://partner.example/done".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let moved = sandbox
        .signup(SignupRequest {
            phone_number_id: Some(signup.phone_number_id.clone()),
            waba_id: Some("4242424242".into()),
            ..Default::default()
        })
        .unwrap();
    let again = FINISH
        .replace(SAMPLE_TOKEN, issued2.token.expose())
        .replace("AQ_SAMPLE_CODE", &moved.code)
        .replace("100000000000002", &moved.waba_id)
        .replace("100000000000003", &moved.phone_number_id)
        .replace("100000000000004", &moved.business_id);
    let (status, _, body) = response(lambda.invoke(serde_json::from_str(&again).unwrap()).await);
    assert_eq!(status, 200, "{body}");

    // Meta's webhooks: the handshake, then a signed delivery stored and queued.
    let verify = VERIFY.replace("VERIFY_TOKEN_SAMPLE", VERIFY_TOKEN);
    let (status, _, body) = response(lambda.invoke(serde_json::from_str(&verify).unwrap()).await);
    assert_eq!((status, body.as_str()), (200, "1158201444"));
    let wrong = VERIFY.to_owned();
    let (status, _, _) = response(lambda.invoke(serde_json::from_str(&wrong).unwrap()).await);
    assert_eq!(status, 403);
    let mut event: Value = serde_json::from_str(WEBHOOK).unwrap();
    let body = event["body"]
        .as_str()
        .unwrap()
        .replace("100000000000002", &signup.waba_id);
    event["headers"]["x-hub-signature-256"] =
        pipes_core::webhooks::sign(SANDBOX_APP_SECRET.as_bytes(), body.as_bytes()).into();
    event["body"] = body.into();
    let (status, _, answer) = response(lambda.invoke(event.clone()).await);
    assert_eq!(status, 200, "{answer}");
    let (status, _, _) = response(lambda.invoke(event.clone()).await);
    assert_eq!(status, 200, "a redelivery is acknowledged too");
    event["headers"]["x-hub-signature-256"] = "sha256=00".into();
    let (status, _, _) = response(lambda.invoke(event).await);
    assert_eq!(status, 401);
    let queued = aws_sdk_sqs::Client::new(&conf)
        .receive_message()
        .queue_url(queue.queue_url())
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert!(
        queued
            .iter()
            .any(|m| m.body().unwrap().contains("\"inbound\"")),
        "the change is queued for the worker"
    );
    lambda.assert_least_privilege();
}

#[tokio::test]
async fn a_missing_secret_parameter_fails_the_cold_start() {
    let t = pipes_tests::TestApp::spawn(pipes_tests::Backend::aws().await).await;
    let env: Vec<_> = t
        .function_env()
        .await
        .into_iter()
        .filter(|(k, _)| *k != "META_APP_SECRET_PARAMETER")
        .collect();
    let mut lambda = LambdaHarness::start().await;
    lambda.spawn(Path::new(BINARY), &env);
    let (status, stderr) = lambda.wait_exit();
    assert!(!status.success());
    assert!(
        stderr.contains("META_APP_SECRET_PARAMETER is not set"),
        "{stderr}"
    );
}

//! The requests each route makes to its backing services, counted on the wire (every
//! AWS request goes through the IAM recorder in front of moto; Graph calls are the
//! sandbox's counts), with warm caches as on a warm Lambda. docs/PERFORMANCE.md lists
//! them between its `round-trips` markers; this test fails when the two differ, and
//! prints the table as measured.

use std::collections::BTreeMap;

use axum::body::Body;
use http::{Method, Request};
use pipes_sandbox::{Scenario, SignupRequest};
use pipes_tests::iam::Recorder;
use pipes_tests::{Backend, TestApp, TestResponse};
use serde_json::json;

const DOC: &str = include_str!("../../../docs/PERFORMANCE.md");

struct Counter<'a> {
    recorder: &'a Recorder,
    t: &'a TestApp,
    rows: Vec<String>,
}

impl Counter<'_> {
    async fn measure<F>(&mut self, route: &str, expect: u16, call: F) -> TestResponse
    where
        F: std::future::Future<Output = TestResponse>,
    {
        let aws_before = self.recorder.requests().len();
        let graph_before = self.t.sandbox.all_calls();
        let res = call.await;
        assert_eq!(
            res.status.as_u16(),
            expect,
            "{route}: {}",
            String::from_utf8_lossy(&res.body)
        );
        // Concurrent requests arrive in any order: listed by operation, with counts.
        let mut ops: BTreeMap<String, usize> = BTreeMap::new();
        for op in &self.recorder.requests()[aws_before..] {
            *ops.entry(op.replacen(':', " ", 1)).or_default() += 1;
        }
        let total: usize = ops.values().sum();
        let aws: Vec<String> = ops
            .iter()
            .map(|(op, n)| {
                if *n == 1 {
                    op.clone()
                } else {
                    format!("{op} ×{n}")
                }
            })
            .collect();
        let graph_after = self.t.sandbox.all_calls();
        let graph: BTreeMap<&String, u64> = graph_after
            .iter()
            .map(|(k, v)| (k, v - graph_before.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        let graph_total: u64 = graph.values().sum();
        let graph_list: Vec<String> = graph.keys().map(|k| (*k).clone()).collect();
        self.rows.push(format!(
            "| `{route}` | {} | {} | {} | {} |",
            total,
            aws.join(", "),
            graph_total,
            if graph_list.is_empty() {
                "-".to_owned()
            } else {
                graph_list.join(", ")
            }
        ));
        res
    }
}

fn doc_rows() -> Vec<String> {
    let start = DOC
        .find("<!-- round-trips:begin -->")
        .expect("begin marker");
    let end = DOC.find("<!-- round-trips:end -->").expect("end marker");
    DOC[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn each_route_makes_the_requests_docs_performance_lists() {
    let recorder = Recorder::start().await;
    let t = TestApp::spawn(Backend::aws_through(&recorder).await).await;
    // Warm up, as a warm Lambda is: the App's data key is cached after one signup.
    let (token, _) = t.signup_token().await;
    assert_eq!(t.finish(&token, &t.sandbox_signup()).await.status, 200);
    t.run_jobs().await;

    let mut c = Counter {
        recorder: &recorder,
        t: &t,
        rows: Vec::new(),
    };
    let body = json!({"redirectUrl": "https://partner.example/done"});
    let issued = c
        .measure("POST /v1/apps/token", 200, t.issue(body))
        .await
        .json();
    let (token, session) = (
        issued["token"].as_str().unwrap(),
        issued["sessionId"].as_str().unwrap(),
    );
    c.measure("GET /v1/sessions/{id}", 200, t.get_session(session))
        .await;
    let page = Request::get(format!("/apps/{}?token={token}", t.app.slug))
        .body(Body::empty())
        .unwrap();
    c.measure("GET /apps/{slug}", 200, t.send(page)).await;
    let cancel = json!({"token": token, "event": "CANCEL", "step": "PHONE_NUMBER_SETUP"});
    c.measure(
        "POST /v1/signup/callback (CANCEL)",
        200,
        t.post_json("/v1/signup/callback", cancel),
    )
    .await;
    let s = t.sandbox_signup();
    c.measure(
        "POST /v1/signup/callback (FINISH)",
        200,
        t.finish(token, &s),
    )
    .await;
    t.run_jobs().await;
    let phone = s.phone_number_id.as_str();
    let get = |uri: String| t.send(t.authed(Method::GET, &uri).body(Body::empty()).unwrap());
    let post = |uri: String| t.send(t.authed(Method::POST, &uri).body(Body::empty()).unwrap());
    c.measure("GET /v1/numbers", 200, get("/v1/numbers".into()))
        .await;
    c.measure(
        "GET /v1/numbers/{id}",
        200,
        get(format!("/v1/numbers/{phone}")),
    )
    .await;
    c.measure(
        "GET /v1/numbers/{id}/history",
        200,
        get(format!("/v1/numbers/{phone}/history")),
    )
    .await;
    c.measure(
        "POST /v1/numbers/{id}/health-check",
        200,
        post(format!("/v1/numbers/{phone}/health-check")),
    )
    .await;
    // A number whose registration waits for its owner, then asked for again.
    let (token, _) = t.signup_token().await;
    let waiting = t
        .sandbox
        .signup(SignupRequest {
            scenario: Some(Scenario::TwoStepPinSet),
            ..SignupRequest::default()
        })
        .unwrap();
    assert_eq!(t.finish(&token, &waiting).await.status, 200);
    t.run_jobs().await;
    c.measure(
        "POST /v1/numbers/{id}/setup",
        202,
        post(format!("/v1/numbers/{}/setup", waiting.phone_number_id)),
    )
    .await;
    let delete = t
        .authed(Method::DELETE, &format!("/v1/numbers/{phone}"))
        .body(Body::empty())
        .unwrap();
    c.measure("DELETE /v1/numbers/{id}", 204, t.send(delete))
        .await;

    let measured = c.rows;
    assert_eq!(
        measured,
        doc_rows(),
        "docs/PERFORMANCE.md's round-trip table differs from what was measured:\n{}",
        measured.join("\n")
    );
}

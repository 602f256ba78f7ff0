//! The OpenAPI description (`shared/http/openapi.json`, served at `/openapi.json`) and
//! what is actually routed agree, both ways: every described operation reaches a handler
//! of the local router and has an API Gateway route in `template.yaml`; every route the
//! routers declare is described, except the dashboard's HTML pages (a browser UI behind a
//! session cookie, not an API) and the sandbox. The schemas themselves are checked
//! against live answers by schemathesis (`scripts/api-contract`).

use std::collections::BTreeSet;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use pipes_tests::{Backend, TestApp};
use serde_json::Value;

/// The routers' sources, scanned for `.route("path", method(...))`.
const ROUTER_SOURCES: &[(&str, &str)] = &[
    (
        "partner.rs",
        include_str!("../../../shared/http/src/partner.rs"),
    ),
    (
        "numbers.rs",
        include_str!("../../../shared/http/src/numbers.rs"),
    ),
    (
        "events.rs",
        include_str!("../../../shared/http/src/events.rs"),
    ),
    (
        "webhooks.rs",
        include_str!("../../../shared/http/src/webhooks.rs"),
    ),
    (
        "signup.rs",
        include_str!("../../../shared/http/src/signup.rs"),
    ),
    (
        "dashboard.rs",
        include_str!("../../../shared/http/src/dashboard.rs"),
    ),
    (
        "dashboard_webhooks.rs",
        include_str!("../../../shared/http/src/dashboard_webhooks.rs"),
    ),
    (
        "openapi.rs",
        include_str!("../../../shared/http/src/openapi.rs"),
    ),
    (
        "layers.rs",
        include_str!("../../../shared/http/src/layers.rs"),
    ),
];

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch"];

fn description() -> Value {
    serde_json::from_str(pipes_http::openapi::DESCRIPTION).expect("openapi.json parses")
}

/// `(METHOD, path)` of every described operation.
fn described() -> BTreeSet<(String, String)> {
    let doc = description();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// `(METHOD, path)` of every `.route(...)` in `source`: the first string literal is
/// the path; `get(`, `.post(` … inside the call are its methods.
fn routes_in(source: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        let call = &rest[at + ".route(".len()..];
        // The call's extent: up to its closing parenthesis.
        let mut depth = 1;
        let mut end = call.len();
        for (i, c) in call.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let call = &call[..end];
        let path = call.split('"').nth(1).expect("a route's path literal");
        for m in METHODS {
            let needle = format!("{m}(");
            let found = call.match_indices(&needle).any(|(i, _)| {
                i == 0 || {
                    let before = call.as_bytes()[i - 1];
                    !(before.is_ascii_alphanumeric() || before == b'_')
                }
            });
            if found {
                out.push((m.to_uppercase(), path.to_owned()));
            }
        }
        rest = &rest[at + 1..];
    }
    out
}

/// Routes outside the public API: the dashboard's pages (cookie and CSRF, HTML).
fn is_browser_ui(path: &str) -> bool {
    path == "/dashboard" || path.starts_with("/dashboard/")
}

#[test]
fn every_declared_route_is_described() {
    let described = described();
    let mut missing = Vec::new();
    let mut seen = 0;
    for (file, source) in ROUTER_SOURCES {
        for (method, path) in routes_in(source) {
            seen += 1;
            if !is_browser_ui(&path) && !described.contains(&(method.clone(), path.clone())) {
                missing.push(format!("{method} {path} ({file})"));
            }
        }
    }
    assert!(
        seen >= 40,
        "the scan found only {seen} routes: is it still reading .route( calls?"
    );
    assert!(
        missing.is_empty(),
        "routed but not in openapi.json: {missing:?}"
    );
}

#[test]
fn the_scan_reads_multi_line_routes_with_several_methods() {
    let source = r#"Router::new()
        .route(
            "/v1/x",
            get(show).put(register).delete(remove),
        )
        .route("/v1/y/{id}", post(again))"#;
    assert_eq!(
        routes_in(source),
        [
            ("GET".to_owned(), "/v1/x".to_owned()),
            ("PUT".to_owned(), "/v1/x".to_owned()),
            ("DELETE".to_owned(), "/v1/x".to_owned()),
            ("POST".to_owned(), "/v1/y/{id}".to_owned()),
        ]
    );
}

#[tokio::test]
async fn every_described_operation_reaches_a_handler() {
    let t = TestApp::spawn(Backend::embedded()).await;
    for (method, path) in described() {
        let uri: String = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&uri)
            .body(Body::empty())
            .unwrap();
        let res = t.send(req).await;
        let fallback = (res.status == StatusCode::NOT_FOUND
            && String::from_utf8_lossy(&res.body).contains("route not found"))
            || res.status == StatusCode::METHOD_NOT_ALLOWED;
        assert!(
            !fallback,
            "{method} {path} is described but not routed ({})",
            res.status
        );
    }
}

/// `{sessionId}` in API Gateway and `{session_id}` in axum are the same parameter.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_described_operation_has_an_api_gateway_route() {
    let template: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(pipes_tests::iam::TEMPLATE).expect("template.yaml parses");
    let mut routed = BTreeSet::new();
    for (_, resource) in template["Resources"].as_mapping().expect("resources") {
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            if event["Type"].as_str() == Some("HttpApi") {
                let p = &event["Properties"];
                routed.insert((
                    p["Method"].as_str().unwrap_or_default().to_uppercase(),
                    shape(p["Path"].as_str().unwrap_or_default()),
                ));
            }
        }
    }
    // API Gateway's matching: `ANY` takes every method, `{param}` any one segment.
    let deployed = |method: &str, path: &str| {
        let want: Vec<&str> = path.split('/').collect();
        routed.iter().any(|(m, p)| {
            let have: Vec<&str> = p.split('/').collect();
            (m == method || m == "ANY")
                && have.len() == want.len()
                && have.iter().zip(&want).all(|(h, w)| h == w || *h == "{}")
        })
    };
    let missing: Vec<_> = described()
        .into_iter()
        // The local server's liveness probe; API Gateway has its own.
        .filter(|(_, path)| path != "/healthz")
        .filter(|(method, path)| !deployed(method, path))
        .collect();
    assert!(
        missing.is_empty(),
        "described but not deployed: {missing:?}"
    );
}

#[tokio::test]
async fn the_served_description_names_this_deployment() {
    let t = TestApp::spawn(Backend::embedded()).await;
    let res = t
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["content-type"], "application/json");
    let served = res.json();
    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(served["servers"][0]["url"], pipes_tests::BASE_URL);
    assert_eq!(served["paths"], description()["paths"]);
}

/// Every example in the description satisfies its own schema, so a generated client or
/// a mock server built from it agrees with what the service sends.
#[test]
fn every_example_matches_its_schema() {
    let doc = description();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut media = Vec::new();
            if let Some(c) = op["requestBody"]["content"].as_object() {
                media.extend(c.iter().map(|(k, v)| (format!("request {k}"), v)));
            }
            if let Some(responses) = op["responses"].as_object() {
                for (status, r) in responses {
                    if let Some(c) = r["content"].as_object() {
                        media.extend(c.iter().map(|(k, v)| (format!("{status} {k}"), v)));
                    }
                }
            }
            for (what, m) in media {
                let (Some(schema), Some(example)) = (m.get("schema"), m.get("example")) else {
                    continue;
                };
                // `$ref`s resolve against the components carried alongside.
                let mut wrapped = serde_json::json!({"components": doc["components"]});
                if let Some(obj) = schema.as_object() {
                    for (k, v) in obj {
                        wrapped[k] = v.clone();
                    }
                }
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .build(&wrapped)
                    .unwrap_or_else(|e| panic!("{method} {path} {what}: schema: {e}"));
                checked += 1;
                if let Err(e) = validator.validate(example) {
                    wrong.push(format!("{method} {path} {what}: {e}"));
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} examples checked");
    assert!(wrong.is_empty(), "{wrong:#?}");
}

//! The `pipes` binary as a newcomer uses it: `pipes dev` on a data dir, the admin
//! commands beside a running server, restarts, and concurrent load on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

const PIPES: &str = env!("CARGO_BIN_EXE_pipes");

/// A running `pipes dev`, killed (SIGKILL, no chance to flush) when dropped.
struct DevServer {
    child: Child,
    base: String,
    /// The demo App's key when this start created it.
    demo_key: Option<String>,
    lines: Vec<String>,
}

impl DevServer {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(PIPES)
            .args(["dev", "--port", "0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .env_remove("PUBLIC_BASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        while !lines.iter().any(|l: &String| l.starts_with("ready")) {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("pipes dev printed no banner: {lines:?}"));
            lines.push(line);
        }
        let base = lines
            .iter()
            .find_map(|l| l.strip_prefix("Pipes.bot dev server listening on "))
            .expect("listening line")
            .to_owned();
        let demo_key = lines
            .iter()
            .find_map(|l| l.strip_prefix("app key: "))
            .map(|rest| rest.split_whitespace().next().unwrap().to_owned());
        Self {
            child,
            base,
            demo_key,
            lines,
        }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipes(args: &[&str], data_dir: &Path) -> std::process::Output {
    Command::new(PIPES)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .env_remove("PIPES_TABLE")
        .output()
        .unwrap()
}

fn stdout_json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "--json prints exactly one line: {text}"
    );
    serde_json::from_str(&text).unwrap()
}

async fn issue(client: &reqwest::Client, base: &str, key: &str) -> reqwest::Response {
    client
        .post(format!("{base}/v1/apps/token"))
        .bearer_auth(key)
        .json(&json!({"redirectUrl": "http://localhost:8080/done", "metadata": {"n": 1}}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_walkthrough_works_and_sessions_survive_a_hard_restart() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let server = DevServer::start(dir.path());
    let key = server
        .demo_key
        .clone()
        .expect("first start prints the demo key");
    assert!(
        server.lines.iter().any(|l| l.contains("curl -s -X POST")),
        "{:?}",
        server.lines
    );

    let res = issue(&client, &server.base, &key).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        v["signupUrl"].as_str().unwrap(),
        format!(
            "{}/apps/demo?token={}",
            server.base,
            v["token"].as_str().unwrap()
        )
    );
    let session_id = v["sessionId"].as_str().unwrap().to_owned();
    drop(server); // SIGKILL: what was acknowledged must already be on disk.

    let server = DevServer::start(dir.path());
    assert_eq!(server.demo_key, None, "the key is shown once only");
    let res = client
        .get(format!("{}/v1/sessions/{session_id}", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let s: Value = res.json().await.unwrap();
    assert_eq!(s["status"], "pending");
    assert_eq!(s["metadata"], json!({"n": 1}));
    let health = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
}

#[tokio::test]
async fn admin_commands_work_beside_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let server = DevServer::start(dir.path());

    let created = stdout_json(&pipes(
        &[
            "apps",
            "create",
            "--slug",
            "acme",
            "--name",
            "Acme CRM",
            "--redirect-origin",
            "https://partner.example",
            "--json",
        ],
        dir.path(),
    ));
    assert_eq!(created["slug"], "acme");
    assert_eq!(created["name"], "Acme CRM");
    assert!(created["appId"].as_str().unwrap().starts_with("app_"));
    let first_key = created["appKey"].as_str().unwrap().to_owned();
    let obj = created.as_object().unwrap();
    assert_eq!(obj.len(), 4, "exactly appId, slug, name, appKey: {created}");

    // The running server sees the App at once; its origin allow-list applies.
    assert_eq!(issue(&client, &server.base, &first_key).await.status(), 400);
    let ok = client
        .post(format!("{}/v1/apps/token", server.base))
        .bearer_auth(&first_key)
        .json(&json!({"redirectUrl": "https://partner.example/done"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // Rotation: a second key works, then the first is revoked and stops at once.
    let second = stdout_json(&pipes(
        &["apps", "keys", "create", "--app", "acme", "--json"],
        dir.path(),
    ));
    let second_key = second["appKey"].as_str().unwrap().to_owned();
    let keys = stdout_json(&pipes(
        &["apps", "keys", "list", "--app", "acme", "--json"],
        dir.path(),
    ));
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let first_id = keys.iter().find(|k| k["keyId"] != second["keyId"]).unwrap()["keyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = pipes(
        &[
            "apps", "keys", "revoke", "--app", "acme", "--key-id", &first_id,
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ping = |key: String| {
        let client = client.clone();
        let url = format!("{}/v1/sessions/ses_AAAAAAAAAAAAAAAAAAAA", server.base);
        async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(ping(first_key).await, 401);
    assert_eq!(ping(second_key).await, 404);

    let listed = stdout_json(&pipes(&["apps", "list", "--json"], dir.path()));
    let slugs: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["demo", "acme"]);
}

#[tokio::test]
async fn admin_mistakes_are_reported_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ok = pipes(
        &["apps", "create", "--slug", "acme", "--name", "Acme"],
        dir.path(),
    );
    assert!(ok.status.success());
    for (args, says) in [
        (
            vec!["apps", "create", "--slug", "acme", "--name", "Again"],
            "slug is already taken",
        ),
        (
            vec!["apps", "create", "--slug", "Bad Slug", "--name", "X"],
            "invalid slug",
        ),
        (
            vec![
                "apps",
                "create",
                "--slug",
                "ok-slug",
                "--name",
                "X",
                "--redirect-origin",
                "http://evil.example",
            ],
            "invalid redirect origin",
        ),
        (
            vec!["apps", "keys", "create", "--app", "nobody"],
            "no such App",
        ),
        (
            vec![
                "apps",
                "keys",
                "revoke",
                "--app",
                "acme",
                "--key-id",
                "key_AAAAAAAAAAAAAAAA",
            ],
            "no such key",
        ),
    ] {
        let out = pipes(&args, dir.path());
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let listed = stdout_json(&pipes(&["apps", "list", "--json"], dir.path()));
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn two_hundred_concurrent_token_requests_all_succeed_with_distinct_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = DevServer::start(dir.path());
    let key = server.demo_key.clone().unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    // The default limit (100 per aligned 5 s window) refuses a burst of 150 with 429s.
    // The burst starts early in a window, so it normally stays within one (exactly 100
    // accepted); on a machine slow enough to cross into the next, each window touched
    // accepts at most 100.
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
    };
    let into_window = unix().as_millis() % 5000;
    if into_window > 1000 {
        tokio::time::sleep(std::time::Duration::from_millis(
            (5000 - into_window) as u64 + 50,
        ))
        .await;
    }
    let first_window = unix().as_secs() / 5;
    let burst: Vec<u16> = futures_util::future::join_all((0..150).map(|_| {
        let (client, base, key) = (client.clone(), server.base.clone(), key.clone());
        async move { issue(&client, &base, &key).await.status().as_u16() }
    }))
    .await;
    let windows = (unix().as_secs() / 5 - first_window + 1) as usize;
    let limited = burst.iter().filter(|s| **s == 429).count();
    let accepted = burst.iter().filter(|s| **s == 200).count();
    if windows == 1 {
        assert_eq!(accepted, 100, "{limited} of 150 limited");
    }
    assert!(
        accepted <= 100 * windows,
        "{accepted} accepted over {windows} windows"
    );
    assert_eq!(accepted + limited, 150);
    // An operator raises this App's limit; the running server applies it at once.
    let updated = stdout_json(&pipes(
        &[
            "apps", "update", "--app", "demo", "--rate", "500", "--burst", "5000", "--json",
        ],
        dir.path(),
    ));
    assert_eq!(
        updated["rateLimit"],
        json!({"perSecond": 500, "burst": 5000})
    );
    let requests = (0..200).map(|_| {
        let (client, base, key) = (client.clone(), server.base.clone(), key.clone());
        tokio::spawn(async move {
            let res = issue(&client, &base, &key).await;
            assert_eq!(res.status(), 200);
            let v: Value = res.json().await.unwrap();
            (
                v["token"].as_str().unwrap().to_owned(),
                v["sessionId"].as_str().unwrap().to_owned(),
            )
        })
    });
    let results: Vec<(String, String)> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let tokens: std::collections::HashSet<_> = results.iter().map(|r| &r.0).collect();
    let sessions: std::collections::HashSet<_> = results.iter().map(|r| &r.1).collect();
    assert_eq!((tokens.len(), sessions.len()), (200, 200));
}

#[tokio::test]
async fn admin_commands_work_on_dynamodb() {
    let store = pipes_tests::dynamo_store().await;
    let table = store.table().to_owned();
    let run = |args: &[&str]| {
        Command::new(PIPES)
            .args(args)
            .args(["--table", &table])
            .env("RUST_LOG", "warn")
            .env_remove("PIPES_DATA_DIR")
            .output()
            .unwrap()
    };
    let created = stdout_json(&run(&[
        "apps", "create", "--slug", "acme", "--name", "Acme", "--json",
    ]));
    let key = created["appKey"].as_str().unwrap();
    let app =
        pipes_core::AppStore::app_for_key(&store, &pipes_core::AppKey::parse(key).unwrap().hash())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(app.id.as_str(), created["appId"].as_str().unwrap());
    let listed = stdout_json(&run(&["apps", "list", "--json"]));
    assert_eq!(listed[0]["slug"], "acme");
}

#[tokio::test]
async fn the_lifecycle_on_pipes_dev_signup_healthy_revoke_sweep_down_remove() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let server = DevServer::start(dir.path());
    let key = server.demo_key.clone().unwrap();
    let base = &server.base;
    let issued: Value = issue(&client, base, &key).await.json().await.unwrap();
    let signup: Value = client
        .post(format!("{base}/sandbox/signups"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let phone = signup["phoneNumberId"].as_str().unwrap().to_owned();
    let body = json!({"token": issued["token"], "event": "FINISH", "code": signup["code"], "wabaId": signup["wabaId"], "phoneNumberId": phone, "businessId": signup["businessId"]});
    let res = client
        .post(format!("{base}/v1/signup/callback"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let number = |client: reqwest::Client| {
        let url = format!("{base}/v1/numbers/{phone}");
        let key = key.clone();
        async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let mut status = String::new();
    for _ in 0..100 {
        status = number(client.clone()).await["health"]["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status == "healthy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "healthy", "the in-process worker set the number up");

    client
        .post(format!("{base}/sandbox/numbers/{phone}/revoke"))
        .send()
        .await
        .unwrap();
    let out = pipes(
        &[
            "sweep",
            "--all",
            "--sandbox-graph-url",
            &format!("{base}/sandbox/graph"),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("checked 1 (healthy 0, degraded 0, down 1), 1 status changes"),
        "{text}"
    );
    let n = number(client.clone()).await;
    assert_eq!(
        (
            n["health"]["status"].as_str(),
            n["health"]["reason"].as_str()
        ),
        (Some("down"), Some("token_invalid"))
    );
    let history: Value = client
        .get(format!("{base}/v1/numbers/{phone}/history"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["events"][0]["to"], "down");

    let res = client
        .delete(format!("{base}/v1/numbers/{phone}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(number(client.clone()).await["health"]["status"], "removed");
}

/// Events under `pipes dev`, as a developer sees them: the endpoint set with `pipes apps
/// webhook set`, the sandbox sending a signed Meta webhook, the number going down, and
/// the partner's endpoint (on loopback) receiving the signed event. Prints how long
/// each step took (figures for docs/PERFORMANCE.md; nothing here asserts a time).
#[tokio::test]
async fn meta_webhooks_and_partner_events_run_end_to_end_under_pipes_dev() {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let server = DevServer::start(dir.path());
    let key = server.demo_key.clone().unwrap();
    assert!(
        server
            .lines
            .iter()
            .any(|l| l.starts_with("webhook verify token for this run: ")),
        "{:?}",
        server.lines
    );

    // The partner's endpoint.
    let got: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
    let seen = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = Arc::clone(&seen);
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap();
                seen.lock().unwrap().push((Instant::now(), v));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let set = stdout_json(&pipes(
        &[
            "apps", "webhook", "set", "--app", "demo", "--url", &hook, "--json",
        ],
        dir.path(),
    ));
    assert!(set["secret"].as_str().unwrap().starts_with("whsec_"));

    // A number connected through the sandbox.
    let base = &server.base;
    let token: Value = issue(&client, base, &key).await.json().await.unwrap();
    let signup: Value = client
        .post(format!("{base}/sandbox/signups"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let done = client
        .post(format!("{base}/v1/signup/callback"))
        .json(
            &json!({"token": token["token"], "event": "FINISH", "code": signup["code"],
            "wabaId": signup["wabaId"], "phoneNumberId": signup["phoneNumberId"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let phone = signup["phoneNumberId"].as_str().unwrap();
    let status = || async {
        let n: Value = client
            .get(format!("{base}/v1/numbers/{phone}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        n["health"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while status().await != "healthy" {
        assert!(Instant::now() < deadline, "the setup never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Meta (the sandbox) says the business removed our access.
    let sent = Instant::now();
    let res: Value = client
        .post(format!("{base}/sandbox/webhooks"))
        .json(&json!({"field": "account_update", "entryId": signup["wabaId"],
            "value": {"event": "PARTNER_REMOVED", "waba_info": {"waba_id": signup["wabaId"], "owner_business_id": "1"}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["status"], 200, "{res}");
    while status().await != "down" {
        assert!(Instant::now() < deadline, "the number never went down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let down_after = sent.elapsed();
    let received = loop {
        let hit = got.lock().unwrap().iter().find_map(|(at, v)| {
            (v["type"] == "number.health_changed" && v["data"]["to"] == "down").then_some(*at)
        });
        if let Some(at) = hit {
            break at;
        }
        assert!(Instant::now() < deadline, "the event never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!(
        "pipes dev: signed account_update -> number down (as the API shows it) in {} ms; \
         -> number.health_changed at the partner's endpoint in {} ms",
        down_after.as_millis(),
        received.duration_since(sent).as_millis()
    );
    let events = stdout_json(&pipes(
        &["apps", "webhook", "events", "--app", "demo", "--json"],
        dir.path(),
    ));
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for kind in [
        "signup.completed",
        "number.connected",
        "number.health_changed",
    ] {
        assert!(kinds.contains(&kind), "{kind}: {kinds:?}");
    }
    // A change naming nothing of ours is kept for the operator.
    client
        .post(format!("{base}/sandbox/webhooks"))
        .json(&json!({"field": "account_update", "entryId": "4242", "value": {"event": "ACCOUNT_DELETED"}}))
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = pipes(&["meta-changes", "--json"], dir.path());
        let kept = stdout_json(&out);
        if kept
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["change"]["entryId"] == "4242")
        {
            break;
        }
        assert!(Instant::now() < deadline, "not kept: {kept}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `kill -9` of `pipes dev` in the middle of mixed requests (links minted, signups
/// completed, checks, events): after a restart every acknowledged write is there, and
/// every number whose signup was acknowledged finishes its setup (its job survived).
/// `PIPES_TRIALS` sets the size: 200 requests by default, `PIPES_TRIALS=100` for 1,000.
#[tokio::test]
async fn a_kill_9_mid_traffic_loses_no_acknowledged_write_and_no_setup() {
    use std::sync::{Arc, Mutex};
    let total = std::env::var("PIPES_TRIALS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(200, |n| n * 10);
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let server = DevServer::start(dir.path());
    let key = server.demo_key.clone().unwrap();
    stdout_json(&pipes(
        &[
            "apps", "update", "--app", "demo", "--rate", "500", "--burst", "30000", "--json",
        ],
        dir.path(),
    ));
    let base = server.base.clone();
    let minted: Arc<Mutex<Vec<String>>> = Arc::default();
    let connected: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..total {
        let (client, base, key) = (client.clone(), base.clone(), key.clone());
        let (minted, connected) = (Arc::clone(&minted), Arc::clone(&connected));
        tasks.push(tokio::spawn(async move {
            let Ok(res) = client
                .post(format!("{base}/v1/apps/token"))
                .bearer_auth(&key)
                .json(&json!({"redirectUrl": "http://localhost:8080/done"}))
                .send()
                .await
            else {
                return;
            };
            let Ok(v) = res.json::<Value>().await else {
                return;
            };
            minted
                .lock()
                .unwrap()
                .push(v["sessionId"].as_str().unwrap().to_owned());
            if i % 2 == 0 {
                // Every other one is completed: the owner ran Meta's flow.
                let Ok(res) = client
                    .post(format!("{base}/sandbox/signups"))
                    .json(&json!({}))
                    .send()
                    .await
                else {
                    return;
                };
                let Ok(s) = res.json::<Value>().await else {
                    return;
                };
                let Ok(done) = client
                    .post(format!("{base}/v1/signup/callback"))
                    .json(
                        &json!({"token": v["token"], "event": "FINISH", "code": s["code"],
                        "wabaId": s["wabaId"], "phoneNumberId": s["phoneNumberId"]}),
                    )
                    .send()
                    .await
                else {
                    return;
                };
                if done.status() == 200 && done.json::<Value>().await.is_ok() {
                    connected
                        .lock()
                        .unwrap()
                        .push(s["phoneNumberId"].as_str().unwrap().to_owned());
                }
            }
        }));
    }
    // Kill it while requests are in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while connected.lock().unwrap().len() < (total / 20).max(1)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed_at = std::time::Instant::now();
    drop(server); // SIGKILL
    for t in tasks {
        let _ = t.await;
    }
    let minted = minted.lock().unwrap().clone();
    let connected = connected.lock().unwrap().clone();
    assert!(!minted.is_empty() && !connected.is_empty());
    let server = DevServer::start(dir.path());
    let base = &server.base;
    for id in &minted {
        let res = client
            .get(format!("{base}/v1/sessions/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "an acknowledged session was lost: {id}");
    }
    eprintln!(
        "crash: restarted {} ms after the kill",
        killed_at.elapsed().as_millis()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    for phone in &connected {
        loop {
            let n: Value = client
                .get(format!("{base}/v1/numbers/{phone}"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if n["health"]["status"] == "healthy" {
                break;
            }
            assert_eq!(
                n["phoneNumberId"],
                phone.as_str(),
                "an acknowledged number was lost"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "{phone} never finished its setup: {n}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "crash: kill -9 after {} of {total} requests sent; {} sessions and {} connected numbers \
         acknowledged, all found after the restart, every setup finished",
        minted.len(),
        minted.len(),
        connected.len()
    );
}

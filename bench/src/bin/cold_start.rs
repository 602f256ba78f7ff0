//! Cold starts against the floor: each function's real bootstrap (release build) started
//! again and again against the repo's local Lambda Runtime API, with its real
//! configuration on moto's server and the sandbox as Meta, next to a bare
//! `lambda_runtime` echo function (the floor). Reports init time (spawn to the first
//! request for an invocation), peak RSS, and the warm invoke time of a typical event.
//! The Runtime API answers with TCP_NODELAY, so no delayed-ACK wait is counted. The
//! functions take turns (round-robin), so the floor is measured under the same load.
//! Run (moto's server on AWS_ENDPOINT_URL, see scripts/bench):
//! `$bin/cold_start --bin-dir $bin --starts 15 --invokes 30`
//! (`bin=target/bench/x86_64-unknown-linux-gnu/release` after `scripts/bench`)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use pipes_tests::runtime_api::{LambdaHarness, Outcome};
use pipes_tests::{Backend, TestApp};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    /// Where the release binaries are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Cold starts per function.
    #[arg(long, default_value_t = 15)]
    starts: usize,
    /// Warm invokes per cold start.
    #[arg(long, default_value_t = 30)]
    invokes: usize,
    /// Also measure the Node.js token route in this folder (`bench/node/token-issuer`,
    /// after `npm ci`), side by side with the Rust token-issuer.
    #[arg(long)]
    node: Option<PathBuf>,
}

const EVENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");
const SAMPLE_KEY: &str = "ak_SAMPLEsampleSAMPLEsampleSAMPLE00";
const SAMPLE_TOKEN: &str = "tok_SAMPLEsampleSAMPLEsampleSAMPLE00";

fn event(path: &str, replace: &[(&str, &str)]) -> Value {
    let mut text = std::fs::read_to_string(Path::new(EVENTS).join(path)).unwrap();
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    serde_json::from_str(&text).unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[derive(Default)]
struct Measured {
    init_ms: Vec<f64>,
    warm_ms: Vec<f64>,
    peak_kib: Vec<u64>,
}

impl Measured {
    fn sort(&mut self) {
        self.init_ms.sort_by(f64::total_cmp);
        self.warm_ms.sort_by(f64::total_cmp);
        self.peak_kib.sort_unstable();
    }
}

/// One cold start and its warm invokes, added to `m`.
async fn start_once(
    m: &mut Measured,
    binary: &Path,
    env: &[(String, String)],
    event: &Value,
    args: &Args,
) {
    let mut lambda = LambdaHarness::start().await;
    lambda.spawn(binary, env);
    m.init_ms
        .push(lambda.wait_ready().await.as_secs_f64() * 1000.0);
    for i in 0..=args.invokes {
        let start = Instant::now();
        let outcome = lambda.invoke(event.clone()).await;
        let took = start.elapsed();
        assert!(
            matches!(outcome, Outcome::Response { .. }),
            "{}: {outcome:?}",
            binary.display()
        );
        // The first invoke of a process is not warm (connections, caches).
        if i > 0 {
            m.warm_ms.push(took.as_secs_f64() * 1000.0);
        }
    }
    m.peak_kib.push(lambda.peak_rss_kib().unwrap_or(0));
    lambda.stop();
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let t = TestApp::spawn(Backend::aws().await).await;
    // A connected number and a pending signup link, for the events to act on.
    let (token, _) = t.signup_token().await;
    assert_eq!(t.finish(&token, &t.sandbox_signup()).await.status, 200);
    t.run_jobs().await;
    let (token, _) = t.signup_token().await;
    let key = t.key.expose().to_owned();
    let slug = t.app.slug.to_string();
    let mut env: Vec<(String, String)> = t
        .function_env()
        .await
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.push(("SWEEP_CONCURRENCY".into(), "32".into()));
    env.push(("SWEEP_MAX_INLINE".into(), "50000".into()));

    let token_event = event("token-issuer/post-apps-token.json", &[(SAMPLE_KEY, &key)]);
    let page = event(
        "signup-callback/get-signup-page.json",
        &[
            (SAMPLE_TOKEN, &token),
            ("\"acme\"", &format!("\"{slug}\"")),
            ("/apps/acme", &format!("/apps/{slug}")),
        ],
    );
    let check_job = json!({"Records": [{
        "messageId": "bench-1", "receiptHandle": "r", "body": "{\"type\":\"check\",\"numbers\":[]}",
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "eventSource": "aws:sqs", "awsRegion": "us-east-1"
    }]});
    let functions: Vec<(&str, Value)> = vec![
        ("echo", json!({"ping": true})),
        // The floor, in an executable as large as the token issuer's (its init linked in,
        // not run): what the size costs apart from what init does.
        ("echo_linked", json!({"ping": true})),
        ("token-issuer", token_event.clone()),
        ("signup-callback", page),
        (
            "numbers-api",
            event("numbers-api/list-numbers.json", &[(SAMPLE_KEY, &key)]),
        ),
        ("webhook-setup", check_job),
        ("health-sweep", event("health-sweep/scheduled.json", &[])),
        ("dashboard", event("dashboard/get-login.json", &[])),
    ];
    println!(
        "| function | init p50 | init p90 | init vs floor | peak RSS | RSS vs floor | warm invoke p50 | warm invoke p90 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // Round-robin: each round starts every function once, in an order that rotates
    // from round to round, so the floor and the functions see the same machine (a
    // busy moment or a cold page cache counts against all of them, not one).
    let mut measured: Vec<Measured> = functions.iter().map(|_| Measured::default()).collect();
    for round in 0..args.starts {
        for k in 0..functions.len() {
            let i = (round + k) % functions.len();
            let (name, ev) = &functions[i];
            start_once(&mut measured[i], &args.bin_dir.join(name), &env, ev, &args).await;
        }
    }
    let mut floor: Option<(f64, f64)> = None;
    for ((name, _), mut m) in functions.iter().zip(measured) {
        m.sort();
        let init = percentile(&m.init_ms, 0.5);
        let rss = m.peak_kib[m.peak_kib.len() / 2] as f64 / 1024.0;
        let (floor_init, floor_rss) = *floor.get_or_insert((init, rss));
        println!(
            "| {name} | {init:.1} ms | {:.1} ms | {:.2}× | {rss:.1} MiB | {:.2}× | {:.2} ms | {:.2} ms |",
            percentile(&m.init_ms, 0.9),
            init / floor_init,
            rss / floor_rss,
            percentile(&m.warm_ms, 0.5),
            percentile(&m.warm_ms, 0.9),
        );
    }
    if let Some(dir) = &args.node {
        // `node index.mjs` as the function's bootstrap (the harness starts one binary).
        let script = std::fs::canonicalize(dir.join("index.mjs")).unwrap();
        let wrapper = std::env::temp_dir().join(format!("node-bootstrap-{}", std::process::id()));
        std::fs::write(
            &wrapper,
            format!("#!/bin/sh\nexec node '{}'\n", script.display()),
        )
        .unwrap();
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        // moto's TransactWriteItems deep-copies the table, so it slows as the table
        // grows (DynamoDB does not): each pair of cold starts gets a fresh table and App,
        // and the two sides take turns going first.
        let (mut rust, mut node) = (Measured::default(), Measured::default());
        let token_issuer = args.bin_dir.join("token-issuer");
        for i in 0..args.starts {
            let t = TestApp::spawn(Backend::aws().await).await;
            let env: Vec<(String, String)> = t
                .function_env()
                .await
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            let ev = event(
                "token-issuer/post-apps-token.json",
                &[(SAMPLE_KEY, t.key.expose())],
            );
            if i % 2 == 0 {
                start_once(&mut rust, &token_issuer, &env, &ev, &args).await;
                start_once(&mut node, &wrapper, &env, &ev, &args).await;
            } else {
                start_once(&mut node, &wrapper, &env, &ev, &args).await;
                start_once(&mut rust, &token_issuer, &env, &ev, &args).await;
            }
        }
        rust.sort();
        node.sort();
        std::fs::remove_file(&wrapper).ok();
        println!();
        println!(
            "Token route, Rust against Node.js 20 + AWS SDK v3 (same moto, same Runtime API, same requests; a fresh table for each pair of cold starts):"
        );
        println!();
        println!("| token route | init p50 | peak RSS | warm invoke p50 | warm invoke p90 |");
        println!("|---|---|---|---|---|");
        for (label, m) in [("Rust (token-issuer)", &rust), ("Node.js 20", &node)] {
            println!(
                "| {label} | {:.1} ms | {:.1} MiB | {:.2} ms | {:.2} ms |",
                percentile(&m.init_ms, 0.5),
                m.peak_kib[m.peak_kib.len() / 2] as f64 / 1024.0,
                percentile(&m.warm_ms, 0.5),
                percentile(&m.warm_ms, 0.9),
            );
        }
        println!(
            "| Rust / Node.js | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
            percentile(&rust.init_ms, 0.5) / percentile(&node.init_ms, 0.5),
            rust.peak_kib[rust.peak_kib.len() / 2] as f64
                / node.peak_kib[node.peak_kib.len() / 2] as f64,
            percentile(&rust.warm_ms, 0.5) / percentile(&node.warm_ms, 0.5),
            percentile(&rust.warm_ms, 0.9) / percentile(&node.warm_ms, 0.9),
        );
    }
    // Keep the Runtime API's sockets from lingering into the next run's measurements.
    tokio::time::sleep(Duration::from_millis(10)).await;
}

//! Measures the signup callback's latency on the sandbox: each iteration mints a token,
//! runs a sandbox signup and posts FINISH through the full router (embedded store,
//! local master key, the real Graph client calling the sandbox over loopback).
//! Run: `cargo run --release -p pipes-bench --bin signup_callback -- --iterations 500`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use clap::Parser;
use pipes_tests::{Backend, TestApp};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 300)]
    iterations: usize,
    /// Added to every sandbox Graph answer, to model Meta's latency.
    #[arg(long, default_value_t = 0)]
    graph_latency_ms: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let t = TestApp::spawn(Backend::embedded()).await;
    t.sandbox.set_latency_ms(args.graph_latency_ms);
    // Warm up connection pools and the data-key cache.
    for _ in 0..5 {
        let (token, _) = t.signup_token().await;
        assert_eq!(t.finish(&token, &t.sandbox_signup()).await.status, 200);
    }
    let mut ms = Vec::with_capacity(args.iterations);
    for _ in 0..args.iterations {
        let (token, _) = t.signup_token().await;
        let signup = t.sandbox_signup();
        let start = Instant::now();
        let res = t.finish(&token, &signup).await;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "signup callback, {} completions, sandbox latency {} ms per Graph call: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms.len(),
        args.graph_latency_ms,
        percentile(&ms, 0.50),
        percentile(&ms, 0.95),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );
    println!("Graph calls made: {:?}", t.sandbox.all_calls());
}

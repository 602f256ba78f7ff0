//! Measures the health sweep against the sandbox: throughput at a given Graph latency
//! and concurrency, and memory as the number count grows. Numbers are seeded straight
//! into an embedded store (healthy, set up, due); the sweep then checks every one of
//! them with the real Graph client over loopback.
//! Each run is a process of its own (this binary again, with `--one`): nothing of an
//! earlier run (its store, its sandbox, its heap) weighs on the next or on its memory
//! figures, and each pays the one-time costs a fresh Lambda instance pays. A count
//! given more than once runs again, and the summary gives each count's median and
//! range: on two shared cores one run of a 1.7 s sweep moves by a point or two.
//! Run: `cargo run --release -p pipes-bench --bin sweep -- --numbers 1000,1000,1000,10000 --latency-ms 50 --concurrency 32`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use pipes_core::usecases::sweep::SweepConfig;
use pipes_tests::{Backend, TestApp};

#[derive(Debug, Parser)]
struct Args {
    /// Comma-separated number counts, each run on a fresh store.
    #[arg(long, default_value = "1000", value_delimiter = ',')]
    numbers: Vec<usize>,
    /// Added to every sandbox Graph answer.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Apps the numbers are spread over (one data key each).
    #[arg(long, default_value_t = 10)]
    apps: usize,
    /// Checks the sweep does itself before fanning out (default: all of them).
    #[arg(long, default_value_t = usize::MAX)]
    max_inline: usize,
    /// Run the first count only, in this process: its table row, then its % of bound
    /// on a line of its own (what the parent runs).
    #[arg(long, hide = true)]
    one: bool,
}

/// Resident set size of this process, in KiB (Linux).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args = Args::parse();
    if args.one {
        let count = args.numbers.first().copied().unwrap_or(1000);
        let pct = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(run(&args, count));
        println!("{pct}");
        return;
    }
    println!(
        "| numbers | latency | concurrency | sweep time | checks/s | % of bound | latency as delivered | % of bound at it | before the first Graph call | after the last answer | RSS before sweep | peak RSS during sweep | growth |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    // (numbers, % of bound) of every run, for the summary.
    let mut runs: Vec<(usize, f64)> = Vec::new();
    let me = std::env::current_exe().unwrap();
    for &count in &args.numbers {
        let out = std::process::Command::new(&me)
            .args(["--one", "--numbers", &count.to_string()])
            .args(["--latency-ms", &args.latency_ms.to_string()])
            .args(["--concurrency", &args.concurrency.to_string()])
            .args(["--apps", &args.apps.to_string()])
            .args(["--max-inline", &args.max_inline.to_string()])
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "the run of {count} failed");
        let out = String::from_utf8(out.stdout).unwrap();
        let mut lines = out.lines();
        println!("{}", lines.next().unwrap());
        runs.push((count, lines.next().unwrap().trim().parse().unwrap()));
    }
    summary(&runs);
}

/// One sweep of `count` numbers: prints its table row, returns its % of the bound.
async fn run(args: &Args, count: usize) -> f64 {
    let t = TestApp::spawn(Backend::embedded()).await;
    let seed_start = Instant::now();
    t.seed_due_numbers(count, args.apps, 10).await;
    let seeded = seed_start.elapsed();
    let t = t.with_fresh_envelope();
    t.sandbox.set_latency_ms(args.latency_ms);
    t.sandbox.reset_max_in_flight();
    let before = rss_kib();
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let cfg = SweepConfig {
        concurrency: args.concurrency,
        max_inline: args.max_inline,
        safety_margin: Duration::ZERO,
        ..SweepConfig::default()
    };
    let start = Instant::now();
    let report = t.sweep(cfg, None).await;
    let end = Instant::now();
    let took = end - start;
    sampler.abort();
    let peak = peak.load(Ordering::Relaxed).max(rss_kib());
    assert_eq!(report.checked + report.fanned_out, count, "{report:?}");
    // The bound: every slot busy with a check that takes exactly one Graph latency;
    // and at the latency the sandbox delivered (never less than the latency set, a
    // little more when its timer thread or the CPU is late: the instrument's share,
    // not ours). That is a mean per call; a check waits for the slowest of its four,
    // so the fraction at it is an upper estimate.
    let rate = count as f64 / took.as_secs_f64();
    let bound = args.concurrency as f64 * 1000.0 / args.latency_ms.max(1) as f64;
    let delivered = t.sandbox.mean_held_ms().unwrap_or(0.0);
    let bound_delivered = args.concurrency as f64 * 1000.0 / delivered.max(0.001);
    // The sweep's own time outside Meta's: listing and reading the first numbers
    // before any Graph call, and the last writes after the last answer.
    let (first, last) = t.sandbox.graph_window().unwrap_or((start, end));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (lead, tail) = (
        ms(first.saturating_duration_since(start)),
        ms(end.saturating_duration_since(last)),
    );
    println!(
        "| {count} | {} ms | {} | {:.1} s | {:.0} | {:.1} % | {delivered:.2} ms | {:.1} % | {lead:.1} ms | {tail:.1} ms | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        args.latency_ms,
        args.concurrency,
        took.as_secs_f64(),
        rate,
        100.0 * rate / bound,
        100.0 * rate / bound_delivered,
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        (peak - before) as f64 / 1024.0,
    );
    eprintln!(
        "  (seeding {count} numbers took {:.1} s; sandbox peak in flight {})",
        seeded.as_secs_f64(),
        t.sandbox.max_in_flight()
    );
    100.0 * rate / bound
}

/// Each count's median fraction of the bound over its runs, with the lowest and highest.
fn summary(runs: &[(usize, f64)]) {
    println!();
    println!("| numbers | runs | % of bound, median | lowest | highest |");
    println!("|---|---|---|---|---|");
    let mut counts: Vec<usize> = runs.iter().map(|(n, _)| *n).collect();
    counts.sort_unstable();
    counts.dedup();
    for count in counts {
        let mut pct: Vec<f64> = runs
            .iter()
            .filter(|(n, _)| *n == count)
            .map(|(_, p)| *p)
            .collect();
        pct.sort_by(f64::total_cmp);
        let median = if pct.len() % 2 == 1 {
            pct[pct.len() / 2]
        } else {
            (pct[pct.len() / 2 - 1] + pct[pct.len() / 2]) / 2.0
        };
        println!(
            "| {count} | {} | {median:.1} % | {:.1} % | {:.1} % |",
            pct.len(),
            pct[0],
            pct[pct.len() - 1]
        );
    }
}

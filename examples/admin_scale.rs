//! The `keyspace` admin command on a large keyspace: seeds N jobs of the
//! main example's `Job` type into a private `redis-server`, then times
//! `repair` (every job reindexed: the hashes are seeded without index
//! entries) and `verify` (a clean keyspace), each at the default rate limit
//! and unlimited, while a concurrent client reads random jobs with
//! `Job::get` in a loop and records its latency. Figures in BENCHMARKS.md
//! ("Admin command on a large keyspace").
//!
//! ```text
//! cargo build --release --bin keyspace --example admin_scale
//! target/release/examples/admin_scale 1000000   # N, default 1,000,000
//! ```
//!
//! `KEYSPACE_BIN` names another `keyspace` binary; `RATES` the limits to
//! run (default `5000,0`). Not part of `cargo test`: it runs for minutes.

#[allow(dead_code)]
#[path = "app/model.rs"]
mod model;

use std::process::Stdio;
use std::time::{Duration, Instant};

use model::Job;
use redis_runtime::Client;
use redis_runtime::testing::{RedisServer, raw_command};
use tokio::sync::watch;

/// Jobs per seeding script call: big enough to be quick, small enough not
/// to hold the server for long.
const SEED_CHUNK: u32 = 50_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N: a number of jobs"))
        .unwrap_or(1_000_000);
    let bin = std::env::var("KEYSPACE_BIN").unwrap_or_else(|_| "target/release/keyspace".into());
    let rates = std::env::var("RATES").unwrap_or_else(|_| "5000,0".into());
    let server = RedisServer::start();
    let client = server.client().await;

    let idle = {
        seed(&client, n).await;
        latency_while(&server, n, tokio::time::sleep(Duration::from_secs(5))).await
    };
    println!("{n} jobs; Job::get alone: {}", idle.describe());
    println!();
    println!("| run | limit | wall time | commands | cmd/s | Job::get p50 | p99 | gets |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for rate in rates.split(',') {
        // Hashes without index entries, as data written before the indexes
        // existed: repair reindexes every one.
        seed(&client, n).await;
        for command in ["repair", "verify"] {
            let args = [
                command,
                "--json",
                "--entity",
                "Job",
                "--max-ops-per-sec",
                rate,
            ];
            let started = Instant::now();
            let child = tokio::process::Command::new(&bin)
                .args(args)
                .env("REDIS_URL", server.url())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{bin}: {e} (build it with --release)"));
            let run = async move {
                let output = child.wait_with_output().await.expect("exits");
                (output.status, output.stdout)
            };
            let (latency, (status, out)) = latency_during(&server, n, run).await;
            let wall = started.elapsed();
            let report: serde_json::Value = serde_json::from_slice(&out).expect("JSON report");
            assert!(status.success(), "{command} exited {status}: {report:#}");
            let job = &report["entities"][0];
            if command == "repair" {
                assert_eq!(job["reindexed"], u64::from(n), "{report:#}");
            } else {
                assert_eq!(job["entities"], u64::from(n), "{report:#}");
                assert_eq!(job["drift_total"], 0, "{report:#}");
            }
            let limit = if rate == "0" {
                "none".to_owned()
            } else {
                format!("{rate}/s")
            };
            println!(
                "| {command} | {limit} | {:.1} s | {} | {} | {} | {} | {} |",
                wall.as_secs_f64(),
                report["run"]["ops"],
                report["run"]["ops_per_sec"],
                ms(latency.p50),
                ms(latency.p99),
                latency.count
            );
        }
    }
}

/// Replaces the keyspace with `n` job hashes (no index entries).
async fn seed(client: &Client, n: u32) {
    raw_command(client, &["FLUSHALL"]).await;
    let script = "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do \
        redis.call('HSET', 'job:j' .. i, 'id', 'j' .. i, 'user_id', 'u' .. (i % 1000), \
        'repo', 'github.com/acme/app', 'command', 'make test', 'status', 'Queued', \
        'created_at', 1700000000000 + i) end";
    let mut from = 0;
    while from < n {
        let to = (from + SEED_CHUNK).min(n) - 1;
        raw_command(
            client,
            &["EVAL", script, "0", &from.to_string(), &to.to_string()],
        )
        .await;
        from = to + 1;
    }
}

/// Latencies of `Job::get` on random ids.
struct Latency {
    p50: Duration,
    p99: Duration,
    count: usize,
}

impl Latency {
    fn describe(&self) -> String {
        format!(
            "p50 {} ms, p99 {} ms over {} gets",
            ms(self.p50),
            ms(self.p99),
            self.count
        )
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// Runs `work` while another client reads random jobs in a loop; returns
/// the reader's latencies and `work`'s output.
async fn latency_during<T>(
    server: &RedisServer,
    n: u32,
    work: impl std::future::Future<Output = T>,
) -> (Latency, T) {
    let reader = server.client().await;
    let (stop, stopped) = watch::channel(false);
    let reads = tokio::spawn(read_loop(reader, n, stopped));
    let out = work.await;
    let _ = stop.send(true);
    let mut samples = reads.await.expect("the reader ran");
    samples.sort_unstable();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    let latency = Latency {
        p50: at(0.50),
        p99: at(0.99),
        count: samples.len(),
    };
    (latency, out)
}

async fn latency_while(
    server: &RedisServer,
    n: u32,
    work: impl std::future::Future<Output = ()>,
) -> Latency {
    latency_during(server, n, work).await.0
}

/// `Job::get` of pseudo-random ids, one at a time, until told to stop.
async fn read_loop(client: Client, n: u32, stopped: watch::Receiver<bool>) -> Vec<Duration> {
    let mut samples = Vec::new();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    while !*stopped.borrow() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let id = format!("j{}", seed % u64::from(n.max(1)));
        let started = Instant::now();
        let found = Job::get(&client, &id).await.expect("get");
        samples.push(started.elapsed());
        assert!(found.is_some(), "{id} exists");
    }
    samples
}

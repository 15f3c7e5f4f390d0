//! Faults under load against a real `redis-server` the harness starts and
//! kills: the indexes stay exact and every failure has a documented code.

// Shared with the index suites; this one uses only part of it.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis_runtime::Client;
use redis_runtime::testing::{Proxy, RedisServer};
use tokio::task::JoinHandle;

use common::{Job, JobStatus, assert_no_drift, job, random_write};

/// What one writer saw: how many operations succeeded, and the codes of
/// the ones that failed.
#[derive(Default)]
struct Seen {
    ok: u64,
    failed: BTreeMap<&'static str, u64>,
    /// The longest any one operation took.
    slowest: Duration,
}

impl Seen {
    fn add(&mut self, other: Seen) {
        self.ok += other.ok;
        self.slowest = self.slowest.max(other.slowest);
        for (code, count) in other.failed {
            *self.failed.entry(code).or_default() += count;
        }
    }

    /// Every failure is a documented transient code or an ordinary outcome
    /// of the random operation.
    fn assert_documented(&self) {
        for code in self.failed.keys() {
            assert!(
                matches!(
                    *code,
                    "STORAGE_UNAVAILABLE" | "STORAGE_TIMEOUT" | "ALREADY_EXISTS" | "NOT_FOUND"
                ),
                "undocumented failure {code}: {:?}",
                self.failed
            );
        }
    }
}

/// `count` writers doing random creates, patches, increments and deletes
/// on 200 jobs until `stop` is set.
fn spawn_writers(client: &Client, stop: &Arc<AtomicBool>, count: u64) -> Vec<JoinHandle<Seen>> {
    (0..count)
        .map(|w| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let mut n = w + 1;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let result = random_write(&client, &mut n).await;
                    seen.slowest = seen.slowest.max(started.elapsed());
                    match result {
                        Ok(()) => seen.ok += 1,
                        Err(e) => *seen.failed.entry(e.code()).or_default() += 1,
                    }
                }
                seen
            })
        })
        .collect()
}

/// What all `writers` saw, once they stopped.
async fn total(writers: Vec<JoinHandle<Seen>>) -> Seen {
    let mut all = Seen::default();
    for writer in writers {
        all.add(writer.await.expect("a writer panicked"));
    }
    all
}

/// SIGKILL of the server mid-load and a restart that reloads the
/// append-only file (`appendfsync always`): 16 writers keep going; every
/// failure is a documented transient code or an ordinary outcome of the
/// random operation (`ALREADY_EXISTS`, `NOT_FOUND`); service resumes within
/// a bound; the indexes are exact afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_restarted_from_its_aof_leaves_zero_drift() {
    let args = ["--appendonly", "yes", "--appendfsync", "always"].map(String::from);
    let mut server = RedisServer::start_with_args(&args);
    let client = server.client().await;
    // Acknowledged before the kill, so the append-only file must hold it.
    let before = job("before", "u8", JobStatus::Queued, 1);
    before
        .create(&client)
        .await
        .expect("create before the load");
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&client, &stop, 16);

    // Let the load run, then kill and restart the server in place.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_at = Instant::now();
    let mut server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    // Service is back once a write succeeds again.
    let probe = job("probe", "u9", JobStatus::Queued, 1);
    let deadline = killed_at + Duration::from_secs(15);
    while probe.save(&client).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no write succeeded within 15 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let recovered = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let seen = total(writers).await;
    println!(
        "recovered after {recovered:?}; {} operations succeeded; failed: {:?}",
        seen.ok, seen.failed
    );
    seen.assert_documented();
    assert!(seen.ok > 100, "the load ran: {} operations", seen.ok);
    assert!(
        recovered < Duration::from_secs(5),
        "service resumed after {recovered:?}"
    );
    assert!(server.is_running());
    let reloaded = Job::get(&client, "before").await.expect("get");
    assert_eq!(
        reloaded,
        Some(before),
        "the restart reloaded the append-only file"
    );
    assert_no_drift::<Job>(&client).await;
}

/// Writers behind a network that stalls for longer than the operation
/// deadline and then cuts every connection: no operation outlives its
/// deadline, every failure has a documented code, and the indexes are
/// exact afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_then_cut_network_never_hangs_an_operation_or_leaves_drift() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let deadline = Duration::from_millis(800);
    let config = redis_runtime::Config::builder(format!("redis://127.0.0.1:{}", proxy.port()))
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .operation_timeout(deadline)
        .build()
        .expect("config");
    let client = redis_runtime::Client::connect(config)
        .await
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&client, &stop, 8);

    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.stall();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.resume();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);

    let seen = total(writers).await;
    let (slowest, failed) = (seen.slowest, &seen.failed);
    println!(
        "slowest operation {slowest:?}; {} succeeded; failed: {failed:?}",
        seen.ok
    );
    seen.assert_documented();
    assert!(
        failed.contains_key("STORAGE_TIMEOUT") || failed.contains_key("STORAGE_UNAVAILABLE"),
        "the stall must have failed some operations: {failed:?}"
    );
    // The deadline bounds every operation, with scheduling slack.
    assert!(
        slowest < deadline + Duration::from_millis(400),
        "an operation took {slowest:?}"
    );
    // Service came back after the cut.
    let probe = job("probe", "u9", JobStatus::Queued, 1);
    redis_runtime::testing::eventually(
        Duration::from_secs(5),
        "a write after the cut",
        async || probe.save(&client).await.is_ok(),
    )
    .await;
    let direct = server.client().await;
    assert_no_drift::<Job>(&direct).await;
}

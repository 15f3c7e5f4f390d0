//! Faults under load against a real `redis-server` the harness starts and
//! kills: the indexes stay exact and every failure has a documented code.

// Shared with the index suites; this one uses only part of it.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis_runtime::testing::RedisServer;

use common::{Job, JobPatch, JobStatus, assert_no_drift, job};

/// What one writer saw: how many operations succeeded, and the codes of
/// the ones that failed.
#[derive(Default)]
struct Seen {
    ok: u64,
    failed: BTreeMap<&'static str, u64>,
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
    let statuses = [JobStatus::Queued, JobStatus::Running, JobStatus::Failed];
    let writers: Vec<_> = (0..16u64)
        .map(|w| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let id = format!("j{}", (n >> 33) % 200);
                    let status = statuses[((n >> 20) % 3) as usize];
                    let result = match (n >> 40) % 4 {
                        0 => job(&id, "u1", status, (n % 1000) as i64)
                            .create(&client)
                            .await
                            .map(drop),
                        1 => {
                            let patch = JobPatch {
                                status: Some(status),
                                ..Default::default()
                            };
                            Job::patch(&client, &id, &patch).await
                        }
                        2 => Job::incr_created_at(&client, &id, 1).await.map(drop),
                        _ => Job::delete(&client, &id).await.map(drop),
                    };
                    match result {
                        Ok(()) => seen.ok += 1,
                        Err(e) => *seen.failed.entry(e.code()).or_default() += 1,
                    }
                }
                seen
            })
        })
        .collect();

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

    let mut ok = 0;
    let mut failed: BTreeMap<&'static str, u64> = BTreeMap::new();
    for writer in writers {
        let seen = writer.await.expect("writer");
        ok += seen.ok;
        for (code, count) in seen.failed {
            *failed.entry(code).or_default() += count;
        }
    }
    println!("recovered after {recovered:?}; {ok} operations succeeded; failed: {failed:?}");
    for code in failed.keys() {
        assert!(
            matches!(
                *code,
                "STORAGE_UNAVAILABLE" | "STORAGE_TIMEOUT" | "ALREADY_EXISTS" | "NOT_FOUND"
            ),
            "undocumented failure {code}: {failed:?}"
        );
    }
    assert!(ok > 100, "the load ran: {ok} operations");
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

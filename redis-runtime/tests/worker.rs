//! The worker loop, each test against a real, private `redis-server` and
//! against a real Redis Cluster: no loss when consumers crash, retries with
//! backoff, dead letters, bounded concurrency and graceful shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_runtime::on_both_topologies;
use redis_runtime::stream::{ConsumerGroup, Stream};
use redis_runtime::testing::{RedisServer, TestRedis, eventually, raw_command};
// The re-export: applications need no `tokio-util` dependency of their own.
use redis_runtime::worker::{CancellationToken, DeadLettering, WorkerReport};
use redis_runtime::{Client, Entry, RedisRecord, Worker};
use tokio::task::JoinHandle;

#[derive(RedisRecord, Debug, Clone, PartialEq)]
struct Msg {
    seq: u32,
    kind: String,
}

fn msg(seq: u32) -> Msg {
    Msg {
        seq,
        kind: "work".into(),
    }
}

/// The stream at `key` and its group `g`, created (from the beginning of
/// the stream, the default).
async fn with_group(client: &Client, key: &str) -> (Stream<Msg>, ConsumerGroup<Msg>) {
    let stream = Stream::<Msg>::new(client, key);
    let group = stream.group("g");
    group.ensure().await.expect("ensure");
    (stream, group)
}

async fn publish_all(stream: &Stream<Msg>, messages: &[Msg]) {
    for chunk in messages.chunks(500) {
        let report = stream
            .publish_batch(chunk.iter().map(|m| (m.seq.to_string(), m)))
            .await
            .expect("publish");
        assert!(report.failed.is_empty());
    }
}

/// Runs `worker` in a task until `stop` is cancelled; `handler` gets its
/// own clone of `state` with each entry (counters, logs, signals).
fn spawn_worker<S, F, Fut, E>(
    worker: Worker<Msg>,
    stop: &CancellationToken,
    state: S,
    handler: F,
) -> JoinHandle<redis_runtime::Result<WorkerReport>>
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, Entry<Msg>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    tokio::spawn(worker.run(move |entry| handler(state.clone(), entry), stop.clone()))
}

/// Waits (up to 10 s) until exactly one entry is on the dead-letter stream
/// and nothing is pending any more.
async fn one_entry_parked(group: &ConsumerGroup<Msg>) {
    eventually(Duration::from_secs(10), "the dead letter", async || {
        group.dead_letters(10).await.expect("dead").len() == 1
            && group.pending_count().await.expect("pending") == 0
    })
    .await;
}

/// The report of a worker run that must end within `limit`.
async fn report_within(
    limit: Duration,
    run: JoinHandle<redis_runtime::Result<WorkerReport>>,
) -> WorkerReport {
    let joined = tokio::time::timeout(limit, run).await;
    joined.expect("stops in time").expect("join").expect("run")
}

/// A small deterministic PRNG; its seed (`CRASH_SEED`) is printed so a
/// failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Per message: (delivery count, when) of each handler call.
type Attempts = HashMap<u32, Vec<(u64, Instant)>>;

/// What the dead-letter hook saw on one call.
#[derive(Debug, Clone)]
struct HookCall {
    dead: DeadLettering<Msg>,
    /// Pending entries of the group when the hook ran.
    pending: u64,
    /// Entries on the dead-letter stream when the hook ran.
    parked: usize,
}

async fn no_message_is_lost_when_consumers_crash_mid_batch(redis: TestRedis) {
    const N: u32 = 10_000;
    let (stream, group) = with_group(redis.client(), &redis.key("crash:stream")).await;
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    println!("CRASH_SEED={seed}");
    let mut rng = XorShift(seed);

    let seen: Arc<Vec<AtomicU32>> = Arc::new((0..N).map(|_| AtomicU32::new(0)).collect());
    let total = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let started = Instant::now();

    // Producer and consumers run at the same time.
    let producer = {
        let stream = stream.clone();
        tokio::spawn(async move {
            let all: Vec<Msg> = (0..N).map(msg).collect();
            publish_all(&stream, &all).await;
        })
    };
    let consumers = 5;
    let killed = 3; // workers 0..3 are killed, 3..5 survive
    let mut kill_at: Vec<u64> = (0..killed)
        .map(|_| 500 + rng.below(u64::from(N) / 2))
        .collect();
    kill_at.sort_unstable();
    let mut handles = Vec::new();
    for i in 0..consumers {
        let worker = group
            .clone()
            .with_consumer(format!("w{i}"))
            .worker()
            .concurrency(8)
            .batch_size(16)
            .block(Duration::from_millis(200))
            .claim_min_idle(Duration::from_millis(400))
            .claim_interval(Duration::from_millis(100))
            .max_deliveries(1000);
        let counters = (seen.clone(), total.clone());
        let jitter = seed.wrapping_add(i as u64);
        let run = spawn_worker(
            worker,
            &stop,
            counters,
            move |(seen, total), entry| async move {
                // Uneven handler times, so kills land mid-batch.
                if (u64::from(entry.message.seq) ^ jitter).is_multiple_of(7) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                seen[entry.message.seq as usize].fetch_add(1, Ordering::Relaxed);
                total.fetch_add(1, Ordering::Relaxed);
                Ok::<(), String>(())
            },
        );
        handles.push(run);
    }

    // Kill workers (abort: no ack, no goodbye) as the handled count passes
    // random thresholds.
    let mut next_kill = 0;
    let deadline = Instant::now() + Duration::from_secs(40);
    while next_kill < killed {
        if total.load(Ordering::Relaxed) >= kill_at[next_kill] {
            handles[next_kill].abort();
            next_kill += 1;
        } else {
            assert!(Instant::now() < deadline, "stalled before the kills");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    producer.await.expect("producer");

    let all_seen = async || {
        seen.iter().all(|c| c.load(Ordering::Relaxed) > 0)
            && group.pending_count().await.expect("pending") == 0
    };
    let limit = Duration::from_secs(40);
    eventually(limit, "every message handled and acked", all_seen).await;
    stop.cancel();
    let mut survivors = WorkerReport::default();
    for (i, handle) in handles.into_iter().enumerate() {
        let outcome = handle.await;
        if i < killed {
            assert!(outcome.expect_err("aborted").is_cancelled());
            continue;
        }
        let report = outcome.expect("join").expect("survivor ran cleanly");
        survivors.handled += report.handled;
        survivors.reclaimed += report.reclaimed;
        survivors.dead_lettered += report.dead_lettered;
    }

    let deliveries: u64 = seen
        .iter()
        .map(|c| u64::from(c.load(Ordering::Relaxed)))
        .sum();
    println!(
        "{N} messages, {deliveries} handler runs ({} duplicates), {} reclaimed by survivors, in {:?}",
        deliveries - u64::from(N),
        survivors.reclaimed,
        started.elapsed()
    );
    assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) >= 1));
    assert_eq!(group.pending_count().await.expect("pending"), 0);
    assert_eq!(group.stream().len().await.expect("len"), u64::from(N));
    assert!(
        survivors.reclaimed > 0,
        "the killed workers held entries; survivors must have reclaimed them"
    );
    assert_eq!(survivors.dead_lettered, 0);
    assert!(group.dead_letters(1).await.expect("dead").is_empty());
    assert!(started.elapsed() < Duration::from_secs(60));
}

async fn a_poison_message_lands_in_the_dead_letter_stream_after_n_attempts(redis: TestRedis) {
    let (stream, group) = with_group(redis.client(), &redis.key("poison:stream")).await;
    let mut messages: Vec<Msg> = (0..5).map(msg).collect();
    messages.push(Msg {
        seq: 99,
        kind: "poison".into(),
    });
    publish_all(&stream, &messages).await;
    let poison_id = stream
        .range("-", "+", 10)
        .await
        .expect("range")
        .entries
        .into_iter()
        .find(|e| e.message.seq == 99)
        .expect("poison entry")
        .id;

    let attempts: Arc<Mutex<Attempts>> = Arc::default();
    let stop = CancellationToken::new();
    let worker = group
        .worker()
        .max_deliveries(3)
        .retry_backoff(Duration::from_millis(80))
        .claim_min_idle(Duration::from_millis(500))
        .claim_interval(Duration::from_millis(20))
        .block(Duration::from_millis(100));
    let run = spawn_worker(worker, &stop, attempts.clone(), |log, entry| async move {
        log.lock()
            .expect("lock")
            .entry(entry.message.seq)
            .or_default()
            .push((entry.deliveries, Instant::now()));
        if entry.message.kind == "poison" {
            Err(format!("boom: cannot process {}", entry.message.seq))
        } else {
            Ok(())
        }
    });

    one_entry_parked(&group).await;
    stop.cancel();
    let report = run.await.expect("join").expect("run");

    let attempts = attempts.lock().expect("lock").clone();
    let poison = &attempts[&99];
    assert_eq!(
        poison.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        [1, 2, 3],
        "three deliveries, counted by Redis"
    );
    // Backoff: ~80 ms then ~160 ms (±25%), not immediate.
    assert!(poison[1].1 - poison[0].1 >= Duration::from_millis(60));
    assert!(poison[2].1 - poison[1].1 >= Duration::from_millis(120));
    for seq in 0..5 {
        assert_eq!(attempts[&seq].len(), 1, "good messages run once");
    }

    let dead = group.dead_letters(10).await.expect("dead");
    assert_eq!(dead[0].source_id, poison_id);
    assert_eq!(dead[0].deliveries, 3);
    assert!(
        dead[0].error.contains("boom: cannot process 99")
            && dead[0].error.contains("delivery 3 of 3"),
        "{}",
        dead[0].error
    );
    assert_eq!(
        dead[0].message.as_ref().expect("decodes").kind,
        "poison",
        "the original message is kept for a replay"
    );
    assert_eq!(report.handled, 5);
    assert_eq!(report.retried, 2);
    assert_eq!(report.dead_lettered, 1);
}

async fn a_failed_or_panicking_handler_is_retried_until_it_succeeds(redis: TestRedis) {
    let (stream, group) = with_group(redis.client(), &redis.key("retry:stream")).await;
    publish_all(&stream, &[msg(1), msg(2)]).await;
    let calls: Arc<Mutex<Vec<(u32, u64)>>> = Arc::default();
    let stop = CancellationToken::new();
    let worker = group
        .worker()
        .retry_backoff(Duration::from_millis(20))
        .claim_min_idle(Duration::from_millis(300))
        .claim_interval(Duration::from_millis(20))
        .block(Duration::from_millis(100));
    let run = spawn_worker(worker, &stop, calls.clone(), |log, entry| async move {
        let (seq, deliveries) = (entry.message.seq, entry.deliveries);
        log.lock().expect("lock").push((seq, deliveries));
        match (seq, deliveries) {
            (1, d) if d < 3 => Err("not yet"),
            (2, 1) => panic!("handler bug"),
            _ => Ok(()),
        }
    });
    eventually(Duration::from_secs(10), "both handled", async || {
        calls.lock().expect("lock").len() == 5 && group.pending_count().await.expect("pending") == 0
    })
    .await;
    stop.cancel();
    let report = run.await.expect("join").expect("run");
    let mut calls = calls.lock().expect("lock").clone();
    calls.sort_unstable();
    assert_eq!(calls, [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]);
    assert_eq!(report.handled, 2);
    assert_eq!(report.retried, 3);
    assert_eq!(report.dead_lettered, 0);
    assert!(group.dead_letters(1).await.expect("dead").is_empty());
}

async fn concurrency_is_bounded(redis: TestRedis) {
    let (stream, group) = with_group(redis.client(), &redis.key("bounded:stream")).await;
    let all: Vec<Msg> = (0..60).map(msg).collect();
    publish_all(&stream, &all).await;
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let counters = (current.clone(), peak.clone(), done.clone());
    let worker = group
        .worker()
        .concurrency(4)
        .batch_size(10)
        .block(Duration::from_millis(100));
    let run = spawn_worker(worker, &stop, counters, |(c, p, d), _entry| async move {
        let now = c.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
        c.fetch_sub(1, Ordering::SeqCst);
        d.fetch_add(1, Ordering::SeqCst);
        Ok::<(), String>(())
    });
    eventually(Duration::from_secs(20), "all handled", async || {
        done.load(Ordering::SeqCst) == 60
    })
    .await;
    stop.cancel();
    let report = run.await.expect("join").expect("run");
    assert_eq!(report.handled, 60);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        4,
        "never more than 4, and 4 reached"
    );
    assert_eq!(group.pending_count().await.expect("pending"), 0);
}

async fn shutdown_interrupts_the_blocked_read_and_finishes_in_flight_work(redis: TestRedis) {
    let key = redis.key("shutdown:stream");
    let (stream, group) = with_group(redis.client(), &key).await;
    let stop = CancellationToken::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    let finished = Arc::new(AtomicUsize::new(0));
    let worker = group
        .worker()
        .block(Duration::from_secs(30)) // shutdown must not wait for this
        .shutdown_grace(Duration::from_secs(10));
    let state = (started_tx, finished.clone());
    let run = spawn_worker(worker, &stop, state, |(started_tx, f), _entry| async move {
        if let Some(tx) = started_tx.lock().expect("lock").take() {
            let _ = tx.send(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        f.fetch_add(1, Ordering::SeqCst);
        Ok::<(), String>(())
    });
    stream.publish(&msg(1)).await.expect("publish");
    started_rx.await.expect("handler started");
    let cancelled_at = Instant::now();
    stop.cancel();
    let report = run.await.expect("join").expect("run");
    let took = cancelled_at.elapsed();
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "in-flight work finished"
    );
    assert_eq!(report.handled, 1);
    assert_eq!(report.released, 0);
    assert_eq!(
        group.pending_count().await.expect("pending"),
        0,
        "and was acked"
    );
    assert!(
        took >= Duration::from_millis(200),
        "waited for the handler: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "did not wait for the 30 s block: {took:?}"
    );

    // An idle worker stops at once too.
    let blocked_before = redis.blocked_clients_at(&key).await;
    let stop = CancellationToken::new();
    let run = tokio::spawn(
        group
            .worker()
            .block(Duration::from_secs(30))
            .run(|_entry| async { Ok::<(), String>(()) }, stop.clone()),
    );
    // Wait until the worker is blocked in XREADGROUP on the server.
    eventually(Duration::from_secs(5), "the worker to block", async || {
        redis.blocked_clients_at(&key).await > blocked_before
    })
    .await;
    let cancelled_at = Instant::now();
    stop.cancel();
    run.await.expect("join").expect("run");
    assert!(cancelled_at.elapsed() < Duration::from_secs(2));
}

async fn work_still_running_after_the_grace_is_released_to_other_consumers(redis: TestRedis) {
    let (stream, group) = with_group(redis.client(), &redis.key("grace:stream")).await;
    let stop = CancellationToken::new();
    let started = Arc::new(tokio::sync::Notify::new());
    let worker = group
        .clone()
        .with_consumer("stuck")
        .worker()
        .block(Duration::from_millis(100))
        .shutdown_grace(Duration::from_millis(200));
    let run = spawn_worker(worker, &stop, started.clone(), |s, _entry| async move {
        s.notify_one();
        std::future::pending::<()>().await;
        Ok::<(), String>(())
    });
    let id = stream.publish(&msg(1)).await.expect("publish");
    started.notified().await;
    stop.cancel();
    let report = run.await.expect("join").expect("run");
    assert_eq!(report.handled, 0);
    assert_eq!(report.released, 1);
    // Still pending, and claimable at once by anyone, even with a long min idle.
    let other = group.clone().with_consumer("other");
    let claimed = other
        .claim_idle(Duration::from_secs(60), 10)
        .await
        .expect("claim");
    assert_eq!(claimed.ids(), [id.as_str()]);
}

async fn a_live_slow_handler_is_not_reclaimed_by_other_workers(redis: TestRedis) {
    let (stream, group) = with_group(redis.client(), &redis.key("slow:stream")).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let mut handles = Vec::new();
    for name in ["a", "b"] {
        let worker = group
            .clone()
            .with_consumer(name)
            .worker()
            .block(Duration::from_millis(100))
            // Refreshed every third of it (267 ms): wide enough that a
            // loaded machine (a cluster of six servers on two cores, in
            // CI) does not delay a refresh past it.
            .claim_min_idle(Duration::from_millis(800))
            .claim_interval(Duration::from_millis(30));
        let run = spawn_worker(worker, &stop, runs.clone(), |runs, _entry| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            // Three times the claim threshold.
            tokio::time::sleep(Duration::from_millis(2400)).await;
            Ok::<(), String>(())
        });
        handles.push(run);
    }
    stream.publish(&msg(1)).await.expect("publish");
    eventually(
        Duration::from_secs(10),
        "the slow entry acked",
        async || {
            runs.load(Ordering::SeqCst) >= 1 && group.pending_count().await.expect("pending") == 0
        },
    )
    .await;
    stop.cancel();
    for handle in handles {
        handle.await.expect("join").expect("run");
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "handled once: never stolen while alive"
    );
}

async fn an_entry_that_keeps_killing_its_consumers_is_dead_lettered(redis: TestRedis) {
    let (stream, group) = with_group(redis.client(), &redis.key("killer:stream")).await;
    let id = stream.publish(&msg(13)).await.expect("publish");
    let runs = Arc::new(AtomicUsize::new(0));
    // Each worker "crashes" (is aborted) as soon as its handler starts.
    for round in 0..3 {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let worker = group
            .clone()
            .with_consumer(format!("victim{round}"))
            .worker()
            .max_deliveries(2)
            .block(Duration::from_millis(50))
            .claim_min_idle(Duration::from_millis(200))
            .claim_interval(Duration::from_millis(20));
        let never = CancellationToken::new();
        let state = (tx, runs.clone());
        let handle = spawn_worker(worker, &never, state, |(tx, runs), _entry| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
            std::future::pending::<()>().await;
            Ok::<(), String>(())
        });
        if round < 2 {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("the handler ran")
                .expect("sent");
            handle.abort();
            let _ = handle.await;
        } else {
            // The third delivery exceeds the limit: parked without running.
            eventually(Duration::from_secs(5), "the dead letter", async || {
                group.dead_letters(10).await.expect("dead").len() == 1
            })
            .await;
            handle.abort();
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let dead = group.dead_letters(10).await.expect("dead");
    assert_eq!(dead[0].source_id, id);
    assert_eq!(dead[0].deliveries, 3);
    assert!(
        dead[0].error.contains("without an acknowledgement"),
        "{}",
        dead[0].error
    );
    assert_eq!(group.pending_count().await.expect("pending"), 0);
}

async fn undecodable_entries_never_reach_the_handler(redis: TestRedis) {
    let client = redis.client();
    let key = redis.key("decode:stream");
    let (stream, group) = with_group(client, &key).await;
    stream.publish(&msg(1)).await.expect("publish");
    let xadd = ["XADD", &key, "*", "seq", "minus one", "kind", "x"];
    raw_command(client, &xadd).await;
    stream.publish(&msg(2)).await.expect("publish");
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let stop = CancellationToken::new();
    let worker = group.worker().block(Duration::from_millis(50));
    let run = spawn_worker(worker, &stop, seen.clone(), |s, entry| async move {
        s.lock().expect("lock").push(entry.message.seq);
        Ok::<(), String>(())
    });
    let parked = async || {
        seen.lock().expect("lock").len() == 2 && group.pending_count().await.expect("pending") == 0
    };
    eventually(Duration::from_secs(5), "two handled, one parked", parked).await;
    stop.cancel();
    let report = run.await.expect("join").expect("run");
    assert_eq!(*seen.lock().expect("lock"), [1, 2]);
    assert_eq!(report.skipped, 1);
    let dead = group.dead_letters(10).await.expect("dead");
    assert_eq!(dead.len(), 1);
    assert!(dead[0].error.contains("`seq`"), "{}", dead[0].error);
}

async fn a_missing_group_ends_the_run_with_a_typed_error(redis: TestRedis) {
    let group = Stream::<Msg>::new(redis.client(), redis.key("nogroup:stream")).group("absent");
    let nothing = |_entry: Entry<Msg>| async { Ok::<(), String>(()) };
    let started = Instant::now();
    let err = group.worker().run(nothing, CancellationToken::new()).await;
    let err = err.expect_err("no such group");
    assert_eq!(err.code(), "STORAGE_COMMAND");
    assert!(err.to_string().contains("NOGROUP"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let worker = group.worker().concurrency(0);
    let err = worker.run(nothing, CancellationToken::new()).await;
    let err = err.expect_err("bad settings");
    assert_eq!(err.code(), "STORAGE_CONFIG");
}

async fn a_client_shutdown_stops_the_worker_promptly(redis: TestRedis) {
    let client = redis.client();
    let (stream, group) = with_group(client, &redis.key("closing:stream")).await;
    stream.publish(&msg(1)).await.expect("publish");
    let handled = Arc::new(AtomicUsize::new(0));
    let worker = group.worker().block(Duration::from_secs(30));
    // Never cancelled: the client's shutdown stops it.
    let never = CancellationToken::new();
    let run = spawn_worker(worker, &never, handled.clone(), |h, _entry| async move {
        h.fetch_add(1, Ordering::SeqCst);
        Ok::<(), String>(())
    });
    let acked = async || {
        handled.load(Ordering::SeqCst) == 1 && group.pending_count().await.expect("pending") == 0
    };
    eventually(Duration::from_secs(5), "the entry handled and acked", acked).await;
    let started = Instant::now();
    client.shutdown().await;
    // It stops without waiting for its 30 s block.
    let report = report_within(Duration::from_secs(5), run).await;
    assert_eq!(report.handled, 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

async fn jobs_enqueued_before_the_group_existed_are_delivered_to_the_worker(redis: TestRedis) {
    let stream = Stream::<Msg>::new(redis.client(), redis.key("early:stream"));
    // Enqueued while no group (and no worker) exists yet.
    publish_all(&stream, &[msg(1), msg(2), msg(3)]).await;
    let group = stream.group("g");
    assert!(group.ensure().await.expect("ensure"), "created now");
    let seen: Arc<Mutex<Vec<(u32, u64)>>> = Arc::default();
    let stop = CancellationToken::new();
    let worker = group.worker().block(Duration::from_millis(100));
    let run = spawn_worker(worker, &stop, seen.clone(), |log, entry| async move {
        log.lock()
            .expect("lock")
            .push((entry.message.seq, entry.deliveries));
        Ok::<(), String>(())
    });
    eventually(Duration::from_secs(5), "the early jobs", async || {
        seen.lock().expect("lock").len() == 3 && group.pending_count().await.expect("pending") == 0
    })
    .await;
    // Ensuring again does not move the group back: nothing is redelivered.
    assert!(!group.ensure().await.expect("again"));
    stream.publish(&msg(4)).await.expect("publish");
    eventually(Duration::from_secs(5), "the later job", async || {
        seen.lock().expect("lock").len() == 4 && group.pending_count().await.expect("pending") == 0
    })
    .await;
    stop.cancel();
    let report = report_within(Duration::from_secs(5), run).await;
    let mut seen = seen.lock().expect("lock").clone();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [(1, 1), (2, 1), (3, 1), (4, 1)],
        "each once, first attempt"
    );
    assert_eq!(report.handled, 4);
}

async fn the_dead_letter_hook_runs_before_the_entry_is_parked_and_a_failing_hook_keeps_it_pending(
    redis: TestRedis,
) {
    let (stream, group) = with_group(redis.client(), &redis.key("hooked:stream")).await;
    publish_all(&stream, &[msg(1)]).await;
    let poison_id = stream
        .publish(&Msg {
            seq: 99,
            kind: "poison".into(),
        })
        .await
        .expect("publish");
    let calls: Arc<Mutex<Vec<HookCall>>> = Arc::default();
    let stop = CancellationToken::new();
    let hook = {
        let (calls, group) = (calls.clone(), group.clone());
        move |dead: DeadLettering<Msg>| {
            let (calls, group) = (calls.clone(), group.clone());
            async move {
                let pending = group.pending_count().await.expect("pending");
                let parked = group.dead_letters(10).await.expect("dead").len();
                let mut calls = calls.lock().expect("lock");
                calls.push(HookCall {
                    dead,
                    pending,
                    parked,
                });
                // The job store is down the first time.
                if calls.len() == 1 {
                    Err("job store unavailable")
                } else {
                    Ok(())
                }
            }
        }
    };
    let worker = group
        .worker()
        .max_deliveries(2)
        .retry_backoff(Duration::from_millis(20))
        .claim_min_idle(Duration::from_millis(300))
        .claim_interval(Duration::from_millis(20))
        .block(Duration::from_millis(100))
        .on_dead_letter(hook);
    let run = spawn_worker(worker, &stop, (), |(), entry| async move {
        if entry.message.kind == "poison" {
            Err(format!("boom on attempt {}", entry.deliveries))
        } else {
            Ok(())
        }
    });
    one_entry_parked(&group).await;
    stop.cancel();
    let report = report_within(Duration::from_secs(5), run).await;

    let calls = calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for call in &calls {
        assert_eq!(call.dead.id, poison_id);
        assert_eq!(call.dead.message.seq, 99, "the decoded job is handed over");
        assert_eq!(
            call.pending, 1,
            "still pending (not acked) when the hook runs"
        );
        assert_eq!(call.parked, 0, "not dead-lettered yet when the hook runs");
    }
    // First: the handler's last failure, with its error.
    assert_eq!(calls[0].dead.deliveries, 2);
    assert!(
        calls[0].dead.error.contains("boom on attempt 2")
            && calls[0].dead.error.contains("delivery 2 of 2"),
        "{}",
        calls[0].dead.error
    );
    // The hook failed: the entry stayed pending, a claim brought it back.
    assert_eq!(calls[1].dead.deliveries, 3);
    assert!(
        calls[1].dead.error.contains("dead-letter hook failed"),
        "{}",
        calls[1].dead.error
    );
    assert_eq!(report.dead_letter_hook_failures, 1);
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(report.handled, 1);
    let dead = group.dead_letters(10).await.expect("dead");
    assert_eq!(dead[0].source_id, poison_id);
    assert_eq!(
        dead[0].error, calls[1].dead.error,
        "the hook saw the parked reason"
    );
}

async fn a_panicking_dead_letter_hook_is_reported_and_the_entry_kept(redis: TestRedis) {
    let (stream, group) = with_group(redis.client(), &redis.key("panicky:stream")).await;
    stream.publish(&msg(7)).await.expect("publish");
    let hook_runs = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let runs = hook_runs.clone();
    let worker = group
        .worker()
        .max_deliveries(1)
        .block(Duration::from_millis(50))
        // No claim in this test's lifetime: the entry must stay put.
        .claim_min_idle(Duration::from_secs(60))
        .on_dead_letter(move |_dead: DeadLettering<Msg>| {
            runs.fetch_add(1, Ordering::SeqCst);
            async { panic!("hook bug") as Result<(), String> }
        });
    let run = spawn_worker(worker, &stop, (), |(), _entry| async { Err("nope") });
    eventually(Duration::from_secs(5), "the hook to run", async || {
        hook_runs.load(Ordering::SeqCst) == 1
    })
    .await;
    stop.cancel();
    let report = report_within(Duration::from_secs(5), run).await;
    assert_eq!(report.dead_letter_hook_failures, 1);
    assert_eq!(report.dead_lettered, 0);
    assert_eq!(
        group.pending_count().await.expect("pending"),
        1,
        "kept, not lost"
    );
    assert!(group.dead_letters(1).await.expect("dead").is_empty());
}

on_both_topologies!(
    no_message_is_lost_when_consumers_crash_mid_batch multi_thread,
    a_poison_message_lands_in_the_dead_letter_stream_after_n_attempts,
    a_failed_or_panicking_handler_is_retried_until_it_succeeds,
    concurrency_is_bounded,
    shutdown_interrupts_the_blocked_read_and_finishes_in_flight_work,
    work_still_running_after_the_grace_is_released_to_other_consumers,
    a_live_slow_handler_is_not_reclaimed_by_other_workers multi_thread,
    an_entry_that_keeps_killing_its_consumers_is_dead_lettered,
    undecodable_entries_never_reach_the_handler,
    a_missing_group_ends_the_run_with_a_typed_error,
    a_client_shutdown_stops_the_worker_promptly,
    jobs_enqueued_before_the_group_existed_are_delivered_to_the_worker,
    the_dead_letter_hook_runs_before_the_entry_is_parked_and_a_failing_hook_keeps_it_pending,
    a_panicking_dead_letter_hook_is_reported_and_the_entry_kept,
);

// One server only: it stops and restarts the server under the worker.
#[tokio::test]
async fn handlers_keep_running_while_redis_is_down() {
    let (mut server, client) = RedisServer::start_with_client().await;
    let (stream, group) = with_group(&client, "outage:stream").await;
    stream.publish(&msg(1)).await.expect("publish");
    let ticks: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let started = Arc::new(tokio::sync::Notify::new());
    let stop = CancellationToken::new();
    let worker = group
        .worker()
        .block(Duration::from_millis(50))
        // Claims every 20 ms: with Redis gone each one hangs until the
        // operation timeout; the handler must not hang with them.
        .claim_interval(Duration::from_millis(20))
        .claim_min_idle(Duration::from_secs(3));
    let state = (ticks.clone(), started.clone());
    let run = spawn_worker(worker, &stop, state, |(t, s), _entry| async move {
        s.notify_one();
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            t.lock().expect("lock").push(Instant::now());
        }
        Ok::<(), String>(())
    });
    started.notified().await;
    server.stop();
    let finished = async || ticks.lock().expect("lock").len() == 60;
    eventually(Duration::from_secs(10), "the handler to finish", finished).await;
    let ticks = ticks.lock().expect("lock").clone();
    let longest = ticks
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        longest < Duration::from_millis(500),
        "the handler stalled for {longest:?} while the worker waited on Redis"
    );
    server.restart();
    stop.cancel();
    let report = report_within(Duration::from_secs(20), run).await;
    assert_eq!(report.handled, 1);
}

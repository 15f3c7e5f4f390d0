//! Stream throughput: our producer and [`Worker`] against a hand-written
//! redis-rs equivalent with the same batch size, in the same run, on a
//! private `redis-server`.
//!
//! ```text
//! cargo bench -p redis-runtime --bench stream_throughput --features testing
//! ```
//!
//! Workloads (each on a fresh stream, median of five runs, the two sides
//! alternating who goes first):
//! * produce: `N` messages published in pipelines of `B` XADDs;
//! * consume + ack: `N` messages already on the stream, read `B` at a time
//!   with `XREADGROUP BLOCK`, decoded into the typed message, acknowledged;
//! * produce + consume + ack: both at once.
//!
//! The hand-written side is what an application would write without this
//! crate: a pipeline of `XADD`s, and a loop of `XREADGROUP` (redis-rs
//! `StreamReadReply`) + field-by-field decoding + one `XACK` per batch. Ours
//! additionally runs each entry through a handler with bounded concurrency,
//! retries, dead letters and reclaiming, and overlaps each batch's `XACK`
//! with the next `XREADGROUP`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis_runtime::stream::{GroupStart, Stream};
use redis_runtime::testing::RedisServer;
use redis_runtime::{Client, RedisRecord};
use tokio_util::sync::CancellationToken;

const N: u64 = 50_000;
const RUNS: usize = 5;

#[derive(RedisRecord, Debug, Clone, PartialEq)]
struct Event {
    id: u64,
    kind: String,
    payload: String,
    created_at: i64,
}

fn event(id: u64) -> Event {
    Event {
        id,
        kind: "push".into(),
        payload: "x".repeat(64),
        created_at: 1_700_000_000_000 + id as i64,
    }
}

fn events() -> Vec<Event> {
    (0..N).map(event).collect()
}

// ---- ours ----

async fn ours_produce(client: &Client, key: &str, batch: usize, all: &[Event]) {
    let stream = Stream::<Event>::new(client, key);
    for chunk in all.chunks(batch) {
        let report = stream
            .publish_batch(chunk.iter().map(|e| (e.id.to_string(), e)))
            .await
            .expect("publish");
        assert!(report.failed.is_empty());
    }
}

async fn ours_consume(client: &Client, key: &str, batch: usize) {
    let group = Stream::<Event>::new(client, key).group("bench");
    group
        .ensure_from(GroupStart::Beginning)
        .await
        .expect("ensure");
    let seen = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let (s, done) = (seen.clone(), stop.clone());
    let report = group
        .worker()
        .batch_size(batch)
        .concurrency(batch)
        .block(Duration::from_secs(1))
        .run(
            move |entry| {
                let (s, done) = (s.clone(), done.clone());
                async move {
                    std::hint::black_box(&entry.message);
                    if s.fetch_add(1, Ordering::Relaxed) + 1 == N {
                        done.cancel();
                    }
                    Ok::<(), String>(())
                }
            },
            stop,
        )
        .await
        .expect("worker");
    assert_eq!(report.handled, N);
    assert_eq!(group.pending_count().await.expect("pending"), 0);
}

// ---- hand-written redis-rs ----

async fn hand_produce(conn: &mut MultiplexedConnection, key: &str, batch: usize, all: &[Event]) {
    for chunk in all.chunks(batch) {
        let mut pipe = redis::pipe();
        for e in chunk {
            pipe.xadd(
                key,
                "*",
                &[
                    ("id", e.id.to_string()),
                    ("kind", e.kind.clone()),
                    ("payload", e.payload.clone()),
                    ("created_at", e.created_at.to_string()),
                ],
            );
        }
        let _: Vec<String> = pipe.query_async(conn).await.expect("pipeline");
    }
}

fn hand_decode(fields: &std::collections::HashMap<String, redis::Value>) -> Option<Event> {
    let text = |name: &str| -> Option<String> {
        redis::from_redis_value_ref::<String>(fields.get(name)?).ok()
    };
    Some(Event {
        id: text("id")?.parse().ok()?,
        kind: text("kind")?,
        payload: text("payload")?,
        created_at: text("created_at")?.parse().ok()?,
    })
}

async fn hand_consume(client: &Client, key: &str, batch: usize) {
    let mut conn = client
        .redis_client()
        .await
        .expect("redis client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let mut reader = client
        .redis_client()
        .await
        .expect("redis client")
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await
        .expect("reader");
    let _: redis::RedisResult<()> = conn.xgroup_create_mkstream(key, "bench", "0").await;
    let options = StreamReadOptions::default()
        .group("bench", "hand")
        .count(batch)
        .block(1000);
    let mut seen = 0u64;
    while seen < N {
        let reply: StreamReadReply = reader
            .xread_options(&[key], &[">"], &options)
            .await
            .expect("xreadgroup");
        let mut ids = Vec::with_capacity(batch);
        for stream in reply.keys {
            for entry in stream.ids {
                let decoded = hand_decode(&entry.map).expect("decodes");
                std::hint::black_box(&decoded);
                ids.push(entry.id);
            }
        }
        if ids.is_empty() {
            continue;
        }
        seen += ids.len() as u64;
        let _: u64 = conn.xack(key, "bench", &ids).await.expect("xack");
    }
}

// ---- harness ----

/// Filters for profiling one side (`perf record` on the bench binary):
/// `STREAM_BENCH_SIDE=ours|hand`, `STREAM_BENCH_BATCH=10|100`.
fn skipped(side: Side, batch: usize) -> bool {
    let side_name = match side {
        Side::Ours => "ours",
        Side::Hand => "hand",
    };
    std::env::var("STREAM_BENCH_SIDE").is_ok_and(|v| v != side_name)
        || std::env::var("STREAM_BENCH_BATCH").is_ok_and(|v| v != batch.to_string())
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn rate(elapsed: Duration) -> f64 {
    N as f64 / elapsed.as_secs_f64()
}

#[derive(Clone, Copy)]
enum Side {
    Ours,
    Hand,
}

#[derive(Clone, Copy)]
enum Workload {
    Produce,
    Consume,
    Both,
}

async fn measure(
    client: &Client,
    side: Side,
    workload: Workload,
    batch: usize,
    key: &str,
    all: &[Event],
) -> f64 {
    let mut conn = client
        .redis_client()
        .await
        .expect("redis client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    if let Workload::Consume = workload {
        // Pre-fill, untimed.
        hand_produce(&mut conn, key, 500, all).await;
    }
    let started = Instant::now();
    match (side, workload) {
        (Side::Ours, Workload::Produce) => ours_produce(client, key, batch, all).await,
        (Side::Hand, Workload::Produce) => hand_produce(&mut conn, key, batch, all).await,
        (Side::Ours, Workload::Consume) => ours_consume(client, key, batch).await,
        (Side::Hand, Workload::Consume) => hand_consume(client, key, batch).await,
        (Side::Ours, Workload::Both) => {
            tokio::join!(
                ours_produce(client, key, batch, all),
                ours_consume(client, key, batch)
            );
        }
        (Side::Hand, Workload::Both) => {
            let mut producer = conn.clone();
            tokio::join!(
                hand_produce(&mut producer, key, batch, all),
                hand_consume(client, key, batch)
            );
        }
    }
    let elapsed = started.elapsed();
    let _: () = conn.del(key).await.expect("cleanup");
    rate(elapsed)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let server = RedisServer::start();
        let client = Client::connect(server.config()).await.expect("connect");
        let all = events();
        println!("{N} messages per run, median of {RUNS} runs, private redis-server on loopback\n");
        println!("| workload | ours msg/s | hand-written msg/s | ratio |");
        println!("| --- | ---: | ---: | ---: |");
        let mut run = 0;
        for batch in [100usize, 10] {
            for (workload, name) in [
                (Workload::Produce, "produce"),
                (Workload::Consume, "consume + ack"),
                (Workload::Both, "produce + consume + ack"),
            ] {
                let mut ours = Vec::new();
                let mut hand = Vec::new();
                for i in 0..RUNS {
                    // Alternate who goes first, so warm-up and drift hit both.
                    let order = if i % 2 == 0 {
                        [Side::Ours, Side::Hand]
                    } else {
                        [Side::Hand, Side::Ours]
                    };
                    for side in order {
                        if skipped(side, batch) {
                            continue;
                        }
                        run += 1;
                        let key = format!("bench:{run}");
                        let r = measure(&client, side, workload, batch, &key, &all).await;
                        match side {
                            Side::Ours => ours.push(r),
                            Side::Hand => hand.push(r),
                        }
                    }
                }
                if ours.is_empty() || hand.is_empty() {
                    continue; // filtered out
                }
                let (ours, hand) = (median(ours), median(hand));
                println!(
                    "| {name} (batch {batch}) | {ours:.0} | {hand:.0} | {:.2} |",
                    ours / hand
                );
            }
        }
        client.shutdown().await;
    });
}

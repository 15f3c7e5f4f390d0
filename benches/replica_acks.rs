//! What durability costs: the same entity writes through Sentinel with and
//! without replica acknowledgements (`WAIT 1` after every write), against
//! one master and one replica the harness starts on loopback, in one run.
//!
//! ```text
//! cargo bench --bench replica_acks            # N=10000 ROUNDS=3
//! N=20000 ROUNDS=5 cargo bench --bench replica_acks
//! ```
//!
//! Each row is the median of the rounds, each round on a flushed master;
//! "ratio" is with acknowledgements over without. Both nodes and the
//! client share this machine's cores, so the replica's work is paid on
//! the same CPUs as the master's.

mod common;

use std::time::Duration;

use common::{env_u64, measure, median, op};
use redis_runtime::testing::SentinelTopology;
use redis_runtime::{Client, Config, RedisEntity};

/// A job with an index and an outbox stream, as the main example's.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "job:{id}")]
#[redis(sorted_index(key = "jobs:user:{user_id}", score = "created_at"))]
#[redis(index(key = "jobs:status:{status}"))]
#[redis(stream = "jobs:stream")]
struct Job {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

fn job(i: u64) -> Job {
    Job {
        id: format!("j{i}"),
        user_id: format!("u{}", i % 100),
        status: "queued".into(),
        created_at: 1_700_000_000_000 + i as i64,
    }
}

async fn connect(topology: &SentinelTopology, acks: bool) -> Client {
    let mut builder = Config::builder(topology.url()).lazy_connect(false);
    if acks {
        builder = builder.wait_for_replicas(1, Duration::from_millis(1000));
    }
    Client::connect(builder.build().expect("config"))
        .await
        .expect("connect through the sentinels")
}

async fn flush(client: &Client) {
    let _: () = client
        .write(
            redis_runtime::Context::new("bench.flush", ""),
            &redis::cmd("FLUSHALL"),
        )
        .await
        .expect("FLUSHALL");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_u64("N", 10_000);
    let rounds = env_u64("ROUNDS", 3);
    let topology = tokio::task::spawn_blocking(|| SentinelTopology::start("bench"))
        .await
        .expect("topology");
    let plain = connect(&topology, false).await;
    let acked = connect(&topology, true).await;
    println!(
        "N={n} ROUNDS={rounds} cargo bench --bench replica_acks\n\n1 master + 1 replica + 3 sentinels on loopback; medians of {rounds} round(s)\n"
    );
    println!("| workload | without acks ops/s | with `WAIT 1` ops/s | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    for (label, tasks) in [("create, sequential", 1u64), ("create, 64 tasks", 64)] {
        let mut without = Vec::new();
        let mut with = Vec::new();
        for _ in 0..rounds {
            for (client, out) in [(&plain, &mut without), (&acked, &mut with)] {
                flush(&plain).await;
                let create = op(client, |client: Client, i| async move {
                    job(i).create(&client).await.expect("create");
                });
                out.push(measure(tasks, n, move |i| create(i)).await);
            }
        }
        let (without, with) = (median(without.into_iter()), median(with.into_iter()));
        println!(
            "| {label} | {without:.0} | {with:.0} | {:.2} |",
            with / without
        );
    }
    plain.shutdown().await;
    acked.shutdown().await;
}

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
//! "ratio" is with acknowledgements over without; "WAITs per op" is what
//! the acknowledging client sent per operation (`INFO commandstats` on
//! the master, reset around the workload). Listings read a page of 20
//! from 2,000 jobs created first; a read never waits for replicas, so its
//! ratio should stay near 1. Both nodes and the client share this
//! machine's cores, so the replica's work is paid on the same CPUs as the
//! master's.

mod common;

use std::time::Duration;

use common::{env_u64, measure, median, op};
use redis_runtime::testing::SentinelTopology;
use redis_runtime::testing::{command_calls, raw_query};
use redis_runtime::{Client, Config, Page, RedisEntity};

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

/// Jobs created before the listing workloads: 20 for each of 100 users.
const LISTED: u64 = 2_000;

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
    println!("| workload | without acks ops/s | with `WAIT 1` ops/s | ratio | WAITs per op |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (label, tasks, listing) in [
        ("create, sequential", 1u64, false),
        ("create, 64 tasks", 64, false),
        ("listing (page of 20), sequential", 1, true),
        ("listing (page of 20), 64 tasks", 64, true),
    ] {
        let mut without = Vec::new();
        let mut with = Vec::new();
        let mut waits = Vec::new();
        for _ in 0..rounds {
            for (client, acks) in [(&plain, false), (&acked, true)] {
                flush(&plain).await;
                let run = if listing {
                    for i in 0..LISTED {
                        job(i).create(&plain).await.expect("create");
                    }
                    op(client, |client: Client, i| async move {
                        let user = format!("u{}", i % 100);
                        let page = Job::by_user_id(&client, &user, Page::newest_first(20))
                            .await
                            .expect("listing");
                        assert_eq!(page.len(), 20);
                    })
                } else {
                    op(client, |client: Client, i| async move {
                        job(i).create(&client).await.expect("create");
                    })
                };
                let _: () = raw_query(&plain, &["CONFIG", "RESETSTAT"]).await;
                let rate = measure(tasks, n, move |i| run(i)).await;
                let stats: String = raw_query(&plain, &["INFO", "commandstats"]).await;
                if acks {
                    with.push(rate);
                    waits.push(command_calls(&stats, "wait") as f64 / n as f64);
                } else {
                    without.push(rate);
                }
            }
        }
        let (without, with) = (median(without.into_iter()), median(with.into_iter()));
        let waits = median(waits.into_iter());
        println!(
            "| {label} | {without:.0} | {with:.0} | {:.2} | {waits:.2} |",
            with / without
        );
    }
    plain.shutdown().await;
    acked.shutdown().await;
}

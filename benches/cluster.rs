//! The same entity and stream workloads on one server and on a 3-master
//! Redis Cluster (with 3 replicas), both started on loopback by the
//! harness, in one run.
//!
//! ```text
//! cargo bench --bench cluster            # N=10000 ROUNDS=3
//! N=20000 ROUNDS=5 cargo bench --bench cluster
//! ```
//!
//! Each row is the median of the rounds, each round on flushed data;
//! "ratio" is cluster over one server. Every node, the replicas and the
//! client share this machine's cores (two here), so the cluster's extra
//! primaries add no CPU: what this shows is the cost of the topology (a
//! slot lookup per command, connections to three nodes, replication to
//! three replicas), not the throughput a cluster on separate machines
//! would add.

mod common;

use common::{env_u64, measure, median, op};
use redis_runtime::stream::Stream;
use redis_runtime::testing::{ClusterTopology, RedisServer};
use redis_runtime::{Client, Config, RedisEntity, RedisRecord};

/// Pinned to one slot (`{jobs}`): an index and an outbox stream with it.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "job:{{jobs}}:{id}")]
#[redis(sorted_index(key = "jobs:{{jobs}}:user:{user_id}", score = "created_at"))]
#[redis(stream = "jobs:{{jobs}}:stream")]
struct Job {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

/// Tagged by its user: spread over the masters, no index.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "profile:{{{user_id}}}:{id}")]
struct Profile {
    user_id: String,
    id: String,
    bio: String,
}

/// A stream message.
#[derive(RedisRecord, Debug, Clone, PartialEq)]
struct Tick {
    n: u64,
}

fn job(i: u64) -> Job {
    Job {
        id: format!("j{i}"),
        user_id: format!("u{}", i % 100),
        status: "queued".into(),
        created_at: 1_700_000_000_000 + i as i64,
    }
}

fn profile(i: u64) -> Profile {
    Profile {
        user_id: format!("u{i}"),
        id: "main".into(),
        bio: format!("profile {i}"),
    }
}

/// Deletes what a round wrote, on any topology (FLUSHALL goes to one
/// cluster node only).
async fn clear(client: &Client, n: u64) {
    let deletes = op(client, |client: Client, i| async move {
        Job::delete(&client, &format!("j{i}"))
            .await
            .expect("delete");
        Profile::delete(&client, &format!("u{i}"), "main")
            .await
            .expect("delete");
    });
    measure(64, n, move |i| deletes(i)).await;
    let mut del = redis::cmd("DEL");
    del.arg("jobs:{jobs}:stream").arg("{ticks}:stream");
    let _: u64 = client
        .write(redis_runtime::Context::new("bench.clear", ""), &del)
        .await
        .expect("DEL");
}

type Workload = (&'static str, u64, fn(&Client) -> common::Op);

const WORKLOADS: [Workload; 5] = [
    ("pinned create (index + stream), 64 tasks", 64, |c| {
        op(c, |client: Client, i| async move {
            job(i).create(&client).await.expect("create");
        })
    }),
    ("pinned get, 64 tasks", 64, |c| {
        op(c, |client: Client, i| async move {
            Job::get(&client, &format!("j{i}")).await.expect("get");
        })
    }),
    ("spread create, 64 tasks", 64, |c| {
        op(c, |client: Client, i| async move {
            profile(i).create(&client).await.expect("create");
        })
    }),
    ("spread get, 64 tasks", 64, |c| {
        op(c, |client: Client, i| async move {
            Profile::get(&client, &format!("u{i}"), "main")
                .await
                .expect("get");
        })
    }),
    ("stream publish, 64 tasks", 64, |c| {
        op(c, |client: Client, i| async move {
            Stream::<Tick>::new(&client, "{ticks}:stream")
                .publish(&Tick { n: i })
                .await
                .expect("publish");
        })
    }),
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_u64("N", 10_000);
    let rounds = env_u64("ROUNDS", 3);
    let server = RedisServer::start();
    let single = Client::connect(server.config()).await.expect("connect");
    let topology = tokio::task::spawn_blocking(ClusterTopology::start)
        .await
        .expect("cluster");
    let config = Config::from_url(&topology.url()).expect("cluster URL");
    let cluster = Client::connect(config)
        .await
        .expect("connect to the cluster");
    println!(
        "N={n} ROUNDS={rounds} cargo bench --bench cluster\n\none redis-server against 3 masters + 3 replicas, all on this machine's cores; medians of {rounds} round(s)\n"
    );
    println!("| workload | one server ops/s | cluster ops/s | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    let mut samples: Vec<[Vec<f64>; 2]> = WORKLOADS.iter().map(|_| Default::default()).collect();
    for _ in 0..rounds {
        for (side, client) in [&single, &cluster].into_iter().enumerate() {
            for (w, (_, tasks, make)) in WORKLOADS.iter().enumerate() {
                let run = make(client);
                samples[w][side].push(measure(*tasks, n, move |i| run(i)).await);
            }
            clear(client, n).await;
        }
    }
    for ((label, _, _), [one, many]) in WORKLOADS.iter().zip(samples) {
        let (one, many) = (median(one.into_iter()), median(many.into_iter()));
        println!("| {label} | {one:.0} | {many:.0} | {:.2} |", many / one);
    }
    single.shutdown().await;
    cluster.shutdown().await;
}

//! `cross_slot` indexes on a 3-master Redis Cluster (with 3 replicas),
//! against the hand-written redis-rs code a team writes for the same
//! layout today, in one run on one cluster the harness starts.
//!
//! ```text
//! cargo bench --bench cross_slot            # N=10000 ROUNDS=3
//! N=20000 ROUNDS=5 cargo bench --bench cross_slot
//! ```
//!
//! The layout is the one other services share: each order hashes its
//! whole key (`order:{id}`, spread over every master), a global status
//! set and a per-user sorted set (`orders:status:{status}`,
//! `orders:user:{user_id}`), in other slots. The hand-written side writes
//! the hash and then both indexes with plain commands, the index commands
//! sent together; a status change reads the old status first. It has no
//! record of the moves: a client that dies between its commands leaves
//! the indexes wrong for good, and a reader cannot tell. Ours writes the
//! hash and the record in one script, then claims, moves and releases.
//! The third workload adds an outbox stream, also global (`orders:stream`,
//! `stream_cross_slot`): the hand-written side sends its `XADD` with the
//! index commands; ours records the entry with the moves and appends it
//! after them.
//!
//! The last two workloads keep a global unique email (`members:by_email`,
//! one hash for the whole type, `cross_slot`): ours claims a new value in
//! that hash's slot, then writes the entity, refusing a claim taken back
//! since, and releases the old value after a change. The hand-written side
//! does what teams write today: `HSETNX` on the unique hash, then the
//! entity's hash; on a change it reads the old value first and `HDEL`s it
//! after. It cannot tell a claim whose write never ran from a live one,
//! and two writers changing one member at once can leave both values
//! mapped.
//!
//! Each row is the median of the rounds; "ratio" is ours over
//! hand-written ops/s. Server µs per operation is the `INFO commandstats`
//! time of every command and script on the three masters (reset before
//! each measurement), divided by the operations.

mod common;

use common::{env_u64, measure, median, op};
use redis::AsyncCommands;
use redis::cluster_async::ClusterConnection;
use redis_runtime::testing::ClusterTopology;
use redis_runtime::{Client, Config, RedisEntity};

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "order:{id}")]
#[redis(index(key = "orders:status:{status}", cross_slot))]
#[redis(sorted_index(key = "orders:user:{user_id}", score = "created_at", cross_slot))]
struct Order {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

/// `Order` with its outbox stream in another slot too.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "queued_order:{id}")]
#[redis(stream = "orders:stream", stream_cross_slot)]
#[redis(index(key = "queued_orders:status:{status}", cross_slot))]
#[redis(sorted_index(key = "queued_orders:user:{user_id}", score = "created_at", cross_slot))]
struct QueuedOrder {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

/// A global unique email in another slot than most members.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "member:{id}")]
#[redis(unique(key = "members:by_email", field = "email", cross_slot))]
struct Member {
    id: String,
    email: String,
}

/// The hand-written create of a member: claim the email, then the hash.
async fn hand_member(mut conn: ClusterConnection, id: String, email: String) {
    let claimed: bool = conn
        .hset_nx("hand:members:by_email", &email, &id)
        .await
        .expect("HSETNX");
    assert!(claimed, "a fresh email");
    let () = conn
        .hset_multiple(
            format!("hand:member:{id}"),
            &[("id", &id), ("email", &email)],
        )
        .await
        .expect("HSET");
}

/// The hand-written email change: read the old one, claim the new one,
/// write it, drop the old one.
async fn hand_email_change(mut conn: ClusterConnection, id: String, email: String) {
    let key = format!("hand:member:{id}");
    let old: Option<String> = conn.hget(&key, "email").await.expect("HGET");
    let claimed: bool = conn
        .hset_nx("hand:members:by_email", &email, &id)
        .await
        .expect("HSETNX");
    assert!(claimed, "a fresh email");
    let () = conn.hset(&key, "email", &email).await.expect("HSET");
    if let Some(old) = old {
        let _: i64 = conn
            .hdel("hand:members:by_email", &old)
            .await
            .expect("HDEL");
    }
}

fn order(id: &str, i: u64) -> Order {
    Order {
        id: id.to_string(),
        user_id: format!("u{}", i % 100),
        status: "new".into(),
        created_at: 1_700_000_000_000 + i as i64,
    }
}

/// The hand-written create: the hash, then both index entries (and, with
/// `enqueue`, the stream entry) at once.
async fn hand_create(mut conn: ClusterConnection, id: String, i: u64, enqueue: bool) {
    let o = order(&id, i);
    let key = format!("hand:order:{id}");
    let fields = [
        ("id", o.id.clone()),
        ("user_id", o.user_id.clone()),
        ("status", o.status.clone()),
        ("created_at", o.created_at.to_string()),
    ];
    let () = conn.hset_multiple(&key, &fields).await.expect("HSET");
    let (mut a, mut b, mut c) = (conn.clone(), conn.clone(), conn);
    let status = format!("hand:orders:status:{}", o.status);
    let user = format!("hand:orders:user:{}", o.user_id);
    let entry = async {
        if enqueue {
            let _: String = c
                .xadd("hand:orders:stream", "*", &fields)
                .await
                .expect("XADD");
        }
    };
    let (added, scored, ()): (redis::RedisResult<i64>, redis::RedisResult<i64>, ()) = tokio::join!(
        a.sadd(&status, &o.id),
        b.zadd(&user, &o.id, o.created_at),
        entry
    );
    added.expect("SADD");
    scored.expect("ZADD");
}

/// The hand-written status change: read the old status, write the new
/// one, then move the entry.
async fn hand_move(mut conn: ClusterConnection, id: String, status: &'static str) {
    let key = format!("hand:order:{id}");
    let old: Option<String> = conn.hget(&key, "status").await.expect("HGET");
    let () = conn.hset(&key, "status", status).await.expect("HSET");
    let (mut a, mut b) = (conn.clone(), conn);
    let from = format!("hand:orders:status:{}", old.unwrap_or_default());
    let to = format!("hand:orders:status:{status}");
    let (removed, added): (redis::RedisResult<i64>, redis::RedisResult<i64>) =
        tokio::join!(a.srem(&from, &id), b.sadd(&to, &id));
    removed.expect("SREM");
    added.expect("SADD");
}

/// Resets `INFO commandstats` on every master.
fn reset_stats(topology: &ClusterTopology) {
    for port in topology.masters() {
        let node = redis::Client::open(topology.node_url(port)).expect("node URL");
        let mut conn = node.get_connection().expect("connect to a master");
        let () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut conn)
            .expect("CONFIG RESETSTAT");
    }
}

/// The index moves: the only commands ours sends beside its scripts (the
/// scripts of a type whose indexes are all `cross_slot` never call them).
const MOVES: [&str; 4] = ["sadd", "zadd", "srem", "zrem"];

/// The server time, in µs, of the commands the clients sent, on every
/// master since [`reset_stats`].
///
/// `INFO commandstats` counts a script's `redis.call`s under their own
/// commands too, and their time is already in the script's: where scripts
/// ran, only the scripts, script loads and [`MOVES`] were sent.
/// `BREAKDOWN=1` prints every line.
fn server_usec(topology: &ClusterTopology) -> u64 {
    let mut total = 0;
    for port in topology.masters() {
        let node = redis::Client::open(topology.node_url(port)).expect("node URL");
        let mut conn = node.get_connection().expect("connect to a master");
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut conn)
            .expect("INFO commandstats");
        let stats: Vec<(&str, u64)> = info
            .lines()
            .filter_map(|line| line.strip_prefix("cmdstat_"))
            .filter_map(|line| {
                let (name, fields) = line.split_once(':')?;
                let usec = fields.split(',').find_map(|f| f.strip_prefix("usec="))?;
                Some((name, usec.parse().ok()?))
            })
            .collect();
        let scripts_ran = stats.iter().any(|(name, _)| name.starts_with("eval"));
        for (name, usec) in stats {
            if std::env::var_os("BREAKDOWN").is_some() {
                println!("{port}: {name} {usec} µs");
            }
            // `INFO`, `CONFIG` and the cluster's own are not the clients'.
            let ours = !matches!(
                name,
                "info" | "config|resetstat" | "cluster|nodes" | "replconf"
            );
            let sent = !scripts_ran
                || name.starts_with("eval")
                || name.starts_with("script|")
                || MOVES.contains(&name);
            if ours && sent {
                total += usec;
            }
        }
    }
    total
}

/// One measured side: ops/s, and server µs per operation.
async fn side(topology: &ClusterTopology, n: u64, run: common::Op) -> (f64, f64) {
    reset_stats(topology);
    let rate = measure(64, n, move |i| run(i)).await;
    let usec = server_usec(topology) as f64 / n as f64;
    (rate, usec)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_u64("N", 10_000);
    let rounds = env_u64("ROUNDS", 3);
    let topology = tokio::task::spawn_blocking(ClusterTopology::start)
        .await
        .expect("cluster");
    let config = Config::from_url(&topology.url()).expect("cluster URL");
    let client = Client::connect(config)
        .await
        .expect("connect to the cluster");
    let nodes: Vec<String> = topology
        .masters()
        .into_iter()
        .map(|port| topology.node_url(port))
        .collect();
    let hand = redis::cluster::ClusterClient::new(nodes)
        .expect("cluster client")
        .get_async_connection()
        .await
        .expect("connect by hand");
    println!(
        "N={n} ROUNDS={rounds} cargo bench --bench cross_slot\n\n3 masters + 3 replicas on this machine's cores, 64 tasks; medians of {rounds} round(s)\n"
    );
    println!(
        "| workload | ours ops/s | hand-written ops/s | ratio | ours server µs/op | hand-written server µs/op |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut rows: [[Vec<(f64, f64)>; 2]; 5] = Default::default();
    for round in 0..rounds {
        let ours_create = op(&client, move |client: Client, i| async move {
            let id = format!("r{round}-{i}");
            order(&id, i).create(&client).await.expect("create");
        });
        rows[0][0].push(side(&topology, n, ours_create).await);
        let hand_creates = op(&hand, move |conn: ClusterConnection, i| {
            hand_create(conn, format!("r{round}-{i}"), i, false)
        });
        rows[0][1].push(side(&topology, n, hand_creates).await);
        let ours_move = op(&client, move |client: Client, i| async move {
            let patch = OrderPatch {
                status: Some("paid".into()),
                ..Default::default()
            };
            Order::patch(&client, &format!("r{round}-{i}"), &patch)
                .await
                .expect("patch");
        });
        rows[1][0].push(side(&topology, n, ours_move).await);
        let hand_moves = op(&hand, move |conn: ClusterConnection, i| {
            hand_move(conn, format!("r{round}-{i}"), "paid")
        });
        rows[1][1].push(side(&topology, n, hand_moves).await);
        let ours_queued = op(&client, move |client: Client, i| async move {
            let o = order(&format!("r{round}-{i}"), i);
            let queued = QueuedOrder {
                id: o.id,
                user_id: o.user_id,
                status: o.status,
                created_at: o.created_at,
            };
            let outcome = queued.create(&client).await.expect("create");
            assert!(outcome.stream_id.is_some(), "appended by this client");
        });
        rows[2][0].push(side(&topology, n, ours_queued).await);
        let hand_queued = op(&hand, move |conn: ClusterConnection, i| {
            hand_create(conn, format!("q{round}-{i}"), i, true)
        });
        rows[2][1].push(side(&topology, n, hand_queued).await);
        let ours_member = op(&client, move |client: Client, i| async move {
            let member = Member {
                id: format!("r{round}-{i}"),
                email: format!("e{round}-{i}@x"),
            };
            member.create(&client).await.expect("create");
        });
        rows[3][0].push(side(&topology, n, ours_member).await);
        let hand_members = op(&hand, move |conn: ClusterConnection, i| {
            hand_member(conn, format!("r{round}-{i}"), format!("e{round}-{i}@x"))
        });
        rows[3][1].push(side(&topology, n, hand_members).await);
        let ours_change = op(&client, move |client: Client, i| async move {
            let patch = MemberPatch {
                email: Some(format!("c{round}-{i}@x")),
            };
            Member::patch(&client, &format!("r{round}-{i}"), &patch)
                .await
                .expect("patch");
        });
        rows[4][0].push(side(&topology, n, ours_change).await);
        let hand_changes = op(&hand, move |conn: ClusterConnection, i| {
            hand_email_change(conn, format!("r{round}-{i}"), format!("c{round}-{i}@x"))
        });
        rows[4][1].push(side(&topology, n, hand_changes).await);
    }
    let labels = [
        "create (hash + status set + user sorted set)",
        "status change (entry moves to another set)",
        "create with an outbox entry (+ stream in another slot)",
        "create with a global unique email (claimed in another slot)",
        "email change (new one claimed, old one released)",
    ];
    for (label, [ours, hand]) in labels.iter().zip(rows) {
        let rate = |v: &[(f64, f64)]| median(v.iter().map(|s| s.0));
        let usec = |v: &[(f64, f64)]| median(v.iter().map(|s| s.1));
        println!(
            "| {label} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} |",
            rate(&ours),
            rate(&hand),
            rate(&ours) / rate(&hand),
            usec(&ours),
            usec(&hand)
        );
    }
    let report = redis_runtime::index::verify::<Order>(&client)
        .await
        .expect("verify");
    let queued = redis_runtime::index::verify::<QueuedOrder>(&client)
        .await
        .expect("verify");
    let entries = redis_runtime::stream::Stream::<QueuedOrder>::new(&client, "orders:stream")
        .len()
        .await
        .expect("XLEN");
    println!(
        "\nafter the run: {} orders, {} drift, {} pending records; {} queued orders, {} drift, {} pending records, {entries} stream entries",
        report.entities,
        report.drift.len(),
        report.pending,
        queued.entities,
        queued.drift.len(),
        queued.pending
    );
    let members = redis_runtime::index::verify::<Member>(&client)
        .await
        .expect("verify");
    let mut hlen = redis::cmd("HLEN");
    hlen.arg("members:by_email");
    let mapped: u64 = client
        .read(redis_runtime::Context::new("bench.hlen", "members"), &hlen)
        .await
        .expect("HLEN");
    println!(
        "after the run: {} members, {} drift, {} pending records, {mapped} emails mapped",
        members.entities,
        members.drift.len(),
        members.pending
    );
    client.shutdown().await;
}

//! Entities on a real Redis Cluster the test starts (three masters with a
//! replica each, on loopback), through the same `Client` as one server:
//! `Config::from_url("redis+cluster://…")` is the only difference.
//!
//! One cluster for the whole binary (about 2 s to form); the tests keep
//! apart by hash tag and key prefix.

#[allow(dead_code)]
#[path = "../examples/app/model.rs"]
mod model;

#[path = "../examples/app/flow.rs"]
mod flow;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use redis_runtime::on_both_topologies;
use redis_runtime::pubsub::Channel;
use redis_runtime::queue::ListQueue;
use redis_runtime::stream::Stream;
use redis_runtime::testing::{ClusterTopology, TestRedis, eventually};
use redis_runtime::{
    Client, Config, Context, Error, Page, RedisEntity, RedisRecord, ScoreRange, index,
};

/// Pinned to one slot by the constant tag `{jobs}`: its hash, every index,
/// the unique hash, the stream and the TTL registry share that slot, so
/// every write is one atomic script on one node.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "job:{{jobs}}:{id}", ttl = "1h")]
#[redis(stream = "jobs:{{jobs}}:stream")]
#[redis(sorted_index(key = "jobs:{{jobs}}:by_user:{user_id}", score = "created_at"))]
#[redis(index(key = "jobs:{{jobs}}:status:{status}"))]
#[redis(unique(key = "jobs:{{jobs}}:by_slug", field = "slug"))]
struct Job {
    id: String,
    user_id: String,
    status: String,
    slug: String,
    created_at: i64,
}

/// Tagged by its owner: each user's profiles live in that user's slot,
/// spread over the masters.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "profile:{{{user_id}}}:{id}")]
struct Profile {
    user_id: String,
    id: String,
    bio: String,
}

/// Tagged by its owner, with indexes: a user's runs, their index entries
/// and their TTL registry share the user's slot (a registry per user).
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "run:{{{user_id}}}:{id}", ttl = "1h")]
#[redis(sorted_index(key = "runs:{{{user_id}}}:by_time", score = "created_at"))]
#[redis(index(key = "runs:{{{user_id}}}:status:{status}"))]
struct Run {
    user_id: String,
    id: String,
    status: String,
    created_at: i64,
}

/// The layout other services share: each ticket hashes its whole key, so
/// tickets spread over every master, and its indexes are global keys in
/// slots of their own. `cross_slot` lets them be: on a cluster each write
/// records its index moves beside the ticket, and the client applies them
/// right after.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "ticket:{id}")]
#[redis(index(key = "tickets:status:{status}", cross_slot))]
#[redis(sorted_index(key = "tickets:user:{user_id}", score = "created_at", cross_slot))]
struct Ticket {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

/// Pinned to one slot, with one index in it and one global `cross_slot`.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "board:{{boards}}:{id}")]
#[redis(index(key = "boards:{{boards}}:owner:{owner}"))]
#[redis(index(key = "boards:status:{status}", cross_slot))]
struct Board {
    id: String,
    owner: String,
    status: String,
}

/// `Ticket`'s layout, for the test that holds an entity's lease.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "parcel:{id}")]
#[redis(index(key = "parcels:status:{status}", cross_slot))]
struct Parcel {
    id: String,
    status: String,
}

/// `Ticket`'s layout, for the test of a client that stalls past its lease.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "stall:{id}")]
#[redis(index(key = "stalls:status:{status}", cross_slot))]
struct Stall {
    id: String,
    status: String,
}

/// `Ticket`'s layout, for the test of concurrent writers.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "racer:{id}")]
#[redis(index(key = "racers:status:{status}", cross_slot))]
#[redis(sorted_index(key = "racers:user:{user_id}", score = "created_at", cross_slot))]
struct Racer {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

/// A job laid out as services on one server share it (`job:{id}` beside
/// `jobs:status:{status}` and `jobs:stream`), declared for a cluster: each
/// entity in its own slot, its status index and its queue stream in
/// others, both kept in step just after the write.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "shipment:{id}")]
#[redis(stream = "shipments:stream", stream_maxlen = 1000, stream_cross_slot)]
#[redis(index(key = "shipments:status:{status}", cross_slot))]
struct Shipment {
    id: String,
    status: String,
    weight: u32,
}

/// `Ticket`'s layout, for the filtered reads that run on both topologies.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "delivery:{id}")]
#[redis(index(key = "deliveries:status:{status}", cross_slot))]
#[redis(sorted_index(key = "deliveries:user:{user_id}", score = "created_at", cross_slot))]
struct Delivery {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

/// A [`Shipment`]'s entry on its stream.
#[derive(RedisRecord, Debug, Clone, PartialEq)]
struct ShipmentQueued {
    id: String,
    status: String,
    weight: u32,
}

/// `Shipment`'s stream alone, for the test that holds an entity's lease.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(
    cluster,
    key = "invoice:{id}",
    stream = "invoices:stream",
    stream_cross_slot
)]
struct Invoice {
    id: String,
    total: u32,
}

/// The layout of a global unique email that services share: each account
/// hashes its whole key (spread over the masters) and one hash maps every
/// email to its account, in a slot of its own. On a cluster a write claims
/// a new email in that hash first and releases the old one just after.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "account:{id}")]
#[redis(unique(key = "accounts:by_email", field = "email", cross_slot))]
struct Account {
    id: String,
    email: String,
    name: String,
}

/// `Account`'s layout, for the test that settles claims left behind (its
/// `settle` must not meet the other tests' claims in flight).
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "leaver:{id}")]
#[redis(unique(key = "leavers:by_email", field = "email", cross_slot))]
struct Leaver {
    id: String,
    email: String,
}

/// `Account`'s layout, for the test of racing writers.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "rival:{id}")]
#[redis(unique(key = "rivals:by_email", field = "email", cross_slot))]
struct Rival {
    id: String,
    email: String,
}

/// Not declared `cluster`, with an index outside its slot.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "task:{id}")]
#[redis(index(key = "tasks:status:{status}"))]
struct Task {
    id: String,
    status: String,
}

/// Not declared `cluster` either, but a write touches only its hash.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "note:{id}")]
struct Note {
    id: String,
    text: String,
}

/// A message on a stream.
#[derive(RedisRecord, Debug, Clone, PartialEq)]
struct Event {
    id: String,
    n: u32,
}

/// The shared cluster, held for the test, and a client of it.
async fn client() -> (Arc<ClusterTopology>, Client) {
    let cluster = ClusterTopology::shared();
    let config = Config::from_url(&cluster.url()).expect("cluster URL");
    assert!(config.is_cluster());
    let client = Client::connect(config)
        .await
        .expect("connect to the cluster");
    (cluster, client)
}

/// The next message of `subscription`, which must come within 5 s.
async fn next_message(subscription: &mut redis_runtime::Subscription<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("a message within 5 s")
        .expect("subscribed")
        .expect("decoded")
}

/// The port of the master serving `key` now.
fn master_of(key: &str) -> u16 {
    ClusterTopology::shared().master_of_key(key)
}

fn job(id: u32, user: &str, status: &str) -> Job {
    Job {
        id: format!("j{id}"),
        user_id: user.into(),
        status: status.into(),
        slug: format!("job-{id}"),
        created_at: 1_700_000_000_000 + i64::from(id),
    }
}

#[tokio::test]
async fn a_pinned_type_is_written_read_paged_and_expired_on_a_cluster() {
    let (_cluster, client) = client().await;
    let health = client.health().await;
    assert!(health.ok, "{:?}", health.error);

    for id in 0..40 {
        let user = format!("u{}", id % 4);
        let status = if id % 2 == 0 { "queued" } else { "running" };
        let outcome = job(id, &user, status)
            .create(&client)
            .await
            .expect("create");
        assert!(outcome.stream_id.is_some(), "the outbox entry of j{id}");
    }
    let err = job(0, "u0", "queued")
        .create(&client)
        .await
        .expect_err("twice");
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");

    assert_eq!(
        Job::get(&client, "j7").await.expect("get"),
        Some(job(7, "u3", "running"))
    );
    let page = Job::by_user_id(&client, "u1", Page::newest_first(3))
        .await
        .expect("page");
    let ids: Vec<&str> = page.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["j37", "j33", "j29"], "newest first");
    assert_eq!(
        Job::by_status_count(&client, "running")
            .await
            .expect("count"),
        20
    );
    assert_eq!(
        Job::by_slug(&client, "job-12")
            .await
            .expect("unique")
            .map(|j| j.id),
        Some("j12".into())
    );

    // A patch moves the set entry, in one script on the slot's node.
    let patch = JobPatch {
        status: Some("done".into()),
        ..Default::default()
    };
    Job::patch(&client, "j1", &patch).await.expect("patch");
    assert_eq!(
        Job::by_status_ids(&client, "done").await.expect("ids"),
        vec!["j1".to_string()]
    );
    assert_eq!(
        Job::by_status_count(&client, "running")
            .await
            .expect("count"),
        19
    );
    assert!(Job::delete(&client, "j2").await.expect("delete"));
    assert_eq!(
        Job::by_status_count(&client, "queued")
            .await
            .expect("count"),
        19
    );

    // An entity that expires leaves its index entries to the TTL registry,
    // which is in the same slot, and a sweep removes them.
    assert!(
        Job::expire(&client, "j3", Duration::from_millis(50))
            .await
            .expect("expire")
    );
    eventually(Duration::from_secs(5), "j3 to expire", async || {
        Job::get(&client, "j3").await.expect("get").is_none()
    })
    .await;
    eventually(
        Duration::from_secs(5),
        "the sweep to remove j3's entries",
        async || {
            index::sweep::<Job>(&client, 100).await.expect("sweep");
            Job::by_status_count(&client, "running")
                .await
                .expect("count")
                == 18
        },
    )
    .await;
    assert_eq!(Job::by_slug(&client, "job-3").await.expect("unique"), None);

    // Verify walks every primary's keys and finds the indexes exact; a
    // stale entry planted behind the runtime's back is found and repaired.
    let report = index::verify::<Job>(&client).await.expect("verify");
    assert_eq!((report.entities, report.drift.len()), (38, 0), "{report:?}");
    let mut plant = redis::cmd("SADD");
    plant.arg("jobs:{jobs}:status:queued").arg("j999");
    let added: u64 = client
        .write(Context::new("test.plant", ""), &plant)
        .await
        .expect("plant a stale entry");
    assert_eq!(added, 1);
    let report = index::verify::<Job>(&client).await.expect("verify");
    assert_eq!(report.drift.len(), 1, "{report:?}");
    let repaired = index::rebuild::<Job>(&client).await.expect("rebuild");
    assert!(repaired.remaining.is_empty(), "{repaired:?}");
    assert_eq!(
        index::verify::<Job>(&client).await.expect("verify").drift,
        Vec::new()
    );

    // Every key of the type is on the master serving `{jobs}`.
    let owner = master_of("{jobs}");
    for key in [
        "job:{jobs}:j7",
        "jobs:{jobs}:by_user:u1",
        "jobs:{jobs}:status:running",
        "jobs:{jobs}:by_slug",
        "jobs:{jobs}:stream",
    ] {
        assert_eq!(master_of(key), owner, "{key}");
    }
    client.shutdown().await;
}

#[tokio::test]
async fn entities_tagged_by_a_field_spread_over_the_masters() {
    let (_cluster, client) = client().await;
    let users: Vec<String> = (0..30).map(|u| format!("user{u}")).collect();
    for user in &users {
        for id in ["a", "b"] {
            let profile = Profile {
                user_id: user.clone(),
                id: id.into(),
                bio: format!("{user}/{id}"),
            };
            profile.create(&client).await.expect("create");
        }
    }
    for user in &users {
        let found = Profile::get(&client, user, "b").await.expect("get");
        assert_eq!(found.map(|p| p.bio), Some(format!("{user}/b")));
    }
    let masters: BTreeSet<u16> = users
        .iter()
        .map(|user| master_of(&format!("profile:{{{user}}}:a")))
        .collect();
    assert!(masters.len() >= 2, "30 users on one master: {masters:?}");
    // get_many reads across slots: one pipeline per slot, in key order.
    let mut keys: Vec<String> = users
        .iter()
        .map(|user| format!("profile:{{{user}}}:a"))
        .collect();
    keys.insert(3, "profile:{nobody}:a".into());
    let found = Profile::get_many(&client, keys).await.expect("get_many");
    assert_eq!(found.len(), 31);
    assert_eq!(found[3], None, "a missing one keeps its place");
    let bios: Vec<String> = found.into_iter().flatten().map(|p| p.bio).collect();
    let expected: Vec<String> = users.iter().map(|u| format!("{u}/a")).collect();
    assert_eq!(bios, expected);
    // A pipeline of the application's own must stay in one slot: redis-rs
    // refuses one that spans slots, with a typed error and nothing sent.
    let mut pipe = redis::pipe();
    for user in &users {
        pipe.cmd("HGET")
            .arg(format!("profile:{{{user}}}:a"))
            .arg("bio");
    }
    let err = client
        .read::<Vec<String>>(Context::new("test.pipeline", ""), &pipe)
        .await
        .expect_err("a pipeline over several slots");
    assert_eq!(err.code(), "STORAGE_COMMAND", "{err}");
    // A keyspace walk reaches every primary: all 60, wherever they are.
    let report = index::verify::<Profile>(&client).await.expect("verify");
    assert_eq!(report.entities, 60, "{report:?}");
    client.shutdown().await;
}

#[tokio::test]
async fn a_type_tagged_by_a_field_keeps_its_indexes_and_registry_per_tag() {
    let (_cluster, client) = client().await;
    let users: Vec<String> = (0..20).map(|u| format!("owner{u}")).collect();
    for user in &users {
        for n in 0..3 {
            let run = Run {
                user_id: user.clone(),
                id: format!("r{n}"),
                status: if n == 0 { "done" } else { "running" }.into(),
                created_at: 1_700_000_000_000 + n,
            };
            run.create(&client).await.expect("create");
        }
    }
    let masters: BTreeSet<u16> = users
        .iter()
        .map(|user| master_of(&format!("run:{{{user}}}:r0")))
        .collect();
    assert!(masters.len() >= 2, "20 users on one master: {masters:?}");
    for user in &users {
        let page = Run::by_user_id(&client, user, Page::newest_first(2))
            .await
            .expect("page");
        let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r2", "r1"], "{user}");
        let running = Run::by_user_id_and_status_count(&client, user, "running")
            .await
            .expect("count");
        assert_eq!(running, 2, "{user}");
    }
    // A patch moves the entry within the user's status index.
    let patch = RunPatch {
        status: Some("done".into()),
        ..Default::default()
    };
    Run::patch(&client, "owner3", "r1", &patch)
        .await
        .expect("patch");
    assert_eq!(
        Run::by_user_id_and_status_ids(&client, "owner3", "done")
            .await
            .expect("ids"),
        ["owner3:r0", "owner3:r1"],
        "members name every key field"
    );
    // Runs given a short TTL are listed in their user's registry, in their
    // user's slot, and a sweep (which finds every user's registry on every
    // master) removes their index entries once they expired.
    let expiring = ["owner0", "owner7", "owner13"];
    for user in expiring {
        assert!(
            Run::expire(&client, user, "r2", Duration::from_millis(50))
                .await
                .expect("expire")
        );
        let registry = format!("__ttl:run:user_id:id:{{{user}}}");
        assert_eq!(
            master_of(&registry),
            master_of(&format!("run:{{{user}}}:r2"))
        );
        let listed: Option<f64> = client
            .read(
                Context::new("test.zscore", ""),
                redis::cmd("ZSCORE")
                    .arg(&registry)
                    .arg(format!("{user}:r2")),
            )
            .await
            .expect("zscore");
        assert!(listed.is_some(), "{user}'s run is in {registry}");
    }
    eventually(Duration::from_secs(5), "the runs to expire", async || {
        for user in expiring {
            if Run::get(&client, user, "r2").await.expect("get").is_some() {
                return false;
            }
        }
        true
    })
    .await;
    let looked_at = index::sweep::<Run>(&client, 1000).await.expect("sweep");
    assert_eq!(
        looked_at, 3,
        "one expired entry in each of three registries"
    );
    for user in expiring {
        let ids = Run::by_user_id_and_status_ids(&client, user, "running")
            .await
            .expect("ids");
        assert_eq!(
            ids,
            [format!("{user}:r1")],
            "{user}: the expired run's entry is gone"
        );
    }
    let report = index::verify::<Run>(&client).await.expect("verify");
    assert_eq!(report.entities, 57, "{report:?}");
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    // A stale entry in one user's index is found and removed in its slot.
    let _: i64 = client
        .write(
            Context::new("test.plant", ""),
            redis::cmd("SADD")
                .arg("runs:{owner5}:status:running")
                .arg("owner5:ghost"),
        )
        .await
        .expect("plant");
    let report = index::verify::<Run>(&client).await.expect("verify");
    assert_eq!(report.drift.len(), 1, "{:?}", report.drift);
    index::rebuild::<Run>(&client).await.expect("rebuild");
    let report = index::verify::<Run>(&client).await.expect("verify");
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    client.shutdown().await;
}

#[tokio::test]
async fn queues_block_on_their_own_connection_and_keep_companions_in_the_slot() {
    let (_cluster, client) = client().await;
    // A plain queue touches one key per command: any name works.
    let plain = ListQueue::<String>::new(&client, "mail:outbox");
    let waiting = {
        let plain = plain.clone();
        tokio::spawn(async move { plain.pop_blocking(Duration::from_secs(10)).await })
    };
    plain.push(&"hello".to_string()).await.expect("push");
    let popped = waiting.await.expect("join").expect("pop");
    assert_eq!(popped.as_deref(), Some("hello"), "a blocked pop wakes up");

    // A reliable queue moves items between its list and its consumers'
    // processing lists: they need one slot, which a hash tag gives.
    let reliable = ListQueue::<String>::new(&client, "{builds}:queue")
        .reliable_as("c1", Duration::from_secs(30))
        .await
        .expect("reliable queue with a hash tag");
    for n in 0..5 {
        reliable.push(&format!("build {n}")).await.expect("push");
    }
    let held = reliable
        .pop_blocking(Duration::from_secs(1))
        .await
        .expect("pop")
        .expect("an item");
    assert_eq!(held.item, "build 0");
    assert_eq!(reliable.held_count().await.expect("held"), 1);
    assert!(reliable.ack(&held).await.expect("ack"));
    assert_eq!(reliable.held_count().await.expect("held"), 0);
    assert_eq!(
        master_of("{builds}:queue:processing:c1"),
        master_of("{builds}:queue")
    );

    let err = ListQueue::<String>::new(&client, "builds:queue")
        .reliable_as("c1", Duration::from_secs(30))
        .await
        .expect_err("no hash tag");
    assert_eq!(err.code(), "STORAGE_CONFIG", "{err}");
    assert!(err.to_string().contains("hash tag"), "{err}");
    client.shutdown().await;
}

#[tokio::test]
async fn stream_groups_read_blocking_ack_and_dead_letter_on_a_cluster() {
    let (_cluster, client) = client().await;
    let stream = Stream::<Event>::new(&client, "{events}:incoming");
    let group = stream.group("processors");
    group.ensure().await.expect("ensure");
    let reading = {
        let group = group.clone();
        tokio::spawn(async move { group.read(10, Some(Duration::from_secs(10))).await })
    };
    let published = stream
        .publish(&Event {
            id: "e1".into(),
            n: 1,
        })
        .await
        .expect("publish");
    let batch = reading.await.expect("join").expect("read");
    assert_eq!(
        batch.ids(),
        vec![published.clone()],
        "a blocked read wakes up"
    );
    assert_eq!(group.ack(batch.ids()).await.expect("ack"), 1);

    stream
        .publish(&Event {
            id: "e2".into(),
            n: 2,
        })
        .await
        .expect("publish");
    let batch = group.read(10, None).await.expect("read");
    let dead = group
        .dead_letter(&batch.entries[0].id, "cannot handle")
        .await
        .expect("dead letter, in the stream's slot");
    assert!(dead.is_some());
    assert_eq!(group.dead_letters(10).await.expect("dead letters").len(), 1);

    let untagged = Stream::<Event>::new(&client, "events:untagged");
    let untagged_group = untagged.group("processors");
    untagged_group.ensure().await.expect("ensure");
    untagged
        .publish(&Event {
            id: "e3".into(),
            n: 3,
        })
        .await
        .expect("publish");
    let batch = untagged_group.read(10, None).await.expect("read");
    let id = batch.entries[0].id.clone();
    // Its dead-letter stream hashes elsewhere (`events:untagged:dead`):
    // appended, then acknowledged.
    let dead = untagged_group
        .dead_letter(&id, "cannot handle")
        .await
        .expect("dead letter, in another slot");
    assert!(dead.is_some());
    let letters = untagged_group.dead_letters(10).await.expect("dead letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].message.as_ref().expect("decodes").id, "e3");
    assert_eq!(letters[0].source_id, id);
    assert_eq!(letters[0].error, "cannot handle");
    assert_eq!(untagged_group.pending_count().await.expect("pending"), 0);
    // Not pending any more: nothing to move.
    let again = untagged_group
        .dead_letter(&id, "cannot handle")
        .await
        .expect("dead letter");
    assert_eq!(again, None);
    client.shutdown().await;
}

#[tokio::test]
async fn a_worker_handles_retries_and_dead_letters_on_a_cluster() {
    let (_cluster, client) = client().await;
    let stream = Stream::<Event>::new(&client, "{work}:jobs");
    let group = stream.group("workers");
    group.ensure().await.expect("ensure");
    for n in 0..20 {
        stream
            .publish(&Event {
                id: format!("w{n}"),
                n,
            })
            .await
            .expect("publish");
    }
    let handled = Arc::new(AtomicU32::new(0));
    let stop = CancellationToken::new();
    let run = tokio::spawn(
        group
            .worker()
            .max_deliveries(2)
            .retry_backoff(Duration::from_millis(20))
            .claim_min_idle(Duration::from_millis(50))
            .claim_interval(Duration::from_millis(50))
            // A retry is claimed once a read ends with slots free: a short
            // block keeps the test quick (the suite in redis-runtime checks
            // that a stop interrupts a long block on a cluster too).
            .block(Duration::from_millis(200))
            .run(
                {
                    let handled = handled.clone();
                    move |entry: redis_runtime::Entry<Event>| {
                        let handled = handled.clone();
                        async move {
                            // Message 13 always fails: retried, then dead-lettered.
                            if entry.message.n == 13 {
                                return Err("cannot handle 13".to_string());
                            }
                            handled.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        }
                    }
                },
                stop.clone(),
            ),
    );
    eventually(
        Duration::from_secs(10),
        "19 handled, 1 dead-lettered",
        async || {
            handled.load(Ordering::SeqCst) == 19
                && group.dead_letters(10).await.expect("dead letters").len() == 1
        },
    )
    .await;
    stop.cancel();
    let report = run.await.expect("join").expect("run");
    assert_eq!(
        (report.handled, report.dead_lettered),
        (19, 1),
        "{report:?}"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn subscribers_hear_what_is_published_through_any_node() {
    let (_cluster, client) = client().await;
    let channel = Channel::<String>::new(&client, "build-status");
    // Two subscriptions, each on the next seed node.
    let mut first = channel.subscribe().await.expect("subscribe");
    let mut second = channel.subscribe().await.expect("subscribe");
    for n in 0..5 {
        channel
            .publish(&format!("build {n}"))
            .await
            .expect("publish");
    }
    for subscription in [&mut first, &mut second] {
        for n in 0..5 {
            let message = next_message(subscription).await;
            assert_eq!(message, format!("build {n}"));
        }
    }
    client.shutdown().await;
}

#[tokio::test]
async fn shard_channels_deliver_on_the_primary_of_their_slot_only() {
    let (_cluster, client) = client().await;
    let name = "{builds}:status";
    let sharded = Channel::<String>::sharded(&client, name);
    let classic = Channel::<String>::new(&client, name);
    let mut subscription = sharded.subscribe().await.expect("ssubscribe");
    let mut classic_subscription = classic.subscribe().await.expect("subscribe");
    // Only the primary serving the channel's slot knows the subscriber.
    let owner = master_of(name);
    for port in ClusterTopology::shared().masters() {
        let node = redis::Client::open(ClusterTopology::shared().node_url(port)).expect("node URL");
        let mut conn = node.get_connection().expect("connect to a node");
        let counts: Vec<redis::Value> = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(name)
            .query(&mut conn)
            .expect("PUBSUB SHARDNUMSUB");
        let count: i64 = redis::from_redis_value(counts[1].clone()).expect("a count");
        assert_eq!(
            count,
            i64::from(port == owner),
            "port {port}, owner {owner}"
        );
    }
    for n in 0..3 {
        let heard = sharded
            .publish(&format!("build {n}"))
            .await
            .expect("spublish");
        assert_eq!(heard, 1, "SPUBLISH counts the shard's subscribers");
    }
    for n in 0..3 {
        let message = next_message(&mut subscription).await;
        assert_eq!(message, format!("build {n}"));
    }
    // Shard channels and classic channels of one name are separate.
    classic
        .publish(&"classic".to_string())
        .await
        .expect("publish");
    let message = next_message(&mut classic_subscription).await;
    assert_eq!(
        message, "classic",
        "the classic subscriber heard no shard message"
    );
    sharded
        .publish(&"last".to_string())
        .await
        .expect("spublish");
    let message = next_message(&mut subscription).await;
    assert_eq!(
        message, "last",
        "the shard subscriber heard no classic message"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn writes_wait_for_replica_acknowledgements_on_every_primary() {
    let _cluster = ClusterTopology::shared();
    let acked = |replicas| {
        Config::builder(ClusterTopology::shared().url())
            .wait_for_replicas(replicas, Duration::from_millis(500))
            .build()
            .expect("cluster URL with replica acks")
    };
    // `WAIT` calls each primary has served.
    let waits = || -> Vec<u64> {
        ClusterTopology::shared()
            .masters()
            .into_iter()
            .map(|port| redis_runtime::testing::node_command_calls(port, "wait"))
            .collect()
    };
    // Each primary of the test cluster has one replica.
    let client = Client::connect(acked(1)).await.expect("connect");
    let before = waits();
    job(900, "u9", "queued")
        .create(&client)
        .await
        .expect("a write one replica acknowledged");
    let after = waits();
    // The WAIT went to every primary, so also to the one that took the
    // write, and the fewest acknowledgements counted.
    assert!(
        before.iter().zip(&after).all(|(b, a)| a > b),
        "WAIT calls per primary before {before:?}, after {after:?}"
    );
    client.shutdown().await;
    let client = Client::connect(acked(2)).await.expect("connect");
    let err = job(901, "u9", "queued")
        .create(&client)
        .await
        .expect_err("two replicas cannot acknowledge");
    assert_eq!(err.code(), "STORAGE_NOT_REPLICATED", "{err}");
    // The write ran on the primary; only the acknowledgements fell short.
    assert!(Job::get(&client, "j901").await.expect("get").is_some());
    client.shutdown().await;
}

#[tokio::test]
async fn what_needs_one_server_says_so_instead_of_half_working() {
    let (_cluster, client) = client().await;
    let err = client
        .dedicated_connection()
        .await
        .expect_err("a single-server connection");
    assert!(
        err.to_string()
            .contains("not supported on Redis Cluster yet"),
        "{err}"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn a_type_not_declared_cluster_is_refused_before_a_script_could_half_write() {
    let (_cluster, client) = client().await;
    for id in 0..20 {
        let task = Task {
            id: format!("t{id}"),
            status: "queued".into(),
        };
        let err = task
            .create(&client)
            .await
            .expect_err("not declared cluster");
        assert_eq!(err.code(), "STORAGE_CONFIG", "{err}");
        assert!(err.to_string().contains("#[redis(cluster)]"), "{err}");
    }
    let err = Task::by_status_count(&client, "queued")
        .await
        .expect_err("index queries are scripts too");
    assert_eq!(err.code(), "STORAGE_CONFIG", "{err}");
    assert_eq!(
        Task::get(&client, "t3").await.expect("get"),
        None,
        "nothing written"
    );

    // One key per write is one slot, wherever it is.
    for id in 0..20 {
        let note = Note {
            id: format!("n{id}"),
            text: format!("note {id}"),
        };
        note.create(&client).await.expect("create");
    }
    let found = Note::get(&client, "n11").await.expect("get");
    assert_eq!(found.map(|n| n.text).as_deref(), Some("note 11"));
    client.shutdown().await;
}

fn ticket(n: u32, status: &str) -> Ticket {
    Ticket {
        id: format!("t{n}"),
        user_id: format!("u{}", n % 3),
        status: status.into(),
        created_at: 1_700_000_000_000 + i64::from(n),
    }
}

/// The ids of a listing, sorted.
fn ids_of(tickets: &[Ticket]) -> Vec<String> {
    let mut ids: Vec<String> = tickets.iter().map(|t| t.id.clone()).collect();
    ids.sort();
    ids
}

/// The pending index records of entities whose keys start with `prefix`,
/// on every master.
fn pending_records(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let topology = ClusterTopology::shared();
    for port in topology.masters() {
        let node = redis::Client::open(topology.node_url(port)).expect("node URL");
        let mut conn = node.get_connection().expect("connect to a node");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("__pending_index:{{{prefix}*"))
            .query(&mut conn)
            .expect("KEYS");
        found.extend(keys);
    }
    found
}

#[tokio::test]
async fn cross_slot_indexes_follow_entities_spread_over_every_master() {
    let (_cluster, client) = client().await;
    for n in 0..30 {
        ticket(n, "open").create(&client).await.expect("create");
    }
    let masters: BTreeSet<u16> = (0..30)
        .map(|n| master_of(&format!("ticket:t{n}")))
        .collect();
    assert_eq!(masters.len(), 3, "30 tickets on every master: {masters:?}");
    assert_ne!(
        master_of("tickets:status:open"),
        master_of("tickets:status:done"),
        "the two status keys this test moves tickets between are on different masters"
    );
    let open = Ticket::by_status(&client, "open").await.expect("members");
    assert_eq!(open.len(), 30);
    let page = Ticket::by_user_id(&client, "u1", Page::newest_first(3))
        .await
        .expect("page");
    let ids: Vec<&str> = page.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["t28", "t25", "t22"]);

    // Updates and deletes move the entries to keys on other masters.
    for n in 0..10 {
        let mut t = ticket(n, "done");
        t.created_at += 1_000;
        t.update(&client).await.expect("update");
    }
    for n in 25..30 {
        assert!(
            Ticket::delete(&client, &format!("t{n}"))
                .await
                .expect("delete")
        );
    }
    let done = Ticket::by_status(&client, "done").await.expect("members");
    let expected: Vec<String> = {
        let mut ids: Vec<String> = (0..10).map(|n| format!("t{n}")).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids_of(&done), expected);
    assert_eq!(
        Ticket::by_status_count(&client, "open")
            .await
            .expect("count"),
        15
    );
    assert_eq!(
        Ticket::by_status_count(&client, "done")
            .await
            .expect("count"),
        10
    );
    let ids = Ticket::by_status_ids(&client, "open").await.expect("ids");
    assert_eq!(ids.len(), 15);
    let page = Ticket::by_user_id(&client, "u1", Page::newest_first(2))
        .await
        .expect("page");
    let ids: Vec<&str> = page.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["t7", "t4"], "moved scores, deleted tickets gone");
    assert!(
        pending_records("ticket:").is_empty(),
        "every record applied"
    );
    let report = index::verify::<Ticket>(&client).await.expect("verify");
    assert_eq!(report.entities, 25, "{report:?}");
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    assert_eq!(report.pending, 0);

    // A batch delete deletes the tickets one by one, each in its slot,
    // only while it still has the status it was listed under.
    let done = Ticket::by_status_ids(&client, "done").await.expect("ids");
    assert!(!done.is_empty());
    let deleted = Ticket::delete_by_status(&client, "done")
        .await
        .expect("a batch delete");
    assert_eq!(deleted, done.len() as u64);
    assert!(
        Ticket::by_status_ids(&client, "done")
            .await
            .expect("ids")
            .is_empty()
    );
    for id in &done {
        assert!(!Ticket::exists(&client, id).await.expect("exists"), "{id}");
    }
    let report = index::verify::<Ticket>(&client).await.expect("verify");
    assert_eq!(report.entities, 25 - done.len() as u64, "{report:?}");
    assert!(report.drift.is_empty(), "{:?}", report.drift);

    // Cursor pages walk the index in windows and check each entity: the
    // whole walk is the listing, in the index's order, each entity once.
    let open = Ticket::by_status_ids(&client, "open").await.expect("ids");
    let mut walked = Vec::new();
    let mut page = Some(index::CursorPage::by_id(4));
    while let Some(p) = page {
        let got = Ticket::by_status_after(&client, "open", &p)
            .await
            .expect("a cursor page");
        assert!(got.len() <= 4);
        walked.extend(got.iter().map(|t| t.id.clone()));
        page = got.next_page(&p);
    }
    assert_eq!(walked, open, "a set index walks in id order");
    let newest: Vec<String> = Ticket::by_user_id(&client, "u1", Page::newest_first(100))
        .await
        .expect("page")
        .iter()
        .map(|t| t.id.clone())
        .collect();
    let mut walked = Vec::new();
    let mut page = Some(index::CursorPage::newest_first(3));
    while let Some(p) = page {
        let got = Ticket::by_user_id_ids_after(&client, "u1", &p)
            .await
            .expect("a cursor page of ids");
        walked.extend(got.ids.iter().cloned());
        page = got.next_page(&p);
    }
    assert_eq!(walked, newest);

    // Expiry runs no script: the entries in other slots would outlive it.
    let err = Ticket::expire(&client, "t10", Duration::from_secs(60))
        .await
        .expect_err("an expiry");
    assert_eq!(err.code(), "STORAGE_CONFIG", "{err}");
    assert!(err.to_string().contains("cross_slot"), "{err}");
    client.shutdown().await;
}

/// Takes the pending-moves lease of the entity at `key` for a minute, as
/// another client that died while applying would hold it; returns the
/// lease's key.
async fn hold_lease(client: &Client, key: &str) -> String {
    let lease = redis_runtime::schema::pending_index_lease_key(key).expect("lease");
    let _: () = client
        .write(
            Context::new("test.lease", ""),
            redis::cmd("SET")
                .arg(&lease)
                .arg("another-client")
                .arg("PX")
                .arg(60_000),
        )
        .await
        .expect("take the lease");
    lease
}

/// `settle` leaves the one pending record of `E`, whose `lease` another
/// client holds, to that client; once the lease lapses (its holder died),
/// it applies the record.
async fn settle_once_the_lease_lapses<E: redis_runtime::Entity>(client: &Client, lease: &str) {
    let settled = index::settle::<E>(client).await.expect("settle");
    assert_eq!(
        (settled.applied, settled.busy),
        (0, 1),
        "the lease is respected"
    );
    let _: i64 = client
        .write(
            Context::new("test.unlease", ""),
            redis::cmd("DEL").arg(lease),
        )
        .await
        .expect("drop the lease");
    let settled = index::settle::<E>(client).await.expect("settle");
    assert_eq!(settled.applied, 1);
}

#[tokio::test]
async fn a_write_whose_moves_are_not_applied_is_never_listed_under_its_old_values() {
    let (_cluster, client) = client().await;
    let mut parcel = Parcel {
        id: "p1".into(),
        status: "open".into(),
    };
    parcel.create(&client).await.expect("create");
    // Another client holds the parcel's lease, as one that died while
    // applying would: the write is stored with its record, and its moves
    // wait.
    let lease = hold_lease(&client, "parcel:p1").await;
    parcel.status = "closed".into();
    parcel.save(&client).await.expect("save");
    let record = redis_runtime::schema::pending_index_key("parcel:p1").expect("record");
    assert_eq!(pending_records("parcel:"), [record]);
    let listed: Vec<String> = client
        .read(
            Context::new("test.smembers", ""),
            redis::cmd("SMEMBERS").arg("parcels:status:open"),
        )
        .await
        .expect("smembers");
    assert_eq!(listed, ["p1"], "the old entry is still there");
    let open = Parcel::by_status_ids(&client, "open").await.expect("ids");
    assert!(
        open.is_empty(),
        "but no longer open, so passed over: {open:?}"
    );
    assert!(
        Parcel::by_status(&client, "open")
            .await
            .expect("members")
            .is_empty()
    );
    let page = Parcel::by_status_after(&client, "open", &index::CursorPage::by_id(10))
        .await
        .expect("a cursor page");
    assert!(page.is_empty(), "a cursor page passes over it too");
    assert_eq!(page.next, None);
    let ids = Parcel::by_status_ids_after(&client, "open", &index::CursorPage::by_id(10))
        .await
        .expect("a cursor page of ids");
    assert!(ids.ids.is_empty(), "{ids:?}");
    let closed = Parcel::by_status_ids(&client, "closed").await.expect("ids");
    assert!(closed.is_empty(), "not added yet: {closed:?}");
    let report = index::verify::<Parcel>(&client).await.expect("verify");
    assert_eq!(report.pending, 1);
    assert_eq!(
        report.drift.len(),
        2,
        "an orphan and a missing entry: {:?}",
        report.drift
    );
    settle_once_the_lease_lapses::<Parcel>(&client, &lease).await;
    assert_eq!(
        Parcel::by_status_ids(&client, "closed").await.expect("ids"),
        ["p1"]
    );
    assert!(pending_records("parcel:").is_empty());
    let report = index::verify::<Parcel>(&client).await.expect("verify");
    assert!(report.drift.is_empty(), "{:?}", report.drift);

    // A planted entry is found, and rebuild removes it through the
    // entity's record, re-checked against the entity.
    let _: i64 = client
        .write(
            Context::new("test.plant", ""),
            redis::cmd("SADD").arg("parcels:status:open").arg("p1"),
        )
        .await
        .expect("plant");
    let report = index::verify::<Parcel>(&client).await.expect("verify");
    assert_eq!(report.drift.len(), 1, "{:?}", report.drift);
    let rebuilt = index::rebuild::<Parcel>(&client).await.expect("rebuild");
    assert_eq!(rebuilt.removed, 1, "{rebuilt:?}");
    let report = index::verify::<Parcel>(&client).await.expect("verify");
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    assert_eq!(
        Parcel::by_status_ids(&client, "closed").await.expect("ids"),
        ["p1"],
        "the entry that belongs is kept"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stalls_past_its_lease_leaves_an_entry_that_rebuild_removes() {
    let (_cluster, client) = client().await;
    let stall = |status: &str| Stall {
        id: "s1".into(),
        status: status.into(),
    };
    stall("open").create(&client).await.expect("create");
    // The writer claims its moves (and reads the hash: closed), then
    // stops before them.
    let gate = redis_runtime::testing::ClaimGate::hold_moves("s1");
    let stalled = {
        let client = client.clone();
        tokio::spawn(async move { stall("closed").save(&client).await })
    };
    gate.claimed().await;
    let lease = redis_runtime::schema::pending_index_lease_key("stall:s1").expect("lease");
    eventually(
        Duration::from_secs(15),
        "the stalled client's lease lapses",
        async || {
            let mut exists = redis::cmd("EXISTS");
            exists.arg(&lease);
            let n: i64 = client
                .read(Context::new("test.exists", "lease"), &exists)
                .await
                .expect("EXISTS");
            n == 0
        },
    )
    .await;
    // The next write takes the lapsed lease and applies every move.
    stall("archived").save(&client).await.expect("save");
    assert_eq!(
        Stall::by_status_ids(&client, "archived")
            .await
            .expect("ids"),
        ["s1"]
    );
    gate.open();
    stalled
        .await
        .expect("join")
        .expect("the stalled write itself was stored");
    // Its moves, built from what it read before it stalled, put s1 back
    // under `closed`: the one case the lease does not guard.
    let mut members = redis::cmd("SMEMBERS");
    members.arg("stalls:status:closed");
    let closed: Vec<String> = client
        .read(Context::new("test.smembers", ""), &members)
        .await
        .expect("SMEMBERS");
    assert_eq!(closed, ["s1"]);
    // Reads pass over it; verify reports it; rebuild removes it.
    assert!(
        Stall::by_status_ids(&client, "closed")
            .await
            .expect("ids")
            .is_empty()
    );
    let report = index::verify::<Stall>(&client).await.expect("verify");
    assert_eq!(report.drift.len(), 1, "{:?}", report.drift);
    assert_eq!(report.drift[0].index_key, "stalls:status:closed");
    let rebuilt = index::rebuild::<Stall>(&client).await.expect("rebuild");
    assert_eq!(rebuilt.removed, 1, "{rebuilt:?}");
    let report = index::verify::<Stall>(&client).await.expect("verify");
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_cross_slot_indexes_leave_no_drift() {
    let (_cluster, client) = client().await;
    let statuses = ["a", "b", "c", "d"];
    let racer = |n: u32, status: &str, at: i64| Racer {
        id: format!("r{n}"),
        user_id: "u".into(),
        status: status.into(),
        created_at: at,
    };
    for n in 0..5 {
        racer(n, statuses[0], 0)
            .create(&client)
            .await
            .expect("create");
    }
    let writers = (0..8u32).map(|w| {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..40u32 {
                let n = (w + i) % 5;
                let status = statuses[((w * 7 + i) % 4) as usize];
                let r = racer(n, status, i64::from(w * 100 + i));
                r.save(&client).await.expect("save");
            }
        })
    });
    for writer in writers {
        writer.await.expect("writer");
    }
    // A claim that found the lease taken left its write to the holder,
    // which applied it before releasing: nothing is left to settle.
    assert!(pending_records("racer:").is_empty());
    let report = index::verify::<Racer>(&client).await.expect("verify");
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    let mut listed = 0;
    for status in statuses {
        let members = Racer::by_status(&client, status).await.expect("members");
        for t in members.iter() {
            assert_eq!(t.status, status);
        }
        listed += Racer::by_status_count(&client, status)
            .await
            .expect("count");
    }
    let page = Racer::by_user_id(&client, "u", Page::newest_first(10))
        .await
        .expect("page");
    assert_eq!(page.len(), 5);
    assert_eq!(listed, 5, "each ticket in exactly one status key");
    client.shutdown().await;
}

#[tokio::test]
async fn a_pinned_type_keeps_its_slot_index_atomic_beside_a_cross_slot_one() {
    let (_cluster, client) = client().await;
    for n in 0..4 {
        let board = Board {
            id: format!("b{n}"),
            owner: "ada".into(),
            status: "open".into(),
        };
        board.create(&client).await.expect("create");
    }
    assert_eq!(
        Board::by_owner_ids(&client, "ada").await.expect("ids"),
        ["b0", "b1", "b2", "b3"]
    );
    assert_eq!(
        Board::by_status_count(&client, "open")
            .await
            .expect("count"),
        4
    );
    // A cursor page of the index in the slot is one script, as ever.
    let page = Board::by_owner_after(&client, "ada", &index::CursorPage::by_id(2))
        .await
        .expect("a cursor page of the slot's index");
    assert_eq!(page.len(), 2);
    // A batch delete cannot remove each board's global entry in its
    // script: the boards go one by one, their global entries just after.
    let deleted = Board::delete_by_owner(&client, "ada")
        .await
        .expect("a batch delete");
    assert_eq!(deleted, 4);
    assert_eq!(
        Board::by_owner_count(&client, "ada").await.expect("count"),
        0
    );
    assert_eq!(
        Board::by_status_count(&client, "open")
            .await
            .expect("count"),
        0
    );
    let report = index::verify::<Board>(&client).await.expect("verify");
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    client.shutdown().await;
}

/// The shipments on `shipments:stream`, in stream order.
async fn queued_shipments(client: &Client) -> Vec<(String, ShipmentQueued)> {
    let stream = Stream::<ShipmentQueued>::new(client, "shipments:stream");
    let batch = stream.range("-", "+", 1000).await.expect("XRANGE");
    assert!(batch.failures.is_empty(), "{:?}", batch.failures);
    batch
        .entries
        .into_iter()
        .map(|entry| (entry.id, entry.message))
        .collect()
}

/// A stream in another slot than its entities (`stream_cross_slot`)
/// still gets one entry per created entity, with its fields, and the
/// create answers with its id. On one server the entry is appended in
/// the write; on a cluster just after it, from the entity's record.
async fn a_stream_in_another_slot_gets_each_created_entity_once(redis: TestRedis) {
    let client = redis.client();
    let mut created = Vec::new();
    for n in 0..12 {
        let shipment = Shipment {
            id: format!("s{n}"),
            status: "new".into(),
            weight: n,
        };
        let outcome = shipment.create(client).await.expect("create");
        let id = outcome.stream_id.expect("the id of the entry appended");
        created.push((id, shipment));
    }
    if let Some(cluster) = redis.cluster() {
        let masters: BTreeSet<u16> = (0..12)
            .map(|n| cluster.master_of_key(&format!("shipment:s{n}")))
            .collect();
        assert_eq!(masters.len(), 3, "spread over every master: {masters:?}");
        assert!(pending_records("shipment:").is_empty());
    }
    // A save that creates enqueues too; one that replaces, an update or
    // a delete does not.
    let saved = Shipment {
        id: "s12".into(),
        status: "new".into(),
        weight: 12,
    };
    let outcome = saved.save(client).await.expect("save");
    created.push((
        outcome.stream_id.expect("a save that creates enqueues"),
        saved,
    ));
    let mut first = created[0].1.clone();
    first.status = "sent".into();
    let outcome = first.save(client).await.expect("save again");
    assert_eq!(outcome.stream_id, None);
    first.weight = 99;
    first.update(client).await.expect("update");
    assert!(Shipment::delete(client, "s1").await.expect("delete"));

    let queued = queued_shipments(client).await;
    let expected: Vec<(String, ShipmentQueued)> = created
        .iter()
        .map(|(id, s)| {
            let message = ShipmentQueued {
                id: s.id.clone(),
                status: s.status.clone(),
                weight: s.weight,
            };
            (id.clone(), message)
        })
        .collect();
    assert_eq!(queued, expected, "one entry per created shipment, in order");
    assert_eq!(
        Shipment::by_status_ids(client, "sent").await.expect("ids"),
        ["s0"]
    );
    let report = index::verify::<Shipment>(client).await.expect("verify");
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    assert_eq!(report.pending, 0);
    client.shutdown().await;
}

/// A filtered read (a sorted index restricted to a set index's value)
/// over `cross_slot` indexes gives the same pages and counts on both
/// topologies: one server intersects the keys in a script; a cluster,
/// where no script reaches both, walks the sorted index and checks each
/// entity's current values.
async fn filtered_reads_of_cross_slot_indexes_match_on_both_topologies(redis: TestRedis) {
    let client = redis.client();
    let statuses = ["open", "closed", "late"];
    let mut all = Vec::new();
    for n in 0..45_u32 {
        let delivery = Delivery {
            id: format!("d{n}"),
            user_id: if n % 5 == 4 { "u2" } else { "u1" }.into(),
            status: statuses[n as usize % 3].into(),
            created_at: 1_000 + i64::from(n),
        };
        delivery.create(client).await.expect("create");
        all.push(delivery);
    }
    // What the filter must keep: u1's open deliveries, newest first.
    let mut expected: Vec<&Delivery> = all
        .iter()
        .filter(|d| d.user_id == "u1" && d.status == "open")
        .collect();
    expected.sort_by_key(|d| std::cmp::Reverse(d.created_at));
    let ids = |page: &[Delivery]| page.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
    let want = |from: usize, to: usize| {
        expected[from..to]
            .iter()
            .map(|d| d.id.clone())
            .collect::<Vec<_>>()
    };
    let open = DeliveryFilter {
        status: Some("open".into()),
    };
    let everything = ScoreRange::all();
    let first = Delivery::by_user_id_where(client, "u1", &open, &everything, Page::newest_first(5))
        .await
        .expect("filtered page");
    assert_eq!(ids(&first), want(0, 5));
    let second = Page {
        offset: 5,
        ..Page::newest_first(5)
    };
    let second = Delivery::by_user_id_where(client, "u1", &open, &everything, second)
        .await
        .expect("filtered page");
    assert_eq!(ids(&second), want(5, 10));
    let count = Delivery::by_user_id_where_count(client, "u1", &open, &everything)
        .await
        .expect("filtered count");
    assert_eq!(count, expected.len() as u64);
    // A score range and the other order.
    let recent = ScoreRange::between(1_020.0, 1_044.0);
    let oldest = Delivery::by_user_id_where(client, "u1", &open, &recent, Page::oldest_first(100))
        .await
        .expect("filtered page");
    let mut in_range: Vec<String> = expected
        .iter()
        .filter(|d| d.created_at >= 1_020)
        .map(|d| d.id.clone())
        .collect();
    in_range.reverse();
    assert_eq!(ids(&oldest), in_range);

    // A status change leaves the filter at once on both topologies.
    let mut moved = expected[0].clone();
    moved.status = "closed".into();
    moved.save(client).await.expect("save");
    let first = Delivery::by_user_id_where(client, "u1", &open, &everything, Page::newest_first(5))
        .await
        .expect("filtered page");
    assert_eq!(ids(&first), want(1, 6));
    client.shutdown().await;
}

on_both_topologies!(
    filtered_reads_of_cross_slot_indexes_match_on_both_topologies,
    a_stream_in_another_slot_gets_each_created_entity_once,
);

#[tokio::test]
async fn a_stream_entry_left_by_a_dead_client_is_appended_once_by_settle() {
    let (_cluster, client) = client().await;
    // Another client holds the invoice's lease, as one that died after its
    // write would: the create is stored with its entry recorded, and
    // answers without an id.
    let lease = hold_lease(&client, "invoice:i1").await;
    let invoice = Invoice {
        id: "i1".into(),
        total: 40,
    };
    let outcome = invoice.create(&client).await.expect("create");
    assert_eq!(outcome.stream_id, None, "left to the lease's holder");
    let stream = Stream::<Invoice>::new(&client, "invoices:stream");
    assert_eq!(stream.len().await.expect("XLEN"), 0);
    let report = index::verify::<Invoice>(&client).await.expect("verify");
    assert_eq!(report.pending, 1);
    settle_once_the_lease_lapses::<Invoice>(&client, &lease).await;
    let appended = stream.range("-", "+", 10).await.expect("XRANGE");
    let messages: Vec<Invoice> = appended.entries.into_iter().map(|e| e.message).collect();
    assert_eq!(messages, std::slice::from_ref(&invoice));
    assert!(pending_records("invoice:").is_empty());
    let settled = index::settle::<Invoice>(&client)
        .await
        .expect("settle again");
    assert_eq!(settled, index::SettleReport::default());
    assert_eq!(stream.len().await.expect("XLEN"), 1, "appended once");

    // The next create appends its own entry at once.
    let next = Invoice {
        id: "i2".into(),
        total: 7,
    };
    let outcome = next.create(&client).await.expect("create");
    assert!(outcome.stream_id.is_some());
    assert_eq!(stream.len().await.expect("XLEN"), 2);
    client.shutdown().await;
}

/// The main example's jobs, sessions and git providers, declared for a
/// cluster with the layout the other services share, run there: providers
/// listed by user, a session with its TTL, jobs created with their stream
/// entries, listed, filtered and counted, patched and counted again, with
/// 0 drift and nothing pending afterwards. (Its users keep a global
/// unique email, which no cluster write can check yet.)
#[tokio::test]
async fn the_example_jobs_sessions_and_providers_run_on_a_cluster() {
    use model::{GitProvider, Job, JobFilter, JobPatch, JobStatus, Session};
    let (_cluster, client) = client().await;
    let user = "ex-u1";
    for n in 0..3 {
        let provider = GitProvider {
            id: format!("ex-gp{n}"),
            user_id: user.into(),
            kind: "github".into(),
            token_ref: format!("vault:gp{n}"),
        };
        provider.create(&client).await.expect("create a provider");
    }
    let mut providers: Vec<String> = GitProvider::by_user_id(&client, user)
        .await
        .expect("providers")
        .iter()
        .map(|p| p.id.clone())
        .collect();
    providers.sort();
    assert_eq!(providers, ["ex-gp0", "ex-gp1", "ex-gp2"]);

    let session = Session {
        id: "ex-s1".into(),
        user_id: user.into(),
        created_at: 1,
    };
    session.create(&client).await.expect("create a session");
    Session::expire(&client, "ex-s1", Duration::from_secs(3600))
        .await
        .expect("expire");
    assert!(Session::exists(&client, "ex-s1").await.expect("exists"));

    let mut ids = Vec::new();
    for n in 0..4 {
        let job = Job {
            id: format!("ex-j{n}"),
            user_id: user.into(),
            repo: "github.com/acme/app".into(),
            command: "cargo test".into(),
            status: JobStatus::Queued,
            created_at: 1_000 + n,
            attempts: 0,
            error: None,
        };
        let outcome = job.create(&client).await.expect("create a job");
        assert!(outcome.stream_id.is_some(), "enqueued on jobs:stream");
        ids.push(job.id);
    }
    let queued_on_stream: Vec<String> = Stream::<Job>::new(&client, "jobs:stream")
        .range("-", "+", 100)
        .await
        .expect("XRANGE")
        .entries
        .into_iter()
        .map(|e| e.message.id)
        .filter(|id| id.starts_with("ex-j"))
        .collect();
    assert_eq!(queued_on_stream, ids);
    let history: Vec<String> = Job::by_user_id(&client, user, Page::newest_first(10))
        .await
        .expect("history")
        .iter()
        .map(|j| j.id.clone())
        .collect();
    assert_eq!(history, ["ex-j3", "ex-j2", "ex-j1", "ex-j0"]);

    let running = JobPatch {
        status: Some(JobStatus::Running),
        ..Default::default()
    };
    Job::patch(&client, "ex-j1", &running).await.expect("patch");
    assert_eq!(
        Job::incr_attempts(&client, "ex-j1", 1).await.expect("incr"),
        1
    );
    let queued = JobFilter {
        status: Some(JobStatus::Queued),
    };
    let waiting: Vec<String> = Job::by_user_id_where(
        &client,
        user,
        &queued,
        &ScoreRange::all(),
        Page::newest_first(10),
    )
    .await
    .expect("filtered")
    .iter()
    .map(|j| j.id.clone())
    .collect();
    assert_eq!(waiting, ["ex-j3", "ex-j2", "ex-j0"]);
    assert_eq!(
        Job::by_status_count(&client, &JobStatus::Running)
            .await
            .expect("count"),
        1
    );
    for report in [
        index::verify::<Job>(&client).await.expect("verify jobs"),
        index::verify::<GitProvider>(&client)
            .await
            .expect("verify providers"),
    ] {
        assert!(report.drift.is_empty(), "{:?}", report.drift);
        assert_eq!(report.pending, 0);
    }
    client.shutdown().await;
}

fn account(id: &str, email: &str) -> Account {
    Account {
        id: id.into(),
        email: email.into(),
        name: format!("name of {id}"),
    }
}

/// `HGET key field` on whichever node serves `key`.
async fn hget(client: &Client, key: &str, field: &str) -> Option<String> {
    let mut cmd = redis::cmd("HGET");
    cmd.arg(key).arg(field);
    client
        .read(Context::new("test.hget", "test"), &cmd)
        .await
        .expect("HGET")
}

#[tokio::test]
async fn a_cross_slot_unique_value_is_claimed_before_the_write_and_released_after() {
    let (_cluster, client) = client().await;
    let mut masters = BTreeSet::new();
    for n in 0..12 {
        let a = account(&format!("a{n}"), &format!("e{n}@x"));
        a.create(&client).await.expect("create");
        masters.insert(master_of(&format!("account:a{n}")));
    }
    assert!(masters.len() > 1, "accounts spread over the masters");
    let unique_master = master_of("accounts:by_email");
    assert!(
        masters.iter().any(|m| *m != unique_master),
        "some accounts are on another master than the unique hash"
    );
    for n in 0..12 {
        let found = Account::by_email(&client, &format!("e{n}@x"))
            .await
            .expect("lookup")
            .expect("found");
        assert_eq!(found.id, format!("a{n}"));
    }

    // Taken: refused, and nothing written.
    let err = account("dup", "e0@x")
        .create(&client)
        .await
        .expect_err("e0 is taken");
    assert!(
        matches!(err, Error::UniqueViolation { ref index, .. } if index == "by_email"),
        "{err:?}"
    );
    assert!(!Account::exists(&client, "dup").await.expect("exists"));
    assert_eq!(
        hget(&client, "accounts:by_email", "e0@x").await.as_deref(),
        Some("a0")
    );

    // A new value is claimed, the old one released by the time the write returns.
    let mut a1 = account("a1", "new1@x");
    a1.update(&client).await.expect("update");
    assert_eq!(
        Account::by_email(&client, "e1@x").await.expect("lookup"),
        None
    );
    assert_eq!(
        Account::by_email(&client, "new1@x").await.expect("lookup"),
        Some(a1.clone())
    );
    assert_eq!(hget(&client, "accounts:by_email", "e1@x").await, None);
    assert_eq!(
        hget(&client, "__unique_claims:{accounts:by_email}", "e1@x").await,
        None
    );
    account("b1", "e1@x")
        .create(&client)
        .await
        .expect("the released value is free");

    // An update that keeps the value claims nothing and keeps it.
    a1.name = "renamed".into();
    a1.update(&client).await.expect("update");
    assert_eq!(
        hget(&client, "accounts:by_email", "new1@x")
            .await
            .as_deref(),
        Some("a1")
    );

    // A delete releases its value.
    assert!(Account::delete(&client, "a2").await.expect("delete"));
    assert_eq!(hget(&client, "accounts:by_email", "e2@x").await, None);
    account("b2", "e2@x")
        .create(&client)
        .await
        .expect("the deleted account's value is free");

    // Two accounts swap emails through a free one.
    account("a3", "swap@x")
        .update(&client)
        .await
        .expect("a3 to a free value");
    account("a4", "e3@x")
        .update(&client)
        .await
        .expect("a4 to a3's old value");
    account("a3", "e4@x")
        .update(&client)
        .await
        .expect("a3 to a4's old value");
    assert_eq!(
        Account::by_email(&client, "e3@x")
            .await
            .expect("lookup")
            .map(|a| a.id)
            .as_deref(),
        Some("a4")
    );
    assert_eq!(
        Account::by_email(&client, "e4@x")
            .await
            .expect("lookup")
            .map(|a| a.id)
            .as_deref(),
        Some("a3")
    );
    assert_eq!(hget(&client, "accounts:by_email", "swap@x").await, None);

    let report = index::verify::<Account>(&client).await.expect("verify");
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    assert_eq!(report.pending, 0);
    assert!(pending_records("account:").is_empty());
    client.shutdown().await;
}

#[tokio::test]
async fn a_value_mapped_to_an_account_that_does_not_hold_it_is_taken_over() {
    let (_cluster, client) = client().await;
    let claim = |value: &str, holder: &str| {
        let mut cmd = redis::pipe();
        cmd.cmd("HSET")
            .arg("accounts:by_email")
            .arg(value)
            .arg(holder);
        cmd.cmd("HSET")
            .arg("__unique_claims:{accounts:by_email}")
            .arg(value)
            .arg("a-claim-whose-write-never-ran");
        cmd
    };
    // A claim whose entity was never written (its client died after claiming).
    let () = client
        .write(
            Context::new("test.claim", "accounts:by_email"),
            &claim("ghost@x", "ghost"),
        )
        .await
        .expect("claim");
    assert_eq!(
        Account::by_email(&client, "ghost@x").await.expect("lookup"),
        None
    );
    account("t1", "ghost@x")
        .create(&client)
        .await
        .expect("taken over from a missing account");
    assert_eq!(
        hget(&client, "accounts:by_email", "ghost@x")
            .await
            .as_deref(),
        Some("t1")
    );

    // A claim by an account that holds another value: its fence is raised
    // in its own slot before the value is taken, so a write it had in
    // flight with that claim would be refused.
    account("t2", "own@x")
        .create(&client)
        .await
        .expect("create");
    let () = client
        .write(
            Context::new("test.claim", "accounts:by_email"),
            &claim("stale@x", "t2"),
        )
        .await
        .expect("claim");
    assert_eq!(
        Account::by_email(&client, "stale@x").await.expect("lookup"),
        None
    );
    account("t3", "stale@x")
        .create(&client)
        .await
        .expect("taken over from an account that does not hold it");
    assert_eq!(
        hget(&client, "accounts:by_email", "stale@x")
            .await
            .as_deref(),
        Some("t3")
    );
    let mut get = redis::cmd("GET");
    get.arg("__unique_fence:{account:t2}");
    let fence: Option<String> = client
        .read(Context::new("test.fence", "account"), &get)
        .await
        .expect("GET");
    assert_eq!(fence.as_deref(), Some("1"));
    // t2's own value is untouched, and t2 can still write.
    account("t2", "own@x")
        .update(&client)
        .await
        .expect("t2 writes again");
    assert_eq!(
        hget(&client, "accounts:by_email", "own@x").await.as_deref(),
        Some("t2")
    );

    // A holder that holds the value keeps it.
    let err = account("t4", "own@x")
        .create(&client)
        .await
        .expect_err("own@x is held");
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err:?}");
    client.shutdown().await;
}

#[tokio::test]
async fn a_write_whose_claim_was_taken_back_before_it_ran_is_refused() {
    let (_cluster, client) = client().await;
    account("f1", "f1@x").create(&client).await.expect("create");
    // f1 claims a new value, and is held before it writes it.
    let gate = redis_runtime::testing::ClaimGate::hold("f1");
    let moving = {
        let client = client.clone();
        tokio::spawn(async move { account("f1", "fenced@x").update(&client).await })
    };
    gate.claimed().await;
    assert_eq!(
        hget(&client, "accounts:by_email", "fenced@x")
            .await
            .as_deref(),
        Some("f1")
    );
    // f1 does not hold it yet, so f2 takes it: raising f1's fence first.
    account("f2", "fenced@x")
        .create(&client)
        .await
        .expect("taken from a claim not written yet");
    gate.open();
    // f1's write carries the fence it read before claiming: refused, and
    // it finds the value held by f2 when it claims again.
    let err = moving.await.expect("task").expect_err("a stale claim");
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err:?}");
    assert_eq!(
        hget(&client, "account:f1", "email").await.as_deref(),
        Some("f1@x")
    );
    assert_eq!(
        hget(&client, "account:f2", "email").await.as_deref(),
        Some("fenced@x")
    );
    assert_eq!(
        hget(&client, "accounts:by_email", "fenced@x")
            .await
            .as_deref(),
        Some("f2")
    );
    client.shutdown().await;
}

#[tokio::test]
async fn a_claim_whose_client_died_before_its_write_is_released_by_settle() {
    let leaver = |id: &str, email: &str| Leaver {
        id: id.into(),
        email: email.into(),
    };
    let (_cluster, client) = client().await;
    leaver("d1", "d1@x").create(&client).await.expect("create");
    let gate = redis_runtime::testing::ClaimGate::hold("d1");
    let dying = {
        let client = client.clone();
        tokio::spawn(async move { leaver("d1", "dying@x").update(&client).await })
    };
    gate.claimed().await;
    // The client dies between its claim and its write.
    dying.abort();
    assert!(dying.await.expect_err("aborted").is_cancelled());
    gate.open();
    assert_eq!(
        hget(&client, "leavers:by_email", "dying@x")
            .await
            .as_deref(),
        Some("d1")
    );
    assert_eq!(
        Leaver::by_email(&client, "dying@x").await.expect("lookup"),
        None
    );
    let record = redis_runtime::schema::pending_index_key("leaver:d1").expect("record");
    assert_eq!(
        pending_records("leaver:d1"),
        [record],
        "the claim was recorded first"
    );
    let settled = index::settle::<Leaver>(&client).await.expect("settle");
    assert_eq!(settled.applied, 1, "{settled:?}");
    assert_eq!(hget(&client, "leavers:by_email", "dying@x").await, None);
    assert_eq!(
        hget(&client, "leavers:by_email", "d1@x").await.as_deref(),
        Some("d1")
    );
    assert!(pending_records("leaver:d1").is_empty());
    let report = index::verify::<Leaver>(&client).await.expect("verify");
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_never_leave_two_entities_holding_one_value() {
    let (_cluster, client) = client().await;
    for n in 0..4 {
        Rival {
            id: format!("r{n}"),
            email: format!("start{n}@x"),
        }
        .create(&client)
        .await
        .expect("create");
    }
    for round in 0..25 {
        let value = format!("v{round}@x");
        // Four existing rivals move to the value, four new ones are
        // created with it, all at once.
        let racers = (0..8).map(|n| {
            let (client, value) = (client.clone(), value.clone());
            tokio::spawn(async move {
                let (id, creates) = if n < 4 {
                    (format!("r{n}"), false)
                } else {
                    (format!("r{round}-{n}"), true)
                };
                let rival = Rival { id, email: value };
                let result = if creates {
                    rival.create(&client).await.map(drop)
                } else {
                    rival.update(&client).await
                };
                match result {
                    Ok(()) => Some(rival.id),
                    Err(Error::UniqueViolation { .. }) => None,
                    Err(e) => panic!("{e}"),
                }
            })
        });
        let mut winners = Vec::new();
        for racer in racers {
            if let Some(id) = racer.await.expect("racer") {
                winners.push(id);
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one writer takes {value}: {winners:?}"
        );
        let mut holders = Vec::new();
        for id in (0..4)
            .map(|n| format!("r{n}"))
            .chain((4..8).map(|n| format!("r{round}-{n}")))
        {
            if hget(&client, &format!("rival:{id}"), "email")
                .await
                .as_deref()
                == Some(value.as_str())
            {
                holders.push(id);
            }
        }
        assert_eq!(
            holders, winners,
            "round {round}: only the winner holds {value}"
        );
        assert_eq!(
            hget(&client, "rivals:by_email", &value).await.as_ref(),
            winners.first()
        );
        // The winner leaves the value for the next round's race.
        Rival {
            id: winners[0].clone(),
            email: format!("left-{round}@x"),
        }
        .save(&client)
        .await
        .expect("leave");
    }
    let report = index::verify::<Rival>(&client).await.expect("verify");
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    assert_eq!(report.pending, 0);
    client.shutdown().await;
}

#[tokio::test]
async fn the_main_example_runs_unchanged_on_a_cluster() {
    let (_cluster, client) = client().await;
    flow::run(&client).await.expect("the example's flow");
    for report in [
        index::verify::<model::User>(&client)
            .await
            .expect("verify users"),
        index::verify::<model::Job>(&client)
            .await
            .expect("verify jobs"),
        index::verify::<model::GitProvider>(&client)
            .await
            .expect("verify providers"),
    ] {
        assert!(report.drift.is_empty(), "{:?}", report.drift);
        assert_eq!(report.pending, 0);
    }
    client.shutdown().await;
}

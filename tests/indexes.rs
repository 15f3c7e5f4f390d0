//! Secondary indexes against a real `redis-server`: queries, maintenance,
//! TTL honesty, drift under concurrency and crashes, repair.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis_runtime::index::{self, DriftKind};
use redis_runtime::testing::RedisServer;
use redis_runtime::{Client, Context, Page, RedisEntity, RedisValue, ScoreRange};

#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum JobStatus {
    Queued,
    Running,
    Completed,
    Failed,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "job:{id}")]
#[redis(sorted_index(key = "jobs:user:{user_id}", score = "created_at"))]
#[redis(index(key = "jobs:status:{status}"))]
#[redis(unique(key = "jobs:by_slug", field = "slug"))]
struct Job {
    id: String,
    user_id: String,
    status: JobStatus,
    slug: String,
    created_at: i64,
    error: Option<String>,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "lease:{id}", ttl = "1s")]
#[redis(sorted_index(key = "leases:owner:{owner}", score = "taken_at"))]
#[redis(index(key = "leases:kind:{kind}"))]
#[redis(unique(key = "leases:by_resource", field = "resource"))]
struct Lease {
    id: String,
    owner: String,
    kind: String,
    resource: String,
    taken_at: i64,
}

/// Three indexes, a TTL and a stream: the heaviest write.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(
    key = "ticket:{id}",
    ttl = "1h",
    stream = "tickets:stream",
    stream_maxlen = 1000
)]
#[redis(sorted_index(key = "tickets:user:{user_id}", score = "created_at"))]
#[redis(index(key = "tickets:status:{status}"))]
#[redis(unique(key = "tickets:by_slug", field = "slug"))]
struct Ticket {
    id: String,
    user_id: String,
    status: JobStatus,
    slug: String,
    created_at: i64,
}

fn job(id: &str, user: &str, status: JobStatus, created_at: i64) -> Job {
    Job {
        id: id.into(),
        user_id: user.into(),
        status,
        slug: format!("slug-{id}"),
        created_at,
        error: None,
    }
}

async fn setup() -> (RedisServer, Client) {
    let server = RedisServer::start();
    let client = Client::connect(server.config()).await.expect("connect");
    (server, client)
}

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

async fn assert_no_drift<E: redis_runtime::Entity>(client: &Client) {
    let report = index::verify::<E>(client).await.expect("verify");
    assert!(report.drift.is_empty(), "drift: {:#?}", report.drift);
}

#[tokio::test]
async fn sorted_index_pages_newest_and_oldest_first_with_edges() {
    let (_server, client) = setup().await;
    for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        job(id, "u1", JobStatus::Queued, 100 + i as i64)
            .create(&client)
            .await
            .expect("create");
    }
    job("other", "u2", JobStatus::Queued, 1)
        .create(&client)
        .await
        .expect("create");

    let page = Job::by_user_id(&client, "u1", Page::newest_first(2))
        .await
        .expect("page");
    assert_eq!(ids(&page), ["e", "d"]);
    let page = Job::by_user_id(&client, "u1", Page::newest_first(2).skip(2))
        .await
        .expect("page");
    assert_eq!(ids(&page), ["c", "b"]);
    let page = Job::by_user_id(&client, "u1", Page::newest_first(2).skip(4))
        .await
        .expect("page");
    assert_eq!(ids(&page), ["a"], "last partial page");
    let page = Job::by_user_id(&client, "u1", Page::newest_first(2).skip(10))
        .await
        .expect("page");
    assert!(page.is_empty(), "past the end");
    let page = Job::by_user_id(&client, "u1", Page::oldest_first(5))
        .await
        .expect("page");
    assert_eq!(ids(&page), ["a", "b", "c", "d", "e"], "exact page");
    let page = Job::by_user_id(&client, "nobody", Page::newest_first(5))
        .await
        .expect("page");
    assert!(page.is_empty(), "empty index");
    assert!(
        Job::by_user_id(&client, "u1", Page::newest_first(0))
            .await
            .expect("page")
            .is_empty()
    );

    let since = Job::by_user_id_in_range(
        &client,
        "u1",
        &ScoreRange::at_least(103.0),
        Page::oldest_first(10),
    )
    .await
    .expect("range");
    assert_eq!(ids(&since), ["d", "e"]);
    let window = Job::by_user_id_in_range(
        &client,
        "u1",
        &ScoreRange::between(101.0, 102.0),
        Page::newest_first(10),
    )
    .await
    .expect("range");
    assert_eq!(ids(&window), ["c", "b"]);
    let after = Job::by_user_id_ids(
        &client,
        "u1",
        &ScoreRange::after(103.0),
        Page::oldest_first(10),
    )
    .await
    .expect("ids");
    assert_eq!(after, ["e"]);
    assert_eq!(
        Job::by_user_id_count(&client, "u1").await.expect("count"),
        5
    );
    assert_eq!(
        Job::by_user_id_count(&client, "nobody")
            .await
            .expect("count"),
        0
    );
}

#[tokio::test]
async fn ties_in_score_are_ordered_by_id() {
    let (_server, client) = setup().await;
    for id in ["m", "k", "z"] {
        job(id, "u1", JobStatus::Queued, 7)
            .create(&client)
            .await
            .expect("create");
    }
    let asc = Job::by_user_id(&client, "u1", Page::oldest_first(10))
        .await
        .expect("page");
    assert_eq!(ids(&asc), ["k", "m", "z"]);
    let desc = Job::by_user_id(&client, "u1", Page::newest_first(10))
        .await
        .expect("page");
    assert_eq!(ids(&desc), ["z", "m", "k"]);
}

#[tokio::test]
async fn set_and_unique_queries() {
    let (_server, client) = setup().await;
    job("j2", "u1", JobStatus::Running, 2)
        .create(&client)
        .await
        .expect("create");
    job("j1", "u1", JobStatus::Running, 1)
        .create(&client)
        .await
        .expect("create");
    job("j3", "u1", JobStatus::Queued, 3)
        .create(&client)
        .await
        .expect("create");

    let running = Job::by_status(&client, &JobStatus::Running)
        .await
        .expect("members");
    assert_eq!(ids(&running), ["j1", "j2"]);
    assert_eq!(
        Job::by_status_ids(&client, &JobStatus::Queued)
            .await
            .expect("ids"),
        ["j3"]
    );
    assert_eq!(
        Job::by_status_count(&client, &JobStatus::Failed)
            .await
            .expect("count"),
        0
    );
    assert!(
        Job::by_status(&client, &JobStatus::Failed)
            .await
            .expect("members")
            .is_empty()
    );

    let found = Job::by_slug(&client, &"slug-j3".to_string())
        .await
        .expect("unique");
    assert_eq!(found.map(|j| j.id), Some("j3".into()));
    assert_eq!(
        Job::by_slug(&client, &"nope".to_string())
            .await
            .expect("unique"),
        None
    );
}

#[tokio::test]
async fn updates_and_patches_move_entries_and_delete_cleans_every_index() {
    let (_server, client) = setup().await;
    let mut j = job("j1", "u1", JobStatus::Queued, 10);
    j.create(&client).await.expect("create");

    j.status = JobStatus::Running;
    j.user_id = "u2".into();
    j.created_at = 20;
    j.slug = "renamed".into();
    j.update(&client).await.expect("update");
    assert!(
        Job::by_status_ids(&client, &JobStatus::Queued)
            .await
            .expect("ids")
            .is_empty()
    );
    assert_eq!(
        Job::by_status_ids(&client, &JobStatus::Running)
            .await
            .expect("ids"),
        ["j1"]
    );
    assert_eq!(
        Job::by_user_id_count(&client, "u1").await.expect("count"),
        0
    );
    assert_eq!(
        Job::by_user_id_ids(
            &client,
            "u2",
            &ScoreRange::at_least(20.0),
            Page::oldest_first(5)
        )
        .await
        .expect("ids"),
        ["j1"]
    );
    assert_eq!(
        Job::by_slug(&client, &"slug-j1".to_string())
            .await
            .expect("old slug"),
        None
    );
    assert!(
        Job::by_slug(&client, &"renamed".to_string())
            .await
            .expect("new slug")
            .is_some()
    );
    assert_no_drift::<Job>(&client).await;

    Job::patch(
        &client,
        "j1",
        &JobPatch {
            status: Some(JobStatus::Failed),
            created_at: Some(5),
            error: Some(Some("boom".into())),
            ..Default::default()
        },
    )
    .await
    .expect("patch");
    assert_eq!(
        Job::by_status_ids(&client, &JobStatus::Failed)
            .await
            .expect("ids"),
        ["j1"]
    );
    assert!(
        Job::by_status_ids(&client, &JobStatus::Running)
            .await
            .expect("ids")
            .is_empty()
    );
    assert_eq!(
        Job::by_user_id_ids(
            &client,
            "u2",
            &ScoreRange::at_most(5.0),
            Page::oldest_first(5)
        )
        .await
        .expect("ids"),
        ["j1"],
        "score moved"
    );
    assert_no_drift::<Job>(&client).await;

    assert!(Job::delete(&client, "j1").await.expect("delete"));
    assert_eq!(
        Job::by_status_count(&client, &JobStatus::Failed)
            .await
            .expect("count"),
        0
    );
    assert_eq!(
        Job::by_user_id_count(&client, "u2").await.expect("count"),
        0
    );
    assert_eq!(
        Job::by_slug(&client, &"renamed".to_string())
            .await
            .expect("slug"),
        None
    );
    let leftovers: Vec<String> = client
        .run(Context::new("test.keys", ""), |mut conn| async move {
            Ok(conn.keys("*").await?)
        })
        .await
        .expect("keys");
    assert!(
        leftovers.is_empty(),
        "delete must leave nothing behind: {leftovers:?}"
    );
}

#[tokio::test]
async fn unique_violation_writes_nothing() {
    let (_server, client) = setup().await;
    job("j1", "u1", JobStatus::Queued, 1)
        .create(&client)
        .await
        .expect("create");
    let mut clash = job("j2", "u9", JobStatus::Running, 2);
    clash.slug = "slug-j1".into();
    let err = clash.create(&client).await.expect_err("unique");
    assert_eq!(err.code(), "UNIQUE_VIOLATION");
    assert!(!Job::exists(&client, "j2").await.expect("exists"));
    assert_eq!(
        Job::by_user_id_count(&client, "u9").await.expect("count"),
        0
    );
    assert!(
        Job::by_status_ids(&client, &JobStatus::Running)
            .await
            .expect("ids")
            .is_empty()
    );

    // Same through patch: the existing entity keeps its old value.
    job("j3", "u1", JobStatus::Queued, 3)
        .create(&client)
        .await
        .expect("create");
    let err = Job::patch(
        &client,
        "j3",
        &JobPatch {
            slug: Some("slug-j1".into()),
            status: Some(JobStatus::Failed),
            ..Default::default()
        },
    )
    .await
    .expect_err("unique");
    assert_eq!(err.code(), "UNIQUE_VIOLATION");
    let j3 = Job::get(&client, "j3")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (j3.slug.as_str(), j3.status),
        ("slug-j3", JobStatus::Queued)
    );
    assert_no_drift::<Job>(&client).await;
}

#[tokio::test]
async fn expired_entities_vanish_from_every_query_and_their_entries_are_swept() {
    let (_server, client) = setup().await;
    let lease = |id: &str| Lease {
        id: id.into(),
        owner: "o1".into(),
        kind: "db".into(),
        resource: format!("r-{id}"),
        taken_at: 5,
    };
    lease("l1").create(&client).await.expect("create");
    lease("l2").create(&client).await.expect("create");
    // Keep l2 alive for the whole test.
    Lease::persist(&client, "l2").await.expect("persist");

    assert_eq!(
        Lease::by_owner_count(&client, "o1").await.expect("count"),
        2
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while Lease::exists(&client, "l1").await.expect("exists") {
        assert!(Instant::now() < deadline, "lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every query sees it gone, and the stale members are gone afterwards.
    let page = Lease::by_owner(&client, "o1", Page::newest_first(10))
        .await
        .expect("page");
    assert_eq!(
        page.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        ["l2"]
    );
    assert_eq!(
        Lease::by_owner_count(&client, "o1").await.expect("count"),
        1
    );
    assert_eq!(
        Lease::by_kind_ids(&client, "db").await.expect("ids"),
        ["l2"]
    );
    assert_eq!(
        Lease::by_resource(&client, &"r-l1".to_string())
            .await
            .expect("unique"),
        None
    );
    let raw: (Vec<String>, Vec<String>, Option<String>) = client
        .run(Context::new("test.raw", ""), |mut conn| async move {
            let z: Vec<String> = conn.zrange("leases:owner:o1", 0, -1).await?;
            let s: Vec<String> = conn.smembers("leases:kind:db").await?;
            let u: Option<String> = conn.hget("leases:by_resource", "r-l1").await?;
            Ok((z, s, u))
        })
        .await
        .expect("raw");
    assert_eq!(raw, (vec!["l2".to_string()], vec!["l2".to_string()], None));
    assert_no_drift::<Lease>(&client).await;

    // The unique value of an expired holder is free again.
    let mut again = lease("l3");
    again.resource = "r-l1".into();
    again
        .create(&client)
        .await
        .expect("value of an expired entity is free");
}

#[tokio::test]
async fn recreating_an_expired_entity_does_not_leave_its_old_entries() {
    let (_server, client) = setup().await;
    let mut l = Lease {
        id: "l1".into(),
        owner: "old-owner".into(),
        kind: "db".into(),
        resource: "r1".into(),
        taken_at: 1,
    };
    l.create(&client).await.expect("create");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Lease::exists(&client, "l1").await.expect("exists") {
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    l.owner = "new-owner".into();
    l.create(&client).await.expect("re-create");
    Lease::persist(&client, "l1").await.expect("persist");
    let stale: Vec<String> = client
        .run(Context::new("test.raw", ""), |mut conn| async move {
            Ok(conn.zrange("leases:owner:old-owner", 0, -1).await?)
        })
        .await
        .expect("raw");
    assert!(
        stale.is_empty(),
        "old incarnation's entry must be gone: {stale:?}"
    );
    assert_no_drift::<Lease>(&client).await;
}

#[tokio::test]
async fn sweep_cleans_up_without_any_read() {
    let (_server, client) = setup().await;
    for i in 0..20 {
        Lease {
            id: format!("l{i}"),
            owner: "o".into(),
            kind: "k".into(),
            resource: format!("r{i}"),
            taken_at: i,
        }
        .create(&client)
        .await
        .expect("create");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Lease::exists(&client, "l19").await.expect("exists") {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Wait until the registry says everything is due (its clock is the server's).
    let mut swept = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while swept < 20 {
        swept += index::sweep::<Lease>(&client, 5).await.expect("sweep");
        assert!(Instant::now() < deadline, "only {swept} swept");
    }
    let keys: Vec<String> = client
        .run(Context::new("test.keys", ""), |mut conn| async move {
            Ok(conn.keys("*").await?)
        })
        .await
        .expect("keys");
    assert!(keys.is_empty(), "everything must be gone: {keys:?}");
}

#[tokio::test]
async fn rebuild_repairs_orphans_missing_entries_and_wrong_scores() {
    let (_server, client) = setup().await;
    for (id, user) in [("j1", "u1"), ("j2", "u1"), ("j3", "u2")] {
        job(id, user, JobStatus::Queued, 1)
            .create(&client)
            .await
            .expect("create");
    }
    // Damage the indexes behind the runtime's back.
    client
        .run(Context::new("test.damage", ""), |mut conn| async move {
            let _: () = conn.zrem("jobs:user:u1", "j1").await?; // missing
            let _: () = conn.zadd("jobs:user:u2", "j3", 999).await?; // wrong score
            let _: () = conn.sadd("jobs:status:running", "j2").await?; // orphan
            let _: () = conn.sadd("jobs:status:queued", "ghost").await?; // orphan: no entity
            let _: () = conn.hset("jobs:by_slug", "slug-ghost", "ghost").await?; // orphan
            Ok(())
        })
        .await
        .expect("damage");
    let report = index::verify::<Job>(&client).await.expect("verify");
    assert_eq!(report.entities, 3);
    let kinds: Vec<(&str, &str, DriftKind)> = report
        .drift
        .iter()
        .map(|d| (d.index_key.as_str(), d.member.as_str(), d.problem.clone()))
        .collect();
    assert!(
        kinds.contains(&("jobs:user:u1", "j1", DriftKind::Missing)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(
            "jobs:user:u2",
            "j3",
            DriftKind::WrongScore {
                expected: 1.0,
                actual: 999.0
            }
        )),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("jobs:status:running", "j2", DriftKind::Orphan)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("jobs:status:queued", "ghost", DriftKind::Orphan)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("jobs:by_slug", "ghost", DriftKind::Orphan)),
        "{kinds:?}"
    );
    assert_eq!(report.drift.len(), 5);

    let repaired = index::rebuild::<Job>(&client).await.expect("rebuild");
    assert!(repaired.remaining.is_empty(), "{:#?}", repaired.remaining);
    assert_eq!(repaired.removed, 3);
    assert_eq!(repaired.reindexed, 2);
    assert_no_drift::<Job>(&client).await;
}

#[tokio::test]
async fn rebuild_indexes_existing_data_written_without_indexes() {
    let (_server, client) = setup().await;
    // Hashes as an older version (no indexes) wrote them.
    client
        .run(Context::new("test.seed", ""), |mut conn| async move {
            for i in 0..1200 {
                let _: () = conn
                    .hset_multiple(
                        format!("job:old{i}"),
                        &[
                            ("id", format!("old{i}")),
                            ("user_id", format!("u{}", i % 3)),
                            ("status", "queued".into()),
                            ("slug", format!("s{i}")),
                            ("created_at", i.to_string()),
                        ],
                    )
                    .await?;
            }
            Ok(())
        })
        .await
        .expect("seed");
    let report = index::rebuild::<Job>(&client).await.expect("rebuild");
    assert_eq!(report.reindexed, 1200);
    assert!(report.remaining.is_empty());
    assert_eq!(
        Job::by_status_count(&client, &JobStatus::Queued)
            .await
            .expect("count"),
        1200
    );
    assert_eq!(
        Job::by_user_id_count(&client, "u1").await.expect("count"),
        400
    );
}

/// The concurrency invariant: many writers on separate connections racing
/// over few ids whose indexed fields change; the indexes end up exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_leave_zero_drift() {
    let server = RedisServer::start();
    let statuses = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
    ];
    let mut tasks = Vec::new();
    for worker in 0..8u64 {
        // A separate client (and so connection) per task.
        let client = Client::connect(server.config()).await.expect("connect");
        tasks.push(tokio::spawn(async move {
            let mut seed = worker.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            for _ in 0..2000 {
                let id = format!("j{}", next() % 50);
                let status = statuses[(next() % 4) as usize];
                let user = format!("u{}", next() % 5);
                let mut j = job(&id, &user, status, (next() % 1000) as i64);
                j.slug = format!("slug-{}", next() % 60);
                let result = match next() % 4 {
                    0 => j.create(&client).await.map(drop),
                    1 => j.update(&client).await,
                    2 => {
                        Job::patch(
                            &client,
                            &id,
                            &JobPatch {
                                status: Some(status),
                                created_at: Some(j.created_at),
                                user_id: Some(user),
                                ..Default::default()
                            },
                        )
                        .await
                    }
                    _ => Job::delete(&client, &id).await.map(drop),
                };
                if let Err(e) = result {
                    assert!(
                        matches!(
                            e.code(),
                            "ALREADY_EXISTS" | "NOT_FOUND" | "UNIQUE_VIOLATION"
                        ),
                        "unexpected error {e:?}"
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let client = Client::connect(server.config()).await.expect("connect");
    assert_no_drift::<Job>(&client).await;
    // Unique index: each value held by at most one live entity, which has it.
    let slugs: BTreeMap<String, String> = client
        .run(Context::new("test.slugs", ""), |mut conn| async move {
            Ok(conn.hgetall("jobs:by_slug").await?)
        })
        .await
        .expect("slugs");
    for (slug, id) in slugs {
        let j = Job::get(&client, &id)
            .await
            .expect("get")
            .expect("holder lives");
        assert_eq!(j.slug, slug);
    }
}

/// The crash invariant: a client dropped while its write is in flight
/// leaves all of it or none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_writes_leave_all_or_nothing() {
    let server = RedisServer::start();
    let client = Client::connect(server.config()).await.expect("connect");
    for round in 0..200u64 {
        let writer = Client::connect(server.config()).await.expect("connect");
        let id = format!("c{}", round % 20);
        let j = job(
            &id,
            &format!("u{}", round % 3),
            JobStatus::Running,
            round as i64,
        );
        let task = tokio::spawn(async move {
            let _ = j.save(&writer).await;
            drop(writer);
        });
        // Abort at varying points of the request's life.
        if round % 3 != 0 {
            tokio::task::yield_now().await;
        }
        task.abort();
        let _ = task.await;
    }
    assert_no_drift::<Job>(&client).await;
}

#[tokio::test]
async fn every_operation_on_an_entity_with_three_indexes_a_ttl_and_a_stream_is_one_round_trip() {
    let (_server, client) = setup().await;
    let ticket = |id: &str, status| Ticket {
        id: id.into(),
        user_id: "u1".into(),
        status,
        slug: format!("slug-{id}"),
        created_at: 1,
    };
    // Warm the script cache: the very first EVALSHA of a script loads it.
    ticket("warm", JobStatus::Queued)
        .create(&client)
        .await
        .expect("create");
    Ticket::delete(&client, "warm").await.expect("delete");
    let _ = Ticket::by_user_id(&client, "u", Page::newest_first(1))
        .await
        .expect("page");
    Ticket::expire(&client, "warm", Duration::from_secs(1))
        .await
        .expect("expire");

    let cost = |before: u64, client: &Client| client.round_trips() - before;
    let mut t = ticket("t1", JobStatus::Queued);

    let before = client.round_trips();
    let outcome = t.create(&client).await.expect("create");
    assert_eq!(cost(before, &client), 1, "create");
    assert!(outcome.stream_id.is_some(), "create enqueues on the stream");

    t.status = JobStatus::Running;
    let before = client.round_trips();
    t.update(&client).await.expect("update");
    assert_eq!(cost(before, &client), 1, "update");

    let before = client.round_trips();
    t.save(&client).await.expect("save");
    assert_eq!(cost(before, &client), 1, "save");

    let before = client.round_trips();
    Ticket::patch(
        &client,
        "t1",
        &TicketPatch {
            status: Some(JobStatus::Failed),
            ..Default::default()
        },
    )
    .await
    .expect("patch");
    assert_eq!(cost(before, &client), 1, "patch");

    let before = client.round_trips();
    let page = Ticket::by_user_id(&client, "u1", Page::newest_first(20))
        .await
        .expect("page");
    assert_eq!(
        (page.len(), cost(before, &client)),
        (1, 1),
        "page of entities"
    );

    let before = client.round_trips();
    assert!(
        Ticket::by_slug(&client, &"slug-t1".to_string())
            .await
            .expect("unique")
            .is_some()
    );
    assert_eq!(cost(before, &client), 1, "unique lookup");

    let before = client.round_trips();
    Ticket::get(&client, "t1").await.expect("get");
    assert_eq!(cost(before, &client), 1, "get");

    let before = client.round_trips();
    Ticket::get_many(&client, ["t1", "x", "y"])
        .await
        .expect("get_many");
    assert_eq!(cost(before, &client), 1, "get_many");

    let before = client.round_trips();
    assert!(Ticket::exists(&client, "t1").await.expect("exists"));
    assert_eq!(cost(before, &client), 1, "exists");

    let before = client.round_trips();
    Ticket::ttl(&client, "t1").await.expect("ttl");
    assert_eq!(cost(before, &client), 1, "ttl");

    let before = client.round_trips();
    Ticket::persist(&client, "t1").await.expect("persist");
    assert_eq!(cost(before, &client), 1, "persist");

    let before = client.round_trips();
    Ticket::expire(&client, "t1", Duration::from_secs(60))
        .await
        .expect("expire");
    assert_eq!(cost(before, &client), 1, "expire");

    let before = client.round_trips();
    assert!(Ticket::delete(&client, "t1").await.expect("delete"));
    assert_eq!(cost(before, &client), 1, "delete");
    assert_no_drift::<Ticket>(&client).await;
}

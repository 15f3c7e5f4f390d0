//! Secondary indexes against a real `redis-server`: queries, maintenance,
//! TTL honesty, drift under concurrency and crashes, repair.

// Shared with the other suites; this one uses only part of it.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands;
use redis_runtime::index::{self, DriftKind};
use redis_runtime::testing::{RedisServer, eventually, raw_query};
use redis_runtime::{Client, Context, Page, RedisEntity, ScoreRange};

use common::{
    Job, JobPatch, JobStatus, Lease, assert_no_drift, create_all, job, lease, owner_page,
    wait_expired,
};

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

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

/// The ids of one page of `user`'s jobs.
async fn user_page(client: &Client, user: &str, page: Page) -> Vec<String> {
    let jobs = Job::by_user_id(client, user, page).await.expect("page");
    jobs.into_iter().map(|j| j.id).collect()
}

async fn user_count(client: &Client, user: &str) -> u64 {
    Job::by_user_id_count(client, user).await.expect("count")
}

async fn status_ids(client: &Client, status: JobStatus) -> Vec<String> {
    Job::by_status_ids(client, &status).await.expect("ids")
}

async fn status_count(client: &Client, status: JobStatus) -> u64 {
    Job::by_status_count(client, &status).await.expect("count")
}

/// The id of the job the unique slug index points `slug` at.
async fn slug_holder(client: &Client, slug: &str) -> Option<String> {
    let slug = slug.to_string();
    let found = Job::by_slug(client, &slug).await.expect("unique");
    found.map(|j| j.id)
}

/// Awaits `operation`, which must succeed in exactly one round trip.
async fn one_round_trip<T>(
    client: &Client,
    what: &str,
    operation: impl Future<Output = redis_runtime::Result<T>>,
) -> T {
    round_trips(client, what, 1, operation).await
}

/// Awaits `operation`, which must succeed in exactly `expected` round trips.
async fn round_trips<T>(
    client: &Client,
    what: &str,
    expected: u64,
    operation: impl Future<Output = redis_runtime::Result<T>>,
) -> T {
    let before = client.round_trips();
    let output = operation.await;
    assert_eq!(client.round_trips() - before, expected, "{what}");
    output.unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn all_keys(client: &Client) -> Vec<String> {
    raw_query(client, &["KEYS", "*"]).await
}

#[tokio::test]
async fn sorted_index_pages_newest_and_oldest_first_with_edges() {
    let (_server, client) = RedisServer::start_with_client().await;
    let five = ["a", "b", "c", "d", "e"].iter().enumerate();
    create_all(
        &client,
        five.map(|(i, id)| job(id, "u1", JobStatus::Queued, 100 + i as i64)),
    )
    .await;
    create_all(&client, [job("other", "u2", JobStatus::Queued, 1)]).await;

    let pages: [(Page, &[&str], &str); 6] = [
        (Page::newest_first(2), &["e", "d"], "first page"),
        (Page::newest_first(2).skip(2), &["c", "b"], "second page"),
        (Page::newest_first(2).skip(4), &["a"], "last partial page"),
        (Page::newest_first(2).skip(10), &[], "past the end"),
        (
            Page::oldest_first(5),
            &["a", "b", "c", "d", "e"],
            "exact page",
        ),
        (Page::newest_first(0), &[], "a zero limit"),
    ];
    for (page, expected, what) in pages {
        assert_eq!(user_page(&client, "u1", page).await, expected, "{what}");
    }
    let empty = user_page(&client, "nobody", Page::newest_first(5)).await;
    assert!(empty.is_empty(), "empty index");

    let ranges: [(ScoreRange, Page, &[&str]); 2] = [
        (
            ScoreRange::at_least(103.0),
            Page::oldest_first(10),
            &["d", "e"],
        ),
        (
            ScoreRange::between(101.0, 102.0),
            Page::newest_first(10),
            &["c", "b"],
        ),
    ];
    for (range, page, expected) in ranges {
        let found = Job::by_user_id_in_range(&client, "u1", &range, page).await;
        assert_eq!(ids(&found.expect("range")), expected);
    }
    let after = ScoreRange::after(103.0);
    let found = Job::by_user_id_ids_in_range(&client, "u1", &after, Page::oldest_first(10)).await;
    assert_eq!(found.expect("ids"), ["e"]);
    assert_eq!(user_count(&client, "u1").await, 5);
    assert_eq!(user_count(&client, "nobody").await, 0);
}

#[tokio::test]
async fn ties_in_score_are_ordered_by_id() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(
        &client,
        ["m", "k", "z"].map(|id| job(id, "u1", JobStatus::Queued, 7)),
    )
    .await;
    let asc = user_page(&client, "u1", Page::oldest_first(10)).await;
    assert_eq!(asc, ["k", "m", "z"]);
    let desc = user_page(&client, "u1", Page::newest_first(10)).await;
    assert_eq!(desc, ["z", "m", "k"]);
}

#[tokio::test]
async fn set_and_unique_queries() {
    let (_server, client) = RedisServer::start_with_client().await;
    let jobs = [
        job("j2", "u1", JobStatus::Running, 2),
        job("j1", "u1", JobStatus::Running, 1),
        job("j3", "u1", JobStatus::Queued, 3),
    ];
    create_all(&client, jobs).await;

    let running = Job::by_status(&client, &JobStatus::Running).await;
    assert_eq!(ids(&running.expect("members")), ["j1", "j2"]);
    assert_eq!(status_ids(&client, JobStatus::Queued).await, ["j3"]);
    assert_eq!(status_count(&client, JobStatus::Failed).await, 0);
    let failed = Job::by_status(&client, &JobStatus::Failed).await;
    assert!(failed.expect("members").is_empty());

    assert_eq!(slug_holder(&client, "slug-j3").await.as_deref(), Some("j3"));
    assert_eq!(slug_holder(&client, "nope").await, None);
}

#[tokio::test]
async fn updates_and_patches_move_entries_and_delete_cleans_every_index() {
    let (_server, client) = RedisServer::start_with_client().await;
    let mut j = job("j1", "u1", JobStatus::Queued, 10);
    j.create(&client).await.expect("create");

    j.status = JobStatus::Running;
    j.user_id = "u2".into();
    j.created_at = 20;
    j.slug = "renamed".into();
    j.update(&client).await.expect("update");
    assert!(status_ids(&client, JobStatus::Queued).await.is_empty());
    assert_eq!(status_ids(&client, JobStatus::Running).await, ["j1"]);
    assert_eq!(user_count(&client, "u1").await, 0);
    let since_20 = ScoreRange::at_least(20.0);
    let moved = Job::by_user_id_ids_in_range(&client, "u2", &since_20, Page::oldest_first(5)).await;
    assert_eq!(moved.expect("ids"), ["j1"]);
    assert_eq!(slug_holder(&client, "slug-j1").await, None, "old slug");
    assert!(slug_holder(&client, "renamed").await.is_some(), "new slug");
    assert_no_drift::<Job>(&client).await;

    let patch = JobPatch {
        status: Some(JobStatus::Failed),
        created_at: Some(5),
        error: Some(Some("boom".into())),
        ..Default::default()
    };
    Job::patch(&client, "j1", &patch).await.expect("patch");
    assert_eq!(status_ids(&client, JobStatus::Failed).await, ["j1"]);
    assert!(status_ids(&client, JobStatus::Running).await.is_empty());
    let up_to_5 = ScoreRange::at_most(5.0);
    let moved = Job::by_user_id_ids_in_range(&client, "u2", &up_to_5, Page::oldest_first(5)).await;
    assert_eq!(moved.expect("ids"), ["j1"], "score moved");
    assert_no_drift::<Job>(&client).await;

    assert!(Job::delete(&client, "j1").await.expect("delete"));
    assert_eq!(status_count(&client, JobStatus::Failed).await, 0);
    assert_eq!(user_count(&client, "u2").await, 0);
    assert_eq!(slug_holder(&client, "renamed").await, None);
    let leftovers = all_keys(&client).await;
    assert!(
        leftovers.is_empty(),
        "delete must leave nothing behind: {leftovers:?}"
    );
}

#[tokio::test]
async fn unique_violation_writes_nothing() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(&client, [job("j1", "u1", JobStatus::Queued, 1)]).await;
    let mut clash = job("j2", "u9", JobStatus::Running, 2);
    clash.slug = "slug-j1".into();
    let err = clash.create(&client).await.expect_err("unique");
    assert_eq!(err.code(), "UNIQUE_VIOLATION");
    assert!(!Job::exists(&client, "j2").await.expect("exists"));
    assert_eq!(user_count(&client, "u9").await, 0);
    assert!(status_ids(&client, JobStatus::Running).await.is_empty());

    // Same through patch: the existing entity keeps its old value.
    create_all(&client, [job("j3", "u1", JobStatus::Queued, 3)]).await;
    let patch = JobPatch {
        slug: Some("slug-j1".into()),
        status: Some(JobStatus::Failed),
        ..Default::default()
    };
    let err = Job::patch(&client, "j3", &patch).await.expect_err("unique");
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
    let (_server, client) = RedisServer::start_with_client().await;
    let lease = |id: &str| Lease {
        kind: "db".into(),
        ..lease(id, "o1", 5)
    };
    create_all(&client, [lease("l1"), lease("l2")]).await;
    // Keep l2 alive for the whole test.
    Lease::persist(&client, "l2").await.expect("persist");

    let owner_count = async || Lease::by_owner_count(&client, "o1").await.expect("count");
    assert_eq!(owner_count().await, 2);
    wait_expired(&client, "l1").await;
    // Every query sees it gone, and the stale members are gone afterwards.
    let page = owner_page(&client, "o1", Page::newest_first(10)).await;
    assert_eq!(page, ["l2"]);
    assert_eq!(owner_count().await, 1);
    let kind_ids = Lease::by_kind_ids(&client, "db").await.expect("ids");
    assert_eq!(kind_ids, ["l2"]);
    let holder = Lease::by_resource(&client, &"r-l1".to_string()).await;
    assert_eq!(holder.expect("unique"), None);
    let raw: (Vec<String>, Vec<String>, Option<String>) = (
        raw_query(&client, &["ZRANGE", "leases:owner:o1", "0", "-1"]).await,
        raw_query(&client, &["SMEMBERS", "leases:kind:db"]).await,
        raw_query(&client, &["HGET", "leases:by_resource", "r-l1"]).await,
    );
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
    let (_server, client) = RedisServer::start_with_client().await;
    let mut l = Lease {
        kind: "db".into(),
        resource: "r1".into(),
        ..lease("l1", "old-owner", 1)
    };
    l.create(&client).await.expect("create");
    wait_expired(&client, "l1").await;
    l.owner = "new-owner".into();
    l.create(&client).await.expect("re-create");
    Lease::persist(&client, "l1").await.expect("persist");
    let stale: Vec<String> =
        raw_query(&client, &["ZRANGE", "leases:owner:old-owner", "0", "-1"]).await;
    assert!(
        stale.is_empty(),
        "old incarnation's entry must be gone: {stale:?}"
    );
    assert_no_drift::<Lease>(&client).await;
}

#[tokio::test]
async fn sweep_cleans_up_without_any_read() {
    let (_server, client) = RedisServer::start_with_client().await;
    let leases = (0..20).map(|i| Lease {
        resource: format!("r{i}"),
        ..lease(&format!("l{i}"), "o", i)
    });
    create_all(&client, leases).await;
    wait_expired(&client, "l19").await;
    // Wait until the registry says everything is due (its clock is the server's).
    let mut swept = 0;
    eventually(Duration::from_secs(5), "all 20 swept", async || {
        swept += index::sweep::<Lease>(&client, 5).await.expect("sweep");
        swept >= 20
    })
    .await;
    let keys = all_keys(&client).await;
    assert!(keys.is_empty(), "everything must be gone: {keys:?}");
}

#[tokio::test]
async fn rebuild_repairs_orphans_missing_entries_and_wrong_scores() {
    let (_server, client) = RedisServer::start_with_client().await;
    let jobs = [("j1", "u1"), ("j2", "u1"), ("j3", "u2")];
    create_all(
        &client,
        jobs.map(|(id, user)| job(id, user, JobStatus::Queued, 1)),
    )
    .await;
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
    let wrong_score = DriftKind::WrongScore {
        expected: 1.0,
        actual: 999.0,
    };
    for expected in [
        ("jobs:user:u1", "j1", DriftKind::Missing),
        ("jobs:user:u2", "j3", wrong_score),
        ("jobs:status:running", "j2", DriftKind::Orphan),
        ("jobs:status:queued", "ghost", DriftKind::Orphan),
        ("jobs:by_slug", "ghost", DriftKind::Orphan),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} in {kinds:?}");
    }
    assert_eq!(report.drift.len(), 5);

    let repaired = index::rebuild::<Job>(&client).await.expect("rebuild");
    assert!(repaired.remaining.is_empty(), "{:#?}", repaired.remaining);
    assert_eq!(repaired.removed, 3);
    assert_eq!(repaired.reindexed, 2);
    assert_no_drift::<Job>(&client).await;
}

#[tokio::test]
async fn rebuild_indexes_existing_data_written_without_indexes() {
    let (_server, client) = RedisServer::start_with_client().await;
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
    assert_eq!(status_count(&client, JobStatus::Queued).await, 1200);
    assert_eq!(user_count(&client, "u1").await, 400);
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
        let client = server.client().await;
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
                let result = match next() % 7 {
                    0 => j.create(&client).await.map(drop),
                    1 => j.update(&client).await,
                    2 => {
                        let patch = JobPatch {
                            status: Some(status),
                            created_at: Some(j.created_at),
                            user_id: Some(user),
                            ..Default::default()
                        };
                        Job::patch(&client, &id, &patch).await
                    }
                    // The counter moves the entry in the sorted index.
                    3 => Job::incr_created_at(&client, &id, (next() % 7) as i64 - 3)
                        .await
                        .map(drop),
                    // A claim: the status index moves only if it held.
                    4 => {
                        let expected = JobPatch {
                            status: Some(statuses[(next() % 4) as usize]),
                            ..Default::default()
                        };
                        let change = JobPatch {
                            status: Some(status),
                            ..Default::default()
                        };
                        Job::patch_if(&client, &id, &expected, &change)
                            .await
                            .map(drop)
                    }
                    // A filtered read racing the writers never fails.
                    5 => {
                        let filter = common::JobFilter {
                            status: Some(status),
                        };
                        let all = ScoreRange::all();
                        Job::by_user_id_where(&client, &user, &filter, &all, Page::newest_first(5))
                            .await
                            .map(drop)
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
    let client = server.client().await;
    assert_no_drift::<Job>(&client).await;
    // Unique index: each value held by at most one live entity, which has it.
    let slugs: BTreeMap<String, String> = raw_query(&client, &["HGETALL", "jobs:by_slug"]).await;
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
    let (server, client) = RedisServer::start_with_client().await;
    for round in 0..200u64 {
        let writer = server.client().await;
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
async fn every_operation_on_an_entity_with_three_indexes_a_ttl_and_a_stream_is_one_round_trip_listings_two()
 {
    let (_server, client) = RedisServer::start_with_client().await;
    let ticket = |id: &str, status| Ticket {
        id: id.into(),
        user_id: "u1".into(),
        status,
        slug: format!("slug-{id}"),
        created_at: 1,
    };
    // Warm the script cache: the very first EVALSHA of a script loads it.
    create_all(&client, [ticket("warm", JobStatus::Queued)]).await;
    Ticket::delete(&client, "warm").await.expect("delete");
    let _ = Ticket::by_user_id_count(&client, "u")
        .await
        .expect("count loads the query script");
    Ticket::expire(&client, "warm", Duration::from_secs(1))
        .await
        .expect("expire");

    let mut t = ticket("t1", JobStatus::Queued);
    let outcome = one_round_trip(&client, "create", t.create(&client)).await;
    assert!(outcome.stream_id.is_some(), "create enqueues on the stream");

    t.status = JobStatus::Running;
    one_round_trip(&client, "update", t.update(&client)).await;
    one_round_trip(&client, "save", t.save(&client)).await;
    let patch = TicketPatch {
        status: Some(JobStatus::Failed),
        ..Default::default()
    };
    one_round_trip(&client, "patch", Ticket::patch(&client, "t1", &patch)).await;

    let page = Ticket::by_user_id(&client, "u1", Page::newest_first(20));
    // Ids by ZRANGE, hashes by one pipeline.
    let page = round_trips(&client, "page of entities", 2, page).await;
    assert_eq!(page.len(), 1, "page of entities");
    let members = Ticket::by_status(&client, &JobStatus::Failed);
    let members = round_trips(&client, "members of a set index", 2, members).await;
    assert_eq!(members.len(), 1, "members of a set index");
    let slug = "slug-t1".to_string();
    let found = Ticket::by_slug(&client, &slug);
    assert!(
        one_round_trip(&client, "unique lookup", found)
            .await
            .is_some()
    );
    one_round_trip(&client, "get", Ticket::get(&client, "t1")).await;
    let get_many = Ticket::get_many(&client, ["t1", "x", "y"]);
    one_round_trip(&client, "get_many", get_many).await;
    let exists = Ticket::exists(&client, "t1");
    assert!(one_round_trip(&client, "exists", exists).await);
    one_round_trip(&client, "ttl", Ticket::ttl(&client, "t1")).await;
    one_round_trip(&client, "persist", Ticket::persist(&client, "t1")).await;
    let expire = Ticket::expire(&client, "t1", Duration::from_secs(60));
    one_round_trip(&client, "expire", expire).await;
    let delete = Ticket::delete(&client, "t1");
    assert!(one_round_trip(&client, "delete", delete).await);
    assert_no_drift::<Ticket>(&client).await;
}

/// A page whose ids include an entity deleted behind the runtime's back
/// (the listing's hashes are read after its ids) is read again atomically:
/// the dead id is dropped from the index and the page is still full.
#[tokio::test]
async fn a_page_that_meets_a_dead_id_drops_it_and_stays_full() {
    let (_server, client) = RedisServer::start_with_client().await;
    let six = ["a", "b", "c", "d", "e", "f"].iter().enumerate();
    create_all(
        &client,
        six.map(|(i, id)| job(id, "u1", JobStatus::Queued, 100 + i as i64)),
    )
    .await;
    let _: () = raw_query(&client, &["DEL", "job:e"]).await;
    user_count(&client, "nobody").await; // loads the query script

    let page = Job::by_user_id(&client, "u1", Page::newest_first(3));
    let page = round_trips(&client, "ids, hashes, then the atomic re-read", 3, page).await;
    assert_eq!(ids(&page), ["f", "d", "c"], "full page without the dead id");
    let left: Vec<String> = raw_query(&client, &["ZRANGE", "jobs:user:u1", "0", "-1"]).await;
    assert_eq!(
        left,
        ["a", "b", "c", "d", "f"],
        "the dead id left the index"
    );

    let page = Job::by_user_id(&client, "u1", Page::newest_first(3));
    let page = round_trips(&client, "clean again: two round trips", 2, page).await;
    assert_eq!(ids(&page), ["f", "d", "c"]);

    // A set index member whose hash is gone, the same way.
    let _: () = raw_query(&client, &["DEL", "job:a"]).await;
    let queued = Job::by_status(&client, &JobStatus::Queued);
    let queued = round_trips(&client, "members with a dead id", 3, queued).await;
    assert_eq!(ids(&queued), ["b", "c", "d", "f"]);
    let mut left: Vec<String> = raw_query(&client, &["SMEMBERS", "jobs:status:queued"]).await;
    left.sort();
    assert_eq!(left, ["b", "c", "d", "f"], "both dead ids left the set");
}

/// A hash whose key fields no longer render the index key it was listed
/// under (here changed behind the runtime's back) is not trusted from the
/// pipeline: the listing is re-read by the atomic script.
#[tokio::test]
async fn a_page_that_meets_a_moved_entity_rereads_atomically() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(
        &client,
        [
            job("a", "u1", JobStatus::Queued, 1),
            job("b", "u1", JobStatus::Queued, 2),
        ],
    )
    .await;
    let _: () = raw_query(&client, &["HSET", "job:b", "created_at", "50"]).await;
    user_count(&client, "nobody").await; // loads the query script
    let range = ScoreRange::at_most(10.0);
    let page = Job::by_user_id_in_range(&client, "u1", &range, Page::newest_first(5));
    round_trips(&client, "a score out of the range", 3, page).await;
    let _: () = raw_query(&client, &["HSET", "job:b", "user_id", "u9"]).await;
    let page = Job::by_user_id(&client, "u1", Page::newest_first(5));
    round_trips(&client, "a key field that moved", 3, page).await;
}

/// A `cluster` type tagged by its owner keeps one TTL registry per owner;
/// on one server it works the same (the registry is declared by the call).
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "run:{{{user_id}}}:{id}")]
#[redis(index(key = "runs:{{{user_id}}}:status:{status}"))]
struct Run {
    user_id: String,
    id: String,
    status: String,
}

#[tokio::test]
async fn a_registry_per_tag_works_on_one_server_too() {
    let (_server, client) = RedisServer::start_with_client().await;
    for (user, id) in [("ann", "r1"), ("ann", "r2"), ("bob", "r1")] {
        let run = Run {
            user_id: user.into(),
            id: id.into(),
            status: "running".into(),
        };
        run.create(&client).await.expect("create");
    }
    assert!(
        Run::expire(&client, "ann", "r2", Duration::from_millis(30))
            .await
            .expect("expire")
    );
    let listed: Vec<String> = raw_query(
        &client,
        &["ZRANGE", "__ttl:run:user_id:id:{ann}", "0", "-1"],
    )
    .await;
    assert_eq!(listed, ["ann:r2"], "listed in ann's registry");
    eventually(Duration::from_secs(5), "r2 to expire", async || {
        Run::get(&client, "ann", "r2").await.expect("get").is_none()
    })
    .await;
    assert_eq!(index::sweep::<Run>(&client, 100).await.expect("sweep"), 1);
    assert_eq!(
        Run::by_user_id_and_status_ids(&client, "ann", "running")
            .await
            .expect("ids"),
        ["ann:r1"]
    );
    assert!(Run::delete(&client, "bob", "r1").await.expect("delete"));
    assert!(
        Run::by_user_id_and_status_ids(&client, "bob", "running")
            .await
            .expect("ids")
            .is_empty()
    );
    let report = index::verify::<Run>(&client).await.expect("verify");
    assert!(report.drift.is_empty(), "{:?}", report.drift);
}

/// A cluster layout whose indexes are outside the entity's slot: on one
/// server nothing is deferred, every index is written by the entity's
/// script, and reads that need one script over index and entities work.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "parcel:{id}")]
#[redis(index(key = "parcels:status:{status}", cross_slot))]
#[redis(sorted_index(key = "parcels:user:{user_id}", score = "created_at", cross_slot))]
struct Parcel {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

#[tokio::test]
async fn cross_slot_indexes_are_written_atomically_on_one_server() {
    let (_server, client) = RedisServer::start_with_client().await;
    for n in 0..6 {
        let parcel = Parcel {
            id: format!("p{n}"),
            user_id: "u1".into(),
            status: "open".into(),
            created_at: n,
        };
        parcel.create(&client).await.expect("create");
    }
    let patch = ParcelPatch {
        status: Some("sent".into()),
        ..Default::default()
    };
    Parcel::patch(&client, "p2", &patch).await.expect("patch");
    assert!(Parcel::delete(&client, "p5").await.expect("delete"));
    assert_eq!(
        Parcel::by_status_ids(&client, "open").await.expect("ids"),
        ["p0", "p1", "p3", "p4"]
    );
    let sent = Parcel::by_status(&client, "sent").await.expect("members");
    assert_eq!(sent.len(), 1);
    let page = Parcel::by_user_id_after(&client, "u1", &index::CursorPage::newest_first(2))
        .await
        .expect("a cursor page works on one server");
    let ids: Vec<&str> = page.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["p4", "p3"]);
    let pending: Vec<String> = raw_query(&client, &["KEYS", "__pending_index*"]).await;
    assert!(pending.is_empty(), "nothing is deferred: {pending:?}");
    let settled = index::settle::<Parcel>(&client).await.expect("settle");
    assert_eq!(settled, index::SettleReport::default());
    assert_eq!(
        Parcel::delete_by_status(&client, "open")
            .await
            .expect("delete"),
        4
    );
    let report = index::verify::<Parcel>(&client).await.expect("verify");
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    assert_eq!((report.entities, report.pending), (1, 0));
}

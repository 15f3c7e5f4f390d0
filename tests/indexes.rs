//! Secondary indexes, each test against a real, private `redis-server` and
//! against a real Redis Cluster (those about one server, against that
//! alone): queries, maintenance, TTL honesty, drift under concurrency and
//! crashes, repair.
//!
//! The cluster is shared by the cluster tests of this binary, so the
//! suite's types are declared `cluster` and keep a tenant in a hash tag in
//! every key (`job:{pages}:a`, `jobs:{pages}:status:queued`): a tenant's
//! entities, index entries and TTL registry share its slot, and each test
//! writes a tenant of its own, on both topologies. `verify`, `rebuild` and
//! `sweep` walk every tenant of a type, so on the cluster [`assert_no_drift`]
//! looks at the test's tenant only, and the tests that count what those
//! walks find, or repair, have a type to themselves, pinned to one slot.

// Shared with the other suites; this one uses only part of it.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands;
use redis_runtime::index::{self, DriftKind};
use redis_runtime::on_both_topologies;
use redis_runtime::testing::{RedisServer, TestRedis, eventually, raw_query};
use redis_runtime::{Client, Context, Entity, KeyPart, Page, Record, RedisEntity, ScoreRange};

use common::{JobStatus, create_all};

/// `common::Job` kept by tenant: indexed three ways (sorted, then set, then
/// unique), no TTL, every key tagged by the tenant. Ids in its indexes are
/// `<tenant>:<id>`.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "job:{{{tenant}}}:{id}")]
#[redis(sorted_index(
    key = "jobs:{{{tenant}}}:user:{user_id}",
    score = "created_at",
    name = "by_user_id"
))]
#[redis(index(key = "jobs:{{{tenant}}}:status:{status}", name = "by_status"))]
#[redis(unique(key = "jobs:{{{tenant}}}:by_slug", field = "slug", name = "by_slug"))]
struct Job {
    tenant: String,
    id: String,
    user_id: String,
    status: JobStatus,
    slug: String,
    created_at: i64,
    error: Option<String>,
}

/// `common::Lease` kept by tenant: indexed three ways, a short declared
/// TTL, and a TTL registry per tenant.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "lease:{{{tenant}}}:{id}", ttl = "1s")]
#[redis(sorted_index(
    key = "leases:{{{tenant}}}:owner:{owner}",
    score = "taken_at",
    name = "by_owner"
))]
#[redis(index(key = "leases:{{{tenant}}}:kind:{kind}", name = "by_kind"))]
#[redis(unique(
    key = "leases:{{{tenant}}}:by_resource",
    field = "resource",
    name = "by_resource"
))]
struct Lease {
    tenant: String,
    id: String,
    owner: String,
    kind: String,
    resource: String,
    taken_at: i64,
}

/// `Job`'s indexes, pinned to the slot of `{damaged}`, for the test that
/// damages them and counts what `verify` and `rebuild` find: they walk the
/// whole type, which no other test writes.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "damaged_job:{{damaged}}:{id}")]
#[redis(sorted_index(key = "damaged_jobs:{{damaged}}:user:{user_id}", score = "created_at"))]
#[redis(index(key = "damaged_jobs:{{damaged}}:status:{status}"))]
#[redis(unique(key = "damaged_jobs:{{damaged}}:by_slug", field = "slug"))]
struct DamagedJob {
    id: String,
    user_id: String,
    status: JobStatus,
    slug: String,
    created_at: i64,
}

/// `Job`'s indexes, pinned to the slot of `{legacy}`, for the test that
/// counts what `rebuild` indexes of hashes written without them.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "legacy_job:{{legacy}}:{id}")]
#[redis(sorted_index(key = "legacy_jobs:{{legacy}}:user:{user_id}", score = "created_at"))]
#[redis(index(key = "legacy_jobs:{{legacy}}:status:{status}"))]
#[redis(unique(key = "legacy_jobs:{{legacy}}:by_slug", field = "slug"))]
struct LegacyJob {
    id: String,
    user_id: String,
    status: JobStatus,
    slug: String,
    created_at: i64,
}

/// `Lease`'s indexes and TTL, pinned to the slot of `{swept}`, for the test
/// that counts what `sweep` removes of the whole type.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "swept_lease:{{swept}}:{id}", ttl = "1s")]
#[redis(sorted_index(key = "swept_leases:{{swept}}:owner:{owner}", score = "taken_at"))]
#[redis(index(key = "swept_leases:{{swept}}:kind:{kind}"))]
#[redis(unique(key = "swept_leases:{{swept}}:by_resource", field = "resource"))]
struct SweptLease {
    id: String,
    owner: String,
    kind: String,
    resource: String,
    taken_at: i64,
}

/// Three indexes, a TTL and a stream: the heaviest write. Pinned to the
/// slot of `{tickets}`, as a type with a stream must be on a cluster.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(
    cluster,
    key = "ticket:{{tickets}}:{id}",
    ttl = "1h",
    stream = "tickets:{{tickets}}:stream",
    stream_maxlen = 1000
)]
#[redis(sorted_index(key = "tickets:{{tickets}}:user:{user_id}", score = "created_at"))]
#[redis(index(key = "tickets:{{tickets}}:status:{status}"))]
#[redis(unique(key = "tickets:{{tickets}}:by_slug", field = "slug"))]
struct Ticket {
    id: String,
    user_id: String,
    status: JobStatus,
    slug: String,
    created_at: i64,
}

/// A job of tenant `t` with the slug `slug-{id}` and no error.
fn job(t: &str, id: &str, user: &str, status: JobStatus, created_at: i64) -> Job {
    Job {
        tenant: t.into(),
        id: id.into(),
        user_id: user.into(),
        status,
        slug: format!("slug-{id}"),
        created_at,
        error: None,
    }
}

/// A lease of tenant `t`, of kind `k` on the resource `r-{id}`.
fn lease(t: &str, id: &str, owner: &str, taken_at: i64) -> Lease {
    Lease {
        tenant: t.into(),
        id: id.into(),
        owner: owner.into(),
        kind: "k".into(),
        resource: format!("r-{id}"),
        taken_at,
    }
}

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

/// The id of the index member `member` of tenant `t` (`<t>:<id>`).
fn bare(t: &str, member: &str) -> String {
    let prefix = format!("{t}:");
    let id = member.strip_prefix(&prefix);
    id.unwrap_or_else(|| panic!("{member:?} is not a member of tenant {t}"))
        .to_string()
}

/// The ids of the index members `members` of tenant `t`.
fn bare_all(t: &str, members: Vec<String>) -> Vec<String> {
    members.iter().map(|m| bare(t, m)).collect()
}

/// The ids of one page of `user`'s jobs.
async fn user_page(client: &Client, t: &str, user: &str, page: Page) -> Vec<String> {
    let jobs = Job::by_user_id(client, t, user, page).await.expect("page");
    jobs.into_iter().map(|j| j.id).collect()
}

async fn user_count(client: &Client, t: &str, user: &str) -> u64 {
    Job::by_user_id_count(client, t, user).await.expect("count")
}

async fn status_ids(client: &Client, t: &str, status: JobStatus) -> Vec<String> {
    let members = Job::by_status_ids(client, t, &status).await.expect("ids");
    bare_all(t, members)
}

async fn status_count(client: &Client, t: &str, status: JobStatus) -> u64 {
    Job::by_status_count(client, t, &status)
        .await
        .expect("count")
}

/// The id of the job the unique slug index points `slug` at.
async fn slug_holder(client: &Client, t: &str, slug: &str) -> Option<String> {
    let slug = slug.to_string();
    let found = Job::by_slug(client, t, &slug).await.expect("unique");
    found.map(|j| j.id)
}

/// The ids of one page of `owner`'s leases.
async fn owner_page(client: &Client, t: &str, owner: &str, page: Page) -> Vec<String> {
    let leases = Lease::by_owner(client, t, owner, page).await.expect("page");
    leases.into_iter().map(|l| l.id).collect()
}

/// Waits until the lease `id` has expired (its hash is gone).
async fn wait_expired(client: &Client, t: &str, id: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("{id} to expire"),
        async || !Lease::exists(client, t, id).await.expect("exists"),
    )
    .await;
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

/// Asserts that `verify` finds no drift in any index of `E`: none at all
/// on one server; on the cluster, none in the keys tagged `{tag}`, the
/// test's own, since the other tests write theirs meanwhile (some damage
/// them on purpose) and the walk covers every tenant.
async fn assert_no_drift<E: Entity>(redis: &TestRedis, tag: &str) {
    let report = index::verify::<E>(redis.client()).await.expect("verify");
    let tagged = format!("{{{tag}}}");
    let drift: Vec<_> = report
        .drift
        .iter()
        .filter(|d| !redis.is_cluster() || d.index_key.contains(&tagged))
        .collect();
    assert!(drift.is_empty(), "drift: {drift:#?}");
}

/// Every key on one server; on the cluster, which the other tests write
/// too, every key holding the hash tag `{tag}`, asked of each master
/// (`KEYS` through the cluster client does not reach every node).
async fn all_keys(redis: &TestRedis, tag: &str) -> Vec<String> {
    let Some(cluster) = redis.cluster() else {
        return raw_query(redis.client(), &["KEYS", "*"]).await;
    };
    let mut keys = Vec::new();
    for port in cluster.masters() {
        let node = redis::Client::open(cluster.node_url(port)).expect("node URL");
        let mut conn = node.get_connection().expect("connect to a master");
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(format!("*{{{tag}}}*"))
            .query(&mut conn)
            .expect("KEYS");
        keys.extend(found);
    }
    keys
}

async fn sorted_index_pages_newest_and_oldest_first_with_edges(redis: TestRedis) {
    let (client, t) = (redis.client(), "pages");
    let five = ["a", "b", "c", "d", "e"].iter().enumerate();
    create_all(
        client,
        five.map(|(i, id)| job(t, id, "u1", JobStatus::Queued, 100 + i as i64)),
    )
    .await;
    create_all(client, [job(t, "other", "u2", JobStatus::Queued, 1)]).await;

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
        assert_eq!(user_page(client, t, "u1", page).await, expected, "{what}");
    }
    let empty = user_page(client, t, "nobody", Page::newest_first(5)).await;
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
        let found = Job::by_user_id_in_range(client, t, "u1", &range, page).await;
        assert_eq!(ids(&found.expect("range")), expected);
    }
    let after = ScoreRange::after(103.0);
    let found = Job::by_user_id_ids_in_range(client, t, "u1", &after, Page::oldest_first(10)).await;
    assert_eq!(bare_all(t, found.expect("ids")), ["e"]);
    assert_eq!(user_count(client, t, "u1").await, 5);
    assert_eq!(user_count(client, t, "nobody").await, 0);
}

async fn ties_in_score_are_ordered_by_id(redis: TestRedis) {
    let (client, t) = (redis.client(), "ties");
    create_all(
        client,
        ["m", "k", "z"].map(|id| job(t, id, "u1", JobStatus::Queued, 7)),
    )
    .await;
    let asc = user_page(client, t, "u1", Page::oldest_first(10)).await;
    assert_eq!(asc, ["k", "m", "z"]);
    let desc = user_page(client, t, "u1", Page::newest_first(10)).await;
    assert_eq!(desc, ["z", "m", "k"]);
}

async fn set_and_unique_queries(redis: TestRedis) {
    let (client, t) = (redis.client(), "sets");
    let jobs = [
        job(t, "j2", "u1", JobStatus::Running, 2),
        job(t, "j1", "u1", JobStatus::Running, 1),
        job(t, "j3", "u1", JobStatus::Queued, 3),
    ];
    create_all(client, jobs).await;

    let running = Job::by_status(client, t, &JobStatus::Running).await;
    assert_eq!(ids(&running.expect("members")), ["j1", "j2"]);
    assert_eq!(status_ids(client, t, JobStatus::Queued).await, ["j3"]);
    assert_eq!(status_count(client, t, JobStatus::Failed).await, 0);
    let failed = Job::by_status(client, t, &JobStatus::Failed).await;
    assert!(failed.expect("members").is_empty());

    assert_eq!(
        slug_holder(client, t, "slug-j3").await.as_deref(),
        Some("j3")
    );
    assert_eq!(slug_holder(client, t, "nope").await, None);
}

async fn updates_and_patches_move_entries_and_delete_cleans_every_index(redis: TestRedis) {
    let (client, t) = (redis.client(), "moves");
    let mut j = job(t, "j1", "u1", JobStatus::Queued, 10);
    j.create(client).await.expect("create");

    j.status = JobStatus::Running;
    j.user_id = "u2".into();
    j.created_at = 20;
    j.slug = "renamed".into();
    j.update(client).await.expect("update");
    assert!(status_ids(client, t, JobStatus::Queued).await.is_empty());
    assert_eq!(status_ids(client, t, JobStatus::Running).await, ["j1"]);
    assert_eq!(user_count(client, t, "u1").await, 0);
    let since_20 = ScoreRange::at_least(20.0);
    let moved =
        Job::by_user_id_ids_in_range(client, t, "u2", &since_20, Page::oldest_first(5)).await;
    assert_eq!(bare_all(t, moved.expect("ids")), ["j1"]);
    assert_eq!(slug_holder(client, t, "slug-j1").await, None, "old slug");
    assert!(
        slug_holder(client, t, "renamed").await.is_some(),
        "new slug"
    );
    assert_no_drift::<Job>(&redis, t).await;

    let patch = JobPatch {
        status: Some(JobStatus::Failed),
        created_at: Some(5),
        error: Some(Some("boom".into())),
        ..Default::default()
    };
    Job::patch(client, t, "j1", &patch).await.expect("patch");
    assert_eq!(status_ids(client, t, JobStatus::Failed).await, ["j1"]);
    assert!(status_ids(client, t, JobStatus::Running).await.is_empty());
    let up_to_5 = ScoreRange::at_most(5.0);
    let moved =
        Job::by_user_id_ids_in_range(client, t, "u2", &up_to_5, Page::oldest_first(5)).await;
    assert_eq!(bare_all(t, moved.expect("ids")), ["j1"], "score moved");
    assert_no_drift::<Job>(&redis, t).await;

    assert!(Job::delete(client, t, "j1").await.expect("delete"));
    assert_eq!(status_count(client, t, JobStatus::Failed).await, 0);
    assert_eq!(user_count(client, t, "u2").await, 0);
    assert_eq!(slug_holder(client, t, "renamed").await, None);
    let leftovers = all_keys(&redis, t).await;
    assert!(
        leftovers.is_empty(),
        "delete must leave nothing behind: {leftovers:?}"
    );
}

async fn unique_violation_writes_nothing(redis: TestRedis) {
    let (client, t) = (redis.client(), "unique");
    create_all(client, [job(t, "j1", "u1", JobStatus::Queued, 1)]).await;
    let mut clash = job(t, "j2", "u9", JobStatus::Running, 2);
    clash.slug = "slug-j1".into();
    let err = clash.create(client).await.expect_err("unique");
    assert_eq!(err.code(), "UNIQUE_VIOLATION");
    assert!(!Job::exists(client, t, "j2").await.expect("exists"));
    assert_eq!(user_count(client, t, "u9").await, 0);
    assert!(status_ids(client, t, JobStatus::Running).await.is_empty());

    // Same through patch: the existing entity keeps its old value.
    create_all(client, [job(t, "j3", "u1", JobStatus::Queued, 3)]).await;
    let patch = JobPatch {
        slug: Some("slug-j1".into()),
        status: Some(JobStatus::Failed),
        ..Default::default()
    };
    let err = Job::patch(client, t, "j3", &patch)
        .await
        .expect_err("unique");
    assert_eq!(err.code(), "UNIQUE_VIOLATION");
    let j3 = Job::get(client, t, "j3")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (j3.slug.as_str(), j3.status),
        ("slug-j3", JobStatus::Queued)
    );
    assert_no_drift::<Job>(&redis, t).await;
}

async fn expired_entities_vanish_from_every_query_and_their_entries_are_swept(redis: TestRedis) {
    let (client, t) = (redis.client(), "expiry");
    let lease = |id: &str| Lease {
        kind: "db".into(),
        ..lease(t, id, "o1", 5)
    };
    create_all(client, [lease("l1"), lease("l2")]).await;
    // Keep l2 alive for the whole test.
    Lease::persist(client, t, "l2").await.expect("persist");

    let owner_count = async || Lease::by_owner_count(client, t, "o1").await.expect("count");
    assert_eq!(owner_count().await, 2);
    wait_expired(client, t, "l1").await;
    // Every query sees it gone, and the stale members are gone afterwards.
    let page = owner_page(client, t, "o1", Page::newest_first(10)).await;
    assert_eq!(page, ["l2"]);
    assert_eq!(owner_count().await, 1);
    let kind_ids = Lease::by_kind_ids(client, t, "db").await.expect("ids");
    assert_eq!(bare_all(t, kind_ids), ["l2"]);
    let holder = Lease::by_resource(client, t, &"r-l1".to_string()).await;
    assert_eq!(holder.expect("unique"), None);
    let raw: (Vec<String>, Vec<String>, Option<String>) = (
        raw_query(client, &["ZRANGE", "leases:{expiry}:owner:o1", "0", "-1"]).await,
        raw_query(client, &["SMEMBERS", "leases:{expiry}:kind:db"]).await,
        raw_query(client, &["HGET", "leases:{expiry}:by_resource", "r-l1"]).await,
    );
    let l2 = vec![format!("{t}:l2")];
    assert_eq!(raw, (l2.clone(), l2, None));
    assert_no_drift::<Lease>(&redis, t).await;

    // The unique value of an expired holder is free again.
    let mut again = lease("l3");
    again.resource = "r-l1".into();
    again
        .create(client)
        .await
        .expect("value of an expired entity is free");
}

async fn recreating_an_expired_entity_does_not_leave_its_old_entries(redis: TestRedis) {
    let (client, t) = (redis.client(), "recreate");
    let mut l = Lease {
        kind: "db".into(),
        resource: "r1".into(),
        ..lease(t, "l1", "old-owner", 1)
    };
    l.create(client).await.expect("create");
    wait_expired(client, t, "l1").await;
    l.owner = "new-owner".into();
    l.create(client).await.expect("re-create");
    Lease::persist(client, t, "l1").await.expect("persist");
    let stale: Vec<String> = raw_query(
        client,
        &["ZRANGE", "leases:{recreate}:owner:old-owner", "0", "-1"],
    )
    .await;
    assert!(
        stale.is_empty(),
        "old incarnation's entry must be gone: {stale:?}"
    );
    assert_no_drift::<Lease>(&redis, t).await;
}

async fn sweep_cleans_up_without_any_read(redis: TestRedis) {
    let client = redis.client();
    let leases = (0..20).map(|i| SweptLease {
        id: format!("l{i}"),
        owner: "o".into(),
        kind: "k".into(),
        resource: format!("r{i}"),
        taken_at: i,
    });
    create_all(client, leases).await;
    eventually(Duration::from_secs(10), "l19 to expire", async || {
        !SweptLease::exists(client, "l19").await.expect("exists")
    })
    .await;
    // Wait until the registry says everything is due (its clock is the server's).
    let mut swept = 0;
    eventually(Duration::from_secs(5), "all 20 swept", async || {
        swept += index::sweep::<SweptLease>(client, 5).await.expect("sweep");
        swept >= 20
    })
    .await;
    let keys = all_keys(&redis, "swept").await;
    assert!(keys.is_empty(), "everything must be gone: {keys:?}");
}

async fn rebuild_repairs_orphans_missing_entries_and_wrong_scores(redis: TestRedis) {
    let client = redis.client();
    let jobs = [("j1", "u1"), ("j2", "u1"), ("j3", "u2")];
    create_all(
        client,
        jobs.map(|(id, user)| DamagedJob {
            id: id.into(),
            user_id: user.into(),
            status: JobStatus::Queued,
            slug: format!("slug-{id}"),
            created_at: 1,
        }),
    )
    .await;
    // Damage the indexes behind the runtime's back.
    client
        .run(Context::new("test.damage", ""), |mut conn| async move {
            let _: () = conn.zrem("damaged_jobs:{damaged}:user:u1", "j1").await?; // missing
            let _: () = conn
                .zadd("damaged_jobs:{damaged}:user:u2", "j3", 999)
                .await?; // wrong score
            let _: () = conn
                .sadd("damaged_jobs:{damaged}:status:running", "j2")
                .await?; // orphan
            let _: () = conn
                .sadd("damaged_jobs:{damaged}:status:queued", "ghost")
                .await?; // orphan: no entity
            let _: () = conn
                .hset("damaged_jobs:{damaged}:by_slug", "slug-ghost", "ghost")
                .await?; // orphan
            Ok(())
        })
        .await
        .expect("damage");
    let report = index::verify::<DamagedJob>(client).await.expect("verify");
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
        ("damaged_jobs:{damaged}:user:u1", "j1", DriftKind::Missing),
        ("damaged_jobs:{damaged}:user:u2", "j3", wrong_score),
        (
            "damaged_jobs:{damaged}:status:running",
            "j2",
            DriftKind::Orphan,
        ),
        (
            "damaged_jobs:{damaged}:status:queued",
            "ghost",
            DriftKind::Orphan,
        ),
        ("damaged_jobs:{damaged}:by_slug", "ghost", DriftKind::Orphan),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} in {kinds:?}");
    }
    assert_eq!(report.drift.len(), 5);

    let repaired = index::rebuild::<DamagedJob>(client).await.expect("rebuild");
    assert!(repaired.remaining.is_empty(), "{:#?}", repaired.remaining);
    assert_eq!(repaired.removed, 3);
    assert_eq!(repaired.reindexed, 2);
    assert_no_drift::<DamagedJob>(&redis, "damaged").await;
}

async fn rebuild_indexes_existing_data_written_without_indexes(redis: TestRedis) {
    let client = redis.client();
    // Hashes as an older version (no indexes) wrote them.
    client
        .run(Context::new("test.seed", ""), |mut conn| async move {
            for i in 0..1200 {
                let _: () = conn
                    .hset_multiple(
                        format!("legacy_job:{{legacy}}:old{i}"),
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
    let report = index::rebuild::<LegacyJob>(client).await.expect("rebuild");
    assert_eq!(report.reindexed, 1200);
    assert!(report.remaining.is_empty());
    let queued = LegacyJob::by_status_count(client, &JobStatus::Queued).await;
    assert_eq!(queued.expect("count"), 1200);
    let of_u1 = LegacyJob::by_user_id_count(client, "u1").await;
    assert_eq!(of_u1.expect("count"), 400);
}

/// The concurrency invariant: many writers on separate connections racing
/// over few ids whose indexed fields change; the indexes end up exact.
async fn concurrent_writers_leave_zero_drift(redis: TestRedis) {
    let t = "racers";
    let statuses = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
    ];
    let mut tasks = Vec::new();
    for worker in 0..8u64 {
        // A separate client (and so connection) per task.
        let client = redis.client_with(|config| config).await;
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
                let mut j = job(t, &id, &user, status, (next() % 1000) as i64);
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
                        Job::patch(&client, t, &id, &patch).await
                    }
                    // The counter moves the entry in the sorted index.
                    3 => Job::incr_created_at(&client, t, &id, (next() % 7) as i64 - 3)
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
                        Job::patch_if(&client, t, &id, &expected, &change)
                            .await
                            .map(drop)
                    }
                    // A filtered read racing the writers never fails.
                    // By hand: the derive generates `by_user_id_where`
                    // for set indexes keyed by one field, and the
                    // tenant is a second.
                    5 => {
                        let indexes = &Job::descriptor().indexes;
                        let sorted_key = format!("jobs:{{{t}}}:user:{user}");
                        let status_key = format!("jobs:{{{t}}}:status:{}", status.key_part());
                        let sets = vec![(&indexes[1], Ok(status_key))];
                        let all = ScoreRange::all();
                        let page = Page::newest_first(5);
                        index::filtered_page::<Job>(
                            &client,
                            &indexes[0],
                            Ok(sorted_key),
                            sets,
                            &all,
                            page,
                        )
                        .await
                        .map(drop)
                    }
                    _ => Job::delete(&client, t, &id).await.map(drop),
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
    let client = redis.client();
    assert_no_drift::<Job>(&redis, t).await;
    // Unique index: each value held by at most one live entity, which has it.
    let slugs: BTreeMap<String, String> =
        raw_query(client, &["HGETALL", "jobs:{racers}:by_slug"]).await;
    for (slug, member) in slugs {
        let j = Job::get(client, t, &bare(t, &member))
            .await
            .expect("get")
            .expect("holder lives");
        assert_eq!(j.slug, slug);
    }
}

/// The crash invariant: a client dropped while its write is in flight
/// leaves all of it or none of it.
async fn aborted_writes_leave_all_or_nothing(redis: TestRedis) {
    let t = "aborts";
    for round in 0..200u64 {
        let writer = redis.client_with(|config| config).await;
        let id = format!("c{}", round % 20);
        let j = job(
            t,
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
    assert_no_drift::<Job>(&redis, t).await;
}

async fn every_operation_on_an_entity_with_three_indexes_a_ttl_and_a_stream_is_one_round_trip_listings_two(
    redis: TestRedis,
) {
    let client = redis.client();
    let ticket = |id: &str, status| Ticket {
        id: id.into(),
        user_id: "u1".into(),
        status,
        slug: format!("slug-{id}"),
        created_at: 1,
    };
    // Warm the script cache: the very first EVALSHA of a script loads it.
    create_all(client, [ticket("warm", JobStatus::Queued)]).await;
    Ticket::delete(client, "warm").await.expect("delete");
    let _ = Ticket::by_user_id_count(client, "u")
        .await
        .expect("count loads the query script");
    Ticket::expire(client, "warm", Duration::from_secs(1))
        .await
        .expect("expire");

    let mut t = ticket("t1", JobStatus::Queued);
    let outcome = one_round_trip(client, "create", t.create(client)).await;
    assert!(outcome.stream_id.is_some(), "create enqueues on the stream");

    t.status = JobStatus::Running;
    one_round_trip(client, "update", t.update(client)).await;
    one_round_trip(client, "save", t.save(client)).await;
    let patch = TicketPatch {
        status: Some(JobStatus::Failed),
        ..Default::default()
    };
    one_round_trip(client, "patch", Ticket::patch(client, "t1", &patch)).await;

    let page = Ticket::by_user_id(client, "u1", Page::newest_first(20));
    // Ids by ZRANGE, hashes by one pipeline.
    let page = round_trips(client, "page of entities", 2, page).await;
    assert_eq!(page.len(), 1, "page of entities");
    let members = Ticket::by_status(client, &JobStatus::Failed);
    let members = round_trips(client, "members of a set index", 2, members).await;
    assert_eq!(members.len(), 1, "members of a set index");
    let slug = "slug-t1".to_string();
    let found = Ticket::by_slug(client, &slug);
    assert!(
        one_round_trip(client, "unique lookup", found)
            .await
            .is_some()
    );
    one_round_trip(client, "get", Ticket::get(client, "t1")).await;
    let get_many = Ticket::get_many(client, ["t1", "x", "y"]);
    one_round_trip(client, "get_many", get_many).await;
    let exists = Ticket::exists(client, "t1");
    assert!(one_round_trip(client, "exists", exists).await);
    one_round_trip(client, "ttl", Ticket::ttl(client, "t1")).await;
    one_round_trip(client, "persist", Ticket::persist(client, "t1")).await;
    let expire = Ticket::expire(client, "t1", Duration::from_secs(60));
    one_round_trip(client, "expire", expire).await;
    let delete = Ticket::delete(client, "t1");
    assert!(one_round_trip(client, "delete", delete).await);
    assert_no_drift::<Ticket>(&redis, "tickets").await;
}

/// A page whose ids include an entity deleted behind the runtime's back
/// (the listing's hashes are read after its ids) is read again atomically:
/// the dead id is dropped from the index and the page is still full.
async fn a_page_that_meets_a_dead_id_drops_it_and_stays_full(redis: TestRedis) {
    let (client, t) = (redis.client(), "dead");
    let six = ["a", "b", "c", "d", "e", "f"].iter().enumerate();
    create_all(
        client,
        six.map(|(i, id)| job(t, id, "u1", JobStatus::Queued, 100 + i as i64)),
    )
    .await;
    let _: () = raw_query(client, &["DEL", "job:{dead}:e"]).await;
    user_count(client, t, "nobody").await; // loads the query script

    let page = Job::by_user_id(client, t, "u1", Page::newest_first(3));
    let page = round_trips(client, "ids, hashes, then the atomic re-read", 3, page).await;
    assert_eq!(ids(&page), ["f", "d", "c"], "full page without the dead id");
    let left: Vec<String> = raw_query(client, &["ZRANGE", "jobs:{dead}:user:u1", "0", "-1"]).await;
    assert_eq!(
        bare_all(t, left),
        ["a", "b", "c", "d", "f"],
        "the dead id left the index"
    );

    let page = Job::by_user_id(client, t, "u1", Page::newest_first(3));
    let page = round_trips(client, "clean again: two round trips", 2, page).await;
    assert_eq!(ids(&page), ["f", "d", "c"]);

    // A set index member whose hash is gone, the same way.
    let _: () = raw_query(client, &["DEL", "job:{dead}:a"]).await;
    let queued = Job::by_status(client, t, &JobStatus::Queued);
    let queued = round_trips(client, "members with a dead id", 3, queued).await;
    assert_eq!(ids(&queued), ["b", "c", "d", "f"]);
    let left: Vec<String> = raw_query(client, &["SMEMBERS", "jobs:{dead}:status:queued"]).await;
    let mut left = bare_all(t, left);
    left.sort();
    assert_eq!(left, ["b", "c", "d", "f"], "both dead ids left the set");
}

/// A hash whose key fields no longer render the index key it was listed
/// under (here changed behind the runtime's back) is not trusted from the
/// pipeline: the listing is re-read by the atomic script.
async fn a_page_that_meets_a_moved_entity_rereads_atomically(redis: TestRedis) {
    let (client, t) = (redis.client(), "moved");
    create_all(
        client,
        [
            job(t, "a", "u1", JobStatus::Queued, 1),
            job(t, "b", "u1", JobStatus::Queued, 2),
        ],
    )
    .await;
    let _: () = raw_query(client, &["HSET", "job:{moved}:b", "created_at", "50"]).await;
    user_count(client, t, "nobody").await; // loads the query script
    let range = ScoreRange::at_most(10.0);
    let page = Job::by_user_id_in_range(client, t, "u1", &range, Page::newest_first(5));
    round_trips(client, "a score out of the range", 3, page).await;
    let _: () = raw_query(client, &["HSET", "job:{moved}:b", "user_id", "u9"]).await;
    let page = Job::by_user_id(client, t, "u1", Page::newest_first(5));
    round_trips(client, "a key field that moved", 3, page).await;
}

on_both_topologies!(
    sorted_index_pages_newest_and_oldest_first_with_edges,
    ties_in_score_are_ordered_by_id,
    set_and_unique_queries,
    updates_and_patches_move_entries_and_delete_cleans_every_index,
    unique_violation_writes_nothing,
    expired_entities_vanish_from_every_query_and_their_entries_are_swept,
    recreating_an_expired_entity_does_not_leave_its_old_entries,
    sweep_cleans_up_without_any_read,
    rebuild_repairs_orphans_missing_entries_and_wrong_scores,
    rebuild_indexes_existing_data_written_without_indexes,
    concurrent_writers_leave_zero_drift multi_thread,
    aborted_writes_leave_all_or_nothing multi_thread,
    every_operation_on_an_entity_with_three_indexes_a_ttl_and_a_stream_is_one_round_trip_listings_two,
    a_page_that_meets_a_dead_id_drops_it_and_stays_full,
    a_page_that_meets_a_moved_entity_rereads_atomically,
);

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

// One server only: it is about that; tests/cluster.rs runs `Run` on a cluster.
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

// One server only: on a cluster `cross_slot` defers the moves and refuses
// cursor pages and batch deletes; tests/cluster.rs covers that.
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

//! Findings of an adversarial review against the guarantees listed in
//! ARCHITECTURE.md (1: atomic writes, all or nothing; 2: no index drift,
//! the indexes match the stored entities; 3: honest TTL, no query returns or
//! counts an expired entity), each against a real, private `redis-server`.
//!
//! Every test is labelled in its doc comment:
//! - **Regression**: a scenario that violated an invariant before it was
//!   fixed; the doc comment says what used to happen and why.
//! - **PIN**: a subtle behaviour checked to be correct that the other
//!   suites did not cover.

// Shared with the other suites; this one uses only part of it.
#[allow(dead_code)]
mod common;

use std::time::Duration;

use redis_runtime::index::{self, DriftKind};
use redis_runtime::testing::{RedisServer, now_ms, raw_command, raw_query};
use redis_runtime::{Client, Page, RedisEntity};

use common::{
    Job, JobPatch, JobStatus, Lease, assert_no_drift, create_all, job, lease, owner_page,
    wait_expired,
};

/// Indexed, expiring at an absolute time (`expires_at`).
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "grant:{id}")]
#[redis(sorted_index(key = "grants:user:{user_id}", score = "issued_at"))]
#[redis(index(key = "grants:scope:{scope}"))]
struct Grant {
    id: String,
    user_id: String,
    scope: String,
    issued_at: i64,
    #[redis(expires_at)]
    expires_at: i64,
}

fn grant(expires_at: i64) -> Grant {
    Grant {
        id: "g1".into(),
        user_id: "u1".into(),
        scope: "admin".into(),
        issued_at: 1,
        expires_at,
    }
}

async fn zrange(client: &Client, key: &str) -> Vec<String> {
    raw_query(client, &["ZRANGE", key, "0", "-1"]).await
}

async fn smembers(client: &Client, key: &str) -> Vec<String> {
    raw_query(client, &["SMEMBERS", key]).await
}

/// Waits until the lease `id` has expired, and a little longer: the
/// registry's score is the server's expiry time.
async fn wait_gone(client: &Client, id: &str) {
    wait_expired(client, id).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Creates leases concurrently, in chunks.
async fn create_leases(client: &Client, leases: Vec<Lease>) {
    for chunk in leases.chunks(100) {
        let writes = chunk.iter().map(|l| l.create(client));
        for result in futures_util::future::join_all(writes).await {
            result.expect("create");
        }
    }
}

/// **Regression** (was a bug, fixed) (invariants 2 and 3). Revoking an `expires_at` entity by
/// patching its expiry to a time that has already passed (e.g. "now" by the
/// client's clock) makes Redis delete the hash inside the write script
/// (PEXPIREAT in the past deletes at once), but the script still writes the
/// index entries, and, the PTTL now being -2, it *removes* the entity from
/// the TTL registry. Nothing will ever clean those entries up: `count` and
/// the `*_ids` queries report the dead entity forever, and `verify` reports
/// orphans.
#[tokio::test]
async fn regression_patching_expires_at_into_the_past_leaves_unregistered_index_entries() {
    let (_server, client) = RedisServer::start_with_client().await;
    grant(now_ms() + 3_600_000)
        .create(&client)
        .await
        .expect("create");
    // Revoke: expire it now.
    let revoke = GrantPatch {
        expires_at: Some(now_ms() - 1_000),
        ..Default::default()
    };
    Grant::patch(&client, "g1", &revoke).await.expect("patch");
    assert_eq!(Grant::get(&client, "g1").await.expect("get"), None);

    let count = Grant::by_user_id_count(&client, "u1").await.expect("count");
    assert_eq!(count, 0, "a revoked (expired) grant is still counted");
    assert_eq!(
        Grant::by_scope_ids(&client, "admin").await.expect("ids"),
        Vec::<String>::new(),
        "a revoked (expired) grant is still listed"
    );
    assert_no_drift::<Grant>(&client).await;
}

/// **Regression** (was a bug, fixed) (invariants 2 and 3). The same root cause on creation: an
/// entity created with an `expires_at` that has already passed is deleted
/// by Redis at once, yet its index entries are written and never put in
/// the TTL registry, so they stay forever.
#[tokio::test]
async fn regression_creating_with_a_past_expires_at_leaves_index_entries_forever() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(&client, [grant(now_ms() - 1_000)]).await;
    assert_eq!(Grant::get(&client, "g1").await.expect("get"), None);
    index::sweep::<Grant>(&client, 1000).await.expect("sweep");
    assert_eq!(
        (
            zrange(&client, "grants:user:u1").await,
            smembers(&client, "grants:scope:admin").await
        ),
        (Vec::new(), Vec::new()),
        "index entries of an entity that never lived"
    );
}

/// A thousand leases of the owner `other`, created concurrently, so that
/// the expiry registry holds more than one sweep's budget.
fn bulk_leases() -> Vec<Lease> {
    (0..1000)
        .map(|i| lease(&format!("bulk{i}"), "other", i))
        .collect()
}

/// **Regression** (was a bug, fixed) (invariant 3, "no query returns or counts an expired entity").
/// Each query sweeps at most 1,000 due registry entries, across the whole
/// entity type. When more than 1,000 entities have expired, a query on an
/// unrelated index key runs out of budget before reaching this key's
/// expired entries, and `count` / `*_ids`, which never check that an id's
/// hash still lives, report the expired entity.
#[tokio::test]
async fn regression_count_and_ids_include_expired_entities_past_the_sweep_budget() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_leases(&client, bulk_leases()).await;
    // Created last, so it is last in the registry's expiry order.
    create_all(&client, [lease("mine", "o1", 1)]).await;
    wait_gone(&client, "mine").await;

    let count = Lease::by_owner_count(&client, "o1").await.expect("count");
    assert_eq!(count, 0, "expired lease counted");
}

/// **Regression** (was a bug, fixed) (invariant 3, and "can a page skip live entries"). Past the
/// sweep budget, a page query meets expired ids itself and drops them, but
/// gives up after 8 refills: with more dead ids ahead of a live one than
/// 8 x limit, the page comes back empty although a live entity is in range,
/// which callers read as "no more results".
#[tokio::test]
async fn regression_page_is_empty_although_a_live_entity_is_indexed() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_leases(&client, bulk_leases()).await;
    // 50 expiring leases of o1 with high scores (first in newest_first)...
    let dead: Vec<Lease> = (0..50)
        .map(|i| lease(&format!("dead{i}"), "o1", 1000 + i))
        .collect();
    create_leases(&client, dead).await;
    // ...and one live lease of o1 below them.
    create_all(&client, [lease("live", "o1", 1)]).await;
    assert!(Lease::persist(&client, "live").await.expect("persist"));
    wait_gone(&client, "dead49").await;

    let page = owner_page(&client, "o1", Page::newest_first(5)).await;
    assert_eq!(
        page,
        ["live"],
        "the only live lease of o1 is missing from its first page"
    );
}

/// **Regression** (was a bug, fixed) (documented behaviour of `rebuild`: "entries of unique indexes
/// held by two entities stay reported here" in `remaining`). The
/// documented use of `rebuild` is indexing existing data. If two of those
/// entities share a unique value, both are `Missing`, so both are
/// reindexed; the second reindex hits the write script's unique check and
/// its `UNIQUE_VIOLATION` aborts the whole rebuild, so every entity after it
/// (in id order) is never indexed.
#[tokio::test]
async fn regression_rebuild_aborts_on_a_unique_value_held_by_two_entities() {
    let (_server, client) = RedisServer::start_with_client().await;
    // Hashes written without indexes (e.g. before the indexes were added);
    // j1 and j2 share a slug.
    for (id, slug) in [("j1", "dup"), ("j2", "dup"), ("j3", "slug-j3")] {
        let key = format!("job:{id}");
        let fields = ["id", id, "user_id", "u9", "status", "queued", "slug", slug];
        let hset = [&["HSET", key.as_str()][..], &fields, &["created_at", "3"]].concat();
        raw_command(&client, &hset).await;
    }

    let report = index::rebuild::<Job>(&client)
        .await
        .expect("rebuild must report the conflict in `remaining`, not fail");
    assert!(
        report.remaining.iter().any(|d| d.index == "by_slug"),
        "{:#?}",
        report.remaining
    );
    let count = Job::by_user_id_count(&client, "u9").await.expect("count");
    assert_eq!(count, 3, "every entity must be in the sorted index");
}

/// **Regression** (was a bug, fixed) (`verify` misses drift, so invariant 2 cannot be checked).
/// `read_index` turns a unique index (value -> member) into a map keyed by
/// member, so when one member holds two values (its current one and a stale
/// one) one of them is silently dropped, and the stale entry is never
/// reported. The stale entry is real: the unique lookup by the old value
/// returns the entity, whose value is now different.
#[tokio::test]
async fn regression_verify_misses_a_stale_unique_entry_of_a_live_member() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(&client, [job("j1", "u1", JobStatus::Queued, 1)]).await;
    // A stale entry: an old value still pointing at j1 ("a..." sorts before
    // "slug-j1", so the map keeps the current one).
    raw_command(&client, &["HSET", "jobs:by_slug", "a-stale-slug", "j1"]).await;

    let found = Job::by_slug(&client, &"a-stale-slug".to_string())
        .await
        .expect("unique");
    assert_eq!(
        found.map(|j| j.slug),
        Some("slug-j1".to_string()),
        "the stale entry is live drift: the lookup by the old value answers"
    );
    let report = index::verify::<Job>(&client).await.expect("verify");
    assert!(
        report
            .drift
            .iter()
            .any(|d| d.index == "by_slug" && d.member == "j1" && d.problem == DriftKind::Orphan),
        "verify must report the stale unique entry: {:#?}",
        report.drift
    );
}

/// **Regression** (was a bug, fixed) (invariant 1, with malformed stored data). The script checks a
/// score with Lua's `tonumber`, which accepts surrounding whitespace
/// (`" 5"`), but `ZADD` does not. A patch of an entity whose stored score
/// is `" 5"` passes every check, writes the hash, then fails at `ZADD`:
/// the hash is changed but the set index is not moved (drift), and the
/// caller gets an error for a write that half happened.
#[tokio::test]
async fn regression_patch_over_a_score_zadd_rejects_is_half_applied() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(&client, [job("j1", "u1", JobStatus::Queued, 5)]).await;
    raw_command(&client, &["HSET", "job:j1", "created_at", " 5"]).await;

    let start = JobPatch {
        status: Some(JobStatus::Running),
        ..Default::default()
    };
    let result = Job::patch(&client, "j1", &start).await;
    let status: Option<String> = raw_query(&client, &["HGET", "job:j1", "status"]).await;
    match result {
        // Refused: nothing may have been written.
        Err(_) => assert_eq!(
            status.as_deref(),
            Some("queued"),
            "a failed patch changed the hash (partial write)"
        ),
        // Accepted: the indexes must follow.
        Ok(()) => assert_eq!(
            smembers(&client, "jobs:status:running").await,
            ["j1"],
            "patch applied without moving the index entry"
        ),
    }
}

/// **PIN** (invariant 3). When a TTL entity's indexed field changes by
/// `update` (TTL kept), the registry's snapshot follows, so the sweep after
/// expiry removes the *new* entries, and the old key is left empty.
#[tokio::test]
async fn pin_registry_snapshot_follows_an_update_of_an_indexed_field() {
    let (_server, client) = RedisServer::start_with_client().await;
    let mut l = lease("l1", "o1", 1);
    l.create(&client).await.expect("create");
    l.owner = "o2".into();
    l.resource = "r-new".into();
    l.update(&client).await.expect("update");
    assert!(zrange(&client, "leases:owner:o1").await.is_empty());
    assert_eq!(zrange(&client, "leases:owner:o2").await, ["l1"]);
    wait_gone(&client, "l1").await;
    index::sweep::<Lease>(&client, 1000).await.expect("sweep");
    assert!(zrange(&client, "leases:owner:o2").await.is_empty());
    let left: i64 = raw_query(&client, &["HLEN", "leases:by_resource"]).await;
    assert_eq!(left, 0, "unique entries of the expired lease must be gone");
}

/// **PIN** (invariant 2). Re-creating an expired entity whose old unique
/// value was meanwhile taken by another live entity must not remove the new
/// holder's entry while cleaning up the old incarnation.
#[tokio::test]
async fn pin_recreating_an_expired_entity_keeps_another_holders_unique_entry() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(&client, [lease("l1", "o1", 1)]).await;
    wait_gone(&client, "l1").await;
    // Another lease takes l1's old resource, before any sweep ran.
    let mut other = lease("l2", "o1", 2);
    other.resource = "r-l1".into();
    other
        .create(&client)
        .await
        .expect("value of an expired holder is free");
    Lease::persist(&client, "l2").await.expect("persist");
    // l1 comes back with a new resource.
    let mut again = lease("l1", "o1", 3);
    again.resource = "r-again".into();
    again.create(&client).await.expect("re-create");
    Lease::persist(&client, "l1").await.expect("persist");

    let holder = Lease::by_resource(&client, &"r-l1".to_string())
        .await
        .expect("unique")
        .map(|l| l.id);
    assert_eq!(holder.as_deref(), Some("l2"));
    assert_no_drift::<Lease>(&client).await;
}

/// **PIN** (invariant 3 / pages). Ids whose hash vanished behind the
/// runtime's back (no registry entry) are dropped as a page meets them, and
/// the page is refilled from further down without skipping or repeating.
#[tokio::test]
async fn pin_page_refills_past_dead_ids_without_skipping_or_repeating() {
    let (_server, client) = RedisServer::start_with_client().await;
    let jobs = (0..10).map(|i| job(&format!("j{i}"), "u1", JobStatus::Queued, i));
    create_all(&client, jobs).await;
    // Kill j8, j7 and j5 behind the runtime's back.
    raw_command(&client, &["DEL", "job:j8", "job:j7", "job:j5"]).await;
    let first = Job::by_user_id(&client, "u1", Page::newest_first(4))
        .await
        .expect("page");
    let second = Job::by_user_id(&client, "u1", Page::newest_first(4).skip(4))
        .await
        .expect("page");
    let ids = |jobs: &[Job]| jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), ["j9", "j6", "j4", "j3"]);
    assert_eq!(ids(&second), ["j2", "j1", "j0"]);
}

/// **Regression**: foreign data of another Redis type at an index key or at
/// the stream used to make `SADD`/`XADD` fail after the hash was written,
/// a half-applied write (invariant 1). The script now checks key types
/// before writing anything.
#[tokio::test]
async fn regression_foreign_key_types_refuse_the_write_without_writing() {
    #[derive(RedisEntity, Debug, Clone)]
    #[redis(key = "order:{id}", stream = "orders:stream")]
    #[redis(index(key = "orders:state:{state}"))]
    struct Order {
        id: String,
        state: String,
    }
    let (_server, client) = RedisServer::start_with_client().await;
    let order = Order {
        id: "o1".into(),
        state: "new".into(),
    };
    // An index key, then the stream key, holding a string.
    for foreign in ["orders:state:new", "orders:stream"] {
        raw_command(&client, &["SET", foreign, "not a set or stream"]).await;
        let err = order
            .create(&client)
            .await
            .expect_err("a key of another type");
        assert!(err.to_string().contains("WRONGTYPE"), "{foreign}: {err}");
        assert!(
            !Order::exists(&client, "o1").await.expect("exists"),
            "nothing written"
        );
        raw_command(&client, &["DEL", foreign]).await;
    }
    let index_entry: i64 = raw_query(&client, &["EXISTS", "orders:state:new"]).await;
    assert_eq!(index_entry, 0, "no index entry either");
}

/// Foreign data at the *first* index's key is refused by the index write
/// itself, which comes before every other write; at a later index's key by
/// a type check before anything is written; at the key an entry moves
/// *away* from it is left alone (there is no entry of ours to remove).
/// Either way the hash and the other indexes are as they were.
#[tokio::test]
async fn foreign_types_at_each_index_key_leave_an_update_all_or_nothing() {
    #[derive(RedisEntity, Debug, Clone, PartialEq)]
    #[redis(key = "parcel:{id}")]
    #[redis(sorted_index(key = "parcels:owner:{owner}", score = "weight"))]
    #[redis(index(key = "parcels:state:{state}"))]
    struct Parcel {
        id: String,
        owner: String,
        state: String,
        weight: i64,
    }
    let (_server, client) = RedisServer::start_with_client().await;
    let stored = Parcel {
        id: "p1".into(),
        owner: "ann".into(),
        state: "new".into(),
        weight: 3,
    };
    stored.create(&client).await.expect("create");
    let mut moved = stored.clone();
    moved.owner = "bob".into();
    moved.state = "sent".into();
    for foreign in ["parcels:owner:bob", "parcels:state:sent"] {
        raw_command(&client, &["SET", foreign, "foreign"]).await;
        let err = moved
            .update(&client)
            .await
            .expect_err("a key of another type");
        assert!(err.to_string().contains("WRONGTYPE"), "{foreign}: {err}");
        let now = Parcel::get(&client, "p1").await.expect("get");
        assert_eq!(now.as_ref(), Some(&stored), "{foreign}: hash untouched");
        let owners: Vec<String> =
            raw_query(&client, &["ZRANGE", "parcels:owner:ann", "0", "-1"]).await;
        assert_eq!(owners, ["p1"], "{foreign}: first index untouched");
        let states: Vec<String> = raw_query(&client, &["SMEMBERS", "parcels:state:new"]).await;
        assert_eq!(states, ["p1"], "{foreign}: second index untouched");
        raw_command(&client, &["DEL", foreign]).await;
    }
    // Foreign data where the entry moves away from: the update goes ahead.
    raw_command(&client, &["DEL", "parcels:owner:ann"]).await;
    raw_command(&client, &["SET", "parcels:owner:ann", "foreign"]).await;
    moved
        .update(&client)
        .await
        .expect("the old key is only removed from");
    let left: String = raw_query(&client, &["GET", "parcels:owner:ann"]).await;
    assert_eq!(left, "foreign", "foreign data left alone");
    let owners: Vec<String> = raw_query(&client, &["ZRANGE", "parcels:owner:bob", "0", "-1"]).await;
    assert_eq!(owners, ["p1"]);
}

/// **Regression**: `index::sweep(client, u64::MAX)` failed with "value is
/// not an integer or out of range"; a NaN score bound silently became
/// "every positive score"; `expire(Duration::ZERO)` was a configuration
/// error. Now any budget works, NaN is refused with `ENCODE`, and a zero
/// TTL expires the entity now (a delete, index entries included).
#[tokio::test]
async fn regression_extreme_arguments_have_defined_meanings() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(
        &client,
        [
            job("a", "u1", JobStatus::Queued, 1),
            job("b", "u1", JobStatus::Queued, 2),
        ],
    )
    .await;
    let swept = index::sweep::<Job>(&client, u64::MAX)
        .await
        .expect("any budget the type accepts");
    assert_eq!(swept, 0, "nothing is due");

    let nan = redis_runtime::ScoreRange::at_least(f64::NAN);
    let page = Job::by_user_id_in_range(&client, "u1", &nan, Page::newest_first(5)).await;
    assert_eq!(page.expect_err("NaN bound").code(), "ENCODE");
    let ids = Job::by_user_id_ids_in_range(&client, "u1", &nan, Page::newest_first(5)).await;
    assert_eq!(ids.expect_err("NaN bound").code(), "ENCODE");

    let existed = Job::expire(&client, "a", Duration::ZERO)
        .await
        .expect("zero expires now");
    assert!(existed);
    assert_eq!(Job::get(&client, "a").await.expect("get"), None);
    let left = Job::by_user_id_ids_in_range(
        &client,
        "u1",
        &redis_runtime::ScoreRange::all(),
        Page::newest_first(5),
    )
    .await
    .expect("ids");
    assert_eq!(left, ["b"], "its index entries went with it");
    assert!(
        !Job::expire(&client, "a", Duration::ZERO)
            .await
            .expect("again")
    );

    // Below a millisecond rounds up to one: it expires, it is not refused.
    assert!(
        Job::expire(&client, "b", Duration::from_micros(10))
            .await
            .expect("sub-millisecond")
    );
    redis_runtime::testing::eventually(Duration::from_secs(5), "b to expire", async || {
        Job::get(&client, "b").await.expect("get").is_none()
    })
    .await;
    assert_no_drift::<Job>(&client).await;
}

/// **Regression**: index key fields named like the generated methods'
/// own parameters (`page`, `range`, `client`, `filter`) made the derive
/// emit duplicate parameter names. Those parameters now take a trailing
/// `_` for such an index, and every query still works.
#[tokio::test]
async fn key_fields_named_like_query_parameters() {
    #[derive(RedisEntity, Debug, Clone, PartialEq)]
    #[redis(key = "visit:{id}")]
    #[redis(sorted_index(key = "visits:page:{page}:{range}", score = "at"))]
    #[redis(index(key = "visits:client:{client}"))]
    #[redis(index(key = "visits:filter:{filter}"))]
    struct Visit {
        id: String,
        page: String,
        range: String,
        client: String,
        filter: String,
        at: i64,
    }
    let (_server, client) = RedisServer::start_with_client().await;
    let visit = Visit {
        id: "v1".into(),
        page: "home".into(),
        range: "eu".into(),
        client: "web".into(),
        filter: "none".into(),
        at: 5,
    };
    visit.create(&client).await.expect("create");
    let all = redis_runtime::ScoreRange::all();
    let page = Visit::by_page_and_range(&client, "home", "eu", Page::newest_first(5));
    assert_eq!(page.await.expect("page").len(), 1);
    let ranged =
        Visit::by_page_and_range_in_range(&client, "home", "eu", &all, Page::newest_first(5));
    assert_eq!(ranged.await.expect("range").len(), 1);
    let web = VisitFilter {
        client: Some("web".into()),
        ..Default::default()
    };
    let filtered =
        Visit::by_page_and_range_where(&client, "home", "eu", &web, &all, Page::newest_first(5));
    assert_eq!(filtered.await.expect("filtered").len(), 1);
    let first = redis_runtime::index::CursorPage::by_id(5);
    let walk = Visit::by_client_after(&client, "web", &first).await;
    assert_eq!(walk.expect("cursor page").len(), 1);
    assert_eq!(
        Visit::by_filter_count(&client, "none")
            .await
            .expect("count"),
        1
    );
}

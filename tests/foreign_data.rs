//! Foreign data at keys the runtime considers its own: keys that match an
//! entity's key pattern but hold another Redis type or an undecodable
//! hash, and index keys of the wrong Redis type. `verify`, `rebuild` and
//! `sweep` must pass over them, report them by key, leave them untouched
//! and still do their work on everything else.

// Shared with the other suites; this one uses only part of it.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;

use redis_runtime::index::{self, DriftKind, SkipReason, Skipped};
use redis_runtime::testing::{RedisServer, raw_command, raw_query};
use redis_runtime::{Client, Page, Record};

use common::{
    Job, JobStatus, Lease, assert_no_drift, create_all, job, lease, owner_page, wait_expired,
};

/// The fields of the hash planted at `job:bad`: every field but `slug`.
const BAD_HASH: [(&str, &str); 4] = [
    ("id", "bad"),
    ("user_id", "u1"),
    ("status", "queued"),
    ("created_at", "5"),
];

/// Four jobs with real drift, plus foreign data at job and index keys.
///
/// Real drift: `j1` missing from `jobs:user:u1`, `j2` an orphan in
/// `jobs:status:failed`, `42` (a list, not a job) an orphan in
/// `jobs:status:queued`, `j4` missing from `jobs:user:u3`.
/// Foreign data: a counter at `job:next_id`, a list at `job:42`, a hash
/// without `slug` at `job:bad`, a string at `jobs:status:completed`
/// (the index key `j4` belongs in).
async fn plant(client: &Client) {
    create_all(
        client,
        [
            job("j1", "u1", JobStatus::Queued, 1),
            job("j2", "u1", JobStatus::Queued, 2),
            job("j3", "u2", JobStatus::Running, 3),
            job("j4", "u3", JobStatus::Completed, 4),
        ],
    )
    .await;
    raw_command(client, &["ZREM", "jobs:user:u1", "j1"]).await;
    raw_command(client, &["SADD", "jobs:status:failed", "j2"]).await;
    raw_command(client, &["SADD", "jobs:status:queued", "42"]).await;
    raw_command(client, &["ZREM", "jobs:user:u3", "j4"]).await;

    raw_command(client, &["SET", "job:next_id", "42"]).await;
    raw_command(client, &["RPUSH", "job:42", "a", "b"]).await;
    let mut hset = vec!["HSET", "job:bad"];
    hset.extend(BAD_HASH.iter().flat_map(|(f, v)| [*f, *v]));
    raw_command(client, &hset).await;
    raw_command(client, &["DEL", "jobs:status:completed"]).await;
    raw_command(client, &["SET", "jobs:status:completed", "oops"]).await;
}

/// The foreign keys `plant` wrote, as `verify` must list them.
fn foreign() -> Vec<Skipped> {
    vec![
        Skipped {
            key: "job:42".into(),
            reason: SkipReason::NotAHash {
                found: "list".into(),
            },
        },
        Skipped {
            key: "job:next_id".into(),
            reason: SkipReason::NotAHash {
                found: "string".into(),
            },
        },
        Skipped {
            key: "jobs:status:completed".into(),
            reason: SkipReason::WrongIndexType {
                index: "by_status",
                expected: "set",
                found: "string".into(),
            },
        },
    ]
}

/// Asserts `skipped` is exactly the foreign keys of `plant` (plus
/// `extra`), sorted by key, with `job:bad` undecodable for its `slug`.
fn assert_foreign(skipped: &[Skipped], extra: &[Skipped]) {
    let (bad, rest): (Vec<&Skipped>, Vec<&Skipped>) =
        skipped.iter().partition(|s| s.key == "job:bad");
    assert!(
        matches!(
            bad.as_slice(),
            [Skipped { reason: SkipReason::Undecodable { field, .. }, .. }] if field == "slug"
        ),
        "job:bad must be listed once as undecodable for `slug`: {skipped:#?}"
    );
    let mut want = foreign();
    want.extend_from_slice(extra);
    want.sort_by(|a, b| a.key.cmp(&b.key));
    let rest: Vec<Skipped> = rest.into_iter().cloned().collect();
    assert_eq!(rest, want);
    let keys: Vec<&str> = skipped.iter().map(|s| s.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(keys, sorted, "sorted by key, each key once");
}

/// Asserts the foreign data `plant` wrote is exactly as it was.
async fn assert_foreign_untouched(client: &Client) {
    let counter: String = raw_query(client, &["GET", "job:next_id"]).await;
    assert_eq!(counter, "42");
    let list: Vec<String> = raw_query(client, &["LRANGE", "job:42", "0", "-1"]).await;
    assert_eq!(list, ["a", "b"]);
    let hash: BTreeMap<String, String> = raw_query(client, &["HGETALL", "job:bad"]).await;
    let planted: BTreeMap<String, String> = BAD_HASH
        .iter()
        .map(|(f, v)| (f.to_string(), v.to_string()))
        .collect();
    assert_eq!(hash, planted);
    let index: String = raw_query(client, &["GET", "jobs:status:completed"]).await;
    assert_eq!(index, "oops");
}

fn drift_of(drift: &[index::Drift]) -> Vec<(String, String, DriftKind)> {
    let mut out: Vec<_> = drift
        .iter()
        .map(|d| (d.index_key.clone(), d.member.clone(), d.problem.clone()))
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

fn entry(index_key: &str, member: &str, problem: DriftKind) -> (String, String, DriftKind) {
    (index_key.into(), member.into(), problem)
}

#[tokio::test]
async fn verify_reports_foreign_keys_by_key_and_still_finds_the_real_drift() {
    let (_server, client) = RedisServer::start_with_client().await;
    plant(&client).await;

    let report = index::verify::<Job>(&client)
        .await
        .expect("foreign data must not abort verify");
    assert_eq!(report.entities, 4, "only the four real jobs are entities");
    assert_eq!(
        drift_of(&report.drift),
        [
            entry("jobs:status:failed", "j2", DriftKind::Orphan),
            entry("jobs:status:queued", "42", DriftKind::Orphan),
            entry("jobs:user:u1", "j1", DriftKind::Missing),
            entry("jobs:user:u3", "j4", DriftKind::Missing),
        ]
    );
    assert_foreign(&report.skipped, &[]);
    assert_foreign_untouched(&client).await;
}

#[tokio::test]
async fn rebuild_repairs_the_real_drift_and_leaves_foreign_keys_untouched() {
    let (_server, client) = RedisServer::start_with_client().await;
    plant(&client).await;

    let report = index::rebuild::<Job>(&client)
        .await
        .expect("foreign data must not abort rebuild");
    assert_eq!(report.removed, 2, "j2 from failed, 42 from queued");
    assert_eq!(report.reindexed, 1, "j1; j4's index key is foreign");
    // j4 cannot be reindexed: its status index key holds a string, so its
    // write refuses and it stays missing from its user index.
    assert_eq!(
        drift_of(&report.remaining),
        [entry("jobs:user:u3", "j4", DriftKind::Missing)]
    );
    let refused: Vec<&Skipped> = report
        .skipped
        .iter()
        .filter(|s| matches!(s.reason, SkipReason::RepairRefused { .. }))
        .collect();
    assert!(
        matches!(refused.as_slice(), [s] if s.key == "job:j4"),
        "{:#?}",
        report.skipped
    );
    let rest: Vec<Skipped> = report
        .skipped
        .iter()
        .filter(|s| s.key != "job:j4")
        .cloned()
        .collect();
    assert_foreign(&rest, &[]);
    assert_foreign_untouched(&client).await;

    let u1: Vec<String> = raw_query(&client, &["ZRANGE", "jobs:user:u1", "0", "-1"]).await;
    assert_eq!(u1, ["j1", "j2"], "j1 reindexed");
    let queued: Vec<String> = raw_query(&client, &["SMEMBERS", "jobs:status:queued"]).await;
    let mut queued = queued;
    queued.sort();
    assert_eq!(queued, ["j1", "j2"], "the orphan 42 removed");
    let failed: i64 = raw_query(&client, &["EXISTS", "jobs:status:failed"]).await;
    assert_eq!(failed, 0, "the orphan j2 removed");

    // Once the foreign index key is cleared, a second rebuild finishes.
    raw_command(&client, &["DEL", "jobs:status:completed"]).await;
    let again = index::rebuild::<Job>(&client).await.expect("rebuild");
    assert!(again.remaining.is_empty(), "{:#?}", again.remaining);
    assert_eq!(again.reindexed, 1, "j4");
    assert_no_drift::<Job>(&client).await;
}

#[tokio::test]
async fn sweep_passes_over_foreign_member_keys_and_foreign_index_keys() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(
        &client,
        [
            lease("l1", "o1", 1),
            lease("l2", "o2", 2),
            lease("l3", "o3", 3),
        ],
    )
    .await;
    for id in ["l1", "l2", "l3"] {
        wait_expired(&client, id).await;
    }
    // After expiry, before any sweep: l1's key is reused for a persistent
    // string, l2's for a list with a TTL, and l3's sorted index key now
    // holds a string.
    raw_command(&client, &["SET", "lease:l1", "foreign"]).await;
    raw_command(&client, &["RPUSH", "lease:l2", "x"]).await;
    raw_command(&client, &["PEXPIRE", "lease:l2", "600000"]).await;
    raw_command(&client, &["DEL", "leases:owner:o3"]).await;
    raw_command(&client, &["SET", "leases:owner:o3", "oops"]).await;

    let looked_at = index::sweep::<Lease>(&client, 100)
        .await
        .expect("foreign data must not abort sweep");
    assert_eq!(looked_at, 3);

    // The expired leases' entries are gone from every index, their
    // registry entries too, and the foreign keys are untouched.
    let registry = Lease::descriptor().ttl_registry.expect("registry");
    let left: i64 = raw_query(&client, &["ZCARD", registry]).await;
    assert_eq!(left, 0, "no registry entry left");
    let kind: i64 = raw_query(&client, &["SCARD", "leases:kind:k"]).await;
    assert_eq!(kind, 0, "no lease left in the set index");
    let held: i64 = raw_query(&client, &["HLEN", "leases:by_resource"]).await;
    assert_eq!(held, 0, "no lease left in the unique index");
    for owner in ["o1", "o2"] {
        let key = format!("leases:owner:{owner}");
        let n: i64 = raw_query(&client, &["ZCARD", &key]).await;
        assert_eq!(n, 0, "{key} emptied");
        let page = owner_page(&client, owner, Page::newest_first(10)).await;
        assert!(page.is_empty(), "{key}: {page:?}");
    }
    let l1: String = raw_query(&client, &["GET", "lease:l1"]).await;
    assert_eq!(l1, "foreign");
    let l2: Vec<String> = raw_query(&client, &["LRANGE", "lease:l2", "0", "-1"]).await;
    assert_eq!(l2, ["x"]);
    let o3: String = raw_query(&client, &["GET", "leases:owner:o3"]).await;
    assert_eq!(o3, "oops");

    // verify (which sweeps first) lists the foreign keys.
    let report = index::verify::<Lease>(&client).await.expect("verify");
    assert!(report.drift.is_empty(), "{:#?}", report.drift);
    assert_eq!(report.entities, 0);
    let want = vec![
        Skipped {
            key: "lease:l1".into(),
            reason: SkipReason::NotAHash {
                found: "string".into(),
            },
        },
        Skipped {
            key: "lease:l2".into(),
            reason: SkipReason::NotAHash {
                found: "list".into(),
            },
        },
        Skipped {
            key: "leases:owner:o3".into(),
            reason: SkipReason::WrongIndexType {
                index: "by_owner",
                expected: "zset",
                found: "string".into(),
            },
        },
    ];
    assert_eq!(report.skipped, want);
}

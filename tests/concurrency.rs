//! Atomic counters and conditional writes against a real `redis-server`:
//! the operations a job runner needs so that concurrent workers never lose
//! an update or run a job twice.

// Shared with the index suites; this one uses only part of it.
#[allow(dead_code)]
mod common;

use redis_runtime::testing::{RedisServer, raw_command, raw_query};
use redis_runtime::{Client, Conditional, Page, RedisEntity};

use common::{Job, JobPatch, JobStatus, assert_no_drift, create_all, job};

/// A job runner's record: an attempt counter, a priority that scores a
/// sorted index, and an optional worker.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "run:{id}")]
#[redis(sorted_index(key = "runs:queue:{queue}", score = "priority"))]
struct Run {
    id: String,
    queue: String,
    priority: i64,
    attempts: u8,
    worker: Option<String>,
}

fn run(id: &str, priority: i64) -> Run {
    Run {
        id: id.into(),
        queue: "q".into(),
        priority,
        attempts: 0,
        worker: None,
    }
}

async fn queue_ids(client: &Client) -> Vec<String> {
    let runs = Run::by_queue(client, "q", Page::newest_first(10))
        .await
        .expect("page");
    runs.into_iter().map(|r| r.id).collect()
}

#[tokio::test]
async fn fifty_concurrent_increments_give_fifty() {
    let (_server, client) = RedisServer::start_with_client().await;
    run("r1", 0).create(&client).await.expect("create");
    let bumps = (0..50).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { Run::incr_priority(&client, "r1", 1).await })
    });
    let mut seen = Vec::new();
    for bump in bumps {
        seen.push(bump.await.expect("task").expect("increment"));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=50).collect::<Vec<i64>>(),
        "each saw its own value"
    );
    let stored = Run::get(&client, "r1").await.expect("get").expect("run");
    assert_eq!(stored.priority, 50);
    let score: f64 = raw_query(&client, &["ZSCORE", "runs:queue:q", "r1"]).await;
    assert_eq!(score, 50.0, "the sorted index moved with the counter");
    assert_no_drift::<Run>(&client).await;
}

#[tokio::test]
async fn an_increment_moves_the_entity_in_its_sorted_index() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(&client, [run("low", 1), run("high", 5)]).await;
    assert_eq!(queue_ids(&client).await, ["high", "low"]);
    assert_eq!(
        Run::incr_priority(&client, "low", 10).await.expect("bump"),
        11
    );
    assert_eq!(queue_ids(&client).await, ["low", "high"]);
    assert_eq!(
        Run::incr_priority(&client, "low", -20).await.expect("drop"),
        -9
    );
    assert_eq!(queue_ids(&client).await, ["high", "low"]);
    assert_no_drift::<Run>(&client).await;
}

#[tokio::test]
async fn increments_refuse_what_the_type_cannot_hold_and_write_nothing() {
    let (_server, client) = RedisServer::start_with_client().await;
    run("r1", 0).create(&client).await.expect("create");
    assert_eq!(
        Run::incr_attempts(&client, "r1", 255)
            .await
            .expect("to max"),
        255u8
    );
    let err = Run::incr_attempts(&client, "r1", 1)
        .await
        .expect_err("past u8::MAX");
    assert_eq!(err.code(), "ENCODE", "{err}");
    assert!(err.to_string().contains("attempts"), "{err}");
    let err = Run::incr_attempts(&client, "r1", -256)
        .await
        .expect_err("below 0");
    assert_eq!(err.code(), "ENCODE");
    let stored = Run::get(&client, "r1").await.expect("get").expect("run");
    assert_eq!(stored.attempts, 255, "nothing written");

    let err = Run::incr_attempts(&client, "nobody", 1)
        .await
        .expect_err("missing");
    assert_eq!(err.code(), "NOT_FOUND");
    assert!(!Run::exists(&client, "nobody").await.expect("exists"));

    // A stored value that is not an integer (another service wrote it).
    raw_command(&client, &["HSET", "run:r1", "priority", "high"]).await;
    let err = Run::incr_priority(&client, "r1", 1)
        .await
        .expect_err("not an integer");
    assert!(err.to_string().contains("not an integer"), "{err}");
    let raw: String = raw_query(&client, &["HGET", "run:r1", "priority"]).await;
    assert_eq!(raw, "high", "left as it was");

    // Beyond 2^53 a Lua number is no longer exact: refused, not rounded.
    raw_command(&client, &["HSET", "run:r1", "priority", "9007199254740991"]).await;
    let err = Run::incr_priority(&client, "r1", 1)
        .await
        .expect_err("past 2^53");
    assert_eq!(err.code(), "ENCODE");
}

#[tokio::test]
async fn a_missing_counter_field_counts_from_zero() {
    let (_server, client) = RedisServer::start_with_client().await;
    run("r1", 0).create(&client).await.expect("create");
    raw_command(&client, &["HDEL", "run:r1", "attempts"]).await;
    assert_eq!(Run::incr_attempts(&client, "r1", 2).await.expect("bump"), 2);
}

/// The runner's claim: twenty workers race to move one queued job to
/// running; exactly one wins, the others see who did.
#[tokio::test]
async fn a_conditional_claim_is_won_exactly_once() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(&client, [job("j1", "u1", JobStatus::Queued, 1)]).await;
    let claims = (0..20).map(|worker| {
        let client = client.clone();
        tokio::spawn(async move {
            let expected = JobPatch {
                status: Some(JobStatus::Queued),
                ..Default::default()
            };
            let claim = JobPatch {
                status: Some(JobStatus::Running),
                error: Some(Some(format!("worker-{worker}"))),
                ..Default::default()
            };
            Job::patch_if(&client, "j1", &expected, &claim).await
        })
    });
    let mut won = 0;
    for claim in claims {
        match claim.await.expect("task").expect("patch_if") {
            Conditional::Applied => won += 1,
            Conditional::Failed { current } => {
                assert_eq!(current.status, JobStatus::Running, "lost to a claim");
                assert!(current.error.is_some(), "the winner's mark is visible");
            }
        }
    }
    assert_eq!(won, 1, "exactly one claim applied");
    let running = Job::by_status_ids(&client, &JobStatus::Running)
        .await
        .expect("ids");
    assert_eq!(running, ["j1"], "the status index moved once");
    assert!(
        Job::by_status_ids(&client, &JobStatus::Queued)
            .await
            .expect("ids")
            .is_empty()
    );
    assert_no_drift::<Job>(&client).await;
}

#[tokio::test]
async fn conditions_on_absent_fields_and_missing_entities() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(&client, [job("j1", "u1", JobStatus::Queued, 1)]).await;
    // `Some(None)`: the optional field must be absent.
    let no_error = JobPatch {
        error: Some(None),
        ..Default::default()
    };
    let fail = JobPatch {
        status: Some(JobStatus::Failed),
        error: Some(Some("boom".into())),
        ..Default::default()
    };
    let first = Job::patch_if(&client, "j1", &no_error, &fail)
        .await
        .expect("patch_if");
    assert!(first.applied());
    let second = Job::patch_if(&client, "j1", &no_error, &fail)
        .await
        .expect("patch_if");
    let Conditional::Failed { current } = second else {
        panic!("the error is set now: {second:?}");
    };
    assert_eq!(current.error.as_deref(), Some("boom"));

    let err = Job::patch_if(&client, "nobody", &no_error, &fail)
        .await
        .expect_err("missing");
    assert_eq!(err.code(), "NOT_FOUND");
    assert!(!Job::exists(&client, "nobody").await.expect("exists"));
    assert_no_drift::<Job>(&client).await;
}

/// A user's jobs of one status, newest first: both strategies (reading
/// from the smaller set, walking the sorted index) give the sorted index's
/// order, the range is respected, and counts agree with the pages.
#[tokio::test]
async fn filtered_pages_combine_a_sorted_index_with_set_indexes() {
    let (_server, client) = RedisServer::start_with_client().await;
    // u1: 300 jobs, every tenth running; u2: 50 jobs, all running. So for
    // u1 the running set (80) is smaller than u1's index (300) and for u2
    // it is larger than u2's index (50): each strategy is used.
    let mut jobs = Vec::new();
    for i in 0..300 {
        let status = if i % 10 == 0 {
            JobStatus::Running
        } else {
            JobStatus::Queued
        };
        jobs.push(job(&format!("a{i:03}"), "u1", status, i));
    }
    for i in 0..50 {
        jobs.push(job(&format!("b{i:03}"), "u2", JobStatus::Running, i));
    }
    create_all(&client, jobs).await;
    let running = common::JobFilter {
        status: Some(JobStatus::Running),
    };
    let all = redis_runtime::ScoreRange::all();

    let page = Job::by_user_id_where(&client, "u1", &running, &all, Page::newest_first(5))
        .await
        .expect("page");
    let ids: Vec<&str> = page.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["a290", "a280", "a270", "a260", "a250"]);
    let later = Job::by_user_id_where(
        &client,
        "u1",
        &running,
        &all,
        Page::newest_first(5).skip(28),
    )
    .await
    .expect("last page");
    let ids: Vec<&str> = later.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["a010", "a000"], "the last two of thirty");
    let count = Job::by_user_id_where_count(&client, "u1", &running, &all).await;
    assert_eq!(count.expect("count"), 30);

    let range = redis_runtime::ScoreRange::between(10.0, 40.0);
    let ranged = Job::by_user_id_where(&client, "u2", &running, &range, Page::oldest_first(100))
        .await
        .expect("walk");
    assert_eq!(ranged.len(), 31, "scores 10..=40");
    assert_eq!(ranged[0].id, "b010");
    let count = Job::by_user_id_where_count(&client, "u2", &running, &range).await;
    assert_eq!(count.expect("count"), 31);

    // No filter: the plain page.
    let none = common::JobFilter::default();
    let plain = Job::by_user_id_where(&client, "u2", &none, &all, Page::newest_first(3))
        .await
        .expect("unfiltered");
    assert_eq!(plain.len(), 3);
    assert_eq!(plain[0].id, "b049");
}

/// A job moved out of the filter between the script and the pipeline, or
/// deleted behind the runtime's back, is never returned: the listing is
/// re-read atomically and stays full.
#[tokio::test]
async fn a_filtered_page_drops_dead_and_moved_entries() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(
        &client,
        (0..6).map(|i| job(&format!("j{i}"), "u1", JobStatus::Running, i)),
    )
    .await;
    raw_command(&client, &["DEL", "job:j5"]).await;
    let running = common::JobFilter {
        status: Some(JobStatus::Running),
    };
    let all = redis_runtime::ScoreRange::all();
    let page = Job::by_user_id_where(&client, "u1", &running, &all, Page::newest_first(3))
        .await
        .expect("page");
    let ids: Vec<&str> = page.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["j4", "j3", "j2"], "full, without the dead job");

    // Another service marks j4 completed without touching the indexes: the
    // hash no longer matches the status key it was listed under.
    // The pipelined read sees the mismatch and does not trust it: the page
    // is read again by the atomic script (a third round trip), which lists
    // what the indexes say; `verify` is what reports such drift.
    raw_command(&client, &["HSET", "job:j4", "status", "completed"]).await;
    let before = client.round_trips();
    let page = Job::by_user_id_where(&client, "u1", &running, &all, Page::newest_first(3))
        .await
        .expect("page");
    assert_eq!(
        client.round_trips() - before,
        3,
        "filter, pipeline, atomic re-read"
    );
    assert_eq!(page.len(), 3);
    let clean = Job::by_user_id_where(&client, "u1", &running, &all, Page::newest_first(3).skip(1));
    let before = client.round_trips();
    assert_eq!(clean.await.expect("page").len(), 3);
    assert_eq!(
        client.round_trips() - before,
        2,
        "a page of live, matching entries"
    );
}

/// An account whose every write stores a new version.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "account:{id}")]
struct Account {
    id: String,
    owner: String,
    balance: i64,
    #[redis(version)]
    version: u64,
}

fn account(id: &str) -> Account {
    Account {
        id: id.into(),
        owner: "ada".into(),
        balance: 0,
        version: 0,
    }
}

async fn stored_version(client: &Client, id: &str) -> u64 {
    let account = Account::get(client, id)
        .await
        .expect("get")
        .expect("account");
    account.version
}

#[tokio::test]
async fn every_write_stores_the_next_version() {
    let (_server, client) = RedisServer::start_with_client().await;
    account("a1").create(&client).await.expect("create");
    assert_eq!(
        stored_version(&client, "a1").await,
        1,
        "a new entity is at 1"
    );
    let mut a = Account::get(&client, "a1").await.expect("get").expect("a1");
    a.owner = "grace".into();
    a.update(&client).await.expect("update");
    assert_eq!(stored_version(&client, "a1").await, 2);
    let patch = AccountPatch {
        owner: Some("lin".into()),
        ..Default::default()
    };
    Account::patch(&client, "a1", &patch).await.expect("patch");
    assert_eq!(stored_version(&client, "a1").await, 3, "a patch too");
    Account::incr_balance(&client, "a1", 5)
        .await
        .expect("increment");
    assert_eq!(stored_version(&client, "a1").await, 4, "an increment too");
    let raw: String = raw_query(&client, &["HGET", "account:a1", "version"]).await;
    assert_eq!(raw, "4", "stored as plain decimal");
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_and_writes_nothing() {
    let (_server, client) = RedisServer::start_with_client().await;
    account("a1").create(&client).await.expect("create");
    let mut mine = Account::get(&client, "a1").await.expect("get").expect("a1");
    let mut theirs = mine.clone();

    theirs.owner = "grace".into();
    theirs
        .update_if_version(&client)
        .await
        .expect("first writer wins");
    assert_eq!(theirs.version, 2, "the caller's copy follows the store");

    mine.balance = 100;
    let err = mine
        .update_if_version(&client)
        .await
        .expect_err("stale version");
    assert_eq!(err.code(), "CONFLICT");
    assert!(
        matches!(&err, redis_runtime::Error::Conflict { current, .. } if current == "2"),
        "{err}"
    );
    assert_eq!(mine.version, 1, "unchanged on conflict");
    let stored = Account::get(&client, "a1").await.expect("get").expect("a1");
    assert_eq!(
        (stored.owner.as_str(), stored.balance),
        ("grace", 0),
        "nothing written"
    );

    let patch = AccountPatch {
        balance: Some(7),
        ..Default::default()
    };
    let err = Account::patch_if_version(&client, "a1", 1, &patch)
        .await
        .expect_err("stale");
    assert_eq!(err.code(), "CONFLICT");
    let next = Account::patch_if_version(&client, "a1", 2, &patch)
        .await
        .expect("current version");
    assert_eq!(next, 3);
    assert_eq!(stored_version(&client, "a1").await, 3);

    let err = Account::patch_if_version(&client, "nobody", 1, &patch)
        .await
        .expect_err("missing");
    assert_eq!(err.code(), "NOT_FOUND");
}

/// Twenty concurrent read-modify-write loops on one entity: every change
/// lands once (none lost, none applied twice).
#[tokio::test]
async fn concurrent_modify_loses_no_update() {
    let (_server, client) = RedisServer::start_with_client().await;
    account("a1").create(&client).await.expect("create");
    let tasks = (0..20).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { Account::modify(&client, "a1", 100, |a| a.balance += 10).await })
    });
    for task in tasks {
        let written = task.await.expect("task").expect("modify");
        assert!(written.is_some());
    }
    let stored = Account::get(&client, "a1").await.expect("get").expect("a1");
    assert_eq!(stored.balance, 200);
    assert_eq!(stored.version, 21, "created at 1, then twenty writes");
    assert_eq!(
        Account::modify(&client, "nobody", 3, |a| a.balance += 1)
            .await
            .expect("missing"),
        None
    );
}

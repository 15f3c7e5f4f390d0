//! Atomic counters and conditional writes against a real `redis-server`:
//! the operations a job runner needs so that concurrent workers never lose
//! an update or run a job twice.

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

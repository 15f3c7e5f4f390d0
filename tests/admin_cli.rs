//! The `keyspace` operator command (`redis_runtime::admin`) for the main
//! example's types, run as a real process against a private server. The
//! `--help` text is checked against `tests/snapshots/keyspace_help.txt`;
//! after an intended change, re-bless with
//! `BLESS=1 cargo test --test admin_cli` and review the diff.

#[allow(dead_code)]
#[path = "../examples/app/model.rs"]
mod model;

use std::path::PathBuf;
use std::process::{Command, Output};

use model::{Job, JobStatus, User};
use redis_runtime::Client;
use redis_runtime::testing::{RedisServer, raw_command};
use serde_json::Value;

/// Runs the command with `REDIS_URL=url` and returns its output.
fn keyspace(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyspace"))
        .args(args)
        .env("REDIS_URL", url)
        .env("REDIS_CONNECT_TIMEOUT", "500ms")
        .env("REDIS_OPERATION_TIMEOUT", "2s")
        .env("REDIS_MAX_RETRIES", "1")
        .output()
        .expect("the keyspace binary runs")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[track_caller]
fn expect_code(output: &Output, expected: i32) {
    assert_eq!(code(output), expected, "{}", text(output));
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(output)))
}

fn snapshot(name: &str, actual: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    redis_runtime::testing::assert_snapshot(&dir.join(name), actual);
}

#[test]
fn help_matches_its_snapshot() {
    let output = keyspace("redis://127.0.0.1:1", &["--help"]);
    expect_code(&output, 0);
    snapshot(
        "keyspace_help.txt",
        &String::from_utf8_lossy(&output.stdout),
    );
}

#[test]
fn describe_and_check_need_no_redis() {
    // Nothing listens here: neither command may try to connect.
    let url = "redis://127.0.0.1:1";
    let output = keyspace(url, &["describe", "--json"]);
    expect_code(&output, 0);
    let manifest = json(&output);
    let names: Vec<&str> = manifest["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .map(|e| e["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["User", "Session", "GitProvider", "Job"]);

    let output = keyspace(url, &["describe"]);
    expect_code(&output, 0);
    assert!(String::from_utf8_lossy(&output.stdout).contains("`jobs:status:{status}`"));

    let output = keyspace(url, &["check"]);
    expect_code(&output, 0);
    assert!(String::from_utf8_lossy(&output.stdout).contains("4 entity types"));
}

#[test]
fn usage_errors_exit_2() {
    let url = "redis://127.0.0.1:1";
    expect_code(&keyspace(url, &["frobnicate"]), 2);
    expect_code(&keyspace(url, &[]), 2);
    let output = keyspace(url, &["verify", "--entity", "Nope"]);
    expect_code(&output, 2);
    assert!(
        text(&output).contains("unknown entity type `Nope`"),
        "{}",
        text(&output)
    );
}

async fn seed(client: &Client) {
    User {
        id: "u1".into(),
        email: "ada@example.com".into(),
        display_name: "Ada".into(),
        created_at: 1,
        last_login_at: None,
    }
    .create(client)
    .await
    .expect("create user");
    for (id, created_at) in [("j1", 10), ("j2", 20)] {
        Job {
            id: id.into(),
            user_id: "u1".into(),
            repo: "github.com/acme/app".into(),
            command: "make".into(),
            status: JobStatus::Queued,
            created_at,
            attempts: 0,
            error: None,
        }
        .create(client)
        .await
        .expect("create job");
    }
}

/// The drift entries of `Job` in a `verify --json` output, as
/// `(index_key, member, problem)`.
fn job_drift(report: &Value) -> Vec<(String, String, String)> {
    let job = report["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .find(|e| e["entity"] == "Job")
        .expect("Job");
    let mut drift: Vec<(String, String, String)> = job["drift"]
        .as_array()
        .expect("drift")
        .iter()
        .map(|d| {
            let s = |k: &str| d[k].as_str().expect(k).to_owned();
            (s("index_key"), s("member"), s("problem"))
        })
        .collect();
    drift.sort();
    drift
}

#[tokio::test]
async fn verify_repair_and_sweep_against_a_real_server() {
    let (server, client) = RedisServer::start_with_client().await;
    let url = server.url();
    seed(&client).await;

    expect_code(&keyspace(&url, &["verify"]), 0);
    let clean = json(&keyspace(&url, &["verify", "--json"]));
    assert_eq!(clean["clean"], true);
    assert!(job_drift(&clean).is_empty());

    // One drift of each kind.
    raw_command(&client, &["SADD", "jobs:status:queued", "ghost"]).await;
    raw_command(&client, &["ZREM", "jobs:user:u1", "j1"]).await;
    raw_command(&client, &["ZADD", "jobs:user:u1", "999", "j2"]).await;
    let expected = vec![
        (
            "jobs:status:queued".to_owned(),
            "ghost".to_owned(),
            "orphan".to_owned(),
        ),
        (
            "jobs:user:u1".to_owned(),
            "j1".to_owned(),
            "missing".to_owned(),
        ),
        (
            "jobs:user:u1".to_owned(),
            "j2".to_owned(),
            "wrong_score".to_owned(),
        ),
    ];

    let output = keyspace(&url, &["verify"]);
    expect_code(&output, 1);
    assert!(
        text(&output).contains("Job: 3 drift entries"),
        "{}",
        text(&output)
    );
    let output = keyspace(&url, &["verify", "--json"]);
    expect_code(&output, 1);
    let report = json(&output);
    assert_eq!(report["clean"], false);
    assert_eq!(job_drift(&report), expected);

    // `--examples` limits what is shown, not what is counted.
    let report = json(&keyspace(
        &url,
        &["verify", "--json", "--entity", "Job", "--examples", "1"],
    ));
    assert_eq!(report["entities"].as_array().map(Vec::len), Some(1));
    assert_eq!(report["entities"][0]["drift_total"], 3);
    assert_eq!(
        report["entities"][0]["drift"].as_array().map(Vec::len),
        Some(1)
    );

    // A dry run reports and writes nothing.
    let output = keyspace(&url, &["repair", "--dry-run", "--json"]);
    expect_code(&output, 1);
    assert_eq!(job_drift(&json(&output)), expected);
    assert_eq!(
        job_drift(&json(&keyspace(&url, &["verify", "--json"]))),
        expected
    );

    let output = keyspace(&url, &["repair"]);
    expect_code(&output, 0);
    assert!(
        text(&output).contains("Job: reindexed 2 entities, removed 1 stale entries"),
        "{}",
        text(&output)
    );
    expect_code(&keyspace(&url, &["verify"]), 0);

    let output = keyspace(&url, &["sweep"]);
    expect_code(&output, 0);
    assert!(
        text(&output).contains("Job: swept 0 expired registry entries"),
        "{}",
        text(&output)
    );
}

#[test]
fn an_unreachable_server_exits_2_without_the_password() {
    let server = RedisServer::start_stopped();
    let url = server
        .url()
        .replace("redis://", "redis://admin:hunter2-secret@");
    let output = keyspace(&url, &["verify"]);
    expect_code(&output, 2);
    let all = text(&output);
    assert!(
        all.contains("STORAGE_UNAVAILABLE") || all.contains("STORAGE_TIMEOUT"),
        "{all}"
    );
    assert!(
        all.contains(&format!("127.0.0.1:{}", server.port())),
        "{all}"
    );
    assert!(!all.contains("hunter2-secret"), "{all}");
}

//! The `keyspace` operator command (`redis_runtime::admin`) for the main
//! example's types, run as a real process against a private server. The
//! `--help` text is checked against `tests/snapshots/keyspace_help.txt`;
//! after an intended change, re-bless with
//! `BLESS=1 cargo test --test admin_cli help_matches_its_snapshot` and
//! review the diff.

#[allow(dead_code)]
#[path = "../examples/app/model.rs"]
mod model;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use model::{Job, JobStatus, Session, User};
use redis_runtime::Client;
use redis_runtime::testing::{RedisServer, raw_command, raw_query};
use serde_json::Value;

/// The command with `REDIS_URL=url` and `args`, not yet started.
fn keyspace_command(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyspace"));
    command
        .args(args)
        .env("REDIS_URL", url)
        .env("REDIS_CONNECT_TIMEOUT", "500ms")
        .env("REDIS_OPERATION_TIMEOUT", "2s")
        .env("REDIS_MAX_RETRIES", "1");
    command
}

/// Runs the command with `REDIS_URL=url` and returns its output.
fn keyspace(url: &str, args: &[&str]) -> Output {
    keyspace_command(url, args)
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
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("4 entity types"));
    // The Redis Cluster slot plan, per entity type.
    assert!(
        said.contains("cluster: Session keeps every key in its slot"),
        "{said}"
    );
    assert!(
        said.contains(
            "cluster: Job hashes the whole key; not always in its slot: jobs:user:{user_id}"
        ),
        "{said}"
    );
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
    expect_code(&keyspace(url, &["verify", "--max-ops-per-sec", "-1"]), 2);
    expect_code(&keyspace(url, &["stats", "--scan-count", "0"]), 2);
}

#[tokio::test]
async fn a_bad_resume_token_is_refused_before_any_work() {
    let (server, _client) = RedisServer::start_with_client().await;
    let output = keyspace(&server.url(), &["repair", "--resume", "ks1.bm90IGpzb24"]);
    expect_code(&output, 2);
    assert!(
        text(&output).contains("not a resume token of this command"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    // The reading end is closed before the command starts, so its first
    // write fails with a broken pipe, as under `keyspace describe | head -1`
    // once `head` has exited.
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let output = keyspace_command("redis://127.0.0.1:1", &["describe"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "nothing to say on stderr: {stderr}");
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

    // A dry run says what a repair would change, and writes nothing.
    let output = keyspace(&url, &["repair", "--dry-run", "--entity", "Job"]);
    expect_code(&output, 1);
    let said = text(&output);
    for line in [
        "Job: would reindex 2 entities and remove 1 stale entries (3 drift entries",
        "by_status `jobs:status:queued` member ghost: orphan entry: would remove it",
        "by_user_id `jobs:user:u1` member j1: missing entry: would reindex entity j1",
        "by_user_id `jobs:user:u1` member j2: wrong score 999 (expected 20): would reindex entity j2",
    ] {
        assert!(said.contains(line), "{line:?} in {said}");
    }
    // `reindex` is the same subcommand (after adding an index).
    let output = keyspace(&url, &["reindex", "--dry-run", "--entity", "Job"]);
    expect_code(&output, 1);
    assert!(
        text(&output).contains("Job: would reindex 2 entities"),
        "{}",
        text(&output)
    );
    let output = keyspace(&url, &["repair", "--dry-run", "--json"]);
    expect_code(&output, 1);
    let dry = json(&output);
    assert_eq!(job_drift(&dry), expected);
    let job = &dry["entities"][3];
    assert_eq!(job["entity"], "Job");
    assert_eq!(
        (job["would_reindex"].as_u64(), job["would_remove"].as_u64()),
        (Some(2), Some(1))
    );
    let mut actions: Vec<(String, String)> = job["drift"]
        .as_array()
        .expect("drift")
        .iter()
        .map(|d| {
            (
                d["member"].as_str().expect("member").to_owned(),
                d["action"].as_str().expect("action").to_owned(),
            )
        })
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        [("ghost", "remove"), ("j1", "reindex"), ("j2", "reindex")]
            .map(|(m, a)| (m.to_owned(), a.to_owned()))
    );
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

/// `stats --json` on a seeded keyspace: counts, sampled memory and TTL
/// buckets, index keys and entries, stream length and consumer-group lag.
#[tokio::test]
async fn stats_reports_counts_memory_ttls_indexes_and_stream_lag() {
    let (server, client) = RedisServer::start_with_client().await;
    let url = server.url();
    seed(&client).await;
    Job {
        id: "j3".into(),
        user_id: "u2".into(),
        repo: "github.com/acme/app".into(),
        command: "make".into(),
        status: JobStatus::Running,
        created_at: 30,
        attempts: 0,
        error: None,
    }
    .create(&client)
    .await
    .expect("create job");
    for id in ["s1", "s2"] {
        Session {
            id: id.into(),
            user_id: "u1".into(),
            created_at: 1,
        }
        .create(&client)
        .await
        .expect("create session");
    }
    // s1 keeps its 7 days; s2 has half an hour left.
    raw_command(&client, &["PEXPIRE", "session:s2", "1800000"]).await;
    // A consumer group that has read two of the three stream entries and
    // acknowledged none: 2 pending, 1 not yet delivered.
    raw_command(
        &client,
        &["XGROUP", "CREATE", "jobs:stream", "workers", "0"],
    )
    .await;
    raw_command(
        &client,
        &[
            "XREADGROUP",
            "GROUP",
            "workers",
            "w1",
            "COUNT",
            "2",
            "STREAMS",
            "jobs:stream",
            ">",
        ],
    )
    .await;

    let output = keyspace(&url, &["stats", "--json"]);
    expect_code(&output, 0);
    let stats = json(&output);
    let entity = |name: &str| {
        stats["entities"]
            .as_array()
            .expect("entities")
            .iter()
            .find(|e| e["entity"] == name)
            .unwrap_or_else(|| panic!("{name} in {stats:#}"))
            .clone()
    };

    let job = entity("Job");
    assert_eq!(job["count"], 3, "{job:#}");
    assert_eq!(job["sample"]["keys"], 3);
    let memory = job["sample"]["memory_bytes"].as_u64().expect("memory read");
    let mean = job["sample"]["mean_bytes"].as_u64().expect("a mean");
    assert!(
        memory > 0 && mean * 3 <= memory && memory < mean * 3 + 3,
        "{job:#}"
    );
    assert_eq!(job["sample"]["estimated_total_bytes"], mean * 3);
    assert_eq!(job["ttl"]["none"], 3);
    let indexes: Vec<(String, u64, u64)> = job["indexes"]
        .as_array()
        .expect("indexes")
        .iter()
        .map(|i| {
            (
                i["name"].as_str().expect("name").to_owned(),
                i["keys"].as_u64().expect("keys"),
                i["entries"].as_u64().expect("entries"),
            )
        })
        .collect();
    assert_eq!(
        indexes,
        [
            ("by_user_id".to_owned(), 2, 3),
            ("by_status".to_owned(), 2, 3)
        ],
        "u1 and u2; queued and running"
    );
    let stream = &job["stream"];
    assert_eq!(stream["key"], "jobs:stream");
    assert_eq!(stream["length"], 3);
    let group = &stream["groups"][0];
    assert_eq!(group["name"], "workers");
    assert_eq!(group["consumers"], 1);
    assert_eq!(group["pending"], 2);
    assert_eq!(group["lag"], 1, "{group:#}");
    assert!(
        group["oldest_pending"]["idle_ms"].as_i64().is_some(),
        "{group:#}"
    );
    assert_eq!(group["oldest_pending"]["consumer"], "w1");
    assert!(group["max_pending_idle_ms"].as_i64().is_some(), "{group:#}");

    let session = entity("Session");
    assert_eq!(session["count"], 2);
    assert_eq!(session["ttl"]["under_1h"], 1, "{session:#}");
    assert_eq!(session["ttl"]["at_least_1d"], 1, "{session:#}");
    assert_eq!(session["ttl"]["none"], 0);

    let user = entity("User");
    assert_eq!(user["count"], 1);
    assert_eq!(user["indexes"][0]["entries"], 1);

    // The same figures as a table.
    let output = keyspace(&url, &["stats", "--entity", "Job"]);
    expect_code(&output, 0);
    let table = text(&output);
    for line in [
        "Job (job:{id}): 3 entities",
        "index by_user_id (sorted, jobs:user:{user_id}): 2 keys, 3 entries",
        "stream jobs:stream: 3 entries",
        "group workers: 1 consumers, 2 pending, lag 1, oldest pending",
    ] {
        assert!(table.contains(line), "{line:?} in {table}");
    }
}

/// `--max-ops-per-sec` is shown in the summary, and the run keeps to it.
#[tokio::test]
async fn the_rate_limit_is_applied_and_shown_in_the_summary() {
    let (server, client) = RedisServer::start_with_client().await;
    let url = server.url();
    seed_raw_jobs(&client, 2000).await;

    let output = keyspace(
        &url,
        &["verify", "--entity", "Job", "--max-ops-per-sec", "4000"],
    );
    expect_code(&output, 1);
    assert!(
        text(&output).contains("limit 4000/s, --max-ops-per-sec"),
        "{}",
        text(&output)
    );

    let output = keyspace(
        &url,
        &[
            "verify",
            "--json",
            "--entity",
            "Job",
            "--max-ops-per-sec",
            "4000",
        ],
    );
    expect_code(&output, 1);
    let run = &json(&output)["run"];
    assert_eq!(run["max_ops_per_sec"], 4000);
    let ops = run["ops"].as_f64().expect("ops");
    let seconds = run["seconds"].as_f64().expect("seconds");
    // 2000 entities need a few commands each: well over a second's worth.
    assert!(ops > 8000.0, "{run}");
    // Never more than 0.1 s of commands ahead of the pace.
    assert!(seconds >= ops / 4000.0 - 0.1, "{run}");

    let output = keyspace(
        &url,
        &[
            "verify",
            "--json",
            "--entity",
            "Job",
            "--max-ops-per-sec",
            "0",
        ],
    );
    let run = &json(&output)["run"];
    assert_eq!(run["max_ops_per_sec"], Value::Null);
    assert_eq!(json(&output)["entities"][0]["drift_total"], 4000);
}

/// `count` job hashes written as an older version without indexes would:
/// every one is missing from both of its indexes.
async fn seed_raw_jobs(client: &Client, count: u32) {
    let script = "for i = 1, tonumber(ARGV[1]) do \
        redis.call('HSET', 'job:j' .. i, 'id', 'j' .. i, 'user_id', 'u' .. (i % 7), \
        'repo', 'r', 'command', 'make', 'status', 'Queued', 'created_at', i) end";
    raw_command(client, &["EVAL", script, "0", &count.to_string()]).await;
    let stored: i64 = raw_query(client, &["DBSIZE"]).await;
    assert_eq!(stored, i64::from(count));
}

/// The `progress:` lines of a running command's stderr, one per message,
/// read on a thread; the rest of stderr is kept for the failure message.
fn progress_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// The number before `what` in a progress line (`... 600 reindexed ...`).
fn count_before(line: &str, what: &str) -> Option<u64> {
    let end = line.find(what)?;
    line[..end]
        .trim_end()
        .rsplit([' ', '('])
        .next()?
        .parse()
        .ok()
}

/// Waits (up to a minute) for a progress line of a `repair` of `Job` in
/// its entities phase that has already reindexed some.
fn wait_for_repairs(lines: &mpsc::Receiver<String>) {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no progress with repairs ({e}): {seen:#?}"));
        let repaired = line.starts_with("progress: repair Job: entities")
            && count_before(&line, "reindexed").is_some_and(|n| n > 0);
        seen.push(line);
        if repaired {
            return;
        }
    }
}

/// A repair cut off by a lost connection exits 2 with the error and a
/// resume token for the work not done (and no password).
#[tokio::test]
async fn a_repair_that_loses_its_server_says_where_to_resume() {
    let (mut server, client) = RedisServer::start_with_client().await;
    let url = server
        .url()
        .replace("redis://", "redis://default:hunter2-secret@");
    raw_command(&client, &["CONFIG", "SET", "requirepass", "hunter2-secret"]).await;
    // This connection authenticated before the password was set.
    seed_raw_jobs(&client, 20_000).await;
    let mut child = keyspace_command(
        &url,
        &[
            "repair",
            "--entity",
            "Job",
            "--max-ops-per-sec",
            "3000",
            "--scan-count",
            "100",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("starts");
    let lines = progress_lines(&mut child);
    wait_for_repairs(&lines);
    server.stop();
    let output = child.wait_with_output().expect("exits");
    let stderr: Vec<String> = lines.iter().collect();
    let stderr = stderr.join("\n");
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error: STORAGE_"), "{stderr}");
    assert!(
        stderr.contains("stopped by the error below; resume with: keyspace repair --resume ks1."),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
}

/// Ctrl-C in the middle of a repair stops it between batches with a resume
/// token; resuming finishes the work, and every entity is counted and
/// repaired exactly once across the two runs.
#[tokio::test]
async fn an_interrupted_repair_resumes_and_repairs_each_entity_once() {
    const JOBS: u64 = 20_000;
    const GHOSTS: u64 = 50;
    let (server, client) = RedisServer::start_with_client().await;
    let url = server.url();
    seed_raw_jobs(&client, JOBS as u32).await;
    let ghosts: Vec<String> = (0..GHOSTS).map(|i| format!("ghost{i}")).collect();
    let mut sadd = vec!["SADD", "jobs:status:Queued"];
    sadd.extend(ghosts.iter().map(String::as_str));
    raw_command(&client, &sadd).await;

    // Slow enough to still be running when interrupted (about a minute).
    let mut child = keyspace_command(
        &url,
        &[
            "repair",
            "--json",
            "--entity",
            "Job",
            "--max-ops-per-sec",
            "3000",
            "--scan-count",
            "100",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("starts");
    let lines = progress_lines(&mut child);
    wait_for_repairs(&lines);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let first = child.wait_with_output().expect("exits");
    let rest: Vec<String> = lines.iter().collect();
    let stderr = rest.join("\n");
    assert_eq!(first.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("stopping after the current batch"),
        "{stderr}"
    );
    assert!(stderr.contains("SCAN cursor"), "{stderr}");
    let report: Value = serde_json::from_slice(&first.stdout).expect("JSON");
    let token = report["interrupted"]["resume"]
        .as_str()
        .expect("a token")
        .to_owned();
    assert!(
        stderr.contains(&format!("keyspace repair --resume {token}")),
        "{stderr}"
    );
    let partial = report["entities"][0]["reindexed"]
        .as_u64()
        .expect("reindexed");
    assert!(partial > 0 && partial < JOBS, "{report:#}");
    assert_eq!(report["clean"], false);

    // The rest, at full speed.
    let output = keyspace(
        &url,
        &[
            "repair",
            "--json",
            "--max-ops-per-sec",
            "0",
            "--resume",
            &token,
        ],
    );
    expect_code(&output, 0);
    let done = json(&output);
    let job = &done["entities"][0];
    assert_eq!(job["entity"], "Job", "{done:#}");
    assert_eq!(job["entities"], JOBS, "each entity counted once: {job:#}");
    assert_eq!(
        job["reindexed"], JOBS,
        "each entity reindexed once: {job:#}"
    );
    assert_eq!(job["removed"], GHOSTS, "{job:#}");
    assert_eq!(job["remaining_total"], 0);
    assert_eq!(job["drift_found"], 2 * JOBS + GHOSTS);

    let output = keyspace(
        &url,
        &[
            "verify",
            "--json",
            "--entity",
            "Job",
            "--max-ops-per-sec",
            "0",
        ],
    );
    expect_code(&output, 0);
    let clean = json(&output);
    assert_eq!(
        clean["entities"][0]["entries"],
        2 * JOBS,
        "both indexes full"
    );
}

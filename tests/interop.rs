//! A real service in another language shares the keyspace: a Python service
//! using redis-py (`tests/interop/python_service.py`) writes an entity the
//! way hand-written services do and reads what we write, against a private
//! server.
//!
//! redis-py is fetched by this test with pip into a cache directory
//! (`~/.cache/redis-entity/redis-py-<version>`); if that fails, the test
//! fails naming the command.

use std::path::{Path, PathBuf};
use std::process::Command;

use redis_runtime::testing::RedisServer;
use redis_runtime::{Page, RedisEntity, RedisValue};

const REDIS_PY: &str = "5.2.1";

#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq)]
enum BuildStatus {
    Queued,
    Running,
    Passed,
    Failed,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "build:{id}", stream = "builds:stream")]
#[redis(sorted_index(key = "builds:user:{user_id}", score = "started_at"))]
struct Build {
    id: String,
    user_id: String,
    status: BuildStatus,
    started_at: i64,
    finished_at: Option<i64>,
    exit_code: Option<i64>,
}

/// A directory holding redis-py, installed with pip on first use.
fn redis_py() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME")
        .join("redis-entity");
    let dir = cache.join(format!("redis-py-{REDIS_PY}"));
    if dir.join("redis").is_dir() {
        return dir;
    }
    let partial = cache.join(format!(
        "redis-py-{REDIS_PY}.partial-{}",
        std::process::id()
    ));
    let target = partial.display().to_string();
    let spec = format!("redis=={REDIS_PY}");
    let args = [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--target",
        target.as_str(),
        spec.as_str(),
    ];
    let status = Command::new("python3").args(args).status();
    if !matches!(status, Ok(s) if s.success()) {
        panic!(
            "the interop test needs redis-py: `python3 {}` failed ({status:?}); \
             install Python 3 with pip, or run that command",
            args.join(" ")
        );
    }
    // Another test process may have won the race; either copy is complete.
    if std::fs::rename(&partial, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    dir
}

/// Runs the Python service's `command` against `url`; its JSON report.
fn python(command: &str, url: &str) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python_service.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(command)
        .env("REDIS_URL", url)
        .env("PYTHONPATH", redis_py())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python service {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the service prints JSON")
}

#[tokio::test]
async fn a_python_service_and_the_derive_read_and_write_each_others_data() {
    let (server, client) = RedisServer::start_with_client().await;

    // Python writes the way such services do; we read it.
    assert_eq!(python("write", &server.url())["ok"], true);
    let py1 = Build::get(&client, "py1")
        .await
        .expect("decodes")
        .expect("present");
    assert_eq!(
        py1,
        Build {
            id: "py1".into(),
            user_id: "u1".into(),
            status: BuildStatus::Running,
            started_at: 1_700_000_000_000,
            finished_at: None,
            exit_code: None,
        },
        "`Running` and empty strings read as the service meant them"
    );
    let page = Build::by_user_id(&client, "u1", Page::newest_first(10))
        .await
        .expect("page");
    assert_eq!(page.len(), 1, "the hand-written index entry is ours too");

    // We update it; the field only the Python service knows survives.
    let finished = Build {
        status: BuildStatus::Passed,
        finished_at: Some(1_700_000_060_000),
        exit_code: Some(0),
        ..py1
    };
    finished.update(&client).await.expect("update");

    // We create one; Python reads it, its index entry and the outbox entry.
    let rs1 = Build {
        id: "rs1".into(),
        user_id: "u1".into(),
        status: BuildStatus::Queued,
        started_at: 1_700_000_100_000,
        finished_at: None,
        exit_code: None,
    };
    rs1.create(&client).await.expect("create");
    let seen = python("read", &server.url());

    let hash = &seen["hash"];
    assert_eq!(hash["status"], "queued", "written canonical");
    assert_eq!(hash["started_at"], "1700000100000");
    assert!(
        hash.get("finished_at").is_none(),
        "None is no field: {hash}"
    );
    let index = seen["index"].as_array().expect("index");
    let members: Vec<(&str, f64)> = index
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().expect("id"),
                pair[1].as_f64().expect("score"),
            )
        })
        .collect();
    assert_eq!(members, [("py1", 1.7e12), ("rs1", 1_700_000_100_000.0)]);
    let stream = seen["stream"].as_array().expect("stream");
    assert_eq!(stream.len(), 1, "one outbox entry, for rs1's creation");
    assert_eq!(stream[0]["id"], "rs1");
    assert_eq!(stream[0]["status"], "queued");

    let py1 = &seen["py1"];
    assert_eq!(py1["status"], "passed");
    assert_eq!(py1["exit_code"], "0");
    assert_eq!(
        py1["runner_host"], "ci-7",
        "our update left the service's field alone"
    );
}

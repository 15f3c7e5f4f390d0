//! Three data layers for the same `Job` workloads, against one private
//! `redis-server`, in one run:
//!
//! * **TS ioredis**: the hand-written ioredis data layer of the TypeScript
//!   web service, `benches/peer/ioredis_layer.js`, run by `node` as a child
//!   process, one process per workload. It writes `job:{id}` with a
//!   pipeline of HSET + ZADD then a separate XADD of `job_id` (no existence
//!   check, not atomic), reads with HGETALL, updates the status with a bare
//!   HSET (which creates a missing job), and pages with ZREVRANGE then a
//!   pipeline of HGETALL.
//! * **ours**: `#[derive(RedisEntity)]` on the same `Job`: `create` (one
//!   atomic script: refuses an existing job, writes hash, index and stream
//!   entry), `get`, `patch` of the status (refuses a missing job) and
//!   `by_user_id` newest first.
//! * **hand-written**: redis-rs written by hand with ours' guarantees:
//!   create is one Lua script that checks before it writes (EXISTS refuses,
//!   TYPE of the stream key, then ZADD, HSET, XADD of the same fields ours
//!   enqueues, trimmed with `MAXLEN ~ 10000` as ours' outbox is by
//!   default), get is HGETALL decoded by hand, the status
//!   update is a Lua script that refuses a missing job, and a page is
//!   `ZRANGE … BYSCORE REV LIMIT 0 20` then one pipeline of HGETALL,
//!   dropping empty hashes.
//!
//! The workloads are the JS file's: `seq create_job`, `seq get_job`,
//! `seq update_status`, `seq list_user_jobs(20)` (N/10 calls), then on a
//! flushed db `conc64 create_job`, `conc64 get_job`,
//! `conc64 list_user_jobs(20)` (N/10 calls); job `j{i}` belongs to user
//! `u{i % 100}` and is created at `1700000000000 + i`. Concurrent workloads
//! run 64 tasks taking the next `i` from a shared counter, as the JS does.
//!
//! Each round runs the three layers (the order rotates per round), each
//! from a flushed db; the table shows medians over rounds. Around every
//! workload the server's command statistics are reset and read back, giving
//! "server µs per op": the execution time Redis records for the commands
//! the layer sent (a script's own `redis.call`s are inside the script's
//! time), divided by the operations. It leaves out request parsing and
//! socket I/O, which Redis does not attribute to commands. A second table
//! breaks it down per command.
//!
//! ```text
//! cargo bench --bench three_way
//! N=20000 ROUNDS=3 cargo bench --bench three_way   # the defaults
//! ```
//!
//! Needs `redis-server`, `node` and `npm`. ioredis 5 is installed with npm
//! on first use into `~/.cache/redis-entity/node-ioredis5` (or under
//! `$XDG_CACHE_HOME`), the cache root the interop test uses for redis-py.

// Only the median is shared: this bench drives its workloads itself.
#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{env_u64, median};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis_runtime::testing::RedisServer;
use redis_runtime::{Client, Page, RedisEntity, RedisValue};

/// A job's state, stored as `queued` / `running` like the JS layer's strings.
#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Queued,
    Running,
}

/// The JS layer's job: same key, index, stream and snake_case hash fields.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "job:{id}")]
#[redis(sorted_index(key = "jobs:user:{user_id}", score = "created_at"))]
#[redis(stream = "jobs:stream")]
struct Job {
    id: String,
    user_id: String,
    repo: String,
    status: Status,
    created_at: i64,
    attempts: u32,
}

/// The JS layer's `mk(i)`.
fn job(i: u64) -> Job {
    Job {
        id: format!("j{i}"),
        user_id: user(i),
        repo: "org/repo".into(),
        status: Status::Queued,
        created_at: 1_700_000_000_000 + i as i64,
        attempts: 0,
    }
}

/// The user of job `i`, and the user a page call `i` asks for.
fn user(i: u64) -> String {
    format!("u{}", i % 100)
}

/// How many jobs a page of user `u{u}` holds after creating jobs `0..n`.
fn page_len(u: u64, n: u64) -> usize {
    let owned = if u < n { (n - u).div_ceil(100) } else { 0 };
    owned.min(20) as usize
}

/// The hand-written redis-rs layer with ours' guarantees.
mod hand {
    use super::*;

    /// KEYS: job hash, user index, stream. ARGV: id, score, field/value
    /// pairs. Everything is checked before the first write, as ours does,
    /// so a refused create writes nothing: an existing job refuses it, a
    /// foreign type at the stream key is found by TYPE, and ZADD, the one
    /// write a foreign type at the index key could still fail, goes first
    /// (HSET cannot fail on a key EXISTS found free). The stream entry
    /// carries the job's fields and the stream is trimmed to about 10,000
    /// entries, as ours' outbox is by default.
    static CREATE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"
            if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
            local t = redis.call('TYPE', KEYS[3]).ok
            if t ~= 'none' and t ~= 'stream' then
              return redis.error_reply('WRONGTYPE the stream key holds another type')
            end
            redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
            redis.call('HSET', KEYS[1], unpack(ARGV, 3))
            redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', unpack(ARGV, 3))
            return 1",
        )
    });

    /// A status update that never creates a job that is not there (a bare
    /// HSET would leave a hash with one field and no index entry).
    static SET_STATUS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"
            if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
            redis.call('HSET', KEYS[1], 'status', ARGV[1])
            return 1",
        )
    });

    fn status_str(s: Status) -> &'static str {
        match s {
            Status::Queued => "queued",
            Status::Running => "running",
        }
    }

    fn parse_status(s: &str) -> Option<Status> {
        match s {
            "queued" => Some(Status::Queued),
            "running" => Some(Status::Running),
            _ => None,
        }
    }

    /// Returns whether it created the job (false: it existed).
    pub(super) async fn create(conn: &mut ConnectionManager, j: &Job) -> redis::RedisResult<bool> {
        let mut inv = CREATE.prepare_invoke();
        inv.key(format!("job:{}", j.id))
            .key(format!("jobs:user:{}", j.user_id))
            .key("jobs:stream")
            .arg(&j.id)
            .arg(j.created_at)
            .arg("id")
            .arg(&j.id)
            .arg("user_id")
            .arg(&j.user_id)
            .arg("repo")
            .arg(&j.repo)
            .arg("status")
            .arg(status_str(j.status))
            .arg("created_at")
            .arg(j.created_at)
            .arg("attempts")
            .arg(j.attempts);
        let created: i64 = inv.invoke_async(conn).await?;
        Ok(created == 1)
    }

    /// `None` when a field is missing or malformed, like ours' decode error.
    fn decode(mut h: HashMap<String, String>) -> Option<Job> {
        Some(Job {
            id: h.remove("id")?,
            user_id: h.remove("user_id")?,
            repo: h.remove("repo")?,
            status: parse_status(&h.remove("status")?)?,
            created_at: h.remove("created_at")?.parse().ok()?,
            attempts: h.remove("attempts")?.parse().ok()?,
        })
    }

    pub(super) async fn get(
        conn: &mut ConnectionManager,
        id: &str,
    ) -> redis::RedisResult<Option<Job>> {
        let h: HashMap<String, String> = conn.hgetall(format!("job:{id}")).await?;
        Ok(if h.is_empty() { None } else { decode(h) })
    }

    /// Returns whether the job existed (and so was updated).
    pub(super) async fn set_status(
        conn: &mut ConnectionManager,
        id: &str,
        status: Status,
    ) -> redis::RedisResult<bool> {
        let updated: i64 = SET_STATUS
            .key(format!("job:{id}"))
            .arg(status_str(status))
            .invoke_async(conn)
            .await?;
        Ok(updated == 1)
    }

    /// Newest first; a job deleted between the two round trips is dropped.
    pub(super) async fn page(
        conn: &mut ConnectionManager,
        user: &str,
        limit: u64,
    ) -> redis::RedisResult<Vec<Job>> {
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(format!("jobs:user:{user}"))
            .arg("+inf")
            .arg("-inf")
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(format!("job:{id}"));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(conn).await?;
        Ok(hashes
            .into_iter()
            .filter(|h| !h.is_empty())
            .filter_map(decode)
            .collect())
    }
}

/// The TS layer: ioredis from the npm cache, the JS file run by `node`.
mod peer {
    use super::*;

    /// The JS file, next to this bench.
    pub(super) const SCRIPT: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peer/ioredis_layer.js");

    /// Panics naming the apt packages when `tool` does not run.
    pub(super) fn require(tool: &str) -> String {
        let out = std::process::Command::new(tool).arg("--version").output();
        match out {
            Ok(out) if out.status.success() => {
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
            other => panic!(
                "the three-way bench needs `{tool}` (and node + npm): \
                 `apt-get install nodejs npm` ({tool} --version: {other:?})"
            ),
        }
    }

    /// `<cache>/redis-entity/node-ioredis5/node_modules`, installing
    /// ioredis 5 there with npm on first use.
    pub(super) fn node_modules() -> PathBuf {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
            .expect("HOME or XDG_CACHE_HOME")
            .join("redis-entity");
        let dir = cache.join("node-ioredis5");
        if dir.join("node_modules/ioredis/package.json").is_file() {
            return dir.join("node_modules");
        }
        require("npm");
        // Installed next to the final place and renamed, so an interrupted
        // install is never taken for a complete one.
        let partial = cache.join(format!("node-ioredis5.partial-{}", std::process::id()));
        std::fs::create_dir_all(&partial).expect("create the npm cache directory");
        let prefix = partial.display().to_string();
        let args = [
            "install",
            "--prefix",
            prefix.as_str(),
            "--no-audit",
            "--no-fund",
            "ioredis@5",
        ];
        let status = std::process::Command::new("npm").args(args).status();
        if !matches!(status, Ok(s) if s.success()) {
            let _ = std::fs::remove_dir_all(&partial);
            panic!(
                "the three-way bench needs ioredis 5: `npm {}` failed ({status:?})",
                args.join(" ")
            );
        }
        // Another run may have won the race; either copy is complete.
        if std::fs::rename(&partial, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
        dir.join("node_modules")
    }

    /// Runs one JS workload (`ONLY=<name>`) and returns its elapsed time.
    pub(super) async fn run(node_path: &Path, url: &str, n: u64, workload: &str) -> Duration {
        let out = tokio::process::Command::new("node")
            .arg(SCRIPT)
            .env("NODE_PATH", node_path)
            .env("REDIS_URL", url)
            .env("N", n.to_string())
            .env("ONLY", workload)
            .output()
            .await
            .expect("run node");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "node {SCRIPT} ({workload}) failed: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // Exactly one line for the one workload: {"workload", "ops", "ns", …}.
        let line: serde_json::Value = stdout
            .lines()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no result line from node ({workload}): {stdout}"));
        assert_eq!(
            line["workload"], workload,
            "node answered for another workload"
        );
        let ns: u64 = line["ns"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no elapsed ns in {line}"));
        Duration::from_nanos(ns)
    }
}

/// One operation kind of the workload set.
#[derive(Clone, Copy)]
enum Op {
    Create,
    Get,
    UpdateStatus,
    Page,
}

/// One row of the table.
struct Workload {
    /// The name in the table.
    label: &'static str,
    /// The JS file's name for it (its `ONLY` value).
    js: &'static str,
    op: Op,
    /// 1: sequential; more: concurrent tasks sharing one counter.
    tasks: u64,
    /// Starts from an empty db (the JS layer flushes before its creates).
    flush_first: bool,
}

impl Workload {
    /// Pages are N/10 calls, everything else N.
    fn ops(&self, n: u64) -> u64 {
        match self.op {
            Op::Page => n / 10,
            _ => n,
        }
    }
}

const WORKLOADS: [Workload; 7] = [
    Workload {
        label: "seq create",
        js: "seq create_job",
        op: Op::Create,
        tasks: 1,
        flush_first: true,
    },
    Workload {
        label: "seq get",
        js: "seq get_job",
        op: Op::Get,
        tasks: 1,
        flush_first: false,
    },
    Workload {
        label: "seq update_status",
        js: "seq update_status",
        op: Op::UpdateStatus,
        tasks: 1,
        flush_first: false,
    },
    Workload {
        label: "seq page(20)",
        js: "seq list_user_jobs(20)",
        op: Op::Page,
        tasks: 1,
        flush_first: false,
    },
    Workload {
        label: "conc64 create",
        js: "conc64 create_job",
        op: Op::Create,
        tasks: 64,
        flush_first: true,
    },
    Workload {
        label: "conc64 get",
        js: "conc64 get_job",
        op: Op::Get,
        tasks: 64,
        flush_first: false,
    },
    Workload {
        label: "conc64 page(20)",
        js: "conc64 list_user_jobs(20)",
        op: Op::Page,
        tasks: 64,
        flush_first: false,
    },
];

/// The two Rust layers; cloning shares the underlying multiplexed connection.
#[derive(Clone)]
enum Layer {
    Ours(Client),
    Hand(ConnectionManager),
}

impl Layer {
    /// Operation `i` of `op`, checking its answer so a layer that silently
    /// did less cannot look faster.
    async fn call(&mut self, op: Op, i: u64, n: u64) {
        let id = format!("j{i}");
        match (self, op) {
            (Layer::Ours(c), Op::Create) => {
                job(i).create(c).await.expect("ours: create");
            }
            (Layer::Ours(c), Op::Get) => {
                let found = Job::get(c, &id).await.expect("ours: get");
                assert_eq!(found.expect("ours: job present").id, id);
            }
            (Layer::Ours(c), Op::UpdateStatus) => {
                let patch = JobPatch {
                    status: Some(Status::Running),
                    ..Default::default()
                };
                Job::patch(c, &id, &patch).await.expect("ours: patch");
            }
            (Layer::Ours(c), Op::Page) => {
                let page = Job::by_user_id(c, &user(i), Page::newest_first(20)).await;
                assert_eq!(page.expect("ours: page").len(), page_len(i % 100, n));
            }
            (Layer::Hand(c), Op::Create) => {
                assert!(
                    hand::create(c, &job(i)).await.expect("hand: create"),
                    "hand: {id} existed"
                );
            }
            (Layer::Hand(c), Op::Get) => {
                let found = hand::get(c, &id).await.expect("hand: get");
                assert_eq!(found.expect("hand: job present").id, id);
            }
            (Layer::Hand(c), Op::UpdateStatus) => {
                let updated = hand::set_status(c, &id, Status::Running).await;
                assert!(updated.expect("hand: set status"), "hand: {id} missing");
            }
            (Layer::Hand(c), Op::Page) => {
                let page = hand::page(c, &user(i), 20).await.expect("hand: page");
                assert_eq!(page.len(), page_len(i % 100, n));
            }
        }
    }

    /// Runs workload `w` and returns its elapsed time.
    async fn drive(&self, w: &Workload, n: u64) -> Duration {
        let total = w.ops(n);
        let op = w.op;
        let started = Instant::now();
        if w.tasks == 1 {
            let mut layer = self.clone();
            for i in 0..total {
                layer.call(op, i, n).await;
            }
        } else {
            // Like the JS `next++`: each task takes the next unclaimed `i`.
            let next = Arc::new(AtomicU64::new(0));
            let tasks: Vec<_> = (0..w.tasks)
                .map(|_| {
                    let (mut layer, next) = (self.clone(), next.clone());
                    tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= total {
                                break;
                            }
                            layer.call(op, i, n).await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("bench task");
            }
        }
        started.elapsed()
    }
}

/// The harness's and clients' connection chatter (ioredis' ready check,
/// the RESETSTAT/INFO around each workload, the JS layer's FLUSHDB): not
/// part of any operation, so left out of the server time.
const NOT_COUNTED: [&str; 10] = [
    "info", "config", "flushdb", "flushall", "client", "hello", "select", "ping", "auth", "command",
];

/// `INFO commandstats` since the last `CONFIG RESETSTAT`: command -> (calls, usec).
type CommandStats = BTreeMap<String, (u64, u64)>;

async fn reset_stats(conn: &mut ConnectionManager) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(conn)
        .await
        .expect("resetstat");
}

async fn read_stats(conn: &mut ConnectionManager) -> CommandStats {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("info");
    let mut stats = CommandStats::new();
    for line in info.lines() {
        // cmdstat_hset:calls=20000,usec=12345,usec_per_call=0.62,…
        let Some((name, fields)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        // Subcommands (`script|load`, `client|setinfo`) count under their command.
        if NOT_COUNTED.contains(&name.split('|').next().unwrap_or(name)) {
            continue;
        }
        let field = |key: &str| {
            fields
                .split(',')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        stats.insert(name.to_string(), (field("calls"), field("usec")));
    }
    stats
}

async fn flush(conn: &mut ConnectionManager) {
    let _: () = redis::cmd("FLUSHALL")
        .query_async(conn)
        .await
        .expect("flushall");
}

/// Commands that run a script: their time includes every `redis.call` the
/// script makes.
const SCRIPT_RUNS: [&str; 6] = [
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
];

/// Whether `name` was (taken to be) called from inside a script.
///
/// `INFO commandstats` counts a script's `redis.call`s under their own
/// commands as well, and their time is already in the script's; adding
/// both would count it twice. The stats cannot tell a nested HSET from a
/// top-level one, so in a workload that ran scripts every other data
/// command is taken as nested: true of every layer here, none of which
/// mixes scripts and plain commands within one workload.
fn nested(name: &str, stats: &CommandStats) -> bool {
    let runs_scripts = stats.keys().any(|n| SCRIPT_RUNS.contains(&n.as_str()));
    runs_scripts && !SCRIPT_RUNS.contains(&name) && !name.starts_with("script|")
}

/// One layer's measurement of one workload in one round.
struct Sample {
    ops_per_sec: f64,
    /// Server usec of the commands the layer sent (not those its scripts
    /// called) / operations.
    server_usec_per_op: f64,
    stats: CommandStats,
    ops: u64,
}

impl Sample {
    fn new(ops: u64, elapsed: Duration, stats: CommandStats) -> Self {
        let sent = stats.iter().filter(|(name, _)| !nested(name, &stats));
        let usec: u64 = sent.map(|(_, (_, usec))| usec).sum();
        Sample {
            ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
            server_usec_per_op: usec as f64 / ops as f64,
            stats,
            ops,
        }
    }
}

const SIDES: [&str; 3] = ["TS ioredis", "ours", "hand-written"];

/// `hgetall ×20 @ 0.9` per command sent, then the commands its scripts
/// called: calls per operation (or in all, when rarer than one in a
/// hundred) and µs per call, medians over the rounds.
fn breakdown(samples: &[Sample]) -> String {
    let names: BTreeSet<&String> = samples.iter().flat_map(|s| s.stats.keys()).collect();
    let describe = |name: &String| {
        let present = || {
            samples
                .iter()
                .filter_map(|s| s.stats.get(name).map(|st| (s, st)))
        };
        let calls = median(present().map(|(_, (calls, _))| *calls as f64));
        let per_op = median(present().map(|(s, (calls, _))| *calls as f64 / s.ops as f64));
        let per_call =
            median(present().map(|(_, (calls, usec))| *usec as f64 / (*calls).max(1) as f64));
        if per_op < 0.01 {
            format!("{name} {calls:.0} in all @ {per_call:.2}")
        } else {
            format!("{name} ×{per_op:.2} @ {per_call:.2}")
        }
    };
    let is_nested = |name: &&String| {
        let first = samples.iter().find(|s| s.stats.contains_key(*name));
        first.is_some_and(|s| nested(name, &s.stats))
    };
    let (inside, sent): (Vec<&String>, Vec<&String>) = names.into_iter().partition(is_nested);
    let sent: Vec<String> = sent.into_iter().map(describe).collect();
    let inside: Vec<String> = inside.into_iter().map(describe).collect();
    if inside.is_empty() {
        sent.join(", ")
    } else {
        format!("{}; inside: {}", sent.join(", "), inside.join(", "))
    }
}

/// `PROFILE=<workload label>`: only ours, that workload ten times after
/// the data it reads is created, for a profiler attached to the process
/// (`perf record -g`); prints each repetition's rate.
async fn profile(ours: &Layer, label: &str, n: u64, admin: &mut ConnectionManager) {
    let Some(target) = WORKLOADS.iter().find(|w| w.label == label) else {
        let labels: Vec<&str> = WORKLOADS.iter().map(|w| w.label).collect();
        panic!("PROFILE={label:?}: expected one of {labels:?}");
    };
    flush(admin).await;
    ours.drive(&WORKLOADS[0], n).await;
    for _ in 0..10 {
        if target.flush_first {
            flush(admin).await;
        }
        let elapsed = ours.drive(target, n).await;
        let rate = target.ops(n) as f64 / elapsed.as_secs_f64();
        println!("{label}: {rate:.0} ops/s");
    }
}

#[tokio::main]
async fn main() {
    let n = env_u64("N", 20_000);
    let rounds = env_u64("ROUNDS", 3) as usize;
    // Whole pages for every user, and the JS's N/10 calls a whole number.
    assert!(
        n >= 10 && n.is_multiple_of(10),
        "N={n}: use a multiple of 10"
    );
    assert!(rounds >= 1, "ROUNDS={rounds}: at least 1");
    let node = peer::require("node");
    let node_path = peer::node_modules();

    let server = RedisServer::start();
    let url = server.url();
    let client = Client::connect(server.config()).await.expect("client");
    let raw = redis::Client::open(url.as_str()).expect("raw client");
    let hand_conn = ConnectionManager::new(raw.clone())
        .await
        .expect("hand connection");
    // Its own connection, so the harness's commands never queue behind a layer's.
    let mut admin = ConnectionManager::new(raw).await.expect("admin connection");
    let rust_layers = [Layer::Ours(client.clone()), Layer::Hand(hand_conn)];
    let server_version: String = {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut admin)
            .await
            .expect("info server");
        let version = info.lines().find_map(|l| l.strip_prefix("redis_version:"));
        version.unwrap_or("?").trim().to_string()
    };

    if let Ok(label) = std::env::var("PROFILE") {
        profile(&rust_layers[0], &label, n, &mut admin).await;
        client.shutdown().await;
        return;
    }

    println!("N={n} ROUNDS={rounds} cargo bench --bench three_way");
    println!();
    println!(
        "redis-server {server_version} on 127.0.0.1 (private), node {node}, ioredis 5; medians of {rounds} round(s)"
    );
    println!();

    // [workload][side] -> one sample per round.
    let mut samples: Vec<[Vec<Sample>; 3]> = WORKLOADS.iter().map(|_| Default::default()).collect();
    for round in 0..rounds {
        // Rotate which layer goes first, spreading warm-up and machine noise.
        for side in (0..3).map(|k| (k + round) % 3) {
            eprintln!("round {}/{rounds}: {}", round + 1, SIDES[side]);
            flush(&mut admin).await;
            for (w, workload) in WORKLOADS.iter().enumerate() {
                let ops = workload.ops(n);
                // The JS layer flushes by itself, inside the timed process.
                if workload.flush_first && side != 0 {
                    flush(&mut admin).await;
                }
                reset_stats(&mut admin).await;
                let elapsed = match side {
                    0 => peer::run(&node_path, &url, n, workload.js).await,
                    _ => rust_layers[side - 1].drive(workload, n).await,
                };
                let stats = read_stats(&mut admin).await;
                samples[w][side].push(Sample::new(ops, elapsed, stats));
            }
        }
    }

    println!(
        "| workload | TS ioredis ops/s | ours ops/s | hand-written ops/s | ours/TS | ours/hand | server µs per op: TS / ours / hand |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (workload, sides) in WORKLOADS.iter().zip(&samples) {
        let rate = |side: usize| median(sides[side].iter().map(|s| s.ops_per_sec));
        let usec = |side: usize| median(sides[side].iter().map(|s| s.server_usec_per_op));
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.1} / {:.1} / {:.1} |",
            workload.label,
            rate(0),
            rate(1),
            rate(2),
            rate(1) / rate(0),
            rate(1) / rate(2),
            usec(0),
            usec(1),
            usec(2),
        );
    }
    println!();
    println!(
        "Server commands per operation: `command ×calls per op @ µs per call` (medians); \
         after `inside:` the commands the scripts called, whose time is in the script's"
    );
    println!();
    println!("| workload | TS ioredis | ours | hand-written |");
    println!("| --- | --- | --- | --- |");
    for (workload, sides) in WORKLOADS.iter().zip(&samples) {
        println!(
            "| {} | {} | {} | {} |",
            workload.label,
            breakdown(&sides[0]),
            breakdown(&sides[1]),
            breakdown(&sides[2]),
        );
    }

    client.shutdown().await;
    drop(server);
}

//! Generated entity code vs a hand-written redis-rs equivalent, side by side
//! in one run against a private `redis-server`.
//!
//! The hand-written side has the same semantics and the same round trips:
//! each write is one Lua script specialised for `Job` (existence check,
//! hash replace, index moves), `get` is one HGETALL decoded by hand, and a
//! page is one Lua script returning the hashes of the page.
//!
//! ```text
//! cargo bench --bench entity_ops
//! ```

mod common;

use std::collections::HashMap;

use common::{Op, measure, median, op};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis_runtime::testing::RedisServer;
use redis_runtime::{Client, Page, RedisEntity, RedisValue};

#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Queued,
    Running,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(Status::Queued),
            "running" => Some(Status::Running),
            _ => None,
        }
    }
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "job:{id}")]
#[redis(sorted_index(key = "jobs:user:{user_id}", score = "created_at"))]
#[redis(index(key = "jobs:status:{status}"))]
struct Job {
    id: String,
    user_id: String,
    status: Status,
    created_at: i64,
    command: String,
    error: Option<String>,
}

fn job(i: u64, status: Status) -> Job {
    Job {
        id: format!("j{i}"),
        user_id: format!("u{}", i % 10),
        status,
        created_at: 1_700_000_000_000 + i as i64,
        command: "cargo test --workspace".into(),
        error: None,
    }
}

/// The hand-written data layer: what a careful engineer writes per entity.
mod hand {
    use super::*;

    pub(super) static CREATE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"
            if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
            redis.call('HSET', KEYS[1], unpack(ARGV, 4))
            redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
            redis.call('SADD', KEYS[3], ARGV[1])
            return 1",
        )
    });

    /// Full replace with index moves; KEYS: job, new user index, new status index.
    pub(super) static UPDATE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"
            local old = redis.call('HMGET', KEYS[1], 'user_id', 'status')
            if not old[1] then return -1 end
            local ttl = redis.call('PTTL', KEYS[1])
            redis.call('DEL', KEYS[1])
            redis.call('HSET', KEYS[1], unpack(ARGV, 4))
            if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
            local old_user = 'jobs:user:' .. old[1]
            if old_user ~= KEYS[2] then redis.call('ZREM', old_user, ARGV[1]) end
            redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
            local old_status = 'jobs:status:' .. old[2]
            if old_status ~= KEYS[3] then redis.call('SREM', old_status, ARGV[1]) end
            redis.call('SADD', KEYS[3], ARGV[1])
            return 1",
        )
    });

    pub(super) static PAGE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"
            local ids = redis.call('ZRANGE', KEYS[1], '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', ARGV[1], ARGV[2])
            local out = {}
            for _, id in ipairs(ids) do
              local h = redis.call('HGETALL', 'job:' .. id)
              if #h > 0 then out[#out + 1] = h end
            end
            return out",
        )
    });

    fn fields(j: &Job) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("id", j.id.clone()),
            ("user_id", j.user_id.clone()),
            ("status", j.status.as_str().to_string()),
            ("created_at", j.created_at.to_string()),
            ("command", j.command.clone()),
        ];
        if let Some(e) = &j.error {
            f.push(("error", e.clone()));
        }
        f
    }

    fn invocation<'a>(script: &'a redis::Script, j: &Job) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.key(format!("job:{}", j.id))
            .key(format!("jobs:user:{}", j.user_id))
            .key(format!("jobs:status:{}", j.status.as_str()))
            .arg(&j.id)
            .arg(j.created_at)
            .arg(0);
        for (k, v) in fields(j) {
            inv.arg(k).arg(v);
        }
        inv
    }

    pub(super) async fn create(conn: &mut ConnectionManager, j: &Job) -> redis::RedisResult<bool> {
        let created: i64 = invocation(&CREATE, j).invoke_async(conn).await?;
        Ok(created == 1)
    }

    pub(super) async fn update(conn: &mut ConnectionManager, j: &Job) -> redis::RedisResult<bool> {
        let updated: i64 = invocation(&UPDATE, j).invoke_async(conn).await?;
        Ok(updated == 1)
    }

    pub(super) fn decode(mut h: HashMap<String, String>) -> Option<Job> {
        Some(Job {
            id: h.remove("id")?,
            user_id: h.remove("user_id")?,
            status: Status::parse(&h.remove("status")?)?,
            created_at: h.remove("created_at")?.parse().ok()?,
            command: h.remove("command")?,
            error: h.remove("error"),
        })
    }

    pub(super) async fn get(
        conn: &mut ConnectionManager,
        id: &str,
    ) -> redis::RedisResult<Option<Job>> {
        let h: HashMap<String, String> = conn.hgetall(format!("job:{id}")).await?;
        Ok(if h.is_empty() { None } else { decode(h) })
    }

    pub(super) async fn page(
        conn: &mut ConnectionManager,
        user: &str,
        limit: u64,
    ) -> redis::RedisResult<Vec<Job>> {
        let rows: Vec<HashMap<String, String>> = PAGE
            .key(format!("jobs:user:{user}"))
            .arg(0)
            .arg(limit)
            .invoke_async(conn)
            .await?;
        Ok(rows.into_iter().filter_map(decode).collect())
    }
}

const SEQUENTIAL_OPS: u64 = 6_000;
const CONCURRENT_TASKS: u64 = 64;
const CONCURRENT_OPS: u64 = 20_000;

async fn flush(conn: &mut ConnectionManager) {
    let _: () = redis::cmd("FLUSHALL")
        .query_async(conn)
        .await
        .expect("flushall");
}

struct Row {
    workload: String,
    ours: f64,
    hand: f64,
    ours_usec: f64,
    hand_usec: f64,
}

/// Server-side microseconds per call of the busiest command since the
/// last `CONFIG RESETSTAT`: where the time goes when Redis is the bottleneck.
async fn server_usec_per_call(conn: &mut ConnectionManager) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("info");
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(conn)
        .await
        .expect("resetstat");
    let mut busiest = (0u64, 0.0);
    for line in info.lines().filter(|l| l.starts_with("cmdstat_")) {
        let field = |name: &str| {
            line.split([':', ','])
                .find_map(|kv| kv.strip_prefix(name))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let usec = field("usec=") as u64;
        if usec > busiest.0
            && !line.starts_with("cmdstat_info")
            && !line.starts_with("cmdstat_config")
        {
            busiest = (usec, field("usec_per_call="));
        }
    }
    busiest.1
}

/// The four workloads on our generated code.
fn ours(client: &Client) -> Vec<Op> {
    vec![
        op(client, |c, i| async move {
            job(i, Status::Queued).create(&c).await.expect("create");
        }),
        op(client, |c, i| async move {
            let found = Job::get(&c, &format!("j{i}")).await.expect("get");
            found.expect("present");
        }),
        op(client, |c, i| async move {
            job(i, Status::Running).update(&c).await.expect("update");
        }),
        op(client, |c, i| async move {
            let user = format!("u{}", i % 10);
            let page = Job::by_user_id(&c, &user, Page::newest_first(20)).await;
            assert_eq!(page.expect("page").len(), 20);
        }),
    ]
}

/// The same four workloads, hand-written.
fn handwritten(conn: &ConnectionManager) -> Vec<Op> {
    vec![
        op(conn, |mut c, i| async move {
            let created = hand::create(&mut c, &job(i, Status::Queued)).await;
            assert!(created.expect("create"));
        }),
        op(conn, |mut c, i| async move {
            let found = hand::get(&mut c, &format!("j{i}")).await.expect("get");
            found.expect("present");
        }),
        op(conn, |mut c, i| async move {
            let updated = hand::update(&mut c, &job(i, Status::Running)).await;
            assert!(updated.expect("update"));
        }),
        op(conn, |mut c, i| async move {
            let user = format!("u{}", i % 10);
            let page = hand::page(&mut c, &user, 20).await;
            assert_eq!(page.expect("page").len(), 20);
        }),
    ]
}

const WORKLOADS: [&str; 4] = ["create", "get", "update (indexed field)", "page of 20"];

#[tokio::main]
async fn main() {
    let server = RedisServer::start();
    let client = Client::connect(server.config()).await.expect("client");
    let raw = redis::Client::open(server.url()).expect("raw client");
    let mut conn = ConnectionManager::new(raw.clone())
        .await
        .expect("raw connection");
    let mut stats = ConnectionManager::new(raw).await.expect("stats connection");
    let sides = [ours(&client), handwritten(&conn)];
    let mut rows = Vec::new();

    for (mode, tasks, total) in [
        ("sequential", 1, SEQUENTIAL_OPS),
        ("64 tasks", CONCURRENT_TASKS, CONCURRENT_OPS),
    ] {
        // [side][workload] -> samples of (ops/s, server usec per call); the
        // median over rounds is reported, since this machine is shared.
        let mut samples: [[Vec<(f64, f64)>; 4]; 2] = Default::default();
        const ROUNDS: usize = 5;
        for round in 0..ROUNDS {
            // Alternate which side goes first to spread warm-up and noise.
            for side in [round % 2, 1 - round % 2] {
                flush(&mut conn).await;
                server_usec_per_call(&mut stats).await;
                for (n, workload) in sides[side].iter().enumerate() {
                    let count = if n == 3 { total / 4 } else { total };
                    let w = workload.clone();
                    let rate = measure(tasks, count, move |i| w(i)).await;
                    let usec = server_usec_per_call(&mut stats).await;
                    samples[side][n].push((rate, usec));
                }
            }
        }
        for (n, name) in WORKLOADS.iter().enumerate() {
            rows.push(Row {
                workload: format!("{name}, {mode}"),
                ours: median(samples[0][n].iter().map(|s| s.0)),
                hand: median(samples[1][n].iter().map(|s| s.0)),
                ours_usec: median(samples[0][n].iter().map(|s| s.1)),
                hand_usec: median(samples[1][n].iter().map(|s| s.1)),
            });
        }
    }

    println!(
        "| workload | ours ops/s | hand-written ops/s | ratio | server µs/call ours / hand-written |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for row in rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.1} / {:.1} |",
            row.workload,
            row.ours,
            row.hand,
            row.ours / row.hand,
            row.ours_usec,
            row.hand_usec
        );
    }
    client.shutdown().await;
    drop(server);
}

//! The concurrency operations (atomic counter, conditional claim, filtered
//! page) against a hand-written redis-rs equivalent with the same
//! guarantees, side by side in one run against a private `redis-server`.
//!
//! * **increment**: `Job::incr_attempts` against a Lua script that checks
//!   the job exists and the stored value is an integer, bounds the result
//!   to the field's type and writes it (one round trip each).
//! * **claim**: `Job::patch_if` moving a job from `queued` to `running`
//!   (the status is a set index) against a Lua script that checks the
//!   stored status, writes it and moves the set entry, and returns the
//!   stored hash when the status did not hold.
//! * **filtered page of 20**: a user's running jobs newest first,
//!   `Job::by_user_id_where`, against a Lua script that walks the user's
//!   sorted index checking set membership and returns the ids, then one
//!   pipeline of `HGETALL` dropping missing hashes (two round trips each).
//!
//! Each side runs on freshly created data: 10 users, every second job
//! claimed, so a filtered page skips half of what it walks.
//!
//! ```text
//! cargo bench --bench concurrency_ops
//! ```

mod common;

use std::collections::HashMap;

use common::{Op, measure, median, op};
use redis::aio::ConnectionManager;
use redis_runtime::testing::RedisServer;
use redis_runtime::{Client, Conditional, Page, RedisEntity, RedisValue, ScoreRange};

#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Queued,
    Running,
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
    attempts: u32,
    command: String,
}

fn job(i: u64) -> Job {
    Job {
        id: format!("j{i}"),
        user_id: format!("u{}", i % USERS),
        status: Status::Queued,
        created_at: 1_700_000_000_000 + i as i64,
        attempts: 0,
        command: "cargo test --workspace".into(),
    }
}

const USERS: u64 = 10;

/// The `k`-th job to claim: every other block of `USERS` jobs, so that each
/// user has every second of their jobs claimed.
fn claimed(k: u64) -> u64 {
    (k / USERS) * 2 * USERS + k % USERS
}

/// The hand-written layer: what a careful engineer writes for the same
/// guarantees with redis-rs and Lua.
mod hand {
    use super::*;

    pub(super) static INCREMENT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(
        || {
            redis::Script::new(
                r"
                if redis.call('EXISTS', KEYS[1]) == 0 then return false end
                local cur = redis.call('HGET', KEYS[1], 'attempts') or '0'
                if not string.match(cur, '^-?%d+$') then return redis.error_reply('not an integer') end
                local v = tonumber(cur) + tonumber(ARGV[1])
                if v < 0 or v > 4294967295 then return redis.error_reply('out of range') end
                redis.call('HSET', KEYS[1], 'attempts', v)
                return v",
            )
        },
    );

    /// KEYS: job, old status set, new status set; ARGV: id, old, new.
    pub(super) static CLAIM: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"
            local status = redis.call('HGET', KEYS[1], 'status')
            if not status then return -1 end
            if status ~= ARGV[2] then return redis.call('HGETALL', KEYS[1]) end
            redis.call('HSET', KEYS[1], 'status', ARGV[3])
            redis.call('SREM', KEYS[2], ARGV[1])
            redis.call('SADD', KEYS[3], ARGV[1])
            return 1",
        )
    });

    /// KEYS: the user's sorted index, the status set; ARGV: limit.
    pub(super) static FILTER: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"
                local limit, found, pos = tonumber(ARGV[1]), {}, 0
                while #found < limit do
                  local ids = redis.call('ZRANGE', KEYS[1], pos, pos + 199, 'REV')
                  for _, id in ipairs(ids) do
                    if #found < limit and redis.call('SISMEMBER', KEYS[2], id) == 1 then
                      found[#found + 1] = id
                    end
                  end
                  if #ids < 200 then break end
                  pos = pos + 200
                end
                return found",
        )
    });

    pub(super) async fn increment(
        conn: &mut ConnectionManager,
        id: &str,
    ) -> redis::RedisResult<i64> {
        INCREMENT
            .key(format!("job:{id}"))
            .arg(1)
            .invoke_async(conn)
            .await
    }

    pub(super) async fn claim(conn: &mut ConnectionManager, id: &str) -> redis::RedisResult<bool> {
        let reply: redis::Value = CLAIM
            .key(format!("job:{id}"))
            .key("jobs:status:queued")
            .key("jobs:status:running")
            .arg(id)
            .arg("queued")
            .arg("running")
            .invoke_async(conn)
            .await?;
        Ok(reply == redis::Value::Int(1))
    }

    fn decode(mut h: HashMap<String, String>) -> Option<Job> {
        Some(Job {
            id: h.remove("id")?,
            user_id: h.remove("user_id")?,
            status: match h.remove("status")?.as_str() {
                "queued" => Status::Queued,
                "running" => Status::Running,
                _ => return None,
            },
            created_at: h.remove("created_at")?.parse().ok()?,
            attempts: h.remove("attempts")?.parse().ok()?,
            command: h.remove("command")?,
        })
    }

    pub(super) async fn running_page(
        conn: &mut ConnectionManager,
        user: &str,
    ) -> redis::RedisResult<Vec<Job>> {
        let ids: Vec<String> = FILTER
            .key(format!("jobs:user:{user}"))
            .key("jobs:status:running")
            .arg(20)
            .invoke_async(conn)
            .await?;
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(format!("job:{id}"));
        }
        let rows: Vec<HashMap<String, String>> = pipe.query_async(conn).await?;
        Ok(rows.into_iter().filter_map(decode).collect())
    }
}

/// Sends `args` as one command on `conn`.
async fn raw(conn: &mut ConnectionManager, args: &[&str]) -> redis::Value {
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(conn)
        .await
        .expect("command")
}

/// Server µs per operation since the last reset: the time Redis records
/// for the commands the layers send themselves (`EVALSHA`, `HGETALL`; the
/// commands a script calls are inside its time), over `ops`.
async fn server_usec_per_op(conn: &mut ConnectionManager, ops: u64) -> f64 {
    let redis::Value::BulkString(info) = raw(conn, &["INFO", "commandstats"]).await else {
        panic!("INFO replied with something else");
    };
    raw(conn, &["CONFIG", "RESETSTAT"]).await;
    let info = String::from_utf8_lossy(&info);
    let usec: f64 = info
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_hgetall:"))
        .filter_map(|l| {
            l.split([':', ','])
                .find_map(|kv| kv.strip_prefix("usec="))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .sum();
    usec / ops as f64
}

fn ours(client: &Client) -> [Op; 3] {
    [
        op(client, |c, i| async move {
            let n = Job::incr_attempts(&c, &format!("j{i}"), 1).await;
            assert_eq!(n.expect("increment"), 1);
        }),
        op(client, |c, i| async move {
            let expected = JobPatch {
                status: Some(Status::Queued),
                ..Default::default()
            };
            let claim = JobPatch {
                status: Some(Status::Running),
                ..Default::default()
            };
            let done = Job::patch_if(&c, &format!("j{}", claimed(i)), &expected, &claim).await;
            assert_eq!(done.expect("claim"), Conditional::Applied);
        }),
        op(client, |c, i| async move {
            let running = JobFilter {
                status: Some(Status::Running),
            };
            let user = format!("u{}", i % USERS);
            let all = ScoreRange::all();
            let page =
                Job::by_user_id_where(&c, &user, &running, &all, Page::newest_first(20)).await;
            assert_eq!(page.expect("page").len(), 20);
        }),
    ]
}

fn handwritten(conn: &ConnectionManager) -> [Op; 3] {
    [
        op(conn, |mut c, i| async move {
            let n = hand::increment(&mut c, &format!("j{i}")).await;
            assert_eq!(n.expect("increment"), 1);
        }),
        op(conn, |mut c, i| async move {
            let done = hand::claim(&mut c, &format!("j{}", claimed(i))).await;
            assert!(done.expect("claim"));
        }),
        op(conn, |mut c, i| async move {
            let page = hand::running_page(&mut c, &format!("u{}", i % USERS)).await;
            assert_eq!(page.expect("page").len(), 20);
        }),
    ]
}

const WORKLOADS: [&str; 3] = [
    "increment",
    "claim (conditional patch)",
    "filtered page of 20",
];

#[tokio::main]
async fn main() {
    let server = RedisServer::start();
    let client = Client::connect(server.config()).await.expect("client");
    let raw_client = redis::Client::open(server.url()).expect("raw client");
    let conn = ConnectionManager::new(raw_client.clone())
        .await
        .expect("raw connection");
    let mut admin = ConnectionManager::new(raw_client)
        .await
        .expect("admin connection");
    let sides = [ours(&client), handwritten(&conn)];

    println!("cargo bench --bench concurrency_ops");
    println!();
    println!(
        "| workload | ours ops/s | hand-written ops/s | ratio | server µs per op ours / hand-written |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (mode, tasks, jobs) in [("sequential", 1, 4_000u64), ("64 tasks", 64, 20_000)] {
        // [side][workload] -> (ops/s, server µs per op), per round.
        let mut samples: [[Vec<(f64, f64)>; 3]; 2] = Default::default();
        for round in 0..3 {
            for side in [round % 2, 1 - round % 2] {
                raw(&mut admin, &["FLUSHALL"]).await;
                // Fresh data for every side: all queued, created by ours.
                let seed = measure(64, jobs, {
                    let client = client.clone();
                    move |i| {
                        let client = client.clone();
                        async move {
                            job(i).create(&client).await.expect("seed");
                        }
                    }
                });
                seed.await;
                raw(&mut admin, &["CONFIG", "RESETSTAT"]).await;
                // Increment every job, claim every second one, then page.
                let counts = [jobs, jobs / 2, jobs / 10];
                for (n, workload) in sides[side].iter().enumerate() {
                    let w = workload.clone();
                    let rate = measure(tasks, counts[n], move |i| w(i)).await;
                    let usec = server_usec_per_op(&mut admin, counts[n]).await;
                    samples[side][n].push((rate, usec));
                }
            }
        }
        for (n, name) in WORKLOADS.iter().enumerate() {
            let ours = median(samples[0][n].iter().map(|s| s.0));
            let hand = median(samples[1][n].iter().map(|s| s.0));
            println!(
                "| {name}, {mode} | {ours:.0} | {hand:.0} | {:.2} | {:.1} / {:.1} |",
                ours / hand,
                median(samples[0][n].iter().map(|s| s.1)),
                median(samples[1][n].iter().map(|s| s.1)),
            );
        }
    }
    client.shutdown().await;
    drop(server);
}

//! Server states produced for real on private servers, and what an
//! operation gets: out of memory, ACL refusals, wrong credentials, a
//! read-only replica, a busy script, a replica whose primary is down
//! (`MASTERDOWN`) and a blocking pop ended by a failover (`UNBLOCKED`). The
//! classifier's other cases (`LOADING`, `TRYAGAIN`, `CLUSTERDOWN`) are unit
//! tests in `src/error/classify.rs`, on the replies redis-rs parses.

use std::time::{Duration, Instant};

use redis_runtime::queue::ListQueue;
use redis_runtime::testing::{
    RedisServer, blocked_clients, create_acl_user, eventually, raw_command, raw_query,
};
use redis_runtime::{Client, Context, Error, RedisEntity, Unavailability};

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "job:{id}")]
#[redis(index(key = "jobs:status:{status}"))]
struct Job {
    id: String,
    status: String,
}

fn job(id: &str) -> Job {
    Job {
        id: id.into(),
        status: "queued".into(),
    }
}

/// Asserts nothing of `id`'s create reached the server: no hash, no index
/// entry.
async fn assert_nothing_written(admin: &Client, id: &str) {
    let key = format!("job:{id}");
    let exists: i64 = raw_query(admin, &["EXISTS", &key]).await;
    let indexed: i64 = raw_query(admin, &["SISMEMBER", "jobs:status:queued", id]).await;
    assert_eq!((exists, indexed), (0, 0), "{id} was (half) written");
}

/// Asserts `err` names the operation, the key pattern and the server's reply.
fn assert_names_everything(err: &Error, operation: &str, reply: &str) {
    let text = err.to_string();
    for part in [operation, "job:{id}", reply] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
}

/// A client of `server` as the ACL user `user`.
async fn client_as(server: &RedisServer, user: &str, password: &str) -> Client {
    let url = format!("redis://{user}:{password}@127.0.0.1:{}", server.port());
    server
        .client_with(|_| redis_runtime::Config::builder(url))
        .await
}

#[tokio::test]
async fn a_write_over_maxmemory_fails_with_storage_oom_and_writes_nothing() {
    let (_server, client) = RedisServer::start_with_client().await;
    raw_command(
        &client,
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
    )
    .await;
    raw_command(&client, &["CONFIG", "SET", "maxmemory", "1"]).await;

    let started = Instant::now();
    let err = job("j1").create(&client).await.expect_err("over maxmemory");
    assert_eq!(err.code(), "STORAGE_OOM", "{err}");
    assert!(matches!(err, Error::OutOfMemory { .. }));
    assert_names_everything(&err, "create", "OOM");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "OOM is not waited out: {:?}",
        started.elapsed()
    );

    raw_command(&client, &["CONFIG", "SET", "maxmemory", "0"]).await;
    assert_nothing_written(&client, "j1").await;
    job("j1").create(&client).await.expect("room again");
}

#[tokio::test]
async fn an_acl_user_without_the_key_gets_storage_noperm() {
    let (server, admin) = RedisServer::start_with_client().await;
    raw_command(
        &admin,
        &[
            "ACL",
            "SETUSER",
            "other",
            "on",
            ">pw",
            "resetkeys",
            "~other:*",
            "&*",
            "+@all",
        ],
    )
    .await;
    let client = client_as(&server, "other", "pw").await;

    let err = job("j1")
        .create(&client)
        .await
        .expect_err("no access to job:*");
    assert_eq!(err.code(), "STORAGE_NOPERM", "{err}");
    assert!(matches!(err, Error::PermissionDenied { .. }));
    assert_names_everything(&err, "create", "NOPERM");
    assert_nothing_written(&admin, "j1").await;

    let err = Job::get(&client, "j1").await.expect_err("no read either");
    assert_eq!(err.code(), "STORAGE_NOPERM", "{err}");
}

#[tokio::test]
async fn wrong_or_missing_credentials_get_storage_auth() {
    let (server, admin) = RedisServer::start_with_client().await;
    create_acl_user(&admin, "app", "right").await;

    // redis-rs retries a failed connect (here: a refused AUTH) with the
    // reconnect backoff before it gives up; with the default 6 attempts
    // that can outlast the operation deadline (`STORAGE_TIMEOUT`), so this
    // client gives up after one retry to show the error it then reports.
    let one_retry = redis_runtime::RetryPolicy {
        max_retries: 1,
        ..Default::default()
    };
    let url = format!("redis://app:wrong@127.0.0.1:{}", server.port());
    let wrong = server
        .client_with(|_| redis_runtime::Config::builder(url).retry(one_retry))
        .await;
    let started = Instant::now();
    let err = Job::get(&wrong, "j1").await.expect_err("wrong password");
    assert_eq!(err.code(), "STORAGE_AUTH", "{err}");
    assert!(!err.to_string().contains("wrong"), "no password in: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // The default user loses its open access: a client without a password
    // is now asked for one.
    raw_command(
        &admin,
        &["ACL", "SETUSER", "default", "resetpass", ">adminpw"],
    )
    .await;
    let anonymous = server.client().await;
    let err = Job::get(&anonymous, "j1").await.expect_err("NOAUTH");
    assert_eq!(err.code(), "STORAGE_AUTH", "{err}");
}

/// Makes the server behind `admin` a replica of a port nothing listens on:
/// it stays read-only (writes get `READONLY`) until `REPLICAOF NO ONE`.
async fn make_read_only(admin: &Client) -> RedisServer {
    let nowhere = RedisServer::start_stopped();
    let port = nowhere.port().to_string();
    raw_command(admin, &["REPLICAOF", "127.0.0.1", &port]).await;
    nowhere
}

#[tokio::test]
async fn a_write_to_a_read_only_replica_waits_out_the_deadline_then_fails_unavailable() {
    let server = RedisServer::start();
    let admin = server.client().await;
    let client = server
        .client_with(|c| c.operation_timeout(Duration::from_millis(800)))
        .await;
    let _nowhere = make_read_only(&admin).await;

    let started = Instant::now();
    let err = job("j1").create(&client).await.expect_err("read-only");
    let waited = started.elapsed();
    assert_eq!(err.code(), "STORAGE_UNAVAILABLE", "{err}");
    assert!(
        matches!(
            err,
            Error::Unavailable {
                reason: Unavailability::ReadOnly,
                outcome_unknown: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names_everything(&err, "create", "READONLY");
    assert!(err.to_string().contains("after waiting"), "{err}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1500),
        "it retried within the 800 ms deadline: {waited:?}"
    );
    assert_nothing_written(&admin, "j1").await;
    // Reads are still served by the replica.
    assert_eq!(Job::get(&client, "j1").await.expect("read"), None);
}

#[tokio::test]
async fn a_write_to_a_replica_promoted_within_the_deadline_succeeds_exactly_once() {
    let server = RedisServer::start();
    let admin = server.client().await;
    let client = server.client().await;
    let _nowhere = make_read_only(&admin).await;

    // The failover: the server becomes writable again ~200 ms into the write.
    let promote = tokio::spawn({
        let admin = admin.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            raw_command(&admin, &["REPLICAOF", "NO", "ONE"]).await;
        }
    });
    job("j1")
        .create(&client)
        .await
        .expect("written once writable");
    promote.await.expect("promoted");

    // Exactly once: one hash, one index entry, and a create sent again
    // finds it (a second apply would have failed the first call).
    let members: Vec<String> = raw_query(&admin, &["SMEMBERS", "jobs:status:queued"]).await;
    assert_eq!(members, ["j1"]);
    assert_eq!(Job::get(&client, "j1").await.expect("get"), Some(job("j1")));
    let again = job("j1").create(&client).await.expect_err("exists");
    assert_eq!(again.code(), "ALREADY_EXISTS");
}

/// Runs a script that loops until `SCRIPT KILL`, on a connection of its
/// own, and waits until the server answers `BUSY`.
async fn make_busy(server: &RedisServer, admin: &Client) -> tokio::task::JoinHandle<()> {
    // Reply BUSY after 10 ms of script instead of the default 5 s.
    raw_command(admin, &["CONFIG", "SET", "lua-time-limit", "10"]).await;
    let mut conn = admin.dedicated_connection().await.expect("connection");
    let script = tokio::spawn(async move {
        // Ends with "Script killed by user": the point is the wait.
        let _ = redis::cmd("EVAL")
            .arg("while true do end")
            .arg(0)
            .query_async::<redis::Value>(&mut conn)
            .await;
    });
    let probe = redis::Client::open(server.url()).expect("url");
    let mut probe = probe
        .get_multiplexed_async_connection()
        .await
        .expect("probe");
    eventually(
        Duration::from_secs(5),
        "the server to answer BUSY",
        async || {
            let reply = redis::cmd("PING").query_async::<String>(&mut probe).await;
            matches!(&reply, Err(e) if e.code() == Some("BUSY"))
        },
    )
    .await;
    script
}

/// `SCRIPT KILL` on a connection of its own (the shared one may be waiting).
async fn script_kill(url: String) {
    let client = redis::Client::open(url).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let _: () = redis::cmd("SCRIPT")
        .arg("KILL")
        .query_async(&mut conn)
        .await
        .expect("SCRIPT KILL");
}

#[tokio::test]
async fn a_busy_server_is_waited_out_within_the_deadline() {
    let server = RedisServer::start();
    let admin = server.client().await;
    let client = server.client().await;
    let script = make_busy(&server, &admin).await;

    let kill = tokio::spawn({
        let url = server.url();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            script_kill(url).await;
        }
    });
    // Sent while the server is busy: each BUSY reply is retried.
    job("j1")
        .create(&client)
        .await
        .expect("written after the script");
    kill.await.expect("killed");
    script.await.expect("script ended");
    assert_eq!(Job::get(&client, "j1").await.expect("get"), Some(job("j1")));
}

#[tokio::test]
async fn a_server_busy_past_the_deadline_fails_unavailable_naming_busy() {
    let server = RedisServer::start();
    let admin = server.client().await;
    let client = server
        .client_with(|c| c.operation_timeout(Duration::from_millis(500)))
        .await;
    let script = make_busy(&server, &admin).await;

    let err = Job::get(&client, "j1").await.expect_err("busy");
    script_kill(server.url()).await;
    script.await.expect("script ended");
    assert_eq!(err.code(), "STORAGE_UNAVAILABLE", "{err}");
    assert!(
        matches!(
            err,
            Error::Unavailable {
                reason: Unavailability::Busy,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names_everything(&err, "get", "BUSY");
    assert!(Job::get(&client, "j1").await.is_ok(), "served again");
}

/// A server meant to be a primary that sends its replicas the dataset at
/// once, instead of after the default 5 s wait for more replicas
/// (`repl-diskless-sync-delay`): tests wait for the sync.
fn start_primary() -> RedisServer {
    RedisServer::start_with_args(&["--repl-diskless-sync-delay".into(), "0".into()])
}

/// `master_link_status` from `INFO replication` on a replica: `up` or
/// `down`. `INFO` is served even while a replica refuses stale reads.
async fn master_link(replica: &Client) -> String {
    let info: String = raw_query(replica, &["INFO", "replication"]).await;
    info.lines()
        .find_map(|line| line.trim().strip_prefix("master_link_status:"))
        .unwrap_or_else(|| panic!("no master_link_status in INFO replication: {info}"))
        .to_owned()
}

/// Spawns `pop_blocking(block)` on a reliable consumer of `jobs` and waits
/// until the server counts it as blocked.
async fn blocked_reliable_pop(
    admin: &Client,
    client: &Client,
    block: Duration,
) -> tokio::task::JoinHandle<(redis_runtime::Result<Option<String>>, Duration)> {
    let consumer = ListQueue::<String>::new(client, "jobs")
        .reliable_as("w1", Duration::from_secs(30))
        .await
        .expect("consumer registered");
    let pop = tokio::spawn(async move {
        let started = Instant::now();
        let popped = consumer.pop_blocking(block).await;
        (popped.map(|held| held.map(|h| h.item)), started.elapsed())
    });
    eventually(
        Duration::from_secs(5),
        "the BLMOVE to block on the server",
        async || blocked_clients(admin).await == 1,
    )
    .await;
    pop
}

#[tokio::test]
async fn a_blocking_pop_ended_by_a_failover_fails_unavailable_unblocked_and_takes_nothing() {
    let (old_primary, admin) = RedisServer::start_with_client().await;
    let client = old_primary.client().await;
    let new_primary = start_primary();
    let new_admin = new_primary.client().await;
    // The new primary holds a job: the demoted server copies it when it
    // syncs, which a pop still blocked there could then take.
    ListQueue::<String>::new(&new_admin, "jobs")
        .push(&"j1".to_owned())
        .await
        .expect("pushed");

    let block = Duration::from_secs(10);
    let pop = blocked_reliable_pop(&admin, &client, block).await;
    let port = new_primary.port().to_string();
    raw_command(&admin, &["REPLICAOF", "127.0.0.1", &port]).await;

    let (popped, took) = tokio::time::timeout(Duration::from_secs(3), pop)
        .await
        .expect("the pop returned well before its 10 s block")
        .expect("the pop task did not panic");
    let err = popped.expect_err("the failover ended the pop");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(err.code(), "STORAGE_UNAVAILABLE", "{err}");
    assert!(
        matches!(
            err,
            Error::Unavailable {
                reason: Unavailability::Unblocked,
                outcome_unknown: false,
                waited_ms: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.is_transient(),
        "the worker issues the read again: {err}"
    );
    let text = err.to_string();
    for part in [
        "queue.reliable_pop_blocking",
        "UNBLOCKED",
        "master -> replica",
    ] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
    assert_eq!(blocked_clients(&admin).await, 0);

    // Nothing was taken: once the demoted server has synced, the job is
    // still queued on both and no consumer holds it.
    eventually(
        Duration::from_secs(10),
        "the demoted server to sync with the new primary",
        async || master_link(&admin).await == "up",
    )
    .await;
    for server in [&new_admin, &admin] {
        let queued: Vec<String> = raw_query(server, &["LRANGE", "jobs", "0", "-1"]).await;
        assert_eq!(queued, ["j1"]);
        let held: i64 = raw_query(server, &["LLEN", "jobs:processing:w1"]).await;
        assert_eq!(held, 0, "the unblocked pop moved nothing");
    }
}

#[tokio::test]
async fn a_blocking_pop_ended_by_client_unblock_error_is_unblocked_too() {
    let (server, admin) = RedisServer::start_with_client().await;
    let client = server.client().await;
    let pop = blocked_reliable_pop(&admin, &client, Duration::from_secs(10)).await;
    let clients: String = raw_query(&admin, &["CLIENT", "LIST"]).await;
    let id = clients
        .lines()
        .find(|line| line.contains("cmd=blmove"))
        .and_then(|line| line.split_whitespace().find_map(|f| f.strip_prefix("id=")))
        .unwrap_or_else(|| panic!("no blocked BLMOVE in CLIENT LIST: {clients}"))
        .to_owned();
    let unblocked: i64 = raw_query(&admin, &["CLIENT", "UNBLOCK", &id, "ERROR"]).await;
    assert_eq!(unblocked, 1);

    let (popped, took) = tokio::time::timeout(Duration::from_secs(3), pop)
        .await
        .expect("the pop returned well before its 10 s block")
        .expect("the pop task did not panic");
    let err = popped.expect_err("unblocked with an error");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        matches!(
            err,
            Error::Unavailable {
                reason: Unavailability::Unblocked,
                outcome_unknown: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("CLIENT UNBLOCK"), "{err}");
}

#[tokio::test]
async fn a_read_from_a_replica_whose_primary_died_fails_masterdown_then_succeeds_once_relinked() {
    let mut primary = start_primary();
    let primary_admin = primary.client().await;
    let replica = RedisServer::start_with_args(&["--replica-serve-stale-data".into(), "no".into()]);
    let replica_admin = replica.client().await;
    let primary_port = primary.port().to_string();
    raw_command(&replica_admin, &["REPLICAOF", "127.0.0.1", &primary_port]).await;
    job("j1").create(&primary_admin).await.expect("created");
    let client = replica
        .client_with(|c| c.operation_timeout(Duration::from_millis(600)))
        .await;
    let status = || {
        let mut cmd = redis::cmd("HGET");
        cmd.arg("job:j1").arg("status");
        cmd
    };
    let status_ctx = || Context::new("job.status", "job:{id}");
    eventually(
        Duration::from_secs(10),
        "the replica to copy j1",
        async || matches!(Job::get(&client, "j1").await, Ok(Some(_))),
    )
    .await;

    primary.stop();
    eventually(
        Duration::from_secs(5),
        "the replica to see its link down",
        async || master_link(&replica_admin).await == "down",
    )
    .await;

    let started = Instant::now();
    let err = Job::get(&client, "j1")
        .await
        .expect_err("stale reads refused");
    let took = started.elapsed();
    assert_eq!(err.code(), "STORAGE_UNAVAILABLE", "{err}");
    let Error::Unavailable {
        reason: Unavailability::MasterDown,
        waited_ms,
        outcome_unknown: false,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert!(waited_ms > 0, "it waited for the link: {err}");
    assert_names_everything(&err, "get", "MASTERDOWN");
    assert!(err.to_string().contains("after waiting"), "{err}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "it retried within the 600 ms deadline: {took:?}"
    );

    let err = client
        .read::<Option<String>>(status_ctx(), &status())
        .await
        .expect_err("stale reads refused");
    assert!(
        matches!(
            err,
            Error::Unavailable {
                reason: Unavailability::MasterDown,
                waited_ms: 1..,
                ..
            }
        ),
        "{err:?}"
    );
    for part in ["job.status", "MASTERDOWN", "replica-serve-stale-data"] {
        assert!(err.to_string().contains(part), "{err} lacks {part:?}");
    }

    // The primary comes back empty (no persistence): j1 is written again
    // (by a fresh client: the old one's connection died with the process,
    // and its first write would fail with the outcome unknown) and reaches
    // the replica once the link is up.
    primary.restart();
    let primary_admin = primary.client().await;
    job("j1")
        .create(&primary_admin)
        .await
        .expect("created again");
    eventually(
        Duration::from_secs(15),
        "the replica to serve reads again",
        async || matches!(Job::get(&client, "j1").await, Ok(Some(_))),
    )
    .await;
    assert_eq!(master_link(&replica_admin).await, "up");
    assert_eq!(
        Job::get(&client, "j1").await.expect("served"),
        Some(job("j1"))
    );
    let served = client
        .read::<Option<String>>(status_ctx(), &status())
        .await
        .expect("served");
    assert_eq!(served.as_deref(), Some("queued"));
}

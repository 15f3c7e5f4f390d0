//! Server states produced for real on private servers, and what an
//! operation gets: out of memory, ACL refusals, wrong credentials, a
//! read-only replica and a busy script. The classifier's other cases
//! (`LOADING`, `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`) are unit tests in
//! `src/error/classify.rs`, on the replies redis-rs parses.

use std::time::{Duration, Instant};

use redis_runtime::testing::{RedisServer, create_acl_user, eventually, raw_command, raw_query};
use redis_runtime::{Client, Error, RedisEntity, Unavailability};

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

//! The client against a real, private `redis-server`: round trips, health,
//! faults, reconnects, shutdown and metrics. Redaction lives in
//! `redaction.rs`, alone in its binary, because it captures `tracing` output.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis_runtime::metrics::{OperationEvent, Outcome};
use redis_runtime::testing::{RedisServer, eventually, set_get};
use redis_runtime::{Client, Config, Context};

#[tokio::test]
async fn connects_and_round_trips_a_command() {
    let (_server, client) = RedisServer::start_with_client().await;
    assert_eq!(
        set_get(&client, "greeting", "héllo")
            .await
            .expect("set/get"),
        "héllo"
    );
}

#[tokio::test]
async fn eager_connect_reaches_the_server() {
    let server = RedisServer::start();
    let client = server.client_with(|c| c.lazy_connect(false)).await;
    assert!(client.health().await.ok);
}

/// An eviction policy can drop an index key or an entity hash on its own:
/// health names the policy and warns about it; `noeviction` (the default)
/// gives no warning.
#[tokio::test]
async fn health_warns_about_an_evicting_server() {
    let (_server, client) = RedisServer::start_with_client().await;
    let health = client.health().await;
    assert_eq!(health.eviction_policy.as_deref(), Some("noeviction"));
    assert!(health.warnings.is_empty(), "{health:?}");

    redis_runtime::testing::raw_command(
        &client,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    )
    .await;
    let health = client.health().await;
    assert!(health.ok);
    assert_eq!(health.eviction_policy.as_deref(), Some("allkeys-lru"));
    assert_eq!(health.warnings.len(), 1, "{health:?}");
    assert!(
        health.warnings[0].contains("allkeys-lru"),
        "{:?}",
        health.warnings
    );
    assert!(health.warnings[0].contains("noeviction"), "names the fix");
}

/// Health names the server's replication role; connected straight to a
/// replica, it warns that writes will fail and names the fix.
#[tokio::test]
async fn health_reports_the_role_and_warns_about_a_replica() {
    let (primary, primary_client) = RedisServer::start_with_client().await;
    assert_eq!(
        primary_client.health().await.role.as_deref(),
        Some("master")
    );
    let (_replica, replica_client) = RedisServer::start_with_client().await;
    redis_runtime::testing::raw_command(
        &replica_client,
        &["REPLICAOF", "127.0.0.1", &primary.port().to_string()],
    )
    .await;
    let health = replica_client.health().await;
    assert!(health.ok, "{health:?}");
    assert_eq!(health.role.as_deref(), Some("slave"));
    assert!(
        health
            .warnings
            .iter()
            .any(|w| w.contains("READONLY") && w.contains("redis+sentinel://")),
        "{:?}",
        health.warnings
    );
}

/// With `refuse_evicting_server`, connecting to a server that may evict
/// keys fails with `STORAGE_CONFIG` naming the policy and the fix (even
/// with lazy connect, the default); `noeviction` connects.
#[tokio::test]
async fn refuse_evicting_server_turns_the_warning_into_a_refusal() {
    let server =
        RedisServer::start_with_args(&["--maxmemory-policy", "volatile-lru"].map(String::from));
    let err = redis_runtime::Client::connect(
        redis_runtime::Config::builder(server.url())
            .refuse_evicting_server(true)
            .build()
            .expect("config"),
    )
    .await
    .expect_err("an evicting server is refused");
    assert_eq!(err.code(), "STORAGE_CONFIG", "{err}");
    let text = err.to_string();
    assert!(
        text.contains("volatile-lru") && text.contains("noeviction"),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())),
        "names the server: {text}"
    );

    let (plain, _client) = RedisServer::start_with_client().await;
    let accepted = plain.client_with(|c| c.refuse_evicting_server(true)).await;
    assert!(accepted.health().await.ok);
}

#[tokio::test]
async fn health_reports_ok_then_not_ok_when_the_server_stops() {
    let (mut server, client) = RedisServer::start_with_client().await;
    let health = client.health().await;
    assert!(health.ok, "{health:?}");
    assert!(health.error.is_none());
    assert!(health.latency_ms >= 0.0 && health.latency_ms < 3000.0);

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let health = client.health().await;
        assert!(!health.ok, "server is down, health must say so");
        assert!(health.error.is_some());
        assert!(
            started.elapsed() < Duration::from_millis(3500),
            "health took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn unreachable_server_fails_with_a_typed_error_within_five_seconds() {
    // A port nothing listens on; the lazy connect still makes a client.
    let server = RedisServer::start_stopped();
    let client = server.client().await;
    let started = Instant::now();
    let err = set_get(&client, "k", "v")
        .await
        .expect_err("server is down");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(err.code(), "STORAGE_UNAVAILABLE" | "STORAGE_TIMEOUT"),
        "unexpected error {err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(err.context().map(|c| &*c.operation), Some("test.set_get"));
}

#[tokio::test]
async fn eager_connect_to_an_unreachable_server_fails_fast() {
    let server = RedisServer::start_stopped();
    let config = Config::builder(server.url())
        .lazy_connect(false)
        .build()
        .expect("config");
    let started = Instant::now();
    let err = Client::connect(config).await.expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let (mut server, client) = RedisServer::start_with_client().await;
    assert_eq!(set_get(&client, "a", "1").await.expect("first"), "1");

    server.stop();
    assert!(set_get(&client, "a", "2").await.is_err());
    server.restart();

    // The same client must recover by itself.
    let recovered = async || match set_get(&client, "a", "3").await {
        Ok(value) => {
            assert_eq!(value, "3");
            true
        }
        Err(e) => {
            assert!(
                e.is_transient(),
                "only transient errors while recovering: {e:?}"
            );
            false
        }
    };
    eventually(Duration::from_secs(15), "the client to recover", recovered).await;
    assert!(client.health().await.ok);
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_work_then_refuses_new_work() {
    let (_server, client) = RedisServer::start_with_client().await;
    let worker = client.clone();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let in_flight = tokio::spawn(async move {
        worker
            .run(Context::new("test.slow", "q"), |mut conn| async move {
                let _ = started_tx.send(());
                // A short server-side wait keeps the operation in flight.
                let popped: Option<(String, String)> = conn.blpop("empty-list", 0.3).await?;
                Ok(popped)
            })
            .await
    });
    started_rx.await.expect("operation started");
    client.shutdown().await;
    assert!(
        in_flight.is_finished(),
        "shutdown must wait for in-flight work"
    );
    assert_eq!(
        in_flight
            .await
            .expect("join")
            .expect("in-flight op succeeds"),
        None
    );

    let err = set_get(&client, "k", "v")
        .await
        .expect_err("after shutdown");
    assert_eq!(err.code(), "STORAGE_SHUTDOWN");
    assert!(client.is_shut_down());
    assert!(client.shutdown_token().is_cancelled());
    let health = client.health().await;
    assert!(!health.ok);
    client.shutdown().await; // idempotent
}

#[tokio::test]
async fn metrics_hook_sees_operation_pattern_duration_and_outcome() {
    let server = RedisServer::start();
    let seen: Arc<Mutex<Vec<(String, String, Outcome)>>> = Arc::default();
    let sink = seen.clone();
    let hook = move |event: &OperationEvent<'_>| {
        sink.lock().expect("lock").push((
            event.operation.into(),
            event.key_pattern.into(),
            event.outcome,
        ));
    };
    let client = Client::connect_with_metrics(server.config(), hook)
        .await
        .expect("connect");
    set_get(&client, "user:42", "x").await.expect("ok");
    let err = client
        .run(
            Context::new("test.bad", "list:{id}"),
            |mut conn| async move {
                let _: () = conn.set("scalar", "1").await?;
                let _: Vec<String> = conn.lrange("scalar", 0, -1).await?; // WRONGTYPE
                Ok(())
            },
        )
        .await
        .expect_err("wrong type");
    assert_eq!(err.code(), "STORAGE_COMMAND");

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![
            ("test.set_get".into(), "test:{k}".into(), Outcome::Success),
            (
                "test.bad".into(),
                "list:{id}".into(),
                Outcome::Failure {
                    code: "STORAGE_COMMAND"
                }
            ),
        ]
    );
}

/// What the configured server binary says of itself: `("redis", "7.0.15")`
/// from `Redis server v=7.0.15 …`, `("valkey", "8.1.8")` from Valkey.
fn binary_version() -> (String, String) {
    let bin = std::env::var(redis_runtime::testing::ENV_SERVER_BIN)
        .unwrap_or_else(|_| "redis-server".to_owned());
    let out = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{bin} --version: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let name = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_lowercase();
    let version = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .unwrap_or_else(|| panic!("no v= in {text:?}"))
        .to_owned();
    (name, version)
}

#[tokio::test]
async fn server_info_and_health_name_the_real_server_and_its_version() {
    let (_server, client) = RedisServer::start_with_client().await;
    let (name, version) = binary_version();
    let info = client.server_info().await.expect("server info");
    assert_eq!(
        (info.name.as_str(), info.version.to_string()),
        (name.as_str(), version)
    );
    let health = client.health().await;
    assert_eq!(health.server.as_ref(), Some(&info));
    // The queues' commands exist on every server the suite runs on.
    let ctx = Context::new("queue.reliable", "jobs:queue");
    client
        .require(redis_runtime::server::Feature::ListMove, &ctx)
        .await
        .expect("LMOVE is there");
}

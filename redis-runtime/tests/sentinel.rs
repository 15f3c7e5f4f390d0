//! Redis Sentinel against a real topology the harness starts (a master, a
//! replica and three sentinels on loopback, [`SentinelTopology`]): the
//! client finds the master, follows a manual failover and a crash, uses
//! the right credentials, and reports writes no replica acknowledged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis_runtime::pubsub::{Channel, Subscription};
use redis_runtime::queue::ListQueue;
use redis_runtime::testing::{SentinelOptions, SentinelTopology, eventually};
use redis_runtime::{Client, Config, ConfigBuilder, Context, Error, Unavailability};

/// A client for `topology` through its Sentinels, with `tweak` applied.
async fn sentinel_client(
    topology: &SentinelTopology,
    tweak: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> Result<Client, Error> {
    let config = tweak(Config::builder(topology.url())).build()?;
    Client::connect(config).await
}

/// A client straight to the data node on `port`, for inspection.
async fn node(topology: &SentinelTopology, port: u16) -> Client {
    let config = Config::from_url(&topology.node_url(port)).expect("node URL");
    Client::connect(config).await.expect("node client")
}

fn set(key: &str, value: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value);
    cmd
}

async fn get(client: &Client, key: &str) -> Option<String> {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    client
        .read(Context::new("test.get", "k:{n}"), &cmd)
        .await
        .expect("GET")
}

/// `ROLE` of the node `client` talks to: "master" or "slave".
async fn role(client: &Client) -> String {
    let reply: Vec<redis::Value> = client
        .read(Context::new("test.role", ""), &redis::cmd("ROLE"))
        .await
        .expect("ROLE");
    match reply.first() {
        Some(redis::Value::BulkString(role)) => String::from_utf8_lossy(role).into_owned(),
        other => panic!("unexpected ROLE reply {other:?}"),
    }
}

/// What a writer saw: the keys whose `SET` was acknowledged (and when),
/// and the codes of the writes that failed.
#[derive(Default, Debug)]
struct Writes {
    acknowledged: Vec<(String, Instant)>,
    failed: BTreeMap<&'static str, u64>,
    /// The longest stretch between two acknowledged writes.
    longest_gap: Duration,
}

impl Writes {
    fn assert_documented(&self) {
        for code in self.failed.keys() {
            assert!(
                matches!(
                    *code,
                    "STORAGE_UNAVAILABLE" | "STORAGE_TIMEOUT" | "STORAGE_NOT_REPLICATED"
                ),
                "undocumented failure {code}: {:?}",
                self.failed
            );
        }
    }
}

/// One writer setting `<prefix>:1`, `<prefix>:2`, … through `client`
/// until `stop`.
fn spawn_writer(
    client: &Client,
    prefix: &str,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Writes> {
    let (client, stop, prefix) = (client.clone(), stop.clone(), prefix.to_string());
    tokio::spawn(async move {
        let mut writes = Writes::default();
        let mut last_ok = Instant::now();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let key = format!("{prefix}:{n}");
            match client
                .write::<()>(Context::new("test.set", "k:{n}"), &set(&key, "v"))
                .await
            {
                Ok(()) => {
                    writes.longest_gap = writes.longest_gap.max(last_ok.elapsed());
                    last_ok = Instant::now();
                    writes.acknowledged.push((key, last_ok));
                }
                Err(e) => *writes.failed.entry(e.code()).or_default() += 1,
            }
        }
        writes
    })
}

/// A consumer popping `queue` (1 s blocking pops) until `stop`; what it
/// popped.
fn spawn_consumer(
    queue: &ListQueue<String>,
    stop: &Arc<AtomicBool>,
) -> Arc<std::sync::Mutex<Vec<String>>> {
    let popped = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (queue, stop, out) = (queue.clone(), stop.clone(), popped.clone());
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            if let Ok(Some(item)) = queue.pop_blocking(Duration::from_secs(1)).await {
                out.lock().expect("popped").push(item);
            }
        }
    });
    popped
}

/// Collects what `subscription` receives.
fn spawn_listener(mut subscription: Subscription<String>) -> Arc<std::sync::Mutex<Vec<String>>> {
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = heard.clone();
    tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            if let Ok(message) = message {
                out.lock().expect("heard").push(message);
            }
        }
    });
    heard
}

/// Which of `writes`' acknowledged keys the node behind `client` lacks,
/// with when they were acknowledged.
async fn missing(client: &Client, writes: &Writes) -> Vec<(String, Instant)> {
    let mut missing = Vec::new();
    for chunk in writes.acknowledged.chunks(500) {
        let keys: Vec<&str> = chunk.iter().map(|(key, _)| key.as_str()).collect();
        let mut cmd = redis::cmd("MGET");
        cmd.arg(keys);
        let values: Vec<Option<String>> = client
            .read(Context::new("test.mget", "k:{n}"), &cmd)
            .await
            .expect("MGET");
        missing.extend(
            chunk
                .iter()
                .zip(values)
                .filter(|(_, value)| value.is_none())
                .map(|(acked, _)| acked.clone()),
        );
    }
    missing
}

/// After a failover `step`: prints what both writers saw, asserts every
/// failure is documented and every write a replica acknowledged is on
/// `master`; returns the writes without acknowledgement that were lost.
async fn check_step(
    step: &str,
    master: &Client,
    acked: &Writes,
    plain: &Writes,
) -> Vec<(String, Instant)> {
    let lost = missing(master, plain).await;
    println!(
        "{step}: with WAIT, {} writes acknowledged, failed {:?}; without, {} acknowledged, {} of them lost, failed {:?}, longest gap {:?}",
        acked.acknowledged.len(),
        acked.failed,
        plain.acknowledged.len(),
        lost.len(),
        plain.failed,
        plain.longest_gap
    );
    acked.assert_documented();
    plain.assert_documented();
    assert!(
        missing(master, acked).await.is_empty(),
        "{step}: every write acknowledged by a replica is on the master"
    );
    lost
}

/// The harness's blocking calls (failover, kill, restart) run off the
/// async workers, so the writer keeps writing meanwhile.
async fn off_runtime<T: Send + 'static>(
    topology: SentinelTopology,
    step: impl FnOnce(&mut SentinelTopology) -> T + Send + 'static,
) -> (SentinelTopology, T) {
    tokio::task::spawn_blocking(move || {
        let mut topology = topology;
        let out = step(&mut topology);
        (topology, out)
    })
    .await
    .expect("harness step")
}

/// Writers keep writing while the master is failed over by hand, then
/// crashes. With replica acknowledgements on, every acknowledged write is
/// on the node that is master afterwards. With them off, the writes the old
/// master took after the promotion are lost (counted and printed), but only
/// until the Sentinels announce the new master: the client moves then,
/// not seconds later when the old master is demoted and refuses writes.
/// Every failure is a documented transient code, and the client writes to
/// the new master without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_the_master_through_a_manual_failover_and_a_crash() {
    let topology = SentinelTopology::start("follow");
    let (first, second) = (topology.node_ports()[0], topology.node_ports()[1]);
    let client = sentinel_client(&topology, |b| {
        b.lazy_connect(false)
            .wait_for_replicas(1, Duration::from_millis(500))
    })
    .await
    .expect("connect through the sentinels");
    let unacked = sentinel_client(&topology, |b| b.lazy_connect(false))
        .await
        .expect("connect through the sentinels");
    client
        .write::<()>(Context::new("test.set", "k:{n}"), &set("before", "1"))
        .await
        .expect("write before the failover");
    assert_eq!(
        get(&node(&topology, first).await, "before")
            .await
            .as_deref(),
        Some("1")
    );

    // 1. A manual failover: the replica is promoted, the old master demoted
    // some 10 s later (the Sentinels' reconfiguration delay).
    let stop = Arc::new(AtomicBool::new(false));
    let acked_writer = spawn_writer(&client, "acked", &stop);
    let unacked_writer = spawn_writer(&unacked, "unacked", &stop);
    // A blocking consumer (1 s pops on its own connection) must move with
    // the client, not keep popping the old master until it is demoted.
    let queue = ListQueue::<String>::new(&unacked, "handoff");
    let popped = spawn_consumer(&queue, &stop);
    // So must a subscription: publishes on the new master do not reach the
    // old one until it is demoted to its replica.
    let events = Channel::<String>::new(&unacked, "events");
    let heard = spawn_listener(events.subscribe().await.expect("subscribe"));
    let second_url = topology.node_url(second);
    let clock = Instant::now();
    let failover = off_runtime(topology, |t| t.failover());
    let handoff = async {
        let second_node = Client::connect(Config::from_url(&second_url).expect("URL"))
            .await
            .expect("node client");
        // Once promoted, the new master no longer replicates the old one:
        // a fresh value there was written there.
        let mut attempt = 0u64;
        eventually(
            Duration::from_secs(10),
            "the client to move to the new master",
            async || {
                // Promoted first, written after: only a write to it counts.
                if role(&second_node).await != "master" {
                    return false;
                }
                attempt += 1;
                let value = attempt.to_string();
                let _ = unacked
                    .write::<()>(Context::new("test.set", "k:{n}"), &set("moved", &value))
                    .await;
                get(&second_node, "moved").await.as_deref() == Some(value.as_str())
            },
        )
        .await;
        let moved = clock.elapsed();
        queue
            .push(&"after-switch".to_string())
            .await
            .expect("push to the new master");
        let pushed = Instant::now();
        eventually(
            Duration::from_secs(8),
            "the consumer to pop from the new master",
            async || {
                popped
                    .lock()
                    .expect("popped")
                    .iter()
                    .any(|item| item == "after-switch")
            },
        )
        .await;
        let handoff_took = pushed.elapsed();
        let published = Instant::now();
        eventually(
            Duration::from_secs(8),
            "the subscriber to hear the new master",
            async || {
                events
                    .publish(&"after-switch".to_string())
                    .await
                    .expect("publish on the new master");
                heard
                    .lock()
                    .expect("heard")
                    .iter()
                    .any(|m| m == "after-switch")
            },
        )
        .await;
        (moved, handoff_took, published.elapsed())
    };
    let ((topology, promoted), (moved, handoff_took, heard_took)) = tokio::join!(failover, handoff);
    println!("a subscriber heard the new master {heard_took:?} after the first publish there");
    assert!(
        heard_took < Duration::from_secs(3),
        "the subscription stayed on the old master for {heard_took:?}"
    );
    println!(
        "the client moved {moved:?} after the failover started; a blocking consumer popped from the new master {handoff_took:?} after the push"
    );
    assert!(
        handoff_took < Duration::from_secs(3),
        "the blocking consumer kept reading the old master for {handoff_took:?}"
    );
    assert_eq!(promoted, second);
    let failover_took = clock.elapsed();
    let new_master = node(&topology, second).await;
    stop.store(true, Ordering::Relaxed);
    let acked = acked_writer.await.expect("writer");
    let plain = unacked_writer.await.expect("writer");
    let lost = check_step("manual failover", &new_master, &acked, &plain).await;
    let lost_window = lost.iter().map(|(_, at)| at.duration_since(clock)).max();
    println!(
        "manual failover complete after {failover_took:?}; the last lost write was acknowledged {lost_window:?} after it started"
    );
    assert!(acked.acknowledged.len() > 20, "the load ran: {acked:?}");
    // The notice comes about a second after the promotion; the old master
    // is demoted some 10 s later. Writes it took before the notice are the
    // price of running without WAIT.
    if let Some(window) = lost_window {
        assert!(
            window < Duration::from_secs(5),
            "writes went to the old master until {window:?} after the failover started"
        );
    }
    assert_eq!(role(&node(&topology, first).await).await, "slave");
    for client in [&client, &unacked] {
        client
            .write::<()>(Context::new("test.set", "k:{n}"), &set("after", "1"))
            .await
            .expect("write after the failover");
    }
    assert_eq!(get(&new_master, "after").await.as_deref(), Some("1"));
    let health = client.health().await;
    assert!(health.ok, "{health:?}");
    assert_eq!(health.role.as_deref(), Some("master"));

    // 2. The new master crashes and the first node is promoted again. It is
    // not restarted: a node without persistence that comes back empty
    // can be promoted or synced from, wiping the data (Redis's Sentinel
    // docs warn against restarting one automatically). With no replica
    // left, writes with WAIT fail NOT_REPLICATED (and are applied); those
    // without succeed once the client has moved.
    let stop = Arc::new(AtomicBool::new(false));
    let acked_writer = spawn_writer(&client, "crash-acked", &stop);
    let plain_writer = spawn_writer(&unacked, "crash-plain", &stop);
    let clock = Instant::now();
    let (topology, survivor_port) = off_runtime(topology, |t| {
        let killed = t.kill_master();
        t.wait_for_new_master(killed)
    })
    .await;
    assert_eq!(survivor_port, first);
    let survivor = node(&topology, first).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = unacked
            .write::<()>(Context::new("test.set", "k:{n}"), &set("probe", "1"))
            .await;
        if probe.is_ok() && get(&survivor, "probe").await.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not reach the new master within 10 s of the promotion: {probe:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered = clock.elapsed();
    stop.store(true, Ordering::Relaxed);
    let acked = acked_writer.await.expect("writer");
    let plain = plain_writer.await.expect("writer");
    check_step("master crash", &survivor, &acked, &plain).await;
    println!("master crash: writes land on the promoted node {recovered:?} after the kill");
    assert!(
        recovered < Duration::from_secs(8),
        "recovery took {recovered:?}"
    );
    assert_eq!(role(&survivor).await, "master");
    client.shutdown().await;
    unacked.shutdown().await;
}

/// The mistakes of a first Sentinel setup, each with a message that says
/// what to fix: a master name the Sentinels do not monitor fails with
/// `STORAGE_UNAVAILABLE` (no live master) naming it, within the operation
/// deadline, at connect or (lazily) at first use; a data node listed as a
/// Sentinel is `STORAGE_CONFIG`; a Sentinel given as a plain `redis://` URL
/// is unhealthy, naming the `redis+sentinel://` form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misdirected_sentinel_urls_fail_with_messages_that_say_what_to_fix() {
    let topology = SentinelTopology::start("known");
    let url = topology.url().replace("/known", "/unknown");
    let limit = Duration::from_millis(800);
    let clock = Instant::now();
    let err = Client::connect(
        Config::builder(&url)
            .lazy_connect(false)
            .operation_timeout(limit)
            .build()
            .expect("config"),
    )
    .await
    .expect_err("no such master");
    assert!(clock.elapsed() < limit + Duration::from_millis(500));
    assert_eq!(err.code(), "STORAGE_UNAVAILABLE", "{err}");
    assert!(
        matches!(
            err,
            Error::Unavailable {
                reason: Unavailability::NoMaster,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"unknown\""), "{err}");

    let lazy = Client::connect(
        Config::builder(&url)
            .operation_timeout(limit)
            .build()
            .expect("config"),
    )
    .await
    .expect("a lazy client connects later");
    let err = lazy
        .write::<()>(Context::new("test.set", "k:{n}"), &set("k", "v"))
        .await
        .expect_err("no such master");
    assert_eq!(err.code(), "STORAGE_UNAVAILABLE", "{err}");
    assert!(
        err.to_string().contains("test.set"),
        "names the operation: {err}"
    );

    let data_node = format!(
        "redis+sentinel://127.0.0.1:{}/known",
        topology.node_ports()[0]
    );
    let err = Client::connect(
        Config::builder(&data_node)
            .lazy_connect(false)
            .build()
            .expect("config"),
    )
    .await
    .expect_err("a data node is not a Sentinel");
    assert_eq!(err.code(), "STORAGE_CONFIG", "{err}");
    assert!(err.to_string().contains("not the data nodes'"), "{err}");

    let sentinel = &topology.sentinel_addrs()[0];
    let plain = Client::connect(Config::from_url(&format!("redis://{sentinel}")).expect("config"))
        .await
        .expect("connects lazily");
    let health = plain.health().await;
    assert!(!health.ok, "{health:?}");
    let said = health.error.unwrap_or_default();
    assert!(
        said.contains("is a Sentinel") && said.contains("redis+sentinel://"),
        "{said}"
    );
}

/// Sentinels and data nodes that require passwords: the URL's password
/// reaches the data nodes and `sentinel_credentials` the Sentinels; a wrong
/// Sentinel password fails with `STORAGE_AUTH` and never shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_reach_the_sentinels_and_the_nodes_and_wrong_ones_fail_storage_auth() {
    let topology = SentinelTopology::start_with(
        "guarded",
        SentinelOptions {
            node_password: Some("node p@ss".into()),
            sentinel_password: Some("sentinel-s3cret".into()),
            ..SentinelOptions::default()
        },
    );
    let client = sentinel_client(&topology, |b| {
        b.lazy_connect(false)
            .sentinel_credentials(None, "sentinel-s3cret")
    })
    .await
    .expect("right passwords");
    client
        .write::<()>(Context::new("test.set", "k:{n}"), &set("k", "v"))
        .await
        .expect("write with the node password");
    assert!(client.health().await.ok);

    let err = sentinel_client(&topology, |b| {
        b.lazy_connect(false)
            .sentinel_credentials(None, "wrong-s3cret")
            .operation_timeout(Duration::from_secs(2))
    })
    .await
    .expect_err("wrong sentinel password");
    assert_eq!(err.code(), "STORAGE_AUTH", "{err}");
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");

    let err = sentinel_client(&topology, |b| {
        b.lazy_connect(false)
            .operation_timeout(Duration::from_secs(2))
    })
    .await
    .expect_err("no sentinel password");
    assert!(matches!(err.code(), "STORAGE_AUTH"), "{err}");
}

/// Replica acknowledgements on, and the replica stops replicating: a write
/// fails with `STORAGE_NOT_REPLICATED`, says its outcome is unknown, and
/// is on the master all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_no_replica_acknowledged_fails_not_replicated_and_is_on_the_master() {
    let topology = SentinelTopology::start("acks");
    let (master, replica) = (topology.node_ports()[0], topology.node_ports()[1]);
    let client = sentinel_client(&topology, |b| {
        b.wait_for_replicas(1, Duration::from_millis(300))
    })
    .await
    .expect("connect");
    client
        .write::<()>(Context::new("test.set", "k:{n}"), &set("acked", "1"))
        .await
        .expect("a replica acknowledges");

    let replica_client = node(&topology, replica).await;
    let _: String = replica_client
        .write(
            Context::new("test.detach", ""),
            redis::cmd("REPLICAOF").arg("NO").arg("ONE"),
        )
        .await
        .expect("detach the replica");
    let err = client
        .write::<()>(Context::new("test.set", "k:{n}"), &set("unacked", "1"))
        .await
        .expect_err("no replica left to acknowledge");
    assert_eq!(err.code(), "STORAGE_NOT_REPLICATED", "{err}");
    assert!(err.outcome_unknown(), "{err:?}");
    assert!(
        matches!(
            err,
            Error::NotReplicated {
                acknowledged: 0,
                required: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("test.set"), "{err}");
    assert_eq!(
        get(&node(&topology, master).await, "unacked")
            .await
            .as_deref(),
        Some("1")
    );
}

/// `WAIT` blocks the shared connection until the replicas answer, so
/// concurrent writers share one (group commit): 64 tasks writing at once
/// send far fewer `WAIT`s than writes, and every write they were told is
/// replicated is on the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_their_replica_acknowledgements() {
    let topology = SentinelTopology::start("group");
    let (master, replica) = (topology.node_ports()[0], topology.node_ports()[1]);
    let client = sentinel_client(&topology, |b| {
        b.wait_for_replicas(1, Duration::from_millis(1000))
    })
    .await
    .expect("connect");
    let master_node = node(&topology, master).await;
    let _: () = master_node
        .write(
            Context::new("test.reset", ""),
            redis::cmd("CONFIG").arg("RESETSTAT"),
        )
        .await
        .expect("CONFIG RESETSTAT");
    let writers: Vec<_> = (0..64)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                for n in 0..50 {
                    let key = format!("g:{t}:{n}");
                    client
                        .write::<()>(Context::new("test.set", "g:{t}:{n}"), &set(&key, "v"))
                        .await
                        .expect("an acknowledged write");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let stats: String = master_node
        .read(
            Context::new("test.stats", ""),
            redis::cmd("INFO").arg("commandstats"),
        )
        .await
        .expect("INFO commandstats");
    let calls = |name: &str| redis_runtime::testing::command_calls(&stats, name);
    let (sets, waits) = (calls("set"), calls("wait"));
    println!("{sets} writes, {waits} WAITs");
    assert_eq!(sets, 64 * 50);
    assert!(
        waits * 2 < sets,
        "{waits} WAITs for {sets} writes: not shared"
    );
    let written = Writes {
        acknowledged: (0..64)
            .flat_map(|t| (0..50).map(move |n| (format!("g:{t}:{n}"), Instant::now())))
            .collect(),
        ..Writes::default()
    };
    let replica_node = node(&topology, replica).await;
    assert!(
        missing(&replica_node, &written).await.is_empty(),
        "every acknowledged write is on the replica"
    );
}

//! Acknowledged through a Sentinel failover: one master, two replicas and
//! three Sentinels on loopback ([`SentinelTopology`]), writers through
//! three clients at once (replica acknowledgements from every replica,
//! from one, and none), through a manual failover led by one Sentinel,
//! another led by a different one, and a crash of the master.
//!
//! After each step: every create and increment acknowledged by every
//! replica is on the new master, with its stream entry, and the indexes
//! are exact; what the other clients lost is counted and timed against
//! the promotion; and the client without acknowledgements wrote to the new
//! master within 150 ms of the first Sentinel naming it.
//!
//! A replica that attaches to the master after the client counted the
//! replicas, before any Sentinel has seen it, is awaited by the very next
//! write.
//!
//! Another topology runs its masters with `min-replicas-to-write 2`: the
//! old master refuses writes (`NOREPLICAS`) once a replica was promoted
//! away from it, so a client without acknowledgements loses only what was
//! in flight at the promotion.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis_runtime::testing::{RedisServer, SentinelOptions, SentinelTopology};
use redis_runtime::{Client, Config, ConfigBuilder, RedisEntity, index};

/// An order with an index and an outbox stream.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "order:{id}", stream = "orders:stream")]
#[redis(index(key = "orders:status:{status}"))]
struct Order {
    id: String,
    status: String,
}

/// A counter.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "tally:{id}")]
struct Tally {
    id: String,
    count: i64,
}

/// How long a write waits for its replicas.
const ACK_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest the client without acknowledgements may take, after the
/// first Sentinel names the new master, to write there.
const MOVE_BOUND: Duration = Duration::from_millis(150);

/// The three ways of writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Acks {
    /// `REDIS_WAIT_REPLICAS=all`.
    All,
    /// `REDIS_WAIT_REPLICAS=1`, of two replicas.
    One,
    /// None.
    Off,
}

impl Acks {
    fn configure(self, builder: ConfigBuilder) -> ConfigBuilder {
        match self {
            Acks::All => builder.wait_for_all_replicas(ACK_TIMEOUT),
            Acks::One => builder.wait_for_replicas(1, ACK_TIMEOUT),
            Acks::Off => builder,
        }
    }
}

/// What one writer saw.
#[derive(Debug, Default)]
struct Written {
    /// Creates answered with success: the id, when it was sent.
    created: Vec<(String, Instant)>,
    /// This writer's counter, and how many increments were answered.
    tally: String,
    increments: i64,
    failed: BTreeMap<&'static str, u64>,
}

/// Creates orders `<label>-<n>` and increments the tally `<label>`, in
/// turn, until `stop`.
async fn write_until(client: Client, label: String, stop: Arc<AtomicBool>) -> Written {
    let mut seen = Written {
        tally: label.clone(),
        ..Written::default()
    };
    let tally = Tally {
        id: label.clone(),
        count: 0,
    };
    tally.save(&client).await.expect("the counter");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = format!("{label}-{n}");
        let sent = Instant::now();
        let order = Order {
            id: id.clone(),
            status: "new".into(),
        };
        match order.create(&client).await {
            Ok(_) => seen.created.push((id, sent)),
            Err(e) => *seen.failed.entry(e.code()).or_default() += 1,
        }
        match Tally::incr_count(&client, &label, 1).await {
            Ok(_) => seen.increments += 1,
            Err(e) => *seen.failed.entry(e.code()).or_default() += 1,
        }
    }
    seen
}

/// When, during a step, a node other than `old` first said it is the
/// master, and when a Sentinel first named it.
#[derive(Debug, Default, Clone, Copy)]
struct Switch {
    promoted: Option<Instant>,
    named: Option<Instant>,
}

/// Polls every data node's `ROLE` and every Sentinel's master every 5 ms
/// until both changed away from `old` (or `stop`).
async fn observe(
    nodes: Vec<u16>,
    sentinels: Vec<u16>,
    master: String,
    old: u16,
    stop: Arc<AtomicBool>,
) -> Switch {
    let connect = |port: u16| async move {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
        client.get_multiplexed_async_connection().await.ok()
    };
    let mut seen = Switch::default();
    while !stop.load(Ordering::Relaxed) && (seen.promoted.is_none() || seen.named.is_none()) {
        if seen.promoted.is_none() {
            for &port in nodes.iter().filter(|&&port| port != old) {
                let Some(mut conn) = connect(port).await else {
                    continue;
                };
                let role: redis::RedisResult<redis::Role> =
                    redis::cmd("ROLE").query_async(&mut conn).await;
                if matches!(role, Ok(redis::Role::Primary { .. })) {
                    seen.promoted.get_or_insert_with(Instant::now);
                }
            }
        }
        if seen.named.is_none() {
            for &port in &sentinels {
                let Some(mut conn) = connect(port).await else {
                    continue;
                };
                let named: redis::RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&master)
                    .query_async(&mut conn)
                    .await;
                if matches!(named, Ok(Some((_, port))) if port != old) {
                    seen.named.get_or_insert_with(Instant::now);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    seen
}

/// What one client's writers lost in a step, as the new master holds the
/// data.
#[derive(Debug, Default)]
struct Lost {
    created: u64,
    /// Creates with no stream entry.
    entries: u64,
    increments: i64,
    /// When the lost creates were sent, after the promotion (ms; negative
    /// before it).
    window_ms: Option<(i128, i128)>,
    /// The first create sent after the promotion that landed on the new
    /// master, after the first Sentinel named it (ms; negative before).
    landed_after_named_ms: Option<i128>,
}

fn ms_between(later: Instant, earlier: Instant) -> i128 {
    if later >= earlier {
        i128::try_from(later.duration_since(earlier).as_millis()).unwrap_or(i128::MAX)
    } else {
        -i128::try_from(earlier.duration_since(later).as_millis()).unwrap_or(i128::MAX)
    }
}

/// Checks `written` against the new master behind `node`.
async fn lost(
    node: &Client,
    written: &[Written],
    switch: Switch,
    entries: &BTreeSet<String>,
) -> Lost {
    let mut lost = Lost::default();
    let promoted = switch.promoted.expect("the promotion was seen");
    let mut landed: Option<Instant> = None;
    for writer in written {
        let ids: Vec<&str> = writer.created.iter().map(|(id, _)| id.as_str()).collect();
        let stored = Order::get_many(node, ids).await.expect("read the orders");
        for ((id, sent), order) in writer.created.iter().zip(stored) {
            if order.is_none() {
                lost.created += 1;
                let at = ms_between(*sent, promoted);
                lost.window_ms = Some(match lost.window_ms {
                    None => (at, at),
                    Some((first, last)) => (first.min(at), last.max(at)),
                });
            } else if *sent > promoted {
                landed = Some(landed.map_or(*sent, |l| l.min(*sent)));
            }
            if !entries.contains(id) {
                lost.entries += 1;
            }
        }
        let count = Tally::get(node, &writer.tally)
            .await
            .expect("read the counter")
            .map_or(0, |tally| tally.count);
        lost.increments += (writer.increments - count).max(0);
    }
    lost.landed_after_named_ms = landed.zip(switch.named).map(|(l, n)| ms_between(l, n));
    lost
}

/// The `id` of every entry on the orders stream, read on `node`.
async fn stream_ids(node: &Client) -> BTreeSet<String> {
    let mut cmd = redis::cmd("XRANGE");
    cmd.arg("orders:stream").arg("-").arg("+");
    let entries: Vec<(String, Vec<String>)> = node
        .read(
            redis_runtime::Context::new("test.xrange", "orders:stream"),
            &cmd,
        )
        .await
        .expect("XRANGE");
    entries
        .into_iter()
        .filter_map(|(_, fields)| {
            let at = fields.iter().position(|field| field == "id")?;
            fields.get(at + 1).cloned()
        })
        .collect()
}

/// Runs the writers of every client through `step` (a failover or a
/// crash, off the async workers) and half a second more; returns the
/// topology and what each client's writers saw, the switch as observed,
/// and the new master's port.
async fn through(
    topology: SentinelTopology,
    clients: &BTreeMap<Acks, Client>,
    step_name: &str,
    step: impl FnOnce(&mut SentinelTopology) -> u16 + Send + 'static,
) -> (SentinelTopology, BTreeMap<Acks, Vec<Written>>, Switch, u16) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (&acks, client) in clients {
        for w in 0..2 {
            let label = format!("{step_name}-{acks:?}-{w}");
            writers.push((
                acks,
                tokio::spawn(write_until(client.clone(), label, stop.clone())),
            ));
        }
    }
    let observed = Arc::new(AtomicBool::new(false));
    let observer = tokio::spawn(observe(
        topology.node_ports(),
        topology.sentinel_ports(),
        topology.master_name().to_string(),
        topology.master_port(),
        observed.clone(),
    ));
    // Writers run a moment before the fault.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (topology, new_master) = tokio::task::spawn_blocking(move || {
        let mut topology = topology;
        let new_master = step(&mut topology);
        (topology, new_master)
    })
    .await
    .expect("the step");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    observed.store(true, Ordering::Relaxed);
    let mut written: BTreeMap<Acks, Vec<Written>> = BTreeMap::new();
    for (acks, writer) in writers {
        written
            .entry(acks)
            .or_default()
            .push(writer.await.expect("a writer"));
    }
    let switch = observer.await.expect("the observer");
    (topology, written, switch, new_master)
}

/// Checks and prints one step: nothing acknowledged by every replica lost,
/// 0 drift, the move within [`MOVE_BOUND`] of the first Sentinel naming
/// the new master.
async fn check(
    topology: &SentinelTopology,
    step: &str,
    written: &BTreeMap<Acks, Vec<Written>>,
    switch: Switch,
    new_master: u16,
) {
    let node = Client::connect(Config::from_url(&topology.node_url(new_master)).expect("URL"))
        .await
        .expect("the new master");
    let entries = stream_ids(&node).await;
    let since =
        |at: Option<Instant>, base: Option<Instant>| at.zip(base).map(|(a, b)| ms_between(a, b));
    println!(
        "{step}: a Sentinel named the new master (port {new_master}) {:?} ms after the promotion",
        since(switch.named, switch.promoted)
    );
    for (acks, writers) in written {
        let lost = lost(&node, writers, switch, &entries).await;
        let created: usize = writers.iter().map(|w| w.created.len()).sum();
        let increments: i64 = writers.iter().map(|w| w.increments).sum();
        let mut failed: BTreeMap<&str, u64> = BTreeMap::new();
        for writer in writers {
            for (code, n) in &writer.failed {
                *failed.entry(code).or_default() += n;
            }
        }
        println!(
            "{step}: {acks:?}: {created} creates and {increments} increments acknowledged; lost {} creates (sent {:?} ms after the promotion), {} stream entries, {} increments; failed {failed:?}; first write on the new master {:?} ms after a Sentinel named it",
            lost.created, lost.window_ms, lost.entries, lost.increments, lost.landed_after_named_ms
        );
        for code in failed.keys() {
            assert!(
                matches!(
                    *code,
                    "STORAGE_UNAVAILABLE" | "STORAGE_TIMEOUT" | "STORAGE_NOT_REPLICATED"
                ),
                "{step}: {acks:?}: an undocumented failure {code}"
            );
        }
        if *acks == Acks::All {
            assert_eq!(
                lost.created, 0,
                "{step}: every replica acknowledged the lost creates"
            );
            assert_eq!(lost.entries, 0, "{step}: their stream entries");
            assert_eq!(lost.increments, 0, "{step}: and the increments");
        }
        if *acks == Acks::Off {
            let landed = lost
                .landed_after_named_ms
                .expect("a write after the promotion landed on the new master");
            assert!(
                landed < MOVE_BOUND.as_millis() as i128,
                "{step}: the client wrote to the new master {landed} ms after a Sentinel named it"
            );
        }
    }
    let report = index::verify::<Order>(&node).await.expect("verify");
    assert!(report.drift.is_empty(), "{step}: drift {:?}", report.drift);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_by_every_replica_survives_failovers_and_a_crash() {
    let topology = SentinelTopology::start_with(
        "acks",
        SentinelOptions {
            replicas: 2,
            ..SentinelOptions::default()
        },
    );
    let mut clients = BTreeMap::new();
    for acks in [Acks::All, Acks::One, Acks::Off] {
        let config = acks
            .configure(Config::builder(topology.url()).lazy_connect(false))
            .build()
            .expect("config");
        clients.insert(acks, Client::connect(config).await.expect("connect"));
    }
    let health = clients[&Acks::One].health().await;
    assert!(
        health
            .warnings
            .iter()
            .any(|w| w.contains("REDIS_WAIT_REPLICAS=1 while the master has 2 replicas")),
        "{health:?}"
    );
    let health = clients[&Acks::All].health().await;
    assert!(health.ok && health.warnings.is_empty(), "{health:?}");

    let sentinels = topology.sentinel_ports();
    let (first, last) = (sentinels[0], sentinels[2]);
    let (topology, written, switch, new_master) =
        through(topology, &clients, "failover-1", move |t| {
            t.failover_via(first)
        })
        .await;
    check(
        &topology,
        "manual failover led by the first Sentinel",
        &written,
        switch,
        new_master,
    )
    .await;
    let (topology, written, switch, new_master) =
        through(topology, &clients, "failover-2", move |t| {
            t.failover_via(last)
        })
        .await;
    check(
        &topology,
        "manual failover led by the last Sentinel",
        &written,
        switch,
        new_master,
    )
    .await;
    let (topology, written, switch, new_master) = through(topology, &clients, "crash", |t| {
        let killed = t.kill_master();
        t.wait_for_new_master(killed)
    })
    .await;
    check(
        &topology,
        "crash of the master",
        &written,
        switch,
        new_master,
    )
    .await;
    for client in clients.values() {
        client.shutdown().await;
    }
}

/// The server-side guard rail: with `min-replicas-to-write` at the number
/// of replicas, a master left with fewer refuses writes, so through a
/// manual failover a client without acknowledgements loses only the
/// writes in flight at the promotion (sent within 50 ms before it), and
/// its failures are the documented transient ones (`NOREPLICAS` is waited
/// out as `STORAGE_UNAVAILABLE`, reason `TooFewReplicas`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_replicas_to_write_keeps_the_old_master_from_taking_writes() {
    let topology = SentinelTopology::start_with(
        "guarded",
        SentinelOptions {
            replicas: 2,
            node_args: [
                "--min-replicas-to-write",
                "2",
                "--min-replicas-max-lag",
                "10",
            ]
            .map(String::from)
            .to_vec(),
            ..SentinelOptions::default()
        },
    );
    let config = Config::builder(topology.url())
        .lazy_connect(false)
        .build()
        .expect("config");
    let clients = BTreeMap::from([(Acks::Off, Client::connect(config).await.expect("connect"))]);
    let (topology, written, switch, new_master) =
        through(topology, &clients, "guarded", |t| t.failover()).await;
    let node = Client::connect(Config::from_url(&topology.node_url(new_master)).expect("URL"))
        .await
        .expect("the new master");
    let entries = stream_ids(&node).await;
    let lost = lost(&node, &written[&Acks::Off], switch, &entries).await;
    let failed: Vec<_> = written[&Acks::Off].iter().map(|w| &w.failed).collect();
    println!("min-replicas-to-write 2: lost {lost:?}; failed {failed:?}");
    if let Some((first, last)) = lost.window_ms {
        assert!(
            first > -50 && last <= 0,
            "writes the old master took after the promotion were lost: {lost:?}"
        );
    }
    for code in failed.iter().flat_map(|failed| failed.keys()) {
        assert!(
            matches!(*code, "STORAGE_UNAVAILABLE" | "STORAGE_TIMEOUT"),
            "an undocumented failure {code}"
        );
    }
    clients[&Acks::Off].shutdown().await;
    node.shutdown().await;
}

/// Stops a `redis-server` process (`SIGSTOP`) while alive, so it stays
/// attached and answers nothing; resumes it when dropped.
struct Frozen(String);

impl Frozen {
    fn new(port: u16) -> Self {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("URL");
        let mut conn = client.get_connection().expect("connect");
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut conn)
            .expect("INFO");
        let pid = info
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .expect("process_id")
            .trim()
            .to_string();
        signal("-STOP", &pid);
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("-CONT", &self.0);
    }
}

fn signal(which: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([which, pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid}: {status}");
}

/// `REDIS_WAIT_REPLICAS=all` counted one replica; a second one attaches
/// (no Sentinel has polled the master since, so none announced it) and
/// is frozen: the next create must wait for both and answer
/// `STORAGE_NOT_REPLICATED` (2 required), not succeed on the first
/// replica alone. Once it runs again, writes are acknowledged by both
/// (still 2 required).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_attached_since_the_count_is_awaited_at_once() {
    let topology = SentinelTopology::start_with(
        "late",
        SentinelOptions {
            replicas: 1,
            ..SentinelOptions::default()
        },
    );
    let config = Acks::All
        .configure(Config::builder(topology.url()).lazy_connect(false))
        .build()
        .expect("config");
    let client = Client::connect(config).await.expect("connect");
    let order = |id: &str| Order {
        id: id.into(),
        status: "new".into(),
    };
    order("before").create(&client).await.expect("one replica");

    let master = topology.master_port();
    let late = RedisServer::start_with_args(&[
        "--replicaof".into(),
        "127.0.0.1".into(),
        master.to_string(),
    ]);
    let master_conn = redis::Client::open(topology.node_url(master)).expect("URL");
    let mut master_conn = master_conn.get_connection().expect("connect");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut master_conn)
            .expect("INFO");
        let online = info
            .lines()
            .filter(|line| line.starts_with("slave") && line.contains("state=online"))
            .count();
        if online == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the late replica never synced: {info}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let frozen = Frozen::new(late.port());
    match order("while-frozen").create(&client).await {
        Err(redis_runtime::Error::NotReplicated {
            acknowledged,
            required,
            ..
        }) => assert_eq!((acknowledged, required), (1, 2)),
        other => panic!("a write the frozen replica never acknowledged answered {other:?}"),
    }
    drop(frozen);
    // The resumed replica first works through what it missed, on a busy
    // machine for longer than one write's wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    for attempt in 0.. {
        match order(&format!("after-{attempt}")).create(&client).await {
            Ok(_) => break,
            Err(redis_runtime::Error::NotReplicated { required: 2, .. })
                if Instant::now() < deadline => {}
            Err(e) => panic!("once the replica runs again: {e:?}"),
        }
    }
    client.shutdown().await;
}

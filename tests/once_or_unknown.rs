//! Once or unknown, on one server and on a Redis Cluster: a write whose
//! connection is cut after the server ran it runs once and its caller is
//! told the outcome is unknown; a read in the same situation is sent
//! again and succeeds.
//!
//! A [`Proxy`] sits in front of the server (on a cluster, in front of
//! every master: each master announces the proxy's port, so the slot map
//! the client reads sends it there) and cuts the connection that carries
//! a chosen request, either before the server gets it or after the server
//! ran it, swallowing its reply.
//!
//! With replica acknowledgements on (`wait_for_replicas`), a read never
//! waits and every step of a write does: `INFO commandstats` on the
//! primaries counts the `WAIT`s of a listing (none) and of each step of a
//! `cross_slot` write (one each).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis_runtime::testing::{
    ClusterTopology, Cut, Proxy, RedisServer, eventually, node_command_calls,
};
use redis_runtime::{Client, Config, Error, Page, RedisEntity};

/// A counter in a slot of its own on a cluster.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "tally:{id}")]
struct Tally {
    id: String,
    count: i64,
}

fn tally(id: &str, count: i64) -> Tally {
    Tally {
        id: id.into(),
        count,
    }
}

/// A deployment whose client reaches every node through a proxy.
struct Fronted {
    client: Client,
    nodes: Arc<Nodes>,
}

/// The servers and the proxies in front of them.
enum Nodes {
    Standalone {
        proxy: Proxy,
        /// The server the proxy fronts, and its replica.
        replicated: Box<(RedisServer, RedisServer)>,
    },
    Cluster {
        /// By the port each proxy listens on, which its master announces.
        proxies: BTreeMap<u16, Proxy>,
        /// The masters' own ports, behind the proxies.
        masters: Vec<u16>,
        topology: ClusterTopology,
    },
}

impl Nodes {
    /// A cluster whose masters each announce a proxy in front of them,
    /// shared by the tests of this binary running now.
    fn shared_cluster() -> Arc<Nodes> {
        static SHARED: Mutex<Weak<Nodes>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(nodes) = shared.upgrade() {
            return nodes;
        }
        let nodes = Arc::new(Nodes::cluster());
        *shared = Arc::downgrade(&nodes);
        nodes
    }

    /// A cluster whose masters each announce a proxy in front of them.
    fn cluster() -> Nodes {
        let topology = ClusterTopology::start();
        let masters = topology.masters();
        let mut proxies = BTreeMap::new();
        for &master in &masters {
            let proxy = Proxy::start(master);
            topology.announce_port(master, proxy.port());
            proxies.insert(proxy.port(), proxy);
        }
        Nodes::Cluster {
            proxies,
            masters,
            topology,
        }
    }

    /// Every proxy.
    fn proxies(&self) -> Vec<&Proxy> {
        match self {
            Nodes::Standalone { proxy, .. } => vec![proxy],
            Nodes::Cluster { proxies, .. } => proxies.values().collect(),
        }
    }
}

impl Fronted {
    async fn standalone() -> Self {
        let server = RedisServer::start();
        let replica = RedisServer::start_with_args(&[
            "--replicaof".into(),
            "127.0.0.1".into(),
            server.port().to_string(),
        ]);
        let replica_client = replica.client().await;
        eventually(Duration::from_secs(10), "the replica in sync", async || {
            let info: String =
                redis_runtime::testing::raw_query(&replica_client, &["INFO", "replication"]).await;
            info.contains("master_link_status:up")
        })
        .await;
        let proxy = Proxy::start(server.port());
        let url = format!("redis://127.0.0.1:{}", proxy.port());
        Self::connect(
            &url,
            Arc::new(Nodes::Standalone {
                proxy,
                replicated: Box::new((server, replica)),
            }),
        )
        .await
    }

    async fn cluster() -> Self {
        Self::on_cluster(Nodes::shared_cluster()).await
    }

    /// On a cluster of its own, for a test whose faults would reach the
    /// other tests' connections.
    async fn own_cluster() -> Self {
        Self::on_cluster(Arc::new(Nodes::cluster())).await
    }

    async fn on_cluster(nodes: Arc<Nodes>) -> Self {
        let Nodes::Cluster { topology, .. } = &*nodes else {
            unreachable!("a cluster")
        };
        let url = topology.url();
        Self::connect(&url, nodes).await
    }

    async fn connect(url: &str, nodes: Arc<Nodes>) -> Self {
        let config = Config::builder(url).build().expect("config");
        let client = Client::connect(config).await.expect("connect");
        Self { client, nodes }
    }

    /// The proxy in front of the server that holds `key`.
    fn proxy_for(&self, key: &str) -> &Proxy {
        match &*self.nodes {
            Nodes::Standalone { proxy, .. } => proxy,
            Nodes::Cluster {
                proxies, topology, ..
            } => {
                let seed = topology.seed_ports()[0];
                let mut conn = redis::Client::open(topology.node_url(seed))
                    .and_then(|client| client.get_connection())
                    .expect("a seed node");
                let slot: u16 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(key)
                    .query(&mut conn)
                    .expect("CLUSTER KEYSLOT");
                let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query(&mut conn)
                    .expect("CLUSTER SLOTS");
                let port = slots
                    .into_iter()
                    .find_map(|range| {
                        let redis::Value::Array(parts) = range else {
                            return None;
                        };
                        let first: u16 = redis::from_redis_value(parts.first()?.clone()).ok()?;
                        let last: u16 = redis::from_redis_value(parts.get(1)?.clone()).ok()?;
                        let redis::Value::Array(primary) = parts.get(2)? else {
                            return None;
                        };
                        let port: u16 = redis::from_redis_value(primary.get(1)?.clone()).ok()?;
                        (first..=last).contains(&slot).then_some(port)
                    })
                    .expect("a master serves the slot");
                proxies
                    .get(&port)
                    .unwrap_or_else(|| panic!("no proxy listens on port {port}"))
            }
        }
    }
}

/// The stored count of `id`, read behind no proxy's back (through the
/// client, which sends a read again if a cut hits it).
async fn stored(client: &Client, id: &str) -> i64 {
    Tally::get(client, id)
        .await
        .expect("read the tally")
        .expect("the tally exists")
        .count
}

/// Waits for an armed cut to be made: the request it was armed for went
/// through the proxy.
async fn made(cut: impl Future<Output = ()>) {
    tokio::time::timeout(std::time::Duration::from_secs(10), cut)
        .await
        .expect("the request was never cut: it did not go through the proxy");
}

fn assert_unknown(result: &Result<impl std::fmt::Debug, Error>, what: &str) {
    match result {
        Err(e) => assert!(
            e.outcome_unknown(),
            "{what}: a cut write must say its outcome is unknown: {e}"
        ),
        Ok(value) => panic!("{what}: a cut write answered {value:?}"),
    }
}

/// An increment whose reply is lost ran once, and says it is unknown.
async fn a_cut_increment_runs_once_and_is_unknown(deployment: Fronted) {
    let client = &deployment.client;
    tally("inc", 1).create(client).await.expect("create");
    let proxy = deployment.proxy_for(&Tally::key_for("inc").expect("key"));
    let cut = proxy.arm(b"tally:inc", Cut::AfterRun);
    let result = Tally::incr_count(client, "inc", 1).await;
    made(cut).await;
    assert_unknown(&result, "incr_count");
    assert_eq!(stored(client, "inc").await, 2, "the increment ran once");
}

/// A create whose reply is lost is unknown, not `ALREADY_EXISTS` for its
/// own write.
async fn a_cut_create_is_unknown_not_already_exists(deployment: Fronted) {
    let client = &deployment.client;
    let proxy = deployment.proxy_for(&Tally::key_for("new").expect("key"));
    let cut = proxy.arm(b"tally:new", Cut::AfterRun);
    let result = tally("new", 7).create(client).await;
    made(cut).await;
    assert_unknown(&result, "create");
    assert_eq!(stored(client, "new").await, 7, "the create ran");
}

/// A delete whose reply is lost is unknown, not "there was nothing".
async fn a_cut_delete_is_unknown(deployment: Fronted) {
    let client = &deployment.client;
    tally("gone", 1).create(client).await.expect("create");
    let proxy = deployment.proxy_for(&Tally::key_for("gone").expect("key"));
    let cut = proxy.arm(b"tally:gone", Cut::AfterRun);
    let result = Tally::delete(client, "gone").await;
    made(cut).await;
    assert_unknown(&result, "delete");
    assert_eq!(Tally::get(client, "gone").await.expect("get"), None);
}

/// A read whose reply is lost is sent again and answers.
async fn a_cut_read_is_sent_again(deployment: Fronted) {
    let client = &deployment.client;
    tally("read", 5).create(client).await.expect("create");
    let proxy = deployment.proxy_for(&Tally::key_for("read").expect("key"));
    let cut = proxy.arm(b"tally:read", Cut::AfterRun);
    let read = Tally::get(client, "read").await;
    made(cut).await;
    assert_eq!(
        read.expect("the read is sent again"),
        Some(tally("read", 5))
    );
}

/// A counter under repeated cuts, one writer: every answer is the count
/// plus one, every cut increment is unknown, and the count ends at the
/// acknowledged increments plus those cut after they ran.
async fn a_counter_under_repeated_cuts_is_never_doubled(deployment: Fronted) {
    let client = &deployment.client;
    tally("many", 0).create(client).await.expect("create");
    let proxy = deployment.proxy_for(&Tally::key_for("many").expect("key"));
    let (mut acknowledged, mut unknown, mut expected) = (0i64, 0, 0i64);
    let mut cuts_that_ran = 0i64;
    for round in 0..60 {
        let cut = match round % 4 {
            1 => Some((proxy.arm(b"tally:many", Cut::AfterRun), true)),
            3 => Some((proxy.arm(b"tally:many", Cut::BeforeSend), false)),
            _ => None,
        };
        let result = Tally::incr_count(client, "many", 1).await;
        let ran = match cut {
            Some((cut, ran)) => {
                made(cut).await;
                Some(ran)
            }
            None => None,
        };
        match result {
            Ok(count) => {
                assert_eq!(ran, None, "round {round}: a cut increment answered {count}");
                expected += 1;
                acknowledged += 1;
                assert_eq!(count, expected, "round {round}: an increment ran twice");
            }
            Err(e) => {
                assert!(e.outcome_unknown(), "round {round}: {e}");
                unknown += 1;
                let now = stored(client, "many").await;
                let ran =
                    ran.unwrap_or_else(|| panic!("round {round}: an uncut write failed: {e}"));
                cuts_that_ran += i64::from(ran);
                expected += i64::from(ran);
                assert_eq!(
                    now,
                    expected,
                    "round {round}: the cut increment ran {}",
                    now - expected + i64::from(ran)
                );
            }
        }
    }
    assert_eq!(unknown, 30, "every cut increment was unknown");
    assert_eq!(
        stored(client, "many").await,
        acknowledged + cuts_that_ran,
        "acknowledged plus the cut increments that ran"
    );
}

/// A job listed by user (a sorted index) and by status (a set index),
/// pinned to one slot on a cluster.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "job:{{acks}}:{id}")]
#[redis(sorted_index(key = "jobs:{{acks}}:user:{user_id}", score = "created_at"))]
#[redis(index(key = "jobs:{{acks}}:status:{status}"))]
struct Job {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

fn job(n: i64) -> Job {
    Job {
        id: format!("j{n}"),
        user_id: "u1".into(),
        status: "queued".into(),
        created_at: 1_700_000_000_000 + n,
    }
}

/// Each order in a slot of its own, its indexes and outbox stream global:
/// on a cluster a write is the entity's script, then the index moves, the
/// stream append and the record's release, each a request of its own.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "order:{id}")]
#[redis(stream = "orders:stream", stream_cross_slot)]
#[redis(index(key = "orders:status:{status}", cross_slot))]
struct Order {
    id: String,
    status: String,
}

/// `WAIT`s counted by each of `nodes` (`INFO commandstats`, read on a
/// connection of its own), in order.
fn waits(nodes: &[u16]) -> Vec<u64> {
    nodes
        .iter()
        .map(|&port| node_command_calls(port, "wait"))
        .collect()
}

/// Held by the tests that count `WAIT`s on the primaries, which the
/// cluster tests share: one at a time, so each counts its own.
static COUNTING_WAITS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Ports of the primaries: the one server, or the cluster's masters.
fn primaries(deployment: &Fronted) -> Vec<u16> {
    match &*deployment.nodes {
        Nodes::Standalone { replicated, .. } => vec![replicated.0.port()],
        Nodes::Cluster { masters, .. } => masters.clone(),
    }
}

/// A client that waits for one replica after each write: on one server
/// straight to it, past the proxy; on a cluster through the proxies the
/// slot map names, which cut nothing unless armed.
async fn acknowledging(deployment: &Fronted) -> Client {
    let url = match &*deployment.nodes {
        Nodes::Standalone { replicated, .. } => replicated.0.url(),
        Nodes::Cluster { topology, .. } => topology.url(),
    };
    let config = Config::builder(url)
        .wait_for_replicas(1, Duration::from_secs(2))
        .build()
        .expect("config");
    Client::connect(config).await.expect("connect")
}

/// Listings, lookups, counts and cursor pages send no `WAIT`; each create
/// sends one.
async fn reads_never_wait_for_replicas_and_writes_do(deployment: Fronted) {
    let _counting = COUNTING_WAITS.lock().await;
    let client = acknowledging(&deployment).await;
    let nodes = primaries(&deployment);
    for n in 0..5 {
        job(n)
            .create(&client)
            .await
            .expect("an acknowledged create");
    }
    let before = waits(&nodes);
    for _ in 0..10 {
        let listed = Job::by_user_id(&client, "u1", Page::newest_first(20))
            .await
            .expect("by_user_id");
        assert_eq!(listed.len(), 5);
        let queued = Job::by_status(&client, "queued").await.expect("by_status");
        assert_eq!(queued.len(), 5);
        assert_eq!(
            Job::by_status_count(&client, "queued")
                .await
                .expect("count"),
            5
        );
        assert!(Job::get(&client, "j1").await.expect("get").is_some());
        assert!(Job::exists(&client, "j2").await.expect("exists"));
        let first = redis_runtime::index::CursorPage::newest_first(2);
        let page = Job::by_user_id_after(&client, "u1", &first)
            .await
            .expect("a cursor page");
        assert_eq!(page.listing.len(), 2);
    }
    assert_eq!(waits(&nodes), before, "reads sent WAIT");
    for n in 5..8 {
        job(n)
            .create(&client)
            .await
            .expect("an acknowledged create");
    }
    let after: Vec<u64> = waits(&nodes);
    for (node, (before, after)) in nodes.iter().zip(before.iter().zip(&after)) {
        assert_eq!(after - before, 3, "node {node}: one WAIT per create");
    }
    client.shutdown().await;
}

/// On a cluster, each step of a `cross_slot` write is acknowledged before
/// the next is sent: a create is four requests (the entity's script, the
/// index move, the stream append, the record's release), a status change
/// four (two moves, in two slots, and no stream entry), and each is
/// followed by a `WAIT` (which redis-rs sends to every primary). A listing
/// of the index sends none.
async fn every_cross_slot_step_is_acknowledged(deployment: Fronted) {
    let _counting = COUNTING_WAITS.lock().await;
    let client = acknowledging(&deployment).await;
    let nodes = primaries(&deployment);
    let count = |before: &[u64]| -> Vec<u64> {
        waits(&nodes)
            .iter()
            .zip(before)
            .map(|(after, before)| after - before)
            .collect()
    };
    let before = waits(&nodes);
    let order = Order {
        id: "o1".into(),
        status: "open".into(),
    };
    order.create(&client).await.expect("create");
    assert_eq!(
        count(&before),
        [4, 4, 4],
        "create: script, moves, append, release"
    );
    let before = waits(&nodes);
    let paid = OrderPatch {
        status: Some("paid".into()),
    };
    Order::patch(&client, "o1", &paid).await.expect("patch");
    // The moves are one pipeline per slot (`SADD` at the new key, `SREM`
    // at the old), sent together: each is acknowledged, and one `WAIT`
    // may answer both.
    for waited in count(&before) {
        assert!(
            (3..=4).contains(&waited),
            "status change: script, moves (2 slots), release: {waited} WAITs"
        );
    }
    let before = waits(&nodes);
    let paid = Order::by_status(&client, "paid").await.expect("by_status");
    assert_eq!(paid.len(), 1);
    assert_eq!(count(&before), [0, 0, 0], "a listing waits for nothing");
    client.shutdown().await;
}

/// What the writers under cuts saw.
#[derive(Debug, Default)]
struct Tallied {
    /// Writes answered with their result.
    acknowledged: u64,
    /// Writes that failed with their outcome unknown, and how many of
    /// those a re-read found had run.
    unknown: u64,
    unknown_ran: u64,
    /// Writes refused without running (a re-read found nothing changed).
    not_run: u64,
}

impl Tallied {
    fn add(&mut self, other: &Tallied) {
        self.acknowledged += other.acknowledged;
        self.unknown += other.unknown;
        self.unknown_ran += other.unknown_ran;
        self.not_run += other.not_run;
    }
}

/// One writer of one counter, until `stop`: every answer is the count it
/// knew plus one; after an unknown outcome a re-read finds the count or
/// the count plus one; after any other failure, the count.
async fn count_under_cuts(client: Client, id: String, stop: Arc<AtomicBool>) -> Tallied {
    let mut seen = Tallied::default();
    tally(&id, 0)
        .create(&client)
        .await
        .expect("create the counter");
    let mut expected = 0;
    while !stop.load(Ordering::Relaxed) {
        match Tally::incr_count(&client, &id, 1).await {
            Ok(count) => {
                assert_eq!(count, expected + 1, "{id}: an increment ran twice");
                expected = count;
                seen.acknowledged += 1;
            }
            Err(e) => {
                let now = stored(&client, &id).await;
                if e.outcome_unknown() {
                    assert!(
                        now == expected || now == expected + 1,
                        "{id}: an unknown increment left {now} after {expected}: {e}"
                    );
                    seen.unknown += 1;
                    seen.unknown_ran += u64::try_from(now - expected).unwrap_or(0);
                } else {
                    assert_eq!(now, expected, "{id}: a write refused as not run ran: {e}");
                    seen.not_run += 1;
                }
                expected = now;
            }
        }
    }
    assert_eq!(
        stored(&client, &id).await,
        expected,
        "{id}: the final count"
    );
    seen
}

/// One writer creating and deleting entities of fresh ids, until `stop`:
/// a create never finds its own entity (`ALREADY_EXISTS`), a delete of an
/// entity that exists never answers `false`, and a write whose outcome is
/// unknown is re-read.
async fn create_delete_under_cuts(client: Client, writer: u64, stop: Arc<AtomicBool>) -> Tallied {
    let mut seen = Tallied::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = format!("load-{writer}-{n}");
        let exists = match tally(&id, 1).create(&client).await {
            Ok(_) => {
                seen.acknowledged += 1;
                true
            }
            Err(e) => {
                let exists = Tally::get(&client, &id).await.expect("re-read").is_some();
                assert_ne!(e.code(), "ALREADY_EXISTS", "{id}: a create ran twice: {e}");
                if e.outcome_unknown() {
                    seen.unknown += 1;
                    seen.unknown_ran += u64::from(exists);
                } else {
                    assert!(!exists, "{id}: a create refused as not run ran: {e}");
                    seen.not_run += 1;
                }
                exists
            }
        };
        if !exists {
            continue;
        }
        match Tally::delete(&client, &id).await {
            Ok(deleted) => {
                assert!(deleted, "{id}: a delete ran twice (it found nothing)");
                seen.acknowledged += 1;
            }
            Err(e) => {
                let left = Tally::get(&client, &id).await.expect("re-read").is_some();
                if e.outcome_unknown() {
                    seen.unknown += 1;
                    seen.unknown_ran += u64::from(!left);
                } else {
                    assert!(left, "{id}: a delete refused as not run ran: {e}");
                    seen.not_run += 1;
                }
            }
        }
    }
    seen
}

/// Kills every normal client connection of the servers on `ports` every
/// 150 ms until `stop` (`CLIENT KILL TYPE normal`, requests in flight or
/// not); returns how many connections it killed.
async fn kill_clients(ports: Vec<u16>, stop: Arc<AtomicBool>) -> u64 {
    let mut killed = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        for &port in &ports {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                continue;
            };
            let n: redis::RedisResult<u64> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .query_async(&mut conn)
                .await;
            killed += n.unwrap_or(0);
        }
    }
    killed
}

/// Sixteen writers (eight counters, eight creating and deleting) while the
/// proxies cut one request in 40 (half after the server ran it, half
/// before it got it) and `CLIENT KILL TYPE normal` cuts every client
/// connection of every node every 150 ms; on a cluster then, with the
/// proxies at rest and the kills going on, a `CLUSTER FAILOVER` of a
/// master: no write runs twice, every write whose outcome is unknown is
/// found run once or not at all, and every other failure ran nothing.
async fn writers_under_cut_connections_apply_nothing_twice(deployment: Fronted) {
    let config = Config::builder(match &*deployment.nodes {
        Nodes::Standalone { proxy, .. } => format!("redis://127.0.0.1:{}", proxy.port()),
        Nodes::Cluster { topology, .. } => topology.url(),
    })
    .operation_timeout(Duration::from_secs(10))
    .build()
    .expect("config");
    let client = Client::connect(config).await.expect("connect");
    let stop = Arc::new(AtomicBool::new(false));
    for proxy in deployment.nodes.proxies() {
        proxy.cut_every(40);
    }
    let nodes = match &*deployment.nodes {
        Nodes::Standalone { replicated, .. } => vec![replicated.0.port()],
        Nodes::Cluster { topology, .. } => topology.seed_ports(),
    };
    let killer = tokio::spawn(kill_clients(nodes, stop.clone()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let id = format!("load-counter-{w}");
        writers.push(tokio::spawn(count_under_cuts(
            client.clone(),
            id,
            stop.clone(),
        )));
        writers.push(tokio::spawn(create_delete_under_cuts(
            client.clone(),
            w,
            stop.clone(),
        )));
    }
    // The load runs for a while; the writers check each write as they go.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for proxy in deployment.nodes.proxies() {
        proxy.cut_every(0);
    }
    if let Nodes::Cluster { .. } = &*deployment.nodes {
        let nodes = deployment.nodes.clone();
        let promoted = tokio::task::spawn_blocking(move || {
            let Nodes::Cluster {
                topology, masters, ..
            } = &*nodes
            else {
                unreachable!("a cluster")
            };
            // The harness names nodes by the ports they announce.
            for &master in masters {
                topology.announce_port(master, master);
            }
            topology.failover(masters[0])
        })
        .await
        .expect("failover");
        println!("failed over to port {promoted} under the load");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = Tallied::default();
    for writer in writers {
        seen.add(&writer.await.expect("a writer found a write applied twice"));
    }
    let killed = killer.await.expect("killer");
    let (after_run, before_send) = deployment
        .nodes
        .proxies()
        .iter()
        .map(|proxy| proxy.cuts())
        .fold((0, 0), |(a, b), (ran, sent)| (a + ran, b + sent));
    println!(
        "{seen:?}; proxies cut {after_run} requests after they ran and {before_send} before; \
         CLIENT KILL closed {killed} connections"
    );
    assert!(seen.acknowledged > 100, "the load ran: {seen:?}");
    assert!(after_run + before_send > 0 && killed > 0, "the faults ran");
    assert!(seen.unknown > 0, "some writes were cut: {seen:?}");
    client.shutdown().await;
}

/// Runs each named case on one server and on the cluster.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod standalone {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Fronted::standalone().await).await;
            })*
        }
        mod cluster {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Fronted::cluster().await).await;
            })*
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_under_cuts_on_a_cluster_of_their_own() {
    writers_under_cut_connections_apply_nothing_twice(Fronted::own_cluster().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_under_cuts_on_one_server() {
    writers_under_cut_connections_apply_nothing_twice(Fronted::standalone().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_steps_are_each_acknowledged_on_a_cluster() {
    every_cross_slot_step_is_acknowledged(Fronted::cluster().await).await;
}

on_both!(
    reads_never_wait_for_replicas_and_writes_do,
    a_cut_increment_runs_once_and_is_unknown,
    a_cut_create_is_unknown_not_already_exists,
    a_cut_delete_is_unknown,
    a_cut_read_is_sent_again,
    a_counter_under_repeated_cuts_is_never_doubled,
);

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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use redis_runtime::testing::{ClusterTopology, Cut, Proxy, RedisServer};
use redis_runtime::{Client, Config, Error, RedisEntity};

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
        _server: RedisServer,
    },
    Cluster {
        /// By the port each proxy listens on, which its master announces.
        proxies: BTreeMap<u16, Proxy>,
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
        let topology = ClusterTopology::start();
        let mut proxies = BTreeMap::new();
        for master in topology.masters() {
            let proxy = Proxy::start(master);
            topology.announce_port(master, proxy.port());
            proxies.insert(proxy.port(), proxy);
        }
        let nodes = Arc::new(Nodes::Cluster { proxies, topology });
        *shared = Arc::downgrade(&nodes);
        nodes
    }
}

impl Fronted {
    async fn standalone() -> Self {
        let server = RedisServer::start();
        let proxy = Proxy::start(server.port());
        let url = format!("redis://127.0.0.1:{}", proxy.port());
        Self::connect(
            &url,
            Arc::new(Nodes::Standalone {
                proxy,
                _server: server,
            }),
        )
        .await
    }

    async fn cluster() -> Self {
        let nodes = Nodes::shared_cluster();
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
            Nodes::Cluster { proxies, topology } => {
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

on_both!(
    a_cut_increment_runs_once_and_is_unknown,
    a_cut_create_is_unknown_not_already_exists,
    a_cut_delete_is_unknown,
    a_cut_read_is_sent_again,
    a_counter_under_repeated_cuts_is_never_doubled,
);

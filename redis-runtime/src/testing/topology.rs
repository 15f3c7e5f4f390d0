//! One test body, run against both deployments: a private `redis-server`
//! and a Redis Cluster of three masters and three replicas.
//!
//! A feature that works on one server must work the same on a cluster,
//! where a command or script reaches one slot's master and keys that must
//! move together have to share a hash slot. Write a test as
//! `async fn name(redis: TestRedis) { … }` and name it in
//! [`on_both_topologies!`]: it becomes two tests, `standalone::name` and
//! `cluster::name`, so a failure says which deployment broke.
//!
//! Every standalone test has a server of its own. The cluster tests of one
//! test binary share one cluster ([`ClusterTopology::shared`]), started by
//! the first and killed when the last ends (they run one after another, so
//! it is started about once), so they must keep out of each
//! other's keys: [`TestRedis::key`] puts the test's name in a hash tag on a
//! cluster (`{push_pop}:job_queue`), which also keeps every key the test
//! names in one slot, as companion keys (a queue's processing lists, a
//! stream's dead letters) must be. On one server it returns the name as
//! given, so the standalone run still checks the documented layout.
//!
//! ```no_run
//! use redis_runtime::on_both_topologies;
//! use redis_runtime::testing::{TestRedis, raw_query};
//!
//! /// A list written by one command is read back by another.
//! async fn lists_round_trip(redis: TestRedis) {
//!     let key = redis.key("list");
//!     raw_query::<i64>(redis.client(), &["RPUSH", &key, "a"]).await;
//!     let items: Vec<String> = raw_query(redis.client(), &["LRANGE", &key, "0", "-1"]).await;
//!     assert_eq!(items, ["a"]);
//! }
//!
//! on_both_topologies!(lists_round_trip);
//! # fn main() {}
//! ```
//!
//! [`on_both_topologies!`]: crate::on_both_topologies

use std::sync::{Arc, Mutex, Weak};

use super::{ClusterTopology, RedisServer};
use crate::client::Client;
use crate::config::{Config, ConfigBuilder};

/// Which deployment a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One private `redis-server`.
    Standalone,
    /// The test binary's shared cluster of three masters and three replicas.
    Cluster,
}

/// What keeps a test's servers alive.
#[derive(Debug)]
enum Servers {
    Standalone(RedisServer),
    Cluster(Arc<ClusterTopology>),
}

/// A running deployment and a [`Client`] of it, held for one test; see the
/// module docs.
#[derive(Debug)]
pub struct TestRedis {
    client: Client,
    /// The test's name: its keys' hash tag on a cluster.
    test: &'static str,
    servers: Servers,
}

impl TestRedis {
    /// Starts (or, for a cluster, joins) a deployment of `topology` for the
    /// test named `test`, and connects a client to it. Panics with an
    /// actionable message if the servers cannot be started or reached.
    pub async fn start(topology: Topology, test: &'static str) -> Self {
        let servers = match topology {
            Topology::Standalone => Servers::Standalone(RedisServer::start()),
            Topology::Cluster => Servers::Cluster(ClusterTopology::shared()),
        };
        let config = match &servers {
            Servers::Standalone(server) => server.config(),
            Servers::Cluster(cluster) => Config::from_url(&cluster.url())
                .unwrap_or_else(|e| panic!("the harness cluster's URL is refused: {e}")),
        };
        let client = connect(config).await;
        Self {
            client,
            test,
            servers,
        }
    }

    /// The URL of this deployment: `redis://…` of the server, or
    /// `redis+cluster://…` naming every node of the cluster.
    pub fn url(&self) -> String {
        match &self.servers {
            Servers::Standalone(server) => server.url(),
            Servers::Cluster(cluster) => cluster.url(),
        }
    }

    /// Another [`Client`] of this deployment, with the config `tweak` makes
    /// of `Config::builder(self.url())`; panics if the config is invalid.
    pub async fn client_with(&self, tweak: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Client {
        let config = tweak(Config::builder(self.url()))
            .build()
            .unwrap_or_else(|e| panic!("invalid test config: {e}"));
        connect(config).await
    }

    /// The client of this deployment.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Which deployment this is.
    pub fn topology(&self) -> Topology {
        match self.servers {
            Servers::Standalone(_) => Topology::Standalone,
            Servers::Cluster(_) => Topology::Cluster,
        }
    }

    /// Whether this is the cluster.
    pub fn is_cluster(&self) -> bool {
        self.topology() == Topology::Cluster
    }

    /// The cluster, to move slots or ask which node serves a key; `None` on
    /// one server.
    pub fn cluster(&self) -> Option<&ClusterTopology> {
        match &self.servers {
            Servers::Standalone(_) => None,
            Servers::Cluster(cluster) => Some(cluster),
        }
    }

    /// The private server; `None` on the cluster.
    pub fn server(&self) -> Option<&RedisServer> {
        match &self.servers {
            Servers::Standalone(server) => Some(server),
            Servers::Cluster(_) => None,
        }
    }

    /// How many clients are blocked (in `BLMOVE`, `XREADGROUP … BLOCK`, …)
    /// on the server that holds `key`: the server, or the master serving
    /// `key` on the cluster. For waiting until a blocking call has reached
    /// the server; on the cluster it counts the other tests blocked on that
    /// master too, so compare with a count taken before.
    pub async fn blocked_clients_at(&self, key: &str) -> u64 {
        match &self.servers {
            Servers::Standalone(_) => super::blocked_clients(&self.client).await,
            Servers::Cluster(cluster) => {
                let node = cluster.node_url(cluster.master_of_key(key));
                let info: String = super::process::connect(&node)
                    .and_then(|mut conn| {
                        redis::cmd("INFO")
                            .arg("clients")
                            .query(&mut conn)
                            .map_err(|e| e.to_string())
                    })
                    .unwrap_or_else(|e| panic!("INFO clients on {node}: {e}"));
                super::blocked_clients_in(&info)
            }
        }
    }

    /// The key this test uses for `name`: `name` itself on one server, and
    /// `{<test>}:<name>` on the cluster, which keeps the test's keys apart
    /// from the other tests sharing the cluster and all in one hash slot.
    pub fn key(&self, name: &str) -> String {
        match self.servers {
            Servers::Standalone(_) => name.to_string(),
            Servers::Cluster(_) => format!("{{{}}}:{name}", self.test),
        }
    }
}

async fn connect(config: Config) -> Client {
    Client::connect(config)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test deployment: {e}"))
}

impl ClusterTopology {
    /// The cluster the tests of this binary running now share: started by
    /// the first caller and killed when the last holder drops it. (A
    /// `static` is never dropped, so one that owned the cluster would
    /// leave six servers running after the tests.) Hold it for the whole
    /// test.
    pub fn shared() -> Arc<ClusterTopology> {
        static SHARED: Mutex<Weak<ClusterTopology>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(ClusterTopology::start());
        *shared = Arc::downgrade(&cluster);
        cluster
    }
}

/// Declares the tests that run each of the named functions on both
/// topologies (see [`testing::topology`](crate::testing)): for
/// `async fn name(redis: TestRedis) { … }`, a test `standalone::name` and a
/// test `cluster::name`, each calling it with a
/// [`TestRedis`](crate::testing::TestRedis) of its deployment. Write
/// `name multi_thread` for a test that needs tokio's multi-thread runtime.
/// The bodies stay ordinary functions, so rustfmt and tools read them; a
/// body left out of the list is an unused function, which the build warns
/// about.
///
/// Use it once per test file (it declares the modules `standalone` and
/// `cluster`). Grouped so, the cluster tests run one after another, and
/// the cluster they share stays up between them instead of being started
/// again for each.
///
/// The test crate needs `tokio` with its `macros` feature.
#[macro_export]
macro_rules! on_both_topologies {
    (@test $topology:ident $name:ident []) => {
        #[::tokio::test]
        async fn $name() {
            $crate::on_both_topologies!(@run $topology $name);
        }
    };
    (@test $topology:ident $name:ident [multi_thread]) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $crate::on_both_topologies!(@run $topology $name);
        }
    };
    (@run $topology:ident $name:ident) => {
        super::$name(
            $crate::testing::TestRedis::start(
                $crate::testing::Topology::$topology,
                ::core::stringify!($name),
            )
            .await,
        )
        .await
    };
    ($($name:ident $($flavor:ident)?),* $(,)?) => {
        /// Each test on a private server.
        mod standalone {
            $($crate::on_both_topologies!(@test Standalone $name [$($flavor)?]);)*
        }

        /// Each test on the cluster the binary's tests share.
        mod cluster {
            $($crate::on_both_topologies!(@test Cluster $name [$($flavor)?]);)*
        }
    };
}

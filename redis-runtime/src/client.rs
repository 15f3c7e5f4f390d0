//! The client handle all generated code takes: one multiplexed connection
//! with automatic reconnect, per-operation deadlines, tracing, metrics,
//! health checks and graceful shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::blocking::BlockingConnection;
use crate::config::{AckReplicas, Config, Topology};
use crate::error::{Context, Error, Result, Unavailability};
use crate::metrics::{Metrics, NoMetrics, OperationEvent, Outcome};
use crate::sentinel::{MasterLookup, Notice};
use crate::server::{Feature, ServerInfo};
use crate::transport::acks::AckBatch;
use crate::transport::cluster::Redirecting;
use crate::transport::{Effect, Payload, Request};

/// How long [`Client::health`] waits for `PING`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// On a Redis Cluster, the longest a request waits between attempts. A
/// slot's master changes without notice there (no `+switch-master` ends
/// a backoff early, as with Sentinel), and a master elected after a crash
/// serves at once: with the full backoff, writes resumed 0.5 to 0.8 s
/// after the promotion (`tests/cluster_faults.rs`).
const CLUSTER_RECHECK: Duration = Duration::from_millis(100);

/// How long a node a Sentinel told to become the master is asked whether
/// it is one yet: it takes a few milliseconds, the failover's whole
/// promotion step a second or two.
const PROMOTION_WAIT: Duration = Duration::from_secs(3);

/// Target of every tracing event this crate emits.
pub(crate) const TRACE_TARGET: &str = "redis_runtime";

/// A cheap-to-clone handle to one Redis server.
///
/// Clones share one multiplexed connection, which reconnects by itself with
/// the configured backoff; operations issued while it is down wait (bounded
/// by [`Config::operation_timeout`]) and then succeed or fail with a typed
/// error. Blocking reads and subscriptions get their own connections from
/// [`Client::dedicated_connection`], so they never stall the shared one.
///
/// ```no_run
/// # async fn demo() -> redis_runtime::Result<()> {
/// use redis_runtime::{Client, Config};
///
/// let client = Client::connect(Config::from_env()?).await?;
/// let health = client.health().await;
/// assert!(health.ok, "{:?}", health.error);
/// client.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// Where connections go.
    source: Source,
    /// The link every shared operation uses.
    link: RwLock<Slot>,
    /// Held while the master is looked up again, so one lookup runs at a
    /// time; holds when the last one finished, so operations that failed
    /// before it do not each look again.
    refreshed: tokio::sync::Mutex<Option<Instant>>,
    link_state: LinkState,
    /// Counts the times the shared link moved to another server, so
    /// dedicated connections can tell they point at the old one.
    link_generation: tokio::sync::watch::Sender<u64>,
    round_trips: Arc<AtomicU64>,
    metrics: Arc<dyn Metrics>,
    in_flight: TaskTracker,
    closed: CancellationToken,
    /// What `INFO server` said last: read on first need, again by `health`.
    server: RwLock<Option<ServerInfo>>,
    /// Whether `health` has logged an eviction-policy warning already.
    eviction_warned: AtomicBool,
    /// Which of the nodes the URL lists the next subscription connects to.
    next_seed: AtomicUsize,
}

/// Where the client's connections go.
enum Source {
    /// The configured address; redis-rs reconnects to it by itself.
    Fixed,
    /// Whichever node the Sentinels name as the master: looked up at
    /// first use, and again when an operation fails in a way a failover
    /// explains or a Sentinel announces a new master.
    Sentinel(Arc<MasterLookup>),
}

/// The shared link's state.
enum Slot {
    /// Connected (or connecting lazily) to a known server.
    Ready(Arc<Link>),
    /// A Sentinel configuration whose master has not been looked up yet.
    Unresolved,
    /// After [`Client::shutdown`].
    Closed,
}

/// A server (or a cluster) and the shared connection to it, shared by
/// every operation that took it (an `Arc`: taking it on the hot path
/// copies nothing).
struct Link {
    /// Where connections of their own (blocking reads, subscriptions) go.
    endpoint: Endpoint,
    shared: Shared,
    /// Replica acknowledgements of the writes on this link.
    acks: AckBatch,
}

/// What opens connections: one server's redis-rs client, or a cluster's.
// One per link, made once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Endpoint {
    Node(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

impl Endpoint {
    /// The one server, if this is not a cluster.
    fn node(&self) -> Option<&redis::Client> {
        match self {
            Endpoint::Node(node) => Some(node),
            Endpoint::Cluster(_) => None,
        }
    }
}

/// A connection to one server (`C`: redis-rs's reconnecting manager for
/// the shared connection, a multiplexed connection for blocking reads), or
/// a cluster's, which routes each command to the node serving its key's
/// slot, follows slot map changes and, through [`Redirecting`], `MOVED`
/// and `ASK`; it sends nothing again on its own.
#[derive(Clone)]
pub(crate) enum NodeOrCluster<C> {
    Node(C),
    Cluster(Redirecting),
}

/// The shared connection.
type Shared = NodeOrCluster<ConnectionManager>;

impl<C: redis::aio::ConnectionLike> redis::aio::ConnectionLike for NodeOrCluster<C> {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            NodeOrCluster::Node(conn) => conn.req_packed_command(cmd),
            NodeOrCluster::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            NodeOrCluster::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            NodeOrCluster::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            NodeOrCluster::Node(conn) => conn.get_db(),
            NodeOrCluster::Cluster(_) => 0,
        }
    }
}

/// What the client has observed about its link, for tracing: redis-rs
/// reconnects internally, so we report the transitions we can see from the
/// operations that pass through us.
#[derive(Default)]
struct LinkState {
    down: AtomicBool,
    failed_attempts: AtomicU32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .field("closed", &self.inner.closed.is_cancelled())
            .finish()
    }
}

/// Result of [`Client::health`].
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// Whether the server answered `PING` in time.
    pub ok: bool,
    /// Round-trip time of the `PING`, in milliseconds (time until failure when not ok).
    pub latency_ms: f64,
    /// Why it is not ok.
    pub error: Option<String>,
    /// The server's name and version, read with the `PING` (`None` when
    /// not ok).
    pub server: Option<ServerInfo>,
    /// The server's replication role (`master`, or `slave` for a replica,
    /// from `INFO replication`), when it answered. Connected to a replica
    /// through Sentinel, `ok` is false (the master moved and the client is
    /// looking it up again); connected to one directly, `warnings` says so.
    pub role: Option<String>,
    /// The server's `maxmemory-policy` (from `INFO memory`), when it
    /// answered.
    pub eviction_policy: Option<String>,
    /// What about the server's configuration can lose data this library
    /// keeps consistent, e.g. an eviction policy that may drop an index key
    /// or an entity hash on its own. Empty when nothing is wrong.
    pub warnings: Vec<String>,
}

/// The warning for a `maxmemory-policy` under which Redis may evict keys:
/// an index key or an entity hash can then disappear on its own, and the
/// indexes no longer match the entities (`noeviction` makes a full server
/// refuse writes instead: `STORAGE_OOM`, nothing half-written).
fn eviction_warning(policy: &str) -> Option<String> {
    (policy.starts_with("allkeys-") || policy.starts_with("volatile-")).then(|| {
        format!(
            "maxmemory-policy is {policy}: when memory is full Redis may evict an index key or an entity hash on its own, leaving the indexes out of step with the entities; use noeviction (full memory then fails writes with STORAGE_OOM), or keep this data on a server that never evicts"
        )
    })
}

impl Client {
    /// Builds a client with no metrics hook. Connects now unless
    /// [`Config::lazy_connect`] is set, in which case the first operation connects.
    ///
    /// Must be called inside a Tokio runtime.
    pub async fn connect(config: Config) -> Result<Self> {
        Self::connect_with_metrics(config, NoMetrics).await
    }

    /// Like [`Client::connect`], reporting every operation to `metrics`.
    pub async fn connect_with_metrics(config: Config, metrics: impl Metrics) -> Result<Self> {
        let (source, slot) = match &config.topology {
            Topology::Standalone => {
                let client = open_client(config.connection_info.clone(), &config)?;
                let manager = standalone_manager(&config, client.clone()).await?;
                (
                    Source::Fixed,
                    Slot::Ready(Arc::new(Link {
                        endpoint: Endpoint::Node(client),
                        shared: NodeOrCluster::Node(manager),
                        acks: AckBatch::default(),
                    })),
                )
            }
            Topology::Cluster(seeds) => {
                let client = cluster_client(&config, seeds)?;
                let cluster = cluster_connection(&config, &client).await?;
                (
                    Source::Fixed,
                    Slot::Ready(Arc::new(Link {
                        endpoint: Endpoint::Cluster(client),
                        shared: NodeOrCluster::Cluster(Redirecting::new(cluster)),
                        acks: AckBatch::default(),
                    })),
                )
            }
            Topology::Sentinel(settings) => {
                let lookup = MasterLookup::new(settings, config.connection_info.redis_settings())?;
                (Source::Sentinel(Arc::new(lookup)), Slot::Unresolved)
            }
        };
        let client = Self {
            inner: Arc::new(Inner {
                config,
                source,
                link: RwLock::new(slot),
                refreshed: tokio::sync::Mutex::new(None),
                link_state: LinkState::default(),
                link_generation: tokio::sync::watch::Sender::new(0),
                round_trips: Arc::default(),
                metrics: Arc::new(metrics),
                in_flight: TaskTracker::new(),
                closed: CancellationToken::new(),
                server: RwLock::new(None),
                eviction_warned: AtomicBool::new(false),
                next_seed: AtomicUsize::new(0),
            }),
        };
        let config = &client.inner.config;
        if let Source::Sentinel(lookup) = &client.inner.source {
            client.watch_master_switches(lookup.clone());
            if !config.lazy_connect || config.refuse_evicting_server {
                let context = Context::new("connect", "");
                let found = tokio::time::timeout(
                    config.operation_timeout,
                    client.refresh_master(None, None),
                )
                .await;
                match found {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        client.inner.closed.cancel();
                        return Err(e.with_context(context));
                    }
                    Err(_) => {
                        client.inner.closed.cancel();
                        return Err(Error::Timeout {
                            context,
                            elapsed_ms: duration_ms(config.operation_timeout),
                            outcome_unknown: false,
                        });
                    }
                }
            }
        }
        // A cluster's scripts carry a shebang (see the script module).
        if config.is_cluster()
            && !config.lazy_connect
            && let Err(e) = client
                .require(Feature::ScriptFlags, &Context::new("connect", ""))
                .await
        {
            client.shutdown().await;
            return Err(e);
        }
        if config.refuse_evicting_server
            && let Err(e) = client.refuse_if_evicting().await
        {
            client.shutdown().await;
            return Err(e);
        }
        Ok(client)
    }

    /// Fails with `STORAGE_CONFIG` when the server's `maxmemory-policy` may
    /// evict keys ([`ConfigBuilder::refuse_evicting_server`]).
    ///
    /// [`ConfigBuilder::refuse_evicting_server`]: crate::ConfigBuilder::refuse_evicting_server
    async fn refuse_if_evicting(&self) -> Result<()> {
        let memory = self.info("memory", Context::new("connect", "")).await?;
        // On a cluster, any node that may evict is one too many.
        match memory.iter().find_map(|node| {
            info_field(node, "maxmemory_policy")
                .as_deref()
                .and_then(eviction_warning)
        }) {
            Some(warning) => Err(Error::Config(format!(
                "refusing the server at {}: {warning}",
                self.inner.config.endpoint()
            ))),
            None => Ok(()),
        }
    }

    /// Follows every Sentinel's notices for as long as the client lives:
    /// the first that names a new master moves the shared link there, once
    /// its `ROLE` says master (a node just told to become one is asked
    /// again every 10 ms, for up to [`PROMOTION_WAIT`]); a change among the
    /// master's replicas makes [`AckReplicas::All`] count them again.
    fn watch_master_switches(&self, lookup: Arc<MasterLookup>) {
        let owner = Arc::downgrade(&self.inner);
        let stop = self.inner.closed.clone();
        tokio::spawn(lookup.watch_switches(owner, stop, |inner, notice| {
            let client = Client { inner };
            match notice {
                Notice::NewMaster(announced) => {
                    tokio::spawn(async move {
                        if !announced.settled {
                            client
                                .await_promotion(&announced.host, announced.port)
                                .await;
                        }
                        let hint = (announced.host, announced.port);
                        let _ = client
                            .refresh_master(Some(Instant::now()), Some(hint))
                            .await;
                    });
                }
                Notice::Replicas => client.recount_replicas(),
            }
        }));
    }

    /// Asks the node at `host:port`, which a Sentinel has just told to
    /// become the master, until its `ROLE` says so (or
    /// [`PROMOTION_WAIT`] passed): writes keep going to the old master
    /// meanwhile.
    async fn await_promotion(&self, host: &str, port: u16) {
        let Source::Sentinel(lookup) = &self.inner.source else {
            return;
        };
        let started = Instant::now();
        let timeout = self.inner.config.connect_timeout;
        while started.elapsed() < PROMOTION_WAIT && !self.is_shut_down() {
            if lookup.confirm(host, port, timeout).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Looks the master up again (Sentinel only; a no-op otherwise) and
    /// moves the shared link to it if it moved. `failed_at`: when the
    /// failure that prompted this happened; a lookup that finished since
    /// then already answered it. `hint`: the address a Sentinel's notice
    /// named, tried first.
    async fn refresh_master(
        &self,
        failed_at: Option<Instant>,
        hint: Option<(String, u16)>,
    ) -> Result<()> {
        let Source::Sentinel(lookup) = &self.inner.source else {
            return Ok(());
        };
        let mut refreshed = self.inner.refreshed.lock().await;
        if let (Some(done), Some(failed)) = (*refreshed, failed_at)
            && done >= failed
        {
            return Ok(());
        }
        // Every Sentinel announces a failover: the first notice moved the
        // link, the others name where it is already.
        if let Some((host, port)) = &hint
            && self.current_master().as_deref() == Some(format!("{host}:{port}").as_str())
        {
            return Ok(());
        }
        let config = &self.inner.config;
        let found = tokio::time::timeout(config.operation_timeout, async {
            if let Some((host, port)) = &hint
                && let Ok(info) = lookup.confirm(host, *port, config.connect_timeout).await
            {
                return Ok(info);
            }
            lookup.master().await
        })
        .await;
        *refreshed = Some(Instant::now());
        let info = match found {
            Ok(found) => found?,
            Err(_) => {
                // The operation that needed the master fills in the context.
                return Err(Error::Timeout {
                    context: Context::default(),
                    elapsed_ms: duration_ms(config.operation_timeout),
                    outcome_unknown: false,
                });
            }
        };
        self.install_master(info)?;
        let link = match &*self.inner.link.read().unwrap_or_else(|e| e.into_inner()) {
            Slot::Ready(link) => Some(Arc::clone(link)),
            Slot::Unresolved | Slot::Closed => None,
        };
        if let Some(link) = link {
            self.count_replicas(&link).await;
        }
        Ok(())
    }

    /// `host:port` of the server the shared link goes to, if it is one
    /// server's.
    fn current_master(&self) -> Option<String> {
        match &*self.inner.link.read().unwrap_or_else(|e| e.into_inner()) {
            Slot::Ready(link) => link
                .endpoint
                .node()
                .map(|node| node.get_connection_info().addr().to_string()),
            Slot::Unresolved | Slot::Closed => None,
        }
    }

    /// Points the shared link at `master` unless it already is.
    fn install_master(&self, master: redis::ConnectionInfo) -> Result<()> {
        let mut slot = self.inner.link.write().unwrap_or_else(|e| e.into_inner());
        let previous = match &*slot {
            Slot::Closed => {
                return Err(Error::Shutdown {
                    context: Context::new("sentinel.master", ""),
                });
            }
            Slot::Ready(link)
                if link
                    .endpoint
                    .node()
                    .is_some_and(|node| node.get_connection_info().addr() == master.addr()) =>
            {
                return Ok(());
            }
            Slot::Ready(link) => link
                .endpoint
                .node()
                .map(|node| node.get_connection_info().addr().to_string()),
            Slot::Unresolved => None,
        };
        let address = master.addr().to_string();
        let client = open_client(master, &self.inner.config)?;
        let manager = ConnectionManager::new_lazy_with_config(
            client.clone(),
            manager_config(&self.inner.config),
        )
        .map_err(|e| Error::from_redis(&e, Context::new("connect", "")))?;
        *slot = Slot::Ready(Arc::new(Link {
            endpoint: Endpoint::Node(client),
            shared: NodeOrCluster::Node(manager),
            acks: AckBatch::default(),
        }));
        self.inner.link_generation.send_modify(|moves| *moves += 1);
        let endpoint = self.inner.config.endpoint();
        match previous {
            Some(previous) => {
                tracing::warn!(target: TRACE_TARGET, endpoint, from = %previous, to = %address, "redis master changed; the shared connection moved to the new master");
            }
            None => {
                tracing::info!(target: TRACE_TARGET, endpoint, master = %address, "redis master found")
            }
        }
        Ok(())
    }

    /// Starts a lookup of the master in the background after `error`
    /// (Sentinel only), when a failover could explain it: for failures
    /// outside the retry loop (a write whose outcome is unknown, a blocking
    /// read, a subscription).
    pub(crate) fn suspect_master(&self, error: &Error, failed_at: Instant) {
        if !matches!(self.inner.source, Source::Sentinel(_)) || !error.is_transient() {
            return;
        }
        if self.is_shut_down() {
            return;
        }
        let client = self.clone();
        tokio::spawn(async move {
            let _ = client.refresh_master(Some(failed_at), None).await;
        });
    }

    /// The shared link, looking the master up first if it is not known yet.
    async fn link(&self, context: &Context) -> Result<Arc<Link>> {
        for _ in 0..2 {
            let current = match &*self.inner.link.read().unwrap_or_else(|e| e.into_inner()) {
                Slot::Ready(link) => Some(Arc::clone(link)),
                Slot::Closed => {
                    return Err(Error::Shutdown {
                        context: context.clone(),
                    });
                }
                Slot::Unresolved => None,
            };
            match current {
                Some(link) => return Ok(link),
                None => self.refresh_master(None, None).await?,
            }
        }
        Err(Error::Shutdown {
            context: context.clone(),
        })
    }

    /// How many times the shared link moved to another server (Sentinel):
    /// a dedicated connection opened under an older count goes to a server
    /// the client no longer uses.
    pub(crate) fn link_generation(&self) -> u64 {
        *self.inner.link_generation.borrow()
    }

    /// Changes when the shared link moves to another server: long-lived
    /// connections of their own (subscriptions) wait on it to move too.
    pub(crate) fn link_moves(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.link_generation.subscribe()
    }

    /// A handle on the shared connection for one attempt of a request of
    /// `effect`.
    async fn connection(&self, context: &Context, effect: Effect) -> Result<Connection> {
        let link = self.link(context).await?;
        let shared = match &link.shared {
            NodeOrCluster::Node(manager) => NodeOrCluster::Node(manager.clone()),
            NodeOrCluster::Cluster(cluster) => {
                NodeOrCluster::Cluster(cluster.clone().for_effect(effect))
            }
        };
        Ok(Connection {
            shared,
            link,
            round_trips: self.inner.round_trips.clone(),
        })
    }

    /// After a write on `conn`: with [`Config::replica_acks`] set, waits
    /// for that many replicas to acknowledge it (see [`AckBatch`]). When
    /// too few did and it waits for all of them, counts them again in the
    /// background (a replica may be gone for good).
    async fn acknowledge(&self, conn: &Connection, context: &Context) -> Result<()> {
        let Some(acks) = self.inner.config.replica_acks else {
            return Ok(());
        };
        let batch = &conn.link.acks;
        let required = batch.required(acks.replicas);
        let acknowledged = batch
            .acknowledge(&mut conn.clone(), required, acks.timeout, context)
            .await;
        if matches!(acknowledged, Err(Error::NotReplicated { .. }))
            && acks.replicas == AckReplicas::All
            && batch.recount_due()
        {
            let (client, link) = (self.clone(), conn.link.clone());
            tokio::spawn(async move { client.count_replicas(&link).await });
        }
        acknowledged
    }

    /// The Sentinels to count the master's replicas with, when writes
    /// wait for all of them ([`AckReplicas::All`]).
    fn counts_replicas(&self) -> Option<&MasterLookup> {
        let awaits_all = self
            .inner
            .config
            .replica_acks
            .is_some_and(|acks| acks.replicas == AckReplicas::All);
        match &self.inner.source {
            Source::Sentinel(lookup) if awaits_all => Some(lookup),
            _ => None,
        }
    }

    /// With [`AckReplicas::All`], counts the replicas of the current master
    /// again, in the background.
    fn recount_replicas(&self) {
        if self.counts_replicas().is_none() {
            return;
        }
        let link = match &*self.inner.link.read().unwrap_or_else(|e| e.into_inner()) {
            Slot::Ready(link) => Arc::clone(link),
            Slot::Unresolved | Slot::Closed => return,
        };
        let client = self.clone();
        tokio::spawn(async move { client.count_replicas(&link).await });
    }

    /// With [`AckReplicas::All`], counts the replicas of the master `link`
    /// goes to and records the count for its acknowledgements: the more of
    /// the replicas the Sentinels list, less those they flag down (see
    /// [`MasterLookup::replica_count`]), and the replicas connected to the
    /// master now (`INFO replication`), which the Sentinels learn of only
    /// when they next poll it. A count that fails keeps the last one.
    async fn count_replicas(&self, link: &Link) -> Option<u32> {
        let lookup = self.counts_replicas()?;
        let timeout = self.inner.config.connect_timeout;
        let listed = match lookup.replica_count(timeout).await {
            Ok(count) => count,
            Err(e) => {
                tracing::warn!(target: TRACE_TARGET, endpoint = self.inner.config.endpoint(), "could not count the master's replicas (REDIS_WAIT_REPLICAS=all keeps the last count): {e}");
                return None;
            }
        };
        let mut cmd = redis::cmd("INFO");
        cmd.arg("replication");
        let mut conn = link.shared.clone();
        let asked = cmd.query_async::<String>(&mut conn);
        let connected = match tokio::time::timeout(timeout, asked).await {
            Ok(Ok(info)) => info_field(&info, "connected_slaves").and_then(|n| n.parse().ok()),
            _ => None,
        };
        let count = listed.max(connected.unwrap_or(0));
        link.acks.set_all_replicas(count);
        Some(count)
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Runs one operation on the shared connection, once: for work that a
    /// single request cannot express (several round trips that decode as
    /// they go). `op` counts as a write ([`Effect::Write`]): it is never
    /// sent again, and with [`Config::replica_acks`] set it is followed by
    /// `WAIT`. Prefer [`Client::read`] and [`Client::write`], which wait
    /// out server states that refused a request.
    ///
    /// Like every call on the client, it refuses work after
    /// [`Client::shutdown`], is bounded by [`Config::operation_timeout`],
    /// attaches `context` to any error and reports to the metrics hook.
    /// redis-rs errors convert with `?` inside `op`.
    pub async fn run<T, F, Fut>(&self, context: Context, op: F) -> Result<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_with_deadline(
            context,
            self.inner.config.operation_timeout,
            Effect::Write,
            op,
        )
        .await
    }

    /// Sends `request` (a command, a pipeline or a prepared script call,
    /// and what it does to the data) and decodes its reply, within
    /// [`Config::operation_timeout`], with `context` on any error.
    ///
    /// Whether it is sent again after a failure, and whether it waits for
    /// replica acknowledgements, follow from its [`Effect`] alone, on every
    /// topology:
    ///
    /// - every request is sent again, after a backoff
    ///   ([`Config::retry`](crate::Config) bounds: 50 ms doubling up to 2 s
    ///   by default), while the server refuses it without running it
    ///   (`LOADING`, `BUSY`, `MASTERDOWN`, `READONLY`, `TRYAGAIN`,
    ///   `CLUSTERDOWN`, a redirect not followed yet, a refused connection),
    ///   then fails with `STORAGE_UNAVAILABLE` naming the state;
    /// - after a dropped connection or a reply timeout, a read or an
    ///   idempotent write is sent again; a write fails at once with
    ///   [`Error::outcome_unknown`] set, so the caller re-reads instead of
    ///   repeating a `create`;
    /// - with [`Config::replica_acks`] set, a write or an idempotent write
    ///   is followed by `WAIT` on the same connection, and too few
    ///   acknowledgements fail it with `STORAGE_NOT_REPLICATED` (it ran;
    ///   re-read before retrying). A read never waits.
    ///
    /// [`Client::read`], [`Client::write`] and [`Client::write_idempotent`]
    /// send a [`Payload`] with their effect.
    pub async fn send<T: redis::FromRedisValue>(
        &self,
        context: Context,
        request: Request<'_>,
    ) -> Result<T> {
        let deadline = self.inner.config.operation_timeout;
        let cluster = self.inner.config.is_cluster();
        let payload = request.payload();
        self.run_retrying(context, deadline, request.effect(), |mut conn| async move {
            match payload.send(&mut conn).await {
                Ok(value) => Ok(value),
                // redis-rs loaded the script and tried once more; on a
                // cluster mid-failover the load can miss the new primary.
                // One server answering NOSCRIPT twice stays a command error.
                Err(e)
                    if cluster
                        && e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    Err(Error::Unavailable {
                        context: Context::default(),
                        reason: Unavailability::ScriptMissing,
                        message: e.to_string(),
                        waited_ms: 0,
                        outcome_unknown: false,
                    })
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Sends a read ([`Effect::Read`]; see [`Client::send`]): sent again
    /// after any transient failure within the deadline, never waiting for
    /// replicas. Only for requests that change nothing: a write sent as a
    /// read may run twice after a dropped connection, and is not
    /// acknowledged by replicas.
    ///
    /// ```no_run
    /// # async fn demo(client: &redis_runtime::Client) -> redis_runtime::Result<()> {
    /// use redis_runtime::Context;
    ///
    /// let mut cmd = redis::cmd("SCARD");
    /// cmd.arg("jobs:status:queued");
    /// let queued: u64 = client.read(Context::new("jobs.count", "jobs:status:{status}"), &cmd).await?;
    /// # let _ = queued;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read<'r, T: redis::FromRedisValue>(
        &self,
        context: Context,
        payload: impl Into<Payload<'r>>,
    ) -> Result<T> {
        self.send(context, Request::read(payload)).await
    }

    /// Sends a write ([`Effect::Write`]; see [`Client::send`]): sent again
    /// only when the server provably did not run it, acknowledged by
    /// replicas when configured.
    ///
    /// ```no_run
    /// # async fn demo(client: &redis_runtime::Client) -> redis_runtime::Result<()> {
    /// use redis_runtime::Context;
    ///
    /// let mut cmd = redis::cmd("LPUSH");
    /// cmd.arg("audit:log").arg("job j7 started");
    /// match client.write::<u64>(Context::new("audit.append", "audit:log"), &cmd).await {
    ///     Ok(_) => {}
    ///     // The connection dropped after sending: it may have run.
    ///     Err(e) if e.outcome_unknown() => { /* re-read before appending again */ }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn write<'r, T: redis::FromRedisValue>(
        &self,
        context: Context,
        payload: impl Into<Payload<'r>>,
    ) -> Result<T> {
        self.send(context, Request::write(payload)).await
    }

    /// Sends a write that is harmless to run twice
    /// ([`Effect::IdempotentWrite`]: `SET` to a fixed value, `SADD`, …; see
    /// [`Client::send`]): sent again like a read, acknowledged like a
    /// write.
    pub async fn write_idempotent<'r, T: redis::FromRedisValue>(
        &self,
        context: Context,
        payload: impl Into<Payload<'r>>,
    ) -> Result<T> {
        self.send(context, Request::idempotent_write(payload)).await
    }

    /// Sends `payload` as a write: [`Client::write`] under its old name.
    #[deprecated(
        since = "0.1.0",
        note = "say what the request does: `Client::write` (the same behaviour), or `Client::read` for a read, which is sent again after a dropped connection and never waits for replicas"
    )]
    pub async fn query<'r, T: redis::FromRedisValue>(
        &self,
        context: Context,
        payload: impl Into<Payload<'r>>,
    ) -> Result<T> {
        self.write(context, payload).await
    }

    /// Sends `payload` as a read: [`Client::read`] under its old name.
    #[deprecated(
        since = "0.1.0",
        note = "say what the request does: `Client::read` for a read (the same behaviour), or `Client::write_idempotent` for a write that is harmless to repeat, which also waits for replica acknowledgements"
    )]
    pub async fn query_repeatable<'r, T: redis::FromRedisValue>(
        &self,
        context: Context,
        payload: impl Into<Payload<'r>>,
    ) -> Result<T> {
        self.read(context, payload).await
    }

    /// Runs `op` (one attempt of a request of `effect`) on the shared
    /// connection, and again after a backoff while it fails in a way the
    /// resend rule allows ([`Effect::may_resend`]; see the `transport`
    /// module), within `deadline` in all; acknowledges a write when
    /// configured. The one retry loop: every request goes through it, and
    /// reads that decode as they go call it directly.
    pub(crate) async fn run_retrying<T, F, Fut>(
        &self,
        context: Context,
        deadline: Duration,
        effect: Effect,
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let policy = self.inner.config.retry;
        let max_delay = if self.inner.config.is_cluster() {
            policy.max_delay.min(CLUSTER_RECHECK)
        } else {
            policy.max_delay
        };
        let started = Instant::now();
        let ctx = context.clone();
        let work = async move {
            let mut delay = policy.min_delay.min(max_delay);
            let mut retried = false;
            // Watched from the first failure on (not on the hot path): a
            // failover that completes during a backoff ends it early.
            let mut moves: Option<tokio::sync::watch::Receiver<u64>> = None;
            loop {
                let attempt_at = Instant::now();
                let attempt = async {
                    let conn = self.connection(&ctx, effect).await?;
                    let value = op(conn.clone()).await?;
                    if effect.writes() {
                        self.acknowledge(&conn, &ctx).await?;
                    }
                    Ok::<T, Error>(value)
                };
                let error = match attempt.await {
                    Ok(value) => return Ok(value),
                    Err(e) => e.with_context(ctx.clone()),
                };
                let elapsed = started.elapsed();
                // Sleeping past the deadline would only turn what the
                // server said into a bare timeout.
                if !effect.may_resend(&error) || elapsed + delay >= deadline {
                    return Err(if retried {
                        error.after_waiting(duration_ms(elapsed))
                    } else {
                        error
                    });
                }
                tracing::debug!(target: TRACE_TARGET, operation = %ctx.operation, delay_ms = duration_ms(delay), "redis not ready, retrying: {error}");
                retried = true;
                let moves = moves.get_or_insert_with(|| {
                    let mut moves = self.link_moves();
                    moves.mark_unchanged();
                    moves
                });
                // A failover explains this as well as a restart does: with
                // Sentinel, the next attempt goes wherever the master is now.
                if matches!(self.inner.source, Source::Sentinel(_)) {
                    let _ = self.refresh_master(Some(attempt_at), None).await;
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    Ok(()) = moves.changed() => {}
                }
                delay = delay.saturating_mul(2).min(max_delay);
            }
        };
        self.bounded(context, deadline, effect, work).await
    }

    /// Runs `op`, a request of `effect`, once on the shared connection
    /// within `deadline`; acknowledges a write when configured.
    pub(crate) async fn run_with_deadline<T, F, Fut>(
        &self,
        context: Context,
        deadline: Duration,
        effect: Effect,
        op: F,
    ) -> Result<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let ctx = context.clone();
        let work = async move {
            let conn = self.connection(&ctx, effect).await?;
            let value = op(conn.clone()).await?;
            if effect.writes() {
                self.acknowledge(&conn, &ctx).await?;
            }
            Ok(value)
        };
        self.bounded(context, deadline, effect, work).await
    }

    /// The frame of every operation on the shared connection: refuses work
    /// after shutdown, tracks it for graceful shutdown, bounds it by
    /// `deadline`, fills in `context`, reports to metrics and tracing. A
    /// write cut off by the deadline may have run: its outcome is unknown.
    async fn bounded<T>(
        &self,
        context: Context,
        deadline: Duration,
        effect: Effect,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = if self.is_shut_down() {
            Err(Error::Shutdown {
                context: context.clone(),
            })
        } else {
            self.note_attempt();
            let tracked = self.inner.in_flight.track_future(work);
            match tokio::time::timeout(deadline, tracked).await {
                Ok(result) => result.map_err(|e| e.with_context(context.clone())),
                Err(_) => Err(Error::Timeout {
                    context: context.clone(),
                    elapsed_ms: duration_ms(deadline),
                    outcome_unknown: effect.writes(),
                }),
            }
        };
        if let Err(error) = &result {
            self.suspect_master(error, started);
        }
        self.observe(&context, started.elapsed(), &result);
        result
    }

    /// How many requests (a command, a pipeline or a script call each count
    /// once) this client and its clones have sent on the shared connection.
    /// A diagnostic: tests use it to prove each operation is one round trip.
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// `PING` with a [`HEALTH_TIMEOUT`] deadline. Never hangs, never panics:
    /// a server that is down, slow or gone gives `ok: false` and the reason.
    pub async fn health(&self) -> Health {
        let started = Instant::now();
        // PING and INFO in one round trip: the server may have changed (a
        // restart, a failover) since it was last read.
        let result = self
            .run_with_deadline(
                Context::new("health", ""),
                HEALTH_TIMEOUT,
                Effect::Read,
                |mut conn| async move {
                    let mut pipe = redis::pipe();
                    pipe.cmd("PING")
                        .cmd("INFO")
                        .arg("server")
                        .cmd("INFO")
                        .arg("memory")
                        .cmd("INFO")
                        .arg("replication");
                    let reply: (String, String, String, String) =
                        pipe.query_async(&mut conn).await?;
                    Ok(reply)
                },
            )
            .await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let unhealthy = |error: String| Health {
            ok: false,
            latency_ms,
            error: Some(error),
            server: None,
            role: None,
            eviction_policy: None,
            warnings: Vec::new(),
        };
        match result {
            // `redis_mode` on Redis, `server_mode` on Valkey.
            Ok((_, info, _, _))
                if info_field(&info, "redis_mode")
                    .or_else(|| info_field(&info, "server_mode"))
                    .as_deref()
                    == Some("sentinel") =>
            {
                unhealthy(format!(
                    "{} is a Sentinel, not a data node: use redis+sentinel://{}/<master name>",
                    self.inner.config.endpoint(),
                    self.inner.config.endpoint()
                ))
            }
            Ok((pong, info, memory, replication)) if pong == "PONG" => {
                let server = ServerInfo::from_info(&info);
                self.remember_server(server.clone());
                let role = info_field(&replication, "role");
                let eviction_policy = info_field(&memory, "maxmemory_policy");
                let mut warnings: Vec<String> = eviction_policy
                    .as_deref()
                    .and_then(eviction_warning)
                    .into_iter()
                    .collect();
                for warning in &warnings {
                    // Once per client: health checks run periodically.
                    if !self.inner.eviction_warned.swap(true, Ordering::AcqRel) {
                        tracing::warn!(target: TRACE_TARGET, endpoint = self.inner.config.endpoint(), "{warning}");
                    }
                }
                let replica = role.as_deref().is_some_and(|role| role != "master");
                if replica && matches!(self.inner.source, Source::Sentinel(_)) {
                    // The master moved and nothing told us yet: look again.
                    let client = self.clone();
                    tokio::spawn(async move {
                        let _ = client.refresh_master(Some(Instant::now()), None).await;
                    });
                    return Health {
                        error: Some(
                            "connected to a replica: the master moved; looking it up again".into(),
                        ),
                        server,
                        role,
                        eviction_policy,
                        warnings,
                        ..unhealthy(String::new())
                    };
                }
                if replica {
                    warnings.push(
                        "the server is a replica: reads may be stale and writes fail with READONLY; point REDIS_URL at the primary (or use redis+sentinel://)".into(),
                    );
                }
                let replicas = info_field(&replication, "connected_slaves")
                    .and_then(|n| n.parse::<u32>().ok());
                if let Some(warning) = self
                    .inner
                    .config
                    .replica_acks
                    .zip(replicas)
                    .and_then(|(acks, replicas)| acks_warning(acks.replicas, replicas))
                {
                    warnings.push(warning);
                }
                self.recount_replicas();
                Health {
                    ok: true,
                    latency_ms,
                    error: None,
                    server,
                    role,
                    eviction_policy,
                    warnings,
                }
            }
            Ok((other, ..)) => unhealthy(format!("unexpected PING reply {other:?}")),
            Err(e) => unhealthy(e.to_string()),
        }
    }

    /// The server this client talks to, from `INFO server`: read on first
    /// use and kept ([`Client::health`] reads it again).
    ///
    /// ```no_run
    /// # async fn demo(client: &redis_runtime::Client) -> redis_runtime::Result<()> {
    /// let server = client.server_info().await?;
    /// println!("connected to {server}"); // e.g. "redis 7.0.15"
    /// # Ok(())
    /// # }
    /// ```
    pub async fn server_info(&self) -> Result<ServerInfo> {
        let known = self
            .inner
            .server
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(info) = known {
            return Ok(info);
        }
        let ctx = Context::new("server_info", "");
        let nodes = self.info("server", ctx.clone()).await?;
        // On a cluster, the oldest node decides what every command may use.
        let info = nodes
            .iter()
            .map(|text| ServerInfo::from_info(text))
            .collect::<Option<Vec<_>>>()
            .and_then(|infos| {
                infos
                    .into_iter()
                    .min_by(|a, b| a.redis_version.cmp(&b.redis_version))
            })
            .ok_or_else(|| Error::Command {
                context: ctx,
                message: "INFO server named no redis_version".into(),
            })?;
        self.remember_server(Some(info.clone()));
        Ok(info)
    }

    /// `INFO <section>` as text, one per node: redis-rs sends a cluster's
    /// `INFO` to every primary and answers a map of node to text.
    async fn info(&self, section: &str, ctx: Context) -> Result<Vec<String>> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg(section);
        let reply: redis::Value = self.read(ctx.clone(), &cmd).await?;
        let text = |value: redis::Value| redis::from_redis_value::<String>(value).ok();
        let nodes = match reply {
            redis::Value::Map(nodes) => nodes
                .into_iter()
                .map(|(_, text_of)| text(text_of))
                .collect(),
            one => text(one).map(|t| vec![t]),
        };
        nodes
            .filter(|nodes: &Vec<String>| !nodes.is_empty())
            .ok_or_else(|| Error::Command {
                context: ctx,
                message: format!("INFO {section} was not text"),
            })
    }

    /// Fails with `STORAGE_UNSUPPORTED`, naming the feature and the version
    /// it needs, unless the server has `feature`; reads the server's version
    /// once (see [`Client::server_info`]).
    pub async fn require(&self, feature: Feature, context: &Context) -> Result<()> {
        let known = self
            .inner
            .server
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !known {
            self.server_info().await?;
        }
        self.require_if_known(feature, context)
    }

    /// Makes the client believe the server reported `info` until the next
    /// [`Client::health`]: for testing version checks against a real server.
    #[cfg(feature = "testing")]
    pub fn assume_server(&self, info: ServerInfo) {
        self.remember_server(Some(info));
    }

    /// [`Client::require`] against the server version read so far, without
    /// a round trip: passes while it is not known yet.
    pub(crate) fn require_if_known(&self, feature: Feature, context: &Context) -> Result<()> {
        let known = self.inner.server.read().unwrap_or_else(|e| e.into_inner());
        match known.as_ref().map(|info| info.require(feature)) {
            Some(Err(missing)) => Err(Error::Unsupported {
                context: context.clone(),
                feature: feature.describe(),
                required: missing.required.to_string(),
                server: missing.server,
            }),
            _ => Ok(()),
        }
    }

    fn remember_server(&self, info: Option<ServerInfo>) {
        if info.is_some() {
            *self.inner.server.write().unwrap_or_else(|e| e.into_inner()) = info;
        }
    }

    /// Opens a new connection of its own to the one server, without a
    /// response timeout, for blocking commands (`BLPOP`, `XREADGROUP
    /// BLOCK`) that would otherwise trip the shared connection's timeout
    /// and stall everyone else's commands. On a Redis Cluster, which is not
    /// one server, it fails with `STORAGE_CONFIG`; the runtime's own
    /// queues, stream groups and workers open cluster connections instead.
    pub async fn dedicated_connection(&self) -> Result<MultiplexedConnection> {
        match self.blocking_connection().await? {
            NodeOrCluster::Node(conn) => Ok(conn),
            NodeOrCluster::Cluster(_) => Err(not_on_cluster(
                "single-server connections (Client::dedicated_connection)",
            )),
        }
    }

    /// A connection of its own for blocking reads, without a response
    /// timeout: to the one server, or, on a cluster, a cluster connection
    /// of its own (its own connections to the nodes, each read routed by
    /// its key), so a block holds up no other command to that node.
    pub(crate) async fn blocking_connection(&self) -> Result<BlockingConnection> {
        let context = Context::new("dedicated_connection", "");
        if self.is_shut_down() {
            return Err(Error::Shutdown { context });
        }
        let connect_timeout = self.inner.config.connect_timeout;
        let attempt = async {
            let link = self.link(&context).await?;
            let opened = match &link.endpoint {
                Endpoint::Node(node) => {
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(connect_timeout))
                        .set_response_timeout(None);
                    node.get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map(NodeOrCluster::Node)
                }
                Endpoint::Cluster(cluster) => {
                    // No response timeout unless one is set.
                    let config = redis::cluster::ClusterConfig::new()
                        .set_connection_timeout(connect_timeout);
                    cluster
                        .get_async_connection_with_config(config)
                        .await
                        .map(|cluster| NodeOrCluster::Cluster(Redirecting::new(cluster)))
                }
            };
            opened.map_err(|e| Error::from_redis(&e, context.clone()))
        };
        match tokio::time::timeout(self.inner.config.operation_timeout, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout {
                context,
                elapsed_ms: duration_ms(self.inner.config.operation_timeout),
                outcome_unknown: false,
            }),
        }
    }

    /// The underlying redis-rs client for the current server (with
    /// Sentinel, the current master, looked up first if not known yet),
    /// for connections the runtime does not manage (e.g. pub/sub).
    pub async fn redis_client(&self) -> Result<redis::Client> {
        let link = self.link(&Context::new("redis_client", "")).await?;
        link.endpoint
            .node()
            .cloned()
            .ok_or_else(|| not_on_cluster("connections of their own (pub/sub)"))
    }

    /// Runs `read` once per group of `keys` in one hash slot, all at once,
    /// and returns what it gave in the order of `keys` (`read` answers one
    /// value per key of its group, in order). A pipeline or transaction on
    /// a cluster must stay in one slot: redis-rs refuses one that spans
    /// slots. On one server, one group of every key.
    pub(crate) async fn per_slot<'k, T, F, Fut>(
        &self,
        keys: &'k [String],
        read: F,
    ) -> Result<Vec<T>>
    where
        F: Fn(Vec<&'k str>) -> Fut,
        Fut: Future<Output = Result<Vec<T>>>,
    {
        self.per_slot_of(keys, String::as_str, |group| {
            read(group.into_iter().map(String::as_str).collect())
        })
        .await
    }

    /// [`Client::per_slot`] over `items`, each in the slot of its `key`.
    pub(crate) async fn per_slot_of<'k, I, T, F, Fut>(
        &self,
        items: &'k [I],
        key: impl Fn(&'k I) -> &'k str,
        read: F,
    ) -> Result<Vec<T>>
    where
        F: Fn(Vec<&'k I>) -> Fut,
        Fut: Future<Output = Result<Vec<T>>>,
    {
        let groups: Vec<Vec<usize>> = if self.config().is_cluster() {
            let mut by_tag = std::collections::BTreeMap::<&str, Vec<usize>>::new();
            for (i, item) in items.iter().enumerate() {
                by_tag
                    .entry(redis_schema::hashed_text(key(item)))
                    .or_default()
                    .push(i);
            }
            by_tag.into_values().collect()
        } else {
            vec![(0..items.len()).collect()]
        };
        let reads = groups
            .iter()
            .map(|positions| read(positions.iter().map(|&i| &items[i]).collect()));
        let results = futures_util::future::join_all(reads).await;
        let mut out: Vec<Option<T>> = (0..items.len()).map(|_| None).collect();
        for (positions, result) in groups.iter().zip(results) {
            let values = result?;
            if values.len() != positions.len() {
                return Err(Error::Command {
                    context: Context::default(),
                    message: format!("expected {} replies, got {}", positions.len(), values.len()),
                });
            }
            for (&i, value) in positions.iter().zip(values) {
                out[i] = Some(value);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// The cluster's primaries as `host:port`, in address order (`CLUSTER
    /// SLOTS`, asked of any node).
    pub(crate) async fn cluster_primaries(&self, ctx: &Context) -> Result<Vec<(String, u16)>> {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let ranges: Vec<redis::Value> = self.read(ctx.clone(), &cmd).await?;
        let mut primaries = std::collections::BTreeSet::new();
        for range in ranges {
            // [start, end, [host, port, id, ...] (the primary), replicas...]
            let primary = match range {
                redis::Value::Array(parts) => parts.into_iter().nth(2),
                _ => None,
            };
            let address = primary.and_then(|node| match node {
                redis::Value::Array(fields) => {
                    let mut fields = fields.into_iter();
                    let host = redis::from_redis_value::<String>(fields.next()?).ok()?;
                    let port = redis::from_redis_value::<u16>(fields.next()?).ok()?;
                    Some((host, port))
                }
                _ => None,
            });
            match address {
                Some(address) => primaries.insert(address),
                None => {
                    return Err(Error::Command {
                        context: ctx.clone(),
                        message: "CLUSTER SLOTS named a slot range without its primary".into(),
                    });
                }
            };
        }
        Ok(primaries.into_iter().collect())
    }

    /// The server a subscription connects to. On a cluster, any node: a
    /// message published on one node reaches the subscribers of every node
    /// over the cluster bus. Each call takes the next node the URL lists, so a
    /// subscription that lost its node reconnects to another.
    pub(crate) async fn subscriber_client(&self) -> Result<redis::Client> {
        let Topology::Cluster(seeds) = &self.inner.config.topology else {
            return self.redis_client().await;
        };
        let turn = self.inner.next_seed.fetch_add(1, Ordering::Relaxed);
        let (host, port) = &seeds[turn % seeds.len()];
        let (host, port) = (host.clone(), *port);
        let addr = if self.inner.config.tls() {
            redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            redis::ConnectionAddr::Tcp(host, port)
        };
        let info = self.inner.config.connection_info.clone().set_addr(addr);
        open_client(info, &self.inner.config)
    }

    /// On a Redis Cluster, a cluster connection of its own that speaks
    /// RESP3 and hands what the server pushes (sharded pub/sub messages,
    /// subscription changes, lost links) to `pushes`; for one subscriber.
    pub(crate) async fn sharded_subscriber(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Result<redis::cluster_async::ClusterConnection> {
        let config = &self.inner.config;
        let Topology::Cluster(seeds) = &config.topology else {
            return Err(Error::Config(
                "sharded pub/sub connections are a Redis Cluster's".into(),
            ));
        };
        let client = cluster_client_with(config, seeds, |builder| {
            builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(pushes)
                // Only subscription commands go through it, and
                // subscribing twice to a channel is harmless: redis-rs may
                // send them again and follow their redirects itself.
                .retries(u32::try_from(config.retry.max_retries).unwrap_or(u32::MAX))
                .min_retry_wait(duration_ms(config.retry.min_delay))
                .max_retry_wait(duration_ms(config.retry.max_delay))
        })?;
        cluster_connection(config, &client).await
    }

    /// Cancelled when [`Client::shutdown`] starts; long-running loops
    /// (workers, subscriptions) select on it to stop.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.closed.clone()
    }

    /// Whether [`Client::shutdown`] has been called on any clone.
    pub fn is_shut_down(&self) -> bool {
        self.inner.closed.is_cancelled()
    }

    /// Graceful shutdown: refuse new operations (they fail with
    /// `STORAGE_SHUTDOWN`), wait for the ones in flight to finish, then close
    /// the shared connection. Idempotent; affects every clone.
    pub async fn shutdown(&self) {
        if self.inner.closed.is_cancelled() {
            return;
        }
        self.inner.closed.cancel();
        self.inner.in_flight.close();
        self.inner.in_flight.wait().await;
        let link = std::mem::replace(
            &mut *self.inner.link.write().unwrap_or_else(|e| e.into_inner()),
            Slot::Closed,
        );
        drop(link);
        tracing::info!(target: TRACE_TARGET, endpoint = self.inner.config.endpoint(), "redis connection closed (shutdown)");
    }

    fn note_attempt(&self) {
        let link = &self.inner.link_state;
        if link.down.load(Ordering::Acquire) {
            let attempt = link.failed_attempts.load(Ordering::Acquire) + 1;
            tracing::warn!(target: TRACE_TARGET, endpoint = self.inner.config.endpoint(), attempt, "redis reconnecting (attempt {attempt})");
        }
    }

    /// Reports an operation that ran outside [`Client::run`] (a blocking
    /// read on a dedicated connection) to the metrics hook only: it says
    /// nothing about the shared link, so link tracing is left alone.
    pub(crate) fn record_metrics<T>(
        &self,
        context: &Context,
        elapsed: Duration,
        result: &Result<T>,
    ) {
        let outcome = match result {
            Ok(_) => Outcome::Success,
            Err(err) => Outcome::Failure { code: err.code() },
        };
        self.inner.metrics.record(&OperationEvent {
            operation: &context.operation,
            key_pattern: &context.key_pattern,
            duration: elapsed,
            outcome,
        });
    }

    fn observe<T>(&self, context: &Context, elapsed: Duration, result: &Result<T>) {
        let link = &self.inner.link_state;
        let endpoint = self.inner.config.endpoint();
        let outcome = match result {
            Ok(_) => {
                if link.down.swap(false, Ordering::AcqRel) {
                    let attempts = link.failed_attempts.swap(0, Ordering::AcqRel);
                    tracing::info!(target: TRACE_TARGET, endpoint, attempts, "redis connected");
                }
                Outcome::Success
            }
            Err(err) => {
                if link_failed(err) {
                    if link.down.swap(true, Ordering::AcqRel) {
                        // A reconnect attempt (an operation while down) failed.
                        link.failed_attempts.fetch_add(1, Ordering::AcqRel);
                    } else {
                        // The failure that reveals the link is down is not
                        // itself a reconnect attempt: the next operation is #1.
                        link.failed_attempts.store(0, Ordering::Release);
                        tracing::warn!(target: TRACE_TARGET, endpoint, "redis connection closed");
                    }
                }
                tracing::error!(target: TRACE_TARGET, endpoint, code = err.code(), operation = %context.operation, "redis error: {err}");
                Outcome::Failure { code: err.code() }
            }
        };
        self.inner.metrics.record(&OperationEvent {
            operation: &context.operation,
            key_pattern: &context.key_pattern,
            duration: elapsed,
            outcome,
        });
    }
}

/// The configured TLS certificates: a private root to trust, a client
/// certificate to present; `None` when neither is set.
#[cfg(feature = "tls")]
fn tls_certificates(config: &Config) -> Option<redis::TlsCertificates> {
    if config.tls_root_cert.is_none() && config.tls_client_identity.is_none() {
        return None;
    }
    Some(redis::TlsCertificates {
        client_tls: config
            .tls_client_identity
            .as_ref()
            .map(|identity| redis::ClientTlsConfig {
                client_cert: identity.cert.clone(),
                client_key: identity.key.clone(),
            }),
        root_cert: config.tls_root_cert.clone(),
    })
}

/// The redis-rs client for `info`, with the configured TLS certificates if
/// any.
fn open_client(info: redis::ConnectionInfo, config: &Config) -> Result<redis::Client> {
    #[cfg(feature = "tls")]
    if let Some(certificates) = tls_certificates(config) {
        return redis::Client::build_with_tls(info, certificates)
            .map_err(|e| Error::Config(format!("the TLS certificates were rejected: {e}")));
    }
    #[cfg(not(feature = "tls"))]
    let _ = config;
    redis::Client::open(info).map_err(|e| Error::Config(e.to_string()))
}

/// How the shared connection reconnects: the configured timeouts and backoff.
///
/// With Sentinel, one attempt: a request waiting inside redis-rs's
/// reconnect loop to a dead master would wait there until its deadline,
/// while the retry loop in [`Client::run_retrying`] would have looked the
/// master up and moved on (measured: writes resumed 4.8 s after a master
/// crash with the full loop, at the deadline, against 2.3 s for the
/// failover itself).
fn manager_config(config: &Config) -> ConnectionManagerConfig {
    let retries = match config.topology {
        Topology::Standalone | Topology::Cluster(_) => config.retry.max_retries,
        Topology::Sentinel(_) => 1,
    };
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout))
        .set_min_delay(config.retry.min_delay)
        .set_max_delay(config.retry.max_delay)
        .set_exponent_base(2.0)
        .set_number_of_retries(retries)
}

/// The shared connection to a single server: made now, or on first use
/// with [`Config::lazy_connect`].
async fn standalone_manager(config: &Config, client: redis::Client) -> Result<ConnectionManager> {
    let context = Context::new("connect", "");
    if config.lazy_connect && !config.refuse_evicting_server {
        return ConnectionManager::new_lazy_with_config(client, manager_config(config))
            .map_err(|e| Error::from_redis(&e, context));
    }
    let attempt = ConnectionManager::new_with_config(client, manager_config(config));
    match tokio::time::timeout(config.operation_timeout, attempt).await {
        Ok(Ok(manager)) => {
            tracing::info!(target: TRACE_TARGET, endpoint = config.endpoint(), "redis connected");
            Ok(manager)
        }
        Ok(Err(e)) => {
            let err = Error::from_redis(&e, context);
            tracing::error!(target: TRACE_TARGET, endpoint = config.endpoint(), code = err.code(), "redis error: {err}");
            Err(err)
        }
        Err(_) => Err(Error::Timeout {
            context,
            elapsed_ms: duration_ms(config.operation_timeout),
            outcome_unknown: false,
        }),
    }
}

/// The redis-rs client of a Redis Cluster found through `seeds`, with the
/// configured credentials, timeouts and backoff.
fn cluster_client(
    config: &Config,
    seeds: &[(String, u16)],
) -> Result<redis::cluster::ClusterClient> {
    cluster_client_with(config, seeds, |builder| builder)
}

/// [`cluster_client`], with `extra` settings on top.
fn cluster_client_with(
    config: &Config,
    seeds: &[(String, u16)],
    extra: impl FnOnce(redis::cluster::ClusterClientBuilder) -> redis::cluster::ClusterClientBuilder,
) -> Result<redis::cluster::ClusterClient> {
    let settings = config.connection_info.redis_settings();
    let urls = seeds.iter().map(|(host, port)| {
        if host.contains(':') {
            format!("redis://[{host}]:{port}")
        } else {
            format!("redis://{host}:{port}")
        }
    });
    let mut builder = redis::cluster::ClusterClientBuilder::new(urls)
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.response_timeout)
        // redis-rs would also bound every request, retries included, by the
        // response timeout, and a connection's own settings cannot lift
        // that: a blocking read longer than it would time out at once. The
        // operation timeout bounds every operation instead.
        .overall_response_timeout(None)
        // Its one retry budget would also send a request again after its
        // connection dropped or its reply timed out, which runs a write
        // twice: every failure comes back to us instead, and `Redirecting`
        // follows redirects (see the transport module).
        .retries(0);
    if let Some(username) = settings.username() {
        builder = builder.username(username);
    }
    if let Some(password) = settings.password() {
        builder = builder.password(password);
    }
    #[cfg(feature = "tls")]
    if config.tls() {
        builder = builder.tls(redis::TlsMode::Secure);
        if let Some(certificates) = tls_certificates(config) {
            builder = builder.certs(certificates);
        }
    }
    extra(builder)
        .build()
        .map_err(|e| Error::Config(format!("the Redis Cluster settings were rejected: {e}")))
}

/// The shared connection to a Redis Cluster: made now, or in the
/// background with [`Config::lazy_connect`]. Each command goes to the
/// primary serving its key's slot.
async fn cluster_connection(
    config: &Config,
    client: &redis::cluster::ClusterClient,
) -> Result<redis::cluster_async::ClusterConnection> {
    let context = Context::new("connect", "");
    let timeouts = redis::cluster::ClusterConfig::new()
        .set_connection_timeout(config.connect_timeout)
        .set_response_timeout(config.response_timeout);
    if config.lazy_connect && !config.refuse_evicting_server {
        return Ok(client.get_pending_async_connection_with_config(timeouts));
    }
    let attempt = client.get_async_connection_with_config(timeouts);
    match tokio::time::timeout(config.operation_timeout, attempt).await {
        Ok(Ok(cluster)) => {
            tracing::info!(target: TRACE_TARGET, endpoint = config.endpoint(), "redis cluster connected");
            Ok(cluster)
        }
        Ok(Err(e)) => Err(Error::from_redis(&e, context)),
        Err(_) => Err(Error::Timeout {
            context,
            elapsed_ms: duration_ms(config.operation_timeout),
            outcome_unknown: false,
        }),
    }
}

/// On a Redis Cluster, fails unless `companion` (a key a multi-key command
/// or script uses with `main`) is always in `main`'s hash slot, which it
/// is when `main` has a hash tag and `companion` extends it.
pub(crate) fn require_same_slot(
    client: &Client,
    what: &str,
    main: &str,
    companion: &str,
) -> Result<()> {
    if client.config().is_cluster()
        && redis_schema::hashed_text(main) != redis_schema::hashed_text(companion)
    {
        return Err(Error::Config(format!(
            "on Redis Cluster, {what} {companion:?} must be in the hash slot of {main:?}, and \
             they hash differently: give the key a hash tag, e.g. \"{{jobs}}:queue\" (its \
             companion keys then share the tag)"
        )));
    }
    Ok(())
}

/// What a feature that needs one server's connection says on a cluster.
pub(crate) fn not_on_cluster(feature: &str) -> Error {
    Error::Config(format!(
        "{feature} are not supported on Redis Cluster yet: entities, indexes and their queries are; run these against one server or Sentinel"
    ))
}

/// The warning for waiting for fewer replicas than the master has: a
/// failover can then lose an acknowledged write (see [`AckReplicas`]).
fn acks_warning(awaited: AckReplicas, replicas: u32) -> Option<String> {
    match awaited {
        AckReplicas::Count(n) if n < replicas => Some(format!(
            "REDIS_WAIT_REPLICAS={n} while the master has {replicas} replicas: a failover can lose writes a replica acknowledged (Sentinel may promote a replica that had not, or re-point the one that had to the new master, which makes it resync in full); wait for every replica (REDIS_WAIT_REPLICAS=all with Sentinel) to keep them"
        )),
        _ => None,
    }
}

/// The value of `name` in an `INFO` reply (`name:value` lines).
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(|value| value.trim().to_string())
}

/// Whether `err` says the link itself failed (for link tracing), rather
/// than a server state such as `LOADING` reached over a working link.
fn link_failed(err: &Error) -> bool {
    matches!(
        err,
        Error::Unavailable {
            reason: Unavailability::Connection,
            ..
        } | Error::Timeout { .. }
    )
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<redis::RedisError> for Error {
    /// Classifies a redis-rs error; [`Client::run`] fills in the context.
    fn from(error: redis::RedisError) -> Self {
        Error::from_redis(&error, Context::default())
    }
}

/// The shared connection as handed to [`Client::run`] closures: use it
/// with any redis-rs command, pipeline or script. Cheap to clone.
#[derive(Clone)]
pub struct Connection {
    shared: Shared,
    /// The link `shared` belongs to (for its acknowledgement batch).
    link: Arc<Link>,
    round_trips: Arc<AtomicU64>,
}

impl Connection {
    /// Sends `cmd`, which names no key, to the cluster node at `host:port`
    /// (on one server, to that server).
    pub(crate) async fn query_node(
        &mut self,
        (host, port): &(String, u16),
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<redis::Value> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match &mut self.shared {
            NodeOrCluster::Node(manager) => cmd.query_async(manager).await,
            NodeOrCluster::Cluster(cluster) => {
                let node = SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                };
                cluster
                    .route_command(cmd.clone(), RoutingInfo::SingleNode(node))
                    .await
            }
        }
    }
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.shared.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.shared.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.shared.get_db()
    }
}

//! The client handle all generated code takes: one multiplexed connection
//! with automatic reconnect, per-operation deadlines, tracing, metrics,
//! health checks and graceful shutdown.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::TRACE_TARGET;
use crate::config::{Config, Topology};
use crate::error::{Context, Error, Result, Unavailability};
use crate::metrics::{Metrics, NoMetrics, OperationEvent, Outcome};
use crate::sentinel::MasterLookup;
use crate::server::{Feature, ServerInfo};
use crate::transport::Effect;
use crate::transport::acks::AckBatch;
use crate::transport::cluster::Redirecting;
use crate::transport::connection::NodeOrCluster;

mod cluster;
mod connection;
mod health;
mod master;
mod open;
mod requests;

use open::{cluster_client, cluster_connection, open_client, standalone_manager};

pub(crate) use cluster::require_same_slot;
pub use connection::Connection;
#[cfg(test)]
pub(crate) use connection::Scripted;
use connection::SharedNode;
pub use health::{HEALTH_TIMEOUT, Health};

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

impl Slot {
    /// A new link to `endpoint` over `shared`, ready.
    fn ready(endpoint: Endpoint, shared: Shared) -> Self {
        Slot::Ready(Arc::new(Link {
            endpoint,
            shared,
            acks: AckBatch::default(),
        }))
    }
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

/// The shared connection.
type Shared = NodeOrCluster<SharedNode>;

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

impl Client {
    /// Builds a client with no metrics hook. Connects now unless
    /// [`Config::lazy_connect`] is set, in which case the first operation connects.
    ///
    /// Must be called inside a Tokio runtime.
    pub async fn connect(config: Config) -> Result<Self> {
        Self::connect_with_metrics(config, NoMetrics).await
    }

    /// A client of `source`, its link in `slot`, in its first state.
    fn assemble(config: Config, source: Source, slot: Slot, metrics: Arc<dyn Metrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                source,
                link: RwLock::new(slot),
                refreshed: tokio::sync::Mutex::new(None),
                link_state: LinkState::default(),
                link_generation: tokio::sync::watch::Sender::new(0),
                round_trips: Arc::default(),
                metrics,
                in_flight: TaskTracker::new(),
                closed: CancellationToken::new(),
                server: RwLock::new(None),
                eviction_warned: AtomicBool::new(false),
                next_seed: AtomicUsize::new(0),
            }),
        }
    }

    /// A client of `config` whose every request goes to `scripted`, which
    /// expects exact commands in order: for unit tests of what a protocol
    /// sends after each reply. A cluster `config` makes it behave as on a
    /// cluster (its scripts, its error rules), with every slot on the one
    /// scripted connection.
    #[cfg(test)]
    pub(crate) fn scripted(config: Config, scripted: Scripted) -> Self {
        let endpoint = redis::Client::open("redis://127.0.0.1/").expect("a valid URL");
        let shared = NodeOrCluster::Node(SharedNode::Scripted(scripted));
        let slot = Slot::ready(Endpoint::Node(endpoint), shared);
        Self::assemble(config, Source::Fixed, slot, Arc::new(NoMetrics))
    }

    /// Like [`Client::connect`], reporting every operation to `metrics`.
    pub async fn connect_with_metrics(config: Config, metrics: impl Metrics) -> Result<Self> {
        let (source, slot) = match &config.topology {
            Topology::Standalone => {
                let client = open_client(config.connection_info.clone(), &config)?;
                let manager = standalone_manager(&config, client.clone()).await?;
                let shared = NodeOrCluster::Node(SharedNode::Manager(manager));
                (Source::Fixed, Slot::ready(Endpoint::Node(client), shared))
            }
            Topology::Cluster(seeds) => {
                let client = cluster_client(&config, seeds)?;
                let cluster = cluster_connection(&config, &client).await?;
                let shared = NodeOrCluster::Cluster(Redirecting::new(cluster));
                (
                    Source::Fixed,
                    Slot::ready(Endpoint::Cluster(client), shared),
                )
            }
            Topology::Sentinel(settings) => {
                let lookup = MasterLookup::new(settings, config.connection_info.redis_settings())?;
                (Source::Sentinel(Arc::new(lookup)), Slot::Unresolved)
            }
        };
        let client = Self::assemble(config, source, slot, Arc::new(metrics));
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

    /// The configuration this client was built from.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// How many requests (a command, a pipeline or a script call each count
    /// once) this client and its clones have sent on the shared connection.
    /// A diagnostic: tests use it to prove each operation is one round trip.
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
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

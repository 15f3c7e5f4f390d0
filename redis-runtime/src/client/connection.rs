//! The shared connection as handed to `Client::run` closures, and
//! connections of their own (blocking reads, pub/sub).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use crate::error::{Context, Error, Result};
use crate::transport::cluster::Redirecting;
use crate::transport::connection::{BlockingConnection, NodeOrCluster};

use super::cluster::not_on_cluster;
use super::{Client, Endpoint, Link, Shared, duration_ms};

/// The one server's end of the shared connection: redis-rs's
/// reconnecting manager, or in unit tests a scripted connection that
/// expects exact commands (so the protocol's state transitions are tested
/// without a server).
#[derive(Clone)]
pub(super) enum SharedNode {
    Manager(ConnectionManager),
    #[cfg(test)]
    Scripted(Scripted),
}

/// A scripted connection for unit tests: `redis_test`'s mock, which
/// answers each expected command in order, plus a log of every command
/// that was not the one expected (the mock answers those with an error,
/// which a caller that ignores errors would hide).
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct Scripted {
    mock: redis_test::MockRedisConnection,
    unexpected: Arc<std::sync::Mutex<Vec<String>>>,
}

#[cfg(test)]
impl Scripted {
    /// Expects `steps`, in order.
    pub(crate) fn new(steps: Vec<redis_test::MockCmd>) -> Self {
        Scripted {
            mock: redis_test::MockRedisConnection::new(steps),
            unexpected: Arc::default(),
        }
    }

    /// Panics unless every expected command was sent, in order, and
    /// nothing else.
    pub(crate) fn assert_done(&self) {
        let unexpected = self.unexpected.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            unexpected.is_empty(),
            "unexpected commands: {unexpected:#?}"
        );
        assert!(self.mock.is_empty(), "expected commands were not sent");
    }

    /// `sent`, logging the error it answers for an unexpected command.
    fn logged<'a, T: Send + 'a>(
        unexpected: Arc<std::sync::Mutex<Vec<String>>>,
        sent: redis::RedisFuture<'a, T>,
    ) -> redis::RedisFuture<'a, T> {
        Box::pin(async move {
            let result = sent.await;
            if let Err(e) = &result
                && e.kind() == redis::ErrorKind::Client
            {
                unexpected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(e.to_string());
            }
            result
        })
    }
}

impl redis::aio::ConnectionLike for SharedNode {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            SharedNode::Manager(manager) => manager.req_packed_command(cmd),
            #[cfg(test)]
            SharedNode::Scripted(scripted) => {
                let unexpected = scripted.unexpected.clone();
                Scripted::logged(unexpected, scripted.mock.req_packed_command(cmd))
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            SharedNode::Manager(manager) => manager.req_packed_commands(pipeline, offset, count),
            #[cfg(test)]
            SharedNode::Scripted(scripted) => {
                let unexpected = scripted.unexpected.clone();
                let sent = scripted.mock.req_packed_commands(pipeline, offset, count);
                Scripted::logged(unexpected, sent)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            SharedNode::Manager(manager) => manager.get_db(),
            #[cfg(test)]
            SharedNode::Scripted(scripted) => redis::aio::ConnectionLike::get_db(&scripted.mock),
        }
    }
}

/// The shared connection as handed to [`Client::run`] closures: use it
/// with any redis-rs command, pipeline or script. Cheap to clone.
#[derive(Clone)]
pub struct Connection {
    pub(super) shared: Shared,
    /// The link `shared` belongs to (for its acknowledgement batch).
    pub(super) link: Arc<Link>,
    pub(super) round_trips: Arc<AtomicU64>,
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

impl Client {
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
}

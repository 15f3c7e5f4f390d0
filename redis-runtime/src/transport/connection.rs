//! A connection to one server or to a cluster, behind one type.

use redis::aio::MultiplexedConnection;

use super::cluster::Redirecting;

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

/// A connection of its own for blocking reads (see
/// `Client::blocking_connection`): to the one server, or to a cluster with
/// its own connections to the nodes.
pub(crate) type BlockingConnection = NodeOrCluster<MultiplexedConnection>;

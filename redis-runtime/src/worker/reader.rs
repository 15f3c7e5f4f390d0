//! The worker's reads: `XREADGROUP ... BLOCK` on a dedicated connection,
//! one at a time, interrupted with `CLIENT UNBLOCK` at shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Value;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use tokio::time::Instant;

use crate::TRACE_TARGET;
use crate::blocking::{Dedicated, blocking_query};
use crate::client::Client;
use crate::codec::Record;
use crate::error::{Context, Result};
use crate::stream::{ConsumerGroup, ReadBatch};
use crate::transport::Effect;
use crate::transport::connection::NodeOrCluster;

/// The read in flight: owns the dedicated connection and gives it back.
pub(super) type ReadFuture<M> =
    Pin<Box<dyn Future<Output = (Option<Reader>, Result<ReadBatch<M>>)> + Send>>;

/// Where the reads of a dedicated connection block, for `CLIENT UNBLOCK`:
/// the connection's server-side client id and, on a cluster, the node
/// (`host`, `port`) that id belongs to.
#[derive(Clone)]
struct Blocked {
    client_id: i64,
    node: Option<(String, u16)>,
}

/// The worker's dedicated connection for `XREADGROUP BLOCK`.
pub(super) struct Reader {
    conn: Dedicated,
    blocked: Option<Blocked>,
}

impl Reader {
    /// Opens the connection and learns where its reads of `stream` block
    /// (kept in `blocked_slot` too), so a shutdown can interrupt its block.
    async fn open(
        client: &Client,
        stream: &str,
        blocked_slot: &Mutex<Option<Blocked>>,
    ) -> Result<Self> {
        let mut conn = Dedicated::open(client).await?;
        let blocked = tokio::time::timeout(
            client.config().operation_timeout,
            blocked_at(client, stream, &mut conn.conn),
        )
        .await
        .ok()
        .flatten();
        // Without it (None) a shutdown just waits for the block to end.
        *lock(blocked_slot) = blocked.clone();
        Ok(Self { conn, blocked })
    }
}

/// Where `conn`'s reads of `stream` block. On one server, its client id.
/// On a cluster, `conn` has a connection of its own to each node and reads
/// `stream` on the master of its slot: the client id of that connection,
/// asked of the node the shared connection's `CLUSTER SLOTS` names, so the
/// `CLIENT UNBLOCK` can go to that same node (an id means nothing on
/// another). If the slot moves meanwhile, the read goes elsewhere and the
/// unblock reaches no read of ours: a shutdown then waits for the block.
async fn blocked_at(
    client: &Client,
    stream: &str,
    conn: &mut NodeOrCluster<redis::aio::MultiplexedConnection>,
) -> Option<Blocked> {
    let mut id = redis::cmd("CLIENT");
    id.arg("ID");
    match conn {
        NodeOrCluster::Node(conn) => {
            let client_id = id.query_async::<i64>(conn).await.ok()?;
            Some(Blocked {
                client_id,
                node: None,
            })
        }
        NodeOrCluster::Cluster(cluster) => {
            let (host, port) = slot_master(client, stream).await?;
            let node = SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port,
            };
            let reply = cluster
                .route_command(id, RoutingInfo::SingleNode(node))
                .await
                .ok()?;
            let client_id = redis::from_redis_value::<i64>(reply).ok()?;
            Some(Blocked {
                client_id,
                node: Some((host, port)),
            })
        }
    }
}

/// The master (`host`, `port`) serving `key`'s slot, per `CLUSTER KEYSLOT`
/// and `CLUSTER SLOTS`, asked of any node.
async fn slot_master(client: &Client, key: &str) -> Option<(String, u16)> {
    let mut pipe = redis::pipe();
    pipe.cmd("CLUSTER").arg("KEYSLOT").arg(key);
    pipe.cmd("CLUSTER").arg("SLOTS");
    let context = Context::new("stream.worker_slot_master", key.to_string());
    let (slot, ranges): (i64, Vec<Value>) = client.read(context, &pipe).await.ok()?;
    // Each range: [start, end, [host, port, id, ...] (the master), replicas...]
    ranges.into_iter().find_map(|range| {
        let Value::Array(parts) = range else {
            return None;
        };
        let mut parts = parts.into_iter();
        let start = redis::from_redis_value::<i64>(parts.next()?).ok()?;
        let end = redis::from_redis_value::<i64>(parts.next()?).ok()?;
        if !(start..=end).contains(&slot) {
            return None;
        }
        let Value::Array(master) = parts.next()? else {
            return None;
        };
        let mut master = master.into_iter();
        let host = redis::from_redis_value::<String>(master.next()?).ok()?;
        let port = redis::from_redis_value::<u16>(master.next()?).ok()?;
        Some((host, port))
    })
}

fn lock(slot: &Mutex<Option<Blocked>>) -> std::sync::MutexGuard<'_, Option<Blocked>> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The read side of a run: the dedicated connection and the one read on it.
pub(super) struct Reads<M> {
    /// Where the connection's reads block, for `CLIENT UNBLOCK` (None
    /// while unknown).
    blocked: Arc<Mutex<Option<Blocked>>>,
    /// The connection, while no read holds it.
    reader: Option<Reader>,
    /// The read in flight; it holds the connection meanwhile.
    pub(super) in_flight: Option<ReadFuture<M>>,
    /// Handler slots kept free for what the read in flight returns.
    pub(super) reserved: usize,
    /// Transport failures in a row, for the backoff.
    pub(super) errors: u32,
    /// After a transport failure: no new read before this.
    pub(super) retry_at: Option<Instant>,
}

impl<M: Record> Reads<M> {
    pub(super) fn new() -> Self {
        Self {
            blocked: Arc::new(Mutex::new(None)),
            reader: None,
            in_flight: None,
            reserved: 0,
            errors: 0,
            retry_at: None,
        }
    }

    /// Whether a read may start: none in flight and no backoff running.
    pub(super) fn idle(&self) -> bool {
        self.in_flight.is_none() && self.retry_at.is_none()
    }

    /// Ends the backoff once it is over.
    pub(super) fn end_backoff(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
        }
    }

    /// Starts reading up to `count` entries, reserving that many slots.
    pub(super) fn start(&mut self, group: &ConsumerGroup<M>, count: usize, block: Duration) {
        self.reserved = count;
        self.in_flight = Some(read_batch(
            group.clone(),
            self.reader.take(),
            self.blocked.clone(),
            count,
            block,
        ));
    }

    /// Takes back the connection from the read that just finished.
    pub(super) fn finished(&mut self, back: Option<Reader>) {
        self.in_flight = None;
        self.reserved = 0;
        self.reader = back;
    }

    /// Stops reading for good: interrupts the read in flight and waits for
    /// it, unless the client is closed (then nothing could be released any
    /// more, and whatever the read still delivers stays pending for other
    /// consumers to claim). Returns what the interrupted read delivered;
    /// closes the connection.
    pub(super) async fn stop(
        &mut self,
        group: &ConsumerGroup<M>,
        client_closed: bool,
    ) -> Option<Result<ReadBatch<M>>> {
        let in_flight = self.in_flight.take();
        self.reader = None;
        let pending_read = in_flight.filter(|_| !client_closed)?;
        let blocked = lock(&self.blocked).clone();
        if let Some(blocked) = blocked {
            unblock(group.client(), group.stream().key(), blocked).await;
        }
        let (_, result) = pending_read.await;
        Some(result)
    }
}

/// Interrupts the blocked read of the connection `blocked` names (it
/// returns as if its block ran out).
async fn unblock(client: &Client, stream: &str, blocked: Blocked) {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("UNBLOCK").arg(blocked.client_id);
    let context = Context::new("stream.worker_unblock", stream.to_string());
    let result: Result<Value> = match blocked.node {
        // It changes no data: nothing waits for replicas, and sending it
        // twice is harmless.
        None => client.read(context, &cmd).await,
        // On a cluster, to the node that id belongs to.
        Some(node) => {
            let deadline = client.config().operation_timeout;
            client
                .run_with_deadline(context, deadline, Effect::Read, |mut conn| async move {
                    Ok(conn.query_node(&node, &cmd).await?)
                })
                .await
        }
    };
    if let Err(e) = result {
        tracing::debug!(target: TRACE_TARGET, code = e.code(), "could not interrupt the blocked read; waiting for its block to end: {e}");
    }
}

/// One `XREADGROUP ... BLOCK` on the worker's own connection, opening it
/// first if needed.
fn read_batch<M: Record>(
    group: ConsumerGroup<M>,
    reader: Option<Reader>,
    blocked: Arc<Mutex<Option<Blocked>>>,
    count: usize,
    block: Duration,
) -> ReadFuture<M> {
    Box::pin(async move {
        let client = group.client().clone();
        // A reader opened before the client's server moved (a failover)
        // would read the old master: open a new one.
        let reader = match reader.filter(|reader| reader.conn.is_current(&client)) {
            Some(reader) => reader,
            None => match Reader::open(&client, group.stream().key(), &blocked).await {
                Ok(reader) => reader,
                Err(e) => {
                    tracing::warn!(target: TRACE_TARGET, stream = group.stream().key(), code = e.code(), "worker cannot open its read connection: {e}");
                    return (None, Err(e));
                }
            },
        };
        let ctx = group.context("stream.worker_read");
        let cmd = group.xreadgroup(count, Some(block));
        let blocked = reader.blocked;
        let mut slot = Some(reader.conn);
        let reply = blocking_query(&client, &mut slot, &cmd, block, ctx.clone()).await;
        let back = slot.map(|conn| Reader { conn, blocked });
        match reply {
            Ok(reply) => {
                let batch = group.settle_read(&reply, &ctx).await;
                (back, batch)
            }
            Err(e) => (back, Err(e)),
        }
    })
}

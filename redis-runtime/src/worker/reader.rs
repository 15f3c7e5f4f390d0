//! The worker's reads: `XREADGROUP ... BLOCK` on a dedicated connection,
//! one at a time, interrupted with `CLIENT UNBLOCK` at shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use redis::Value;
use tokio::time::Instant;

use crate::blocking::{Dedicated, blocking_query};
use crate::client::{Client, TRACE_TARGET};
use crate::codec::Record;
use crate::error::{Context, Result};
use crate::stream::{ConsumerGroup, ReadBatch};

/// The read in flight: owns the dedicated connection and gives it back.
pub(super) type ReadFuture<M> =
    Pin<Box<dyn Future<Output = (Option<Reader>, Result<ReadBatch<M>>)> + Send>>;

/// The worker's dedicated connection for `XREADGROUP BLOCK`.
pub(super) struct Reader {
    conn: Dedicated,
    client_id: i64,
}

impl Reader {
    /// Opens the connection and learns its server-side client id (kept in
    /// `id_slot` too), so a shutdown can interrupt its block.
    async fn open(client: &Client, id_slot: &AtomicI64) -> Result<Self> {
        let mut conn = Dedicated::open(client).await?;
        // On a cluster, CLIENT ID (no key) would answer from any node, and
        // the UNBLOCK go to any other: a shutdown waits for the block there.
        if client.config().is_cluster() {
            id_slot.store(0, Ordering::Release);
            return Ok(Self { conn, client_id: 0 });
        }
        let id = tokio::time::timeout(
            client.config().operation_timeout,
            redis::cmd("CLIENT")
                .arg("ID")
                .query_async::<i64>(&mut conn.conn),
        )
        .await;
        // Without the id (0) a shutdown just waits for the block to end.
        let client_id = match id {
            Ok(Ok(id)) => id,
            _ => 0,
        };
        id_slot.store(client_id, Ordering::Release);
        Ok(Self { conn, client_id })
    }
}

/// The read side of a run: the dedicated connection and the one read on it.
pub(super) struct Reads<M> {
    /// The connection's server-side client id, for `CLIENT UNBLOCK` (0
    /// while unknown).
    reader_id: Arc<AtomicI64>,
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
            reader_id: Arc::new(AtomicI64::new(0)),
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
            self.reader_id.clone(),
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
        let id = self.reader_id.load(Ordering::Acquire);
        if id != 0 {
            unblock(group.client(), group.stream().key(), id).await;
        }
        let (_, result) = pending_read.await;
        Some(result)
    }
}

/// Interrupts the blocked read of connection `client_id` (it returns as if
/// its block ran out).
async fn unblock(client: &Client, stream: &str, client_id: i64) {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("UNBLOCK").arg(client_id);
    let context = Context::new("stream.worker_unblock", stream.to_string());
    let result: Result<Value> = client.query(context, &cmd).await;
    if let Err(e) = result {
        tracing::debug!(target: TRACE_TARGET, code = e.code(), "could not interrupt the blocked read; waiting for its block to end: {e}");
    }
}

/// One `XREADGROUP ... BLOCK` on the worker's own connection, opening it
/// first if needed.
fn read_batch<M: Record>(
    group: ConsumerGroup<M>,
    reader: Option<Reader>,
    reader_id: Arc<AtomicI64>,
    count: usize,
    block: Duration,
) -> ReadFuture<M> {
    Box::pin(async move {
        let client = group.client().clone();
        // A reader opened before the client's server moved (a failover)
        // would read the old master: open a new one.
        let reader = match reader.filter(|reader| reader.conn.is_current(&client)) {
            Some(reader) => reader,
            None => match Reader::open(&client, &reader_id).await {
                Ok(reader) => reader,
                Err(e) => {
                    tracing::warn!(target: TRACE_TARGET, stream = group.stream().key(), code = e.code(), "worker cannot open its read connection: {e}");
                    return (None, Err(e));
                }
            },
        };
        let ctx = group.context("stream.worker_read");
        let cmd = group.xreadgroup(count, Some(block));
        let client_id = reader.client_id;
        let mut slot = Some(reader.conn);
        let reply = blocking_query(&client, &mut slot, &cmd, block, ctx.clone()).await;
        let back = slot.map(|conn| Reader { conn, client_id });
        match reply {
            Ok(reply) => {
                let batch = group.settle_read(&reply, &ctx).await;
                (back, batch)
            }
            Err(e) => (back, Err(e)),
        }
    })
}

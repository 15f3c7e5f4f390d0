//! Blocking reads on a dedicated connection: stream reads (`XREADGROUP
//! BLOCK`), the list queues' blocking pops and the worker's reads. They
//! never share the multiplexed connection, so a long block cannot trip its
//! response timeout or stall other operations ("blocking reads on their own
//! connection" in ARCHITECTURE.md). On a Redis Cluster the dedicated
//! connection is a cluster connection of its own, which routes each read
//! to the node serving its key.

use std::time::Duration;

use redis::Value;

use crate::TRACE_TARGET;
use crate::client::Client;
use crate::error::{Context, Error, Result};
use crate::reply::duration_ms;
use crate::transport::connection::BlockingConnection;

/// A dedicated connection, and which of the client's links it was opened
/// beside: when the link moves (a Sentinel failover), the connection still
/// points at the old master and is reopened before its next read.
pub(crate) struct Dedicated {
    pub(crate) conn: BlockingConnection,
    link: u64,
}

impl Dedicated {
    /// A new dedicated connection to the server the client uses now.
    pub(crate) async fn open(client: &Client) -> Result<Self> {
        let link = client.link_generation();
        Ok(Self {
            conn: client.blocking_connection().await?,
            link,
        })
    }

    /// Whether the client still uses the server this connection goes to.
    pub(crate) fn is_current(&self, client: &Client) -> bool {
        self.link == client.link_generation()
    }
}

/// Runs one blocking command on the dedicated connection in `slot`,
/// opening it if needed (again if the client's server moved) and dropping
/// it after a transport failure.
///
/// There is no response timeout on this connection (a `BLOCK` must not trip
/// one), so the wait is bounded here instead: the block time plus the
/// configured operation timeout.
pub(crate) async fn blocking_query(
    client: &Client,
    slot: &mut Option<Dedicated>,
    cmd: &redis::Cmd,
    block: Duration,
    ctx: Context,
) -> Result<Value> {
    let started = std::time::Instant::now();
    let result = async {
        if slot.as_ref().is_some_and(|open| !open.is_current(client)) {
            *slot = None;
        }
        let conn = match slot {
            Some(open) => &mut open.conn,
            None => {
                let opened = Dedicated::open(client)
                    .await
                    .map_err(|e| e.with_context(ctx.clone()))?;
                &mut slot.insert(opened).conn
            }
        };
        let limit = block.saturating_add(client.config().operation_timeout);
        let outcome = match tokio::time::timeout(limit, cmd.query_async::<Value>(conn)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => Error::from_redis(&e, ctx.clone()),
            Err(_) => Error::Timeout {
                context: ctx.clone(),
                elapsed_ms: duration_ms(limit),
                // A blocking pop may have taken an item before the deadline.
                outcome_unknown: true,
            },
        };
        if outcome.is_transient() {
            *slot = None;
            // With Sentinel, the master may have moved (a demoted master
            // ends blocked reads with UNBLOCKED, then refuses with READONLY).
            client.suspect_master(&outcome, started);
        }
        tracing::warn!(target: TRACE_TARGET, endpoint = client.config().endpoint(), code = outcome.code(), "redis error on a blocking read: {outcome}");
        Err(outcome)
    }
    .await;
    client.record_metrics(&ctx, started.elapsed(), &result);
    result
}

//! Blocking reads on a dedicated connection: stream reads (`XREADGROUP
//! BLOCK`), the list queues' blocking pops and the worker's reads. They
//! never share the multiplexed connection, so a long block cannot trip its
//! response timeout or stall other operations ("blocking reads on their own
//! connection" in ARCHITECTURE.md).

use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;

use crate::client::{Client, TRACE_TARGET};
use crate::error::{Context, Error, Result};
use crate::reply::duration_ms;

/// Runs one blocking command on the dedicated connection in `slot`,
/// opening it if needed and dropping it after a transport failure.
///
/// There is no response timeout on this connection (a `BLOCK` must not trip
/// one), so the wait is bounded here instead: the block time plus the
/// configured operation timeout.
pub(crate) async fn blocking_query(
    client: &Client,
    slot: &mut Option<MultiplexedConnection>,
    cmd: &redis::Cmd,
    block: Duration,
    ctx: Context,
) -> Result<Value> {
    let started = std::time::Instant::now();
    let result = async {
        let conn = match slot {
            Some(conn) => conn,
            None => slot.insert(
                client
                    .dedicated_connection()
                    .await
                    .map_err(|e| e.with_context(ctx.clone()))?,
            ),
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

//! Replica acknowledgements of writes (`WAIT`), shared by the writes of
//! one connection.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::AckReplicas;
use crate::error::{Context, Error, Result};
use crate::reply::duration_ms;

/// How often, at most, a write that too few replicas acknowledged makes
/// the client count the replicas [`AckReplicas::All`] stands for again.
const RECOUNT_INTERVAL: Duration = Duration::from_secs(1);

/// Group commit for replica acknowledgements. `WAIT` blocks the whole
/// (shared) connection on the server until the replicas answer, so one
/// `WAIT` per write would serialise every task on it. Instead one `WAIT`
/// is in flight at a time, and it covers every write whose reply arrived
/// on this connection before it was sent: writers that finish while it is
/// in flight share the next one.
///
/// On a Redis Cluster redis-rs sends `WAIT` to every primary, on the
/// connections the writes went through, and the fewest acknowledgements
/// count.
#[derive(Default)]
pub(crate) struct AckBatch {
    /// Writes whose reply has arrived, numbered in that order.
    replies: AtomicU64,
    /// Held while a `WAIT` is in flight; then the last one's answer: the
    /// writes it covers (numbers up to this) and how many replicas
    /// acknowledged them.
    last: tokio::sync::Mutex<Option<(u64, u64)>>,
    /// What [`AckReplicas::All`] stands for on this connection: the
    /// replicas the Sentinels list for its master, less those they flag
    /// down; 0 until counted.
    all_replicas: AtomicU32,
    /// When `all_replicas` was last counted (or a count was started).
    counted_at: std::sync::Mutex<Option<Instant>>,
}

impl AckBatch {
    /// How many replicas `replicas` asks for on this connection now: at
    /// least one.
    fn required(&self, replicas: AckReplicas) -> u32 {
        match replicas {
            AckReplicas::Count(n) => n,
            AckReplicas::All => self.all_replicas.load(Ordering::Acquire).max(1),
        }
    }

    /// Records what [`AckReplicas::All`] stands for from now on.
    pub(crate) fn set_all_replicas(&self, replicas: u32) {
        self.all_replicas.store(replicas, Ordering::Release);
        *self.counted_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Whether the replicas should be counted again after a write too few
    /// acknowledged: not within [`RECOUNT_INTERVAL`] of the last count.
    /// Saying yes starts the interval, so concurrent writers count once.
    pub(crate) fn recount_due(&self) -> bool {
        let mut counted_at = self.counted_at.lock().unwrap_or_else(|e| e.into_inner());
        if counted_at.is_some_and(|at| at.elapsed() < RECOUNT_INTERVAL) {
            return false;
        }
        *counted_at = Some(Instant::now());
        true
    }

    /// After a write whose reply arrived on `conn`: waits until the
    /// replicas `replicas` asks for acknowledged it, for at most `timeout`
    /// (`WAIT`, shared with the writes that finished meanwhile). Any
    /// failure here leaves the write's outcome unknown: it already ran on
    /// the primary.
    ///
    /// With [`AckReplicas::All`] the `WAIT` goes with `INFO replication`
    /// in one round trip: a replica attached to the master since the last
    /// count (the old master rejoining after a failover, say) raises the
    /// count at once and the write waits for it too, so an acknowledged
    /// write never depends on a count taken before a replica arrived.
    pub(crate) async fn acknowledge<C>(
        &self,
        conn: &mut C,
        replicas: AckReplicas,
        timeout: Duration,
        context: &Context,
    ) -> Result<()>
    where
        C: redis::aio::ConnectionLike + Send,
    {
        let timeout_ms = duration_ms(timeout);
        let this_write = self.replies.fetch_add(1, Ordering::AcqRel) + 1;
        let mut last = self.last.lock().await;
        let acknowledged = match *last {
            // A WAIT sent after this write's reply arrived answered it.
            Some((covers, acknowledged)) if covers >= this_write => Ok(acknowledged),
            _ => {
                let covers = self.replies.load(Ordering::Acquire);
                let answer = self.wait(conn, replicas, timeout_ms).await;
                if let Ok(acknowledged) = answer {
                    *last = Some((covers, acknowledged));
                }
                answer
            }
        };
        drop(last);
        // Read after the wait: it may have raised the count.
        let required = self.required(replicas);
        match acknowledged {
            Ok(acknowledged) if acknowledged >= u64::from(required) => Ok(()),
            Ok(acknowledged) => Err(Error::NotReplicated {
                context: context.clone(),
                acknowledged,
                required,
                timeout_ms,
            }),
            Err(e) => Err(unknown_after_write(Error::from_redis(&e, context.clone()))),
        }
    }

    /// One `WAIT` for the replicas `replicas` asks for; with
    /// [`AckReplicas::All`], read `INFO replication` after it and wait
    /// again if more replicas are attached than were waited for. How many
    /// replicas acknowledged.
    async fn wait<C>(
        &self,
        conn: &mut C,
        replicas: AckReplicas,
        timeout_ms: u64,
    ) -> redis::RedisResult<u64>
    where
        C: redis::aio::ConnectionLike + Send,
    {
        let required = self.required(replicas);
        let mut wait = redis::cmd("WAIT");
        wait.arg(required).arg(timeout_ms);
        if replicas != AckReplicas::All {
            return wait.query_async(conn).await;
        }
        let mut info = redis::cmd("INFO");
        info.arg("replication");
        let (acknowledged, info): (u64, String) = redis::pipe()
            .add_command(wait)
            .add_command(info)
            .query_async(conn)
            .await?;
        let attached = attached_replicas(&info).len();
        let attached = u32::try_from(attached).unwrap_or(u32::MAX);
        if attached <= required {
            return Ok(acknowledged);
        }
        self.all_replicas.fetch_max(attached, Ordering::AcqRel);
        let mut wait = redis::cmd("WAIT");
        wait.arg(attached).arg(timeout_ms);
        wait.query_async(conn).await
    }
}

/// The replicas attached to a master, from its `INFO replication` reply
/// (`slave<n>:ip=<ip>,port=<port>,state=...,...`): `<ip>:<port>` of each,
/// whatever its state (one still syncing is attached, and cannot have
/// acknowledged yet).
pub(crate) fn attached_replicas(info: &str) -> BTreeSet<String> {
    info.lines()
        .filter_map(|line| {
            let (name, value) = line.trim().split_once(':')?;
            let n = name.strip_prefix("slave")?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let field = |key: &str| {
                value.split(',').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    (k == key).then_some(v)
                })
            };
            Some(format!("{}:{}", field("ip")?, field("port")?))
        })
        .collect()
}

/// `error`, which `WAIT` failed with after the write ran, as the write's
/// error: its outcome is unknown (so the resend rule sends a write no
/// further).
fn unknown_after_write(error: Error) -> Error {
    match error {
        Error::Unavailable {
            context,
            reason,
            message,
            waited_ms,
            ..
        } => Error::Unavailable {
            context,
            reason,
            message: format!("waiting for replica acknowledgements: {message}"),
            waited_ms,
            outcome_unknown: true,
        },
        Error::Timeout {
            context,
            elapsed_ms,
            ..
        } => Error::Timeout {
            context,
            elapsed_ms,
            outcome_unknown: true,
        },
        // The write ran; only the wait was refused (e.g. on a replica).
        Error::Command { context, message } => Error::Command {
            context,
            message: format!(
                "the write ran, but waiting for replica acknowledgements failed: {message}"
            ),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attached_replicas_are_read_from_info_replication_in_any_state() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=127.0.0.1,port=7001,state=online,offset=120,lag=0\r\n\
                    slave1:ip=10.0.0.2,port=7002,state=wait_bgsave,offset=0,lag=0\r\n\
                    slave_read_only:1\r\nmaster_repl_offset:120\r\n";
        let attached = attached_replicas(info);
        assert_eq!(
            attached.into_iter().collect::<Vec<_>>(),
            ["10.0.0.2:7002", "127.0.0.1:7001"]
        );
    }

    #[test]
    fn a_replica_line_without_an_address_or_a_master_without_replicas_counts_none() {
        assert!(attached_replicas("role:master\r\nconnected_slaves:0\r\n").is_empty());
        assert!(attached_replicas("slave0:state=online,offset=1\r\nslaves:x\r\n").is_empty());
    }
}

//! Replica acknowledgements of writes (`WAIT`), shared by the writes of
//! one connection.

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
    pub(crate) fn required(&self, replicas: AckReplicas) -> u32 {
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

    /// After a write whose reply arrived on `conn`: waits until `required`
    /// replicas acknowledged it, for at most `timeout` (`WAIT`, shared with
    /// the writes that finished meanwhile). Any failure here leaves the
    /// write's outcome unknown: it already ran on the primary.
    pub(crate) async fn acknowledge<C>(
        &self,
        conn: &mut C,
        required: u32,
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
                let mut cmd = redis::cmd("WAIT");
                cmd.arg(required).arg(timeout_ms);
                let answer = cmd.query_async::<u64>(conn).await;
                if let Ok(acknowledged) = answer {
                    *last = Some((covers, acknowledged));
                }
                answer
            }
        };
        drop(last);
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

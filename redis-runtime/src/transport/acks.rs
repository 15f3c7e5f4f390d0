//! Replica acknowledgements of writes (`WAIT`), shared by the writes of
//! one connection.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::ReplicaAcks;
use crate::error::{Context, Error, Result};
use crate::reply::duration_ms;

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
}

impl AckBatch {
    /// After a write whose reply arrived on `conn`: waits until `acks`
    /// replicas acknowledged it (`WAIT`, shared with the writes that
    /// finished meanwhile). Any failure here leaves the write's outcome
    /// unknown: it already ran on the primary.
    pub(crate) async fn acknowledge<C>(
        &self,
        conn: &mut C,
        acks: ReplicaAcks,
        context: &Context,
    ) -> Result<()>
    where
        C: redis::aio::ConnectionLike + Send,
    {
        let timeout_ms = duration_ms(acks.timeout);
        let this_write = self.replies.fetch_add(1, Ordering::AcqRel) + 1;
        let mut last = self.last.lock().await;
        let acknowledged = match *last {
            // A WAIT sent after this write's reply arrived answered it.
            Some((covers, acknowledged)) if covers >= this_write => Ok(acknowledged),
            _ => {
                let covers = self.replies.load(Ordering::Acquire);
                let mut cmd = redis::cmd("WAIT");
                cmd.arg(acks.replicas).arg(timeout_ms);
                let answer = cmd.query_async::<u64>(conn).await;
                if let Ok(acknowledged) = answer {
                    *last = Some((covers, acknowledged));
                }
                answer
            }
        };
        drop(last);
        match acknowledged {
            Ok(acknowledged) if acknowledged >= u64::from(acks.replicas) => Ok(()),
            Ok(acknowledged) => Err(Error::NotReplicated {
                context: context.clone(),
                acknowledged,
                required: acks.replicas,
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

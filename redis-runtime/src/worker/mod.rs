//! A worker loop over a consumer group: at least once, nothing lost.
//!
//! [`Worker::run`] reads entries for one consumer and runs a handler on each
//! with bounded concurrency, until a cancellation token fires:
//!
//! * **success**: the entry is acknowledged (acks are batched: one `XACK`
//!   per batch of completions, sent while the next batch is being read);
//! * **failure** (the handler returns `Err` or panics): the entry stays
//!   pending and is retried after a backoff that doubles per delivery
//!   (`retry_backoff`, `2 × retry_backoff`, …, at most `claim_min_idle`, with
//!   jitter), by whichever worker of the group claims it first;
//! * **too many deliveries**: once an entry has been delivered
//!   `max_deliveries` times without success it is moved to the dead-letter
//!   stream with the last error, and acknowledged, atomically. An entry that
//!   keeps killing its consumers (so no error is ever reported) goes there
//!   too, once a claim sees it delivered more than `max_deliveries` times.
//!   A [dead-letter hook](Worker::on_dead_letter) runs first, so the
//!   application can record the failure (mark the job failed) before the
//!   entry leaves the pending list;
//! * **crashed consumers**: every `claim_interval` the worker claims entries
//!   that have been pending with any consumer for `claim_min_idle` or more,
//!   so the work of a consumer that died is finished by the survivors;
//!   entries a live worker is still processing are kept fresh (their idle
//!   time is reset) so they are not stolen while their handler runs;
//! * **undecodable entries** follow the group's
//!   [`DecodePolicy`](crate::stream::DecodePolicy) (dead-lettered by default)
//!   and never reach the handler.
//!
//! Retries live in Redis, not in the worker's memory: a failed entry is left
//! pending with its idle time set so that it becomes claimable when its
//! backoff ends (`XCLAIM … IDLE … JUSTID`). A worker that crashes therefore
//! loses nothing, not even its retry schedule.
//!
//! # Where handlers run
//!
//! Handler calls run concurrently on the worker's own task (like
//! `for_each_concurrent`), not as spawned tasks: no per-entry spawn, no
//! cross-thread wake-ups, and aborting the worker's task cancels every call
//! with it. The usual async rule applies: a handler must not block its
//! thread (that would stall the worker's acks and keep-alives too); put
//! CPU-heavy or blocking work in `tokio::task::spawn_blocking`. To use more
//! cores, run several workers, each with its own consumer name.
//!
//! # Where a group starts
//!
//! [`ConsumerGroup::ensure`] creates a missing group reading from the
//! **beginning** of the stream, so jobs enqueued before the group (or the
//! first worker) existed are delivered too; an existing group is never
//! moved. A group that should only see entries added from now on is made
//! with [`ensure_from(GroupStart::NewEntriesOnly)`](ConsumerGroup::ensure_from).
//! The worker itself does not create the group: [`Worker::run`] on a
//! missing group fails at once with `NOGROUP`.
//!
//! # Shutdown
//!
//! The worker stops when a [`CancellationToken`] (re-exported here from
//! `tokio-util`, so no extra dependency is needed) is cancelled.
//! When the token is cancelled the worker stops reading (a blocked
//! `XREADGROUP` is interrupted with `CLIENT UNBLOCK`), lets in-flight
//! handlers finish for up to `shutdown_grace`, acknowledges what succeeded,
//! releases what did not finish (pending, immediately claimable by other
//! consumers) and returns a [`WorkerReport`]. Acks and releases go through the
//! shared connection, so cancel the worker and await `run` *before*
//! [`Client::shutdown`](crate::Client::shutdown). A client shutdown also
//! stops the worker, but then its last acks fail and those entries are
//! delivered again (never lost).
//!
//! ```no_run
//! use std::time::Duration;
//! use redis_runtime::stream::Stream;
//! use redis_runtime::worker::{CancellationToken, Worker};
//! use redis_runtime::{Client, RedisRecord};
//!
//! #[derive(RedisRecord, Debug, Clone)]
//! struct Event { id: String, kind: String }
//!
//! # async fn demo(client: Client) -> redis_runtime::Result<()> {
//! let group = Stream::<Event>::new(&client, "events:incoming").group("event-processors");
//! group.ensure().await?; // from the beginning: earlier events are not skipped
//! let stop = CancellationToken::new();
//! let report = Worker::new(group)
//!     .concurrency(8)
//!     .max_deliveries(5)
//!     .on_dead_letter(|dead| async move {
//!         eprintln!("event {} failed for good: {}", dead.message.id, dead.error);
//!         Ok::<(), String>(())
//!     })
//!     .run(
//!         |entry| async move {
//!             println!("processing {}", entry.message.id);
//!             Ok::<(), String>(())
//!         },
//!         stop.clone(),
//!     )
//!     .await?;
//! println!("handled {}", report.handled);
//! # Ok(()) }
//! ```

mod chores;
mod reader;
mod run;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use derive_where::derive_where;
use tokio::time::Instant;

/// The token that stops a [`Worker::run`]: `tokio-util`'s, re-exported so
/// applications need not depend on `tokio-util` themselves.
pub use tokio_util::sync::CancellationToken;

use crate::codec::Record;
use crate::error::{Error, Result};
#[cfg(doc)]
use crate::stream::GroupStart;
use crate::stream::{ConsumerGroup, Entry};

use run::{HandlerFuture, Run};

/// Runs a handler over a consumer group; see the [module docs](self).
#[derive_where(Clone, Debug)]
pub struct Worker<M> {
    group: ConsumerGroup<M>,
    concurrency: usize,
    batch_size: usize,
    block: Duration,
    max_deliveries: u64,
    retry_backoff: Duration,
    claim_min_idle: Duration,
    claim_interval: Duration,
    shutdown_grace: Duration,
    dead_letter_hook: Option<DeadLetterHook<M>>,
}

/// An entry the worker is giving up on, handed to the
/// [dead-letter hook](Worker::on_dead_letter) before it is dead-lettered.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLettering<M> {
    /// The stream entry id.
    pub id: String,
    /// The decoded message (e.g. the job to mark failed).
    pub message: M,
    /// How many times it was delivered (see [`Entry::deliveries`]).
    pub deliveries: u64,
    /// Why: the last handler error (or panic) and the attempt count, or
    /// that its consumers kept crashing. The same text goes into the
    /// dead-letter entry's `dead_letter.error`.
    pub error: String,
}

/// A dead-letter hook call, its error rendered as text.
type HookFuture = Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send>>;

/// The hook and how to keep a copy of each message for it.
#[derive_where(Clone)]
pub(crate) struct DeadLetterHook<M> {
    call: Arc<dyn Fn(DeadLettering<M>) -> HookFuture + Send + Sync>,
    /// `M::clone`: a running entry's message is kept for the hook, since
    /// the handler consumes the entry.
    keep: fn(&M) -> M,
}

impl<M> std::fmt::Debug for DeadLetterHook<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeadLetterHook")
    }
}

impl<M> DeadLetterHook<M> {
    pub(crate) fn keep(&self, message: &M) -> M {
        (self.keep)(message)
    }

    pub(crate) fn call(&self, dead: DeadLettering<M>) -> HookFuture {
        (self.call)(dead)
    }
}

/// What a [`Worker::run`] did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Entries whose handler succeeded.
    pub handled: u64,
    /// Handler failures left pending for a retry.
    pub retried: u64,
    /// Entries moved to the dead-letter stream after too many deliveries.
    pub dead_lettered: u64,
    /// Entries claimed from idle consumers (crashed ones, or retries).
    pub reclaimed: u64,
    /// Entries that did not decode (handled per the group's decode policy).
    pub skipped: u64,
    /// Entries given back unprocessed at shutdown.
    pub released: u64,
    /// Acknowledgements that could not be sent (those entries will be
    /// delivered again).
    pub ack_failures: u64,
    /// Dead-letter hook calls that failed (or panicked): those entries were
    /// *not* dead-lettered and stay pending, so the hook runs again for them
    /// when a claim next takes them over.
    pub dead_letter_hook_failures: u64,
}

impl<M: Record> ConsumerGroup<M> {
    /// A [`Worker`] for this group and consumer, with default settings.
    pub fn worker(&self) -> Worker<M> {
        Worker::new(self.clone())
    }
}

impl<M: Record> Worker<M> {
    /// A worker with the defaults: concurrency 16, batches of 16, block 5 s,
    /// 5 deliveries, backoff from 1 s, reclaim after 30 s idle checked every
    /// 5 s, 30 s shutdown grace.
    pub fn new(group: ConsumerGroup<M>) -> Self {
        Self {
            group,
            concurrency: 16,
            batch_size: 16,
            block: Duration::from_secs(5),
            max_deliveries: 5,
            retry_backoff: Duration::from_secs(1),
            claim_min_idle: Duration::from_secs(30),
            claim_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            dead_letter_hook: None,
        }
    }

    /// At most this many handlers run at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Entries asked for per `XREADGROUP` (`COUNT`). The worker reads when
    /// this many handler slots are free (or all, if concurrency is lower),
    /// so each read is a full batch.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// How long one `XREADGROUP` waits for entries (`BLOCK`), on the
    /// worker's dedicated connection.
    ///
    /// A read holds the handler slots it may fill, so while every free
    /// slot waits on it the worker claims nothing: a retry that comes due,
    /// or a dead consumer's entry, is claimed once the read ends (with
    /// entries or at the end of its block). With the default concurrency
    /// and batch size (16 and 16) an idle worker's retries are therefore
    /// up to `block` later than their backoff; a shorter block, or a
    /// concurrency above the batch size, makes them punctual.
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Deliveries after which a failing entry is dead-lettered (at least 1):
    /// the handler is tried at most `n` times ([`Entry::deliveries`] counts
    /// the attempts, from 1); when attempt `n` fails the entry is
    /// dead-lettered instead of retried.
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = n;
        self
    }

    /// Wait before the first retry; doubles per delivery, capped at
    /// [`Worker::claim_min_idle`].
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// An entry pending this long with any consumer is taken over. It must
    /// be longer than the time a consumer may go silent (a live worker
    /// refreshes its own entries every third of it while handlers run).
    pub fn claim_min_idle(mut self, idle: Duration) -> Self {
        self.claim_min_idle = idle;
        self
    }

    /// How often to claim idle entries (and due retries).
    pub fn claim_interval(mut self, interval: Duration) -> Self {
        self.claim_interval = interval;
        self
    }

    /// How long in-flight handlers may run on after the token is cancelled
    /// before they are aborted and their entries released.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Runs `hook` on every entry the worker gives up on (too many failed
    /// deliveries, or consumers that keep crashing on it), **before** the
    /// entry is moved to the dead-letter stream and acknowledged: the place
    /// to mark the job failed, with [`DeadLettering::error`] as the reason.
    ///
    /// * The hook succeeds: the entry is dead-lettered and acknowledged
    ///   (one atomic step), and counted in [`WorkerReport::dead_lettered`].
    /// * The hook fails or panics: the entry is **not** dead-lettered; it
    ///   stays pending, the failure is logged and counted in
    ///   [`WorkerReport::dead_letter_hook_failures`], and the hook runs
    ///   again when a claim takes the entry over (after
    ///   [`Worker::claim_min_idle`]). So a job is never parked without the
    ///   application having recorded it.
    ///
    /// The hook and the dead-lettering are two steps, not one: if the
    /// worker dies between them (or the dead-lettering fails) the hook runs
    /// again later for the same entry. Make it idempotent (setting a status
    /// is). Hook calls run one at a time on the worker's chore task, so keep
    /// them short: claims and keep-alives wait meanwhile (handlers do not).
    ///
    /// The worker keeps a clone of each running entry's message for the
    /// hook, hence `M: Clone`. Entries that do not decode never reach a
    /// handler or this hook: they follow the group's
    /// [`DecodePolicy`](crate::stream::DecodePolicy) and are counted in
    /// [`WorkerReport::skipped`].
    pub fn on_dead_letter<F, Fut, E>(mut self, hook: F) -> Self
    where
        M: Clone,
        F: Fn(DeadLettering<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let call = move |dead: DeadLettering<M>| -> HookFuture {
            let run = hook(dead);
            Box::pin(async move { run.await.map_err(|e| e.to_string()) })
        };
        self.dead_letter_hook = Some(DeadLetterHook {
            call: Arc::new(call),
            keep: M::clone,
        });
        self
    }

    /// The group this worker consumes.
    pub fn group(&self) -> &ConsumerGroup<M> {
        &self.group
    }

    /// Runs until `shutdown` is cancelled, then winds down (see the
    /// [module docs](self#shutdown)) and returns what it did.
    ///
    /// The group must exist ([`ConsumerGroup::ensure`], which starts a new
    /// group at the beginning of the stream). Transport errors
    /// are retried with the client's reconnect backoff; errors a retry
    /// cannot fix (the group or stream is gone, wrong key type) end the run
    /// with that error, after the same wind-down.
    pub async fn run<F, Fut, E>(
        self,
        handler: F,
        shutdown: CancellationToken,
    ) -> Result<WorkerReport>
    where
        F: Fn(Entry<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        self.validate()?;
        let handler = std::sync::Arc::new(handler);
        let spawn = move |entry: Entry<M>| -> HandlerFuture {
            let run = handler(entry);
            Box::pin(async move { run.await.map_err(|e| e.to_string()) })
        };
        Run::new(&self, Box::new(spawn)).main_loop(&shutdown).await
    }

    fn validate(&self) -> Result<()> {
        let problem = if self.concurrency == 0 {
            "worker concurrency must be at least 1"
        } else if self.batch_size == 0 {
            "worker batch size must be at least 1"
        } else if self.max_deliveries == 0 {
            "worker max deliveries must be at least 1"
        } else if self.claim_min_idle.is_zero() {
            "worker claim min idle must be greater than zero"
        } else if self.claim_interval.is_zero() {
            "worker claim interval must be greater than zero"
        } else {
            return Ok(());
        };
        Err(Error::Config(problem.to_string()))
    }

    fn backoff(&self, deliveries: u64) -> Duration {
        backoff_delay(
            self.retry_backoff,
            self.claim_min_idle,
            deliveries,
            random_fraction(),
        )
    }
}

/// The retry delay after `deliveries` failed deliveries: doubling from
/// `base`, jittered by ±25% (`jitter` in [0, 1)) so the retries of a burst
/// spread out, capped at `cap`.
fn backoff_delay(base: Duration, cap: Duration, deliveries: u64, jitter: f64) -> Duration {
    let exponent = u32::try_from(deliveries.saturating_sub(1).min(20)).unwrap_or(20);
    let nominal = base.saturating_mul(1u32 << exponent);
    let factor = 0.75 + 0.5 * jitter.clamp(0.0, 1.0);
    // Checked: absurd settings must not panic the worker.
    Duration::try_from_secs_f64(nominal.as_secs_f64() * factor)
        .unwrap_or(Duration::MAX)
        .min(cap)
}

/// `now + d`, without the overflow panic for absurdly long settings.
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// A uniform fraction in [0, 1) for jitter, from the standard library's
/// randomly keyed hasher (no RNG dependency needed for this).
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The text of a panic's payload (a `&str` or a `String`), for reports.
pub(super) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_delivery_with_bounded_jitter_and_a_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        let at = |deliveries, jitter| backoff_delay(base, cap, deliveries, jitter);
        assert_eq!(at(1, 0.5), Duration::from_millis(100));
        assert_eq!(at(2, 0.5), Duration::from_millis(200));
        assert_eq!(at(3, 0.5), Duration::from_millis(400));
        assert_eq!(at(1, 0.0), Duration::from_millis(75));
        assert_eq!(at(1, 1.0), Duration::from_millis(125));
        assert_eq!(at(4, 0.9), Duration::from_millis(960), "under the cap");
        assert_eq!(at(5, 0.0), cap, "1600 ms * 0.75 is over the cap");
        assert_eq!(
            at(u64::MAX, 0.5),
            cap,
            "huge delivery counts do not overflow"
        );
        assert_eq!(at(0, 0.5), Duration::from_millis(100));
        assert_eq!(
            backoff_delay(Duration::MAX, Duration::MAX, 30, 1.0),
            Duration::MAX,
            "no overflow panic"
        );
        assert!(after(Duration::MAX) >= Instant::now());
    }

    #[test]
    fn random_fraction_is_in_range_and_varies() {
        let samples: Vec<f64> = (0..64).map(|_| random_fraction()).collect();
        assert!(samples.iter().all(|f| (0.0..1.0).contains(f)));
        let distinct: std::collections::BTreeSet<u64> =
            samples.iter().map(|f| f.to_bits()).collect();
        assert!(distinct.len() > 32);
    }
}

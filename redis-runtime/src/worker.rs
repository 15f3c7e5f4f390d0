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
//!   too, once a claim sees it delivered more than `max_deliveries` times;
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
//! # Shutdown
//!
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
//! use redis_runtime::stream::{GroupStart, Stream};
//! use redis_runtime::worker::Worker;
//! use redis_runtime::{Client, RedisRecord};
//! use tokio_util::sync::CancellationToken;
//!
//! #[derive(RedisRecord, Debug, Clone)]
//! struct Event { id: String, kind: String }
//!
//! # async fn demo(client: Client) -> redis_runtime::Result<()> {
//! let group = Stream::<Event>::new(&client, "events:incoming").group("event-processors");
//! group.ensure_from(GroupStart::Beginning).await?;
//! let stop = CancellationToken::new();
//! let report = Worker::new(group)
//!     .concurrency(8)
//!     .max_deliveries(5)
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

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::future::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::Value;
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, TRACE_TARGET};
use crate::codec::Record;
use crate::error::{Context, Error, Result};
use crate::stream::{ConsumerGroup, Entry, RELEASE_IDLE, ReadBatch, blocking_query};

/// Claim pages walked per claim tick at most.
const CLAIM_PAGES_PER_TICK: usize = 8;

/// Runs a handler over a consumer group; see the [module docs](self).
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
}

// By hand: derives would demand `M: Clone` / `M: Debug` for no reason.
impl<M> Clone for Worker<M> {
    fn clone(&self) -> Self {
        Self {
            group: self.group.clone(),
            ..*self
        }
    }
}

impl<M> std::fmt::Debug for Worker<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("group", &self.group)
            .field("concurrency", &self.concurrency)
            .field("batch_size", &self.batch_size)
            .field("block", &self.block)
            .field("max_deliveries", &self.max_deliveries)
            .field("retry_backoff", &self.retry_backoff)
            .field("claim_min_idle", &self.claim_min_idle)
            .field("claim_interval", &self.claim_interval)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
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
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Deliveries after which a failing entry is dead-lettered (at least 1).
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

    /// The group this worker consumes.
    pub fn group(&self) -> &ConsumerGroup<M> {
        &self.group
    }

    /// Runs until `shutdown` is cancelled, then winds down (see the
    /// [module docs](self#shutdown)) and returns what it did.
    ///
    /// The group must exist ([`ConsumerGroup::ensure`]). Transport errors
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
        let mut run = Run {
            worker: &self,
            client: self.group.client().clone(),
            tasks: FuturesUnordered::new(),
            next_slot: 0,
            running: HashMap::new(),
            acks: Vec::new(),
            oldest_ack: None,
            failed: Vec::new(),
            release: Vec::new(),
            report: WorkerReport::default(),
            spawn: Box::new(spawn),
        };
        run.main_loop(&shutdown).await
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

/// A handler's result, or its error text.
type Outcome = std::result::Result<(), String>;

/// One handler call, its error rendered as text.
type HandlerFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// A handler call tagged with its slot in [`Run::running`], panics caught.
type Slot = Pin<Box<dyn Future<Output = (u64, Outcome)> + Send>>;

type SpawnFn<M> = Box<dyn Fn(Entry<M>) -> HandlerFuture + Send + Sync>;

/// An XACK in flight: how many ids, and the outcome.
type AckFuture = Pin<Box<dyn Future<Output = (usize, Result<u64>)> + Send>>;

/// The read in flight: owns the dedicated connection and gives it back.
type ReadFuture<M> = Pin<Box<dyn Future<Output = (Option<Reader>, Result<ReadBatch<M>>)> + Send>>;

/// Redis work besides reading and acking, handed to a future so the loop
/// never waits on Redis itself (handlers keep being polled meanwhile, even
/// while Redis is slow or down). One chore runs at a time.
type ChoreFuture<M> = Pin<Box<dyn Future<Output = Chore<M>> + Send>>;

/// What a chore did, for the loop to take in.
enum Chore<M> {
    /// Entries claimed from idle consumers, to run.
    Claimed {
        entries: Vec<Entry<M>>,
        next_cursor: String,
        reclaimed: u64,
        skipped: u64,
        dead_lettered: u64,
    },
    /// Failures deferred or dead-lettered; releases done.
    Settled { dead_lettered: u64 },
    /// Long-running entries kept fresh.
    Refreshed,
}

/// The worker's dedicated connection for `XREADGROUP BLOCK`.
struct Reader {
    conn: MultiplexedConnection,
    client_id: i64,
}

impl Reader {
    /// Opens the connection and learns its server-side client id (kept in
    /// `id_slot` too), so a shutdown can interrupt its block.
    async fn open(client: &Client, id_slot: &AtomicI64) -> Result<Self> {
        let mut conn = client.dedicated_connection().await?;
        let id = tokio::time::timeout(
            client.config().operation_timeout,
            redis::cmd("CLIENT").arg("ID").query_async::<i64>(&mut conn),
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

/// An entry whose handler is running.
struct Running {
    id: String,
    deliveries: u64,
    refreshed: Instant,
}

/// The mutable state of one [`Worker::run`].
struct Run<'w, M> {
    worker: &'w Worker<M>,
    client: Client,
    /// The handler calls in flight, polled by the worker's own task.
    tasks: FuturesUnordered<Slot>,
    next_slot: u64,
    running: HashMap<u64, Running>,
    /// Succeeded, not yet acknowledged.
    acks: Vec<String>,
    oldest_ack: Option<Instant>,
    /// Failed (entry, deliveries, error), not yet deferred or dead-lettered.
    failed: Vec<(String, u64, String)>,
    /// To give back unprocessed.
    release: Vec<String>,
    report: WorkerReport,
    spawn: SpawnFn<M>,
}

/// How long succeeded entries may wait for a batched ack.
const ACK_LINGER: Duration = Duration::from_millis(5);

impl<M: Record> Run<'_, M> {
    async fn main_loop(&mut self, shutdown: &CancellationToken) -> Result<WorkerReport> {
        let w = self.worker;
        let threshold = w.batch_size.min(w.concurrency);
        let reader_id = Arc::new(AtomicI64::new(0));
        let mut reader: Option<Reader> = None;
        let mut read: Option<ReadFuture<M>> = None;
        let mut read_reserved = 0usize;
        let mut read_errors = 0u32;
        let mut read_after: Option<Instant> = None;
        // The XACK in flight: it runs on the shared connection while the
        // next XREADGROUP runs on the dedicated one, so they overlap.
        let mut ack: Option<AckFuture> = None;
        let mut chore: Option<ChoreFuture<M>> = None;
        let mut claim_reserved = 0usize;
        let mut claim_cursor = "0-0".to_string();
        let mut next_claim = Instant::now();
        let refresh_every = w.claim_min_idle / 3;
        let mut next_refresh = after(refresh_every);
        let mut fatal: Option<Error> = None;
        // Made once and reused: a fresh timer and cancellation waiter per
        // loop turn would cost a lock each, on every handler completion.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        // A client shut down under the worker stops it too: its dedicated
        // read connection would otherwise keep taking entries it can no
        // longer acknowledge.
        let client_closed = self.client.shutdown_token();
        let client_cancelled = client_closed.cancelled();
        tokio::pin!(client_cancelled);
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);

        loop {
            while let Some(Some((slot, outcome))) = self.tasks.next().now_or_never() {
                self.finished(slot, outcome);
            }
            if shutdown.is_cancelled() || client_closed.is_cancelled() || fatal.is_some() {
                break;
            }
            let free = w
                .concurrency
                .saturating_sub(self.tasks.len() + read_reserved + claim_reserved);
            // Ack in batches: when a batch is complete, when nothing runs,
            // or when the oldest waiting ack has lingered long enough.
            let linger_over = self.oldest_ack.is_some_and(|t| t.elapsed() >= ACK_LINGER);
            if ack.is_none()
                && !self.acks.is_empty()
                && (self.acks.len() >= threshold
                    || self.tasks.is_empty()
                    || linger_over
                    || free >= threshold)
            {
                ack = Some(self.start_ack());
            }
            let now = Instant::now();
            if read_after.is_some_and(|t| now >= t) {
                read_after = None;
            }
            if chore.is_none() {
                if !self.failed.is_empty() || !self.release.is_empty() {
                    chore = Some(self.start_settle());
                } else if now >= next_claim && free > 0 {
                    claim_reserved = free;
                    chore = Some(self.start_claim(claim_cursor.clone(), free));
                    next_claim = after(w.claim_interval);
                    continue; // recompute what is free
                } else if now >= next_refresh {
                    chore = self.start_refresh();
                    next_refresh = after(refresh_every);
                }
            }
            if read.is_none() && read_after.is_none() && free >= threshold {
                read_reserved = free.min(w.batch_size);
                read = Some(read_batch(
                    w.group.clone(),
                    reader.take(),
                    reader_id.clone(),
                    read_reserved,
                    w.block,
                ));
            }

            // Sleep until the next timer that matters now (a stable
            // default: resetting the timer is not free).
            let mut wake = next_claim.max(next_refresh);
            if chore.is_none() {
                if free > 0 {
                    wake = wake.min(next_claim);
                }
                if !self.running.is_empty() {
                    wake = wake.min(next_refresh);
                }
            }
            if let Some(t) = read_after {
                wake = wake.min(t);
            }
            if let (Some(t), None) = (self.oldest_ack, &ack) {
                wake = wake.min(t + ACK_LINGER);
            }
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }

            tokio::select! {
                biased;
                () = &mut cancelled => {}
                () = &mut client_cancelled => {}
                (count, result) = poll_slot(&mut ack) => {
                    ack = None;
                    self.acked(count, result);
                }
                (back, result) = poll_slot(&mut read) => {
                    read = None;
                    read_reserved = 0;
                    reader = back;
                    match result {
                        Ok(batch) => {
                            read_errors = 0;
                            self.start(batch);
                        }
                        Err(e) if e.is_transient() => {
                            read_errors += 1;
                            read_after = Some(after(self.read_backoff(read_errors)));
                        }
                        Err(e) => fatal = Some(e),
                    }
                }
                done = poll_slot(&mut chore) => {
                    chore = None;
                    claim_reserved = 0;
                    self.chore_done(done, &mut claim_cursor, false);
                }
                // After the I/O branches, so a stream of quick handler
                // completions cannot delay sending the next read or ack.
                Some((slot, outcome)) = self.tasks.next(), if !self.tasks.is_empty() => {
                    self.finished(slot, outcome);
                }
                () = &mut timer => {}
            }
        }

        // Wind down: stop reading, finish or release in-flight work.
        if let Some(pending_read) = read.take() {
            if client_closed.is_cancelled() {
                // Nothing could be released any more; whatever the read
                // still delivers stays pending for other consumers to claim.
                drop(pending_read);
            } else {
                let id = reader_id.load(Ordering::Acquire);
                if id != 0 {
                    unblock(&self.client, w.group.stream().key(), id).await;
                }
                let (_, result) = pending_read.await;
                if let Ok(batch) = result {
                    self.report.skipped += batch.failures.len() as u64;
                    self.release
                        .extend(batch.entries.into_iter().map(|entry| entry.id));
                }
            }
        }
        drop(reader);
        if let Some(in_flight) = chore.take() {
            let done = in_flight.await;
            self.chore_done(done, &mut claim_cursor, true);
        }
        if let Some(in_flight) = ack.take() {
            let (count, result) = in_flight.await;
            self.acked(count, result);
        }
        let deadline = after(w.shutdown_grace);
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.next()).await {
                Ok(Some((slot, outcome))) => {
                    self.finished(slot, outcome);
                    if self.acks.len() >= threshold {
                        self.flush_acks().await;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(target: TRACE_TARGET, stream = w.group.stream().key(), in_flight = self.tasks.len(), "shutdown grace is over: cancelling handlers and releasing their entries");
                    // Dropping the calls cancels them; their entries go back.
                    self.tasks = FuturesUnordered::new();
                    for (_, running) in self.running.drain() {
                        self.release.push(running.id);
                    }
                }
            }
        }
        self.flush_acks().await;
        if !self.failed.is_empty() || !self.release.is_empty() {
            let done = self.start_settle().await;
            self.chore_done(done, &mut claim_cursor, true);
        }
        match fatal {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut self.report)),
        }
    }

    fn read_backoff(&self, errors: u32) -> Duration {
        let retry = self.client.config().retry;
        retry
            .min_delay
            .saturating_mul(1u32 << errors.saturating_sub(1).min(16))
            .min(retry.max_delay)
    }

    /// Hands a batch to the handler, one call per entry.
    fn start(&mut self, batch: ReadBatch<M>) {
        self.report.skipped += batch.failures.len() as u64;
        for entry in batch.entries {
            self.spawn_entry(entry);
        }
    }

    fn spawn_entry(&mut self, entry: Entry<M>) {
        let running = Running {
            id: entry.id.clone(),
            deliveries: entry.deliveries,
            refreshed: Instant::now(),
        };
        let slot = self.next_slot;
        self.next_slot += 1;
        let call = (self.spawn)(entry);
        self.tasks.push(Box::pin(async move {
            // A panicking handler fails its entry, not the worker.
            let outcome = std::panic::AssertUnwindSafe(call)
                .catch_unwind()
                .await
                .unwrap_or_else(|payload| {
                    Err(format!("handler panicked: {}", panic_text(&*payload)))
                });
            (slot, outcome)
        }));
        self.running.insert(slot, running);
    }

    fn finished(&mut self, slot: u64, outcome: Outcome) {
        let Some(entry) = self.running.remove(&slot) else {
            return;
        };
        match outcome {
            Ok(()) => {
                self.report.handled += 1;
                self.oldest_ack.get_or_insert_with(Instant::now);
                self.acks.push(entry.id);
            }
            Err(error) => self.failed.push((entry.id, entry.deliveries, error)),
        }
    }

    /// Starts acknowledging everything that succeeded so far.
    fn start_ack(&mut self) -> AckFuture {
        self.oldest_ack = None;
        let ids = std::mem::take(&mut self.acks);
        let group = self.worker.group.clone();
        Box::pin(async move {
            let count = ids.len();
            (count, group.ack(&ids).await)
        })
    }

    fn acked(&mut self, count: usize, result: Result<u64>) {
        if let Err(e) = result {
            // They stay pending and are delivered again: at least once.
            self.report.ack_failures += count as u64;
            tracing::warn!(target: TRACE_TARGET, stream = self.worker.group.stream().key(), count, code = e.code(), "worker could not acknowledge entries; they will be delivered again: {e}");
        }
    }

    async fn flush_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let (count, result) = self.start_ack().await;
        self.acked(count, result);
    }

    /// Settles failures and releases: dead-letters entries out of
    /// deliveries, schedules retries for the others (their idle time set so
    /// they become claimable when the backoff ends), gives back releases.
    fn start_settle(&mut self) -> ChoreFuture<M> {
        let w = self.worker;
        let mut idle_updates: Vec<(String, Duration)> = Vec::new();
        let mut dead: Vec<(String, String)> = Vec::new();
        for (id, deliveries, error) in std::mem::take(&mut self.failed) {
            if deliveries >= w.max_deliveries {
                let reason = format!(
                    "failed on delivery {deliveries} of {}: {error}",
                    w.max_deliveries
                );
                dead.push((id, reason));
            } else {
                self.report.retried += 1;
                let delay = w.backoff(deliveries);
                tracing::debug!(target: TRACE_TARGET, stream = w.group.stream().key(), id = %id, deliveries, retry_in_ms = delay.as_millis() as u64, "handler failed; entry left pending for a retry: {error}");
                idle_updates.push((id, w.claim_min_idle.saturating_sub(delay)));
            }
        }
        for id in std::mem::take(&mut self.release) {
            self.report.released += 1;
            idle_updates.push((id, RELEASE_IDLE));
        }
        let group = w.group.clone();
        Box::pin(async move {
            if let Err(e) = group.set_idle(&idle_updates).await {
                // Still pending: they come back after `claim_min_idle` instead.
                tracing::warn!(target: TRACE_TARGET, stream = group.stream().key(), count = idle_updates.len(), code = e.code(), "worker could not schedule retries: {e}");
            }
            let mut dead_lettered = 0;
            for (id, reason) in dead {
                if dead_letter(&group, &id, &reason).await {
                    dead_lettered += 1;
                }
            }
            Chore::Settled { dead_lettered }
        })
    }

    /// Claims idle entries into `room` free slots, from `cursor` on.
    fn start_claim(&self, mut cursor: String, mut room: usize) -> ChoreFuture<M> {
        let w = self.worker;
        let (group, min_idle, max_deliveries) =
            (w.group.clone(), w.claim_min_idle, w.max_deliveries);
        Box::pin(async move {
            let mut entries = Vec::new();
            let (mut reclaimed, mut skipped, mut dead_lettered) = (0, 0, 0);
            for _ in 0..CLAIM_PAGES_PER_TICK {
                if room == 0 {
                    break;
                }
                match group.claim_page(&cursor, min_idle, room).await {
                    Ok((batch, next)) => {
                        skipped += batch.failures.len() as u64;
                        for entry in batch.entries {
                            reclaimed += 1;
                            if entry.deliveries > max_deliveries {
                                let reason = format!(
                                    "delivered {} times without an acknowledgement (limit {max_deliveries}): its consumers crashed or timed out",
                                    entry.deliveries
                                );
                                if dead_letter(&group, &entry.id, &reason).await {
                                    dead_lettered += 1;
                                }
                            } else {
                                room = room.saturating_sub(1);
                                entries.push(entry);
                            }
                        }
                        let wrapped = next == "0-0";
                        cursor = next;
                        if wrapped {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(target: TRACE_TARGET, stream = group.stream().key(), code = e.code(), "worker could not claim idle entries: {e}");
                        cursor = "0-0".to_string();
                        break;
                    }
                }
            }
            Chore::Claimed {
                entries,
                next_cursor: cursor,
                reclaimed,
                skipped,
                dead_lettered,
            }
        })
    }

    /// Resets the idle time of entries whose handlers have run for a third
    /// of `claim_min_idle`, so other workers do not reclaim live work.
    fn start_refresh(&mut self) -> Option<ChoreFuture<M>> {
        let w = self.worker;
        let due = w.claim_min_idle / 3;
        let now = Instant::now();
        let mut ids = Vec::new();
        for running in self.running.values_mut() {
            if now.duration_since(running.refreshed) >= due {
                running.refreshed = now;
                ids.push((running.id.clone(), Duration::ZERO));
            }
        }
        if ids.is_empty() {
            return None;
        }
        let group = w.group.clone();
        Some(Box::pin(async move {
            if let Err(e) = group.set_idle(&ids).await {
                tracing::warn!(target: TRACE_TARGET, stream = group.stream().key(), code = e.code(), "could not refresh in-flight entries: {e}");
            }
            Chore::Refreshed
        }))
    }

    /// Takes in what a chore did. Claimed entries run, or are released
    /// when the worker is stopping.
    fn chore_done(&mut self, done: Chore<M>, claim_cursor: &mut String, stopping: bool) {
        match done {
            Chore::Claimed {
                entries,
                next_cursor,
                reclaimed,
                skipped,
                dead_lettered,
            } => {
                *claim_cursor = next_cursor;
                self.report.reclaimed += reclaimed;
                self.report.skipped += skipped;
                self.report.dead_lettered += dead_lettered;
                for entry in entries {
                    if stopping {
                        self.release.push(entry.id);
                    } else {
                        self.spawn_entry(entry);
                    }
                }
            }
            Chore::Settled { dead_lettered } => self.report.dead_lettered += dead_lettered,
            Chore::Refreshed => {}
        }
    }
}

/// Moves one entry to the dead-letter stream; whether it was moved.
async fn dead_letter<M: Record>(group: &ConsumerGroup<M>, id: &str, reason: &str) -> bool {
    match group.dead_letter(id, reason).await {
        Ok(Some(dead_id)) => {
            tracing::warn!(target: TRACE_TARGET, stream = group.stream().key(), id, dead_letter_id = %dead_id, "entry moved to the dead-letter stream: {reason}");
            true
        }
        // Another consumer took it over meanwhile: its problem now.
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(target: TRACE_TARGET, stream = group.stream().key(), id, code = e.code(), "could not dead-letter entry; it stays pending: {e}");
            false
        }
    }
}

/// Interrupts the blocked read of connection `client_id` (it returns as if
/// its block ran out).
async fn unblock(client: &Client, stream: &str, client_id: i64) {
    let result = client
        .run(
            Context::new("stream.worker_unblock", stream.to_string()),
            |mut conn| async move {
                let _: Value = redis::cmd("CLIENT")
                    .arg("UNBLOCK")
                    .arg(client_id)
                    .query_async(&mut conn)
                    .await?;
                Ok(())
            },
        )
        .await;
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
        let reader = match reader {
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

/// Awaits the future in `slot`, or never completes when there is none (a
/// disabled `select!` branch that needs no precondition).
async fn poll_slot<F: Future + Unpin>(slot: &mut Option<F>) -> F::Output {
    match slot {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
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

//! One [`Worker::run`]: its state, the loop that schedules reads, acks and
//! chores around the handler calls, the chores it starts (see `chores`),
//! and the wind-down.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::chores::{Chore, ChoreFuture, Chores, GivenUp};
use super::reader::{Reader, Reads};
use super::{DeadLettering, Worker, WorkerReport, after, panic_text};
use crate::TRACE_TARGET;
use crate::client::Client;
use crate::codec::Record;
use crate::error::{Error, Result};
use crate::stream::{Entry, RELEASE_IDLE, ReadBatch};

/// A handler's result, or its error text.
type Outcome = std::result::Result<(), String>;

/// One handler call, its error rendered as text.
pub(super) type HandlerFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// A handler call tagged with its slot in [`Run::running`], panics caught.
type Slot = Pin<Box<dyn Future<Output = (u64, Outcome)> + Send>>;

/// Starts the handler on one entry.
pub(super) type SpawnFn<M> = Box<dyn Fn(Entry<M>) -> HandlerFuture + Send + Sync>;

/// An XACK in flight: how many ids, and the outcome.
type AckFuture = Pin<Box<dyn Future<Output = (usize, Result<u64>)> + Send>>;

/// How long succeeded entries may wait for a batched ack.
const ACK_LINGER: Duration = Duration::from_millis(5);

/// An entry whose handler is running.
pub(super) struct Running<M> {
    pub(super) id: String,
    deliveries: u64,
    /// A copy of the message for the dead-letter hook (only with a hook).
    kept: Option<M>,
    /// When its idle time was last reset (or it started).
    pub(super) refreshed: Instant,
}

/// A failed handler call, not yet deferred or dead-lettered.
pub(super) struct Failed<M> {
    pub(super) id: String,
    pub(super) deliveries: u64,
    pub(super) error: String,
    /// The message, kept for the dead-letter hook (only with a hook).
    pub(super) kept: Option<M>,
}

/// The mutable state of one [`Worker::run`].
pub(super) struct Run<'w, M> {
    pub(super) worker: &'w Worker<M>,
    client: Client,
    /// The handler calls in flight, polled by the worker's own task.
    tasks: FuturesUnordered<Slot>,
    next_slot: u64,
    pub(super) running: HashMap<u64, Running<M>>,
    /// Succeeded, not yet acknowledged.
    acks: Vec<String>,
    oldest_ack: Option<Instant>,
    /// The XACK in flight: it runs on the shared connection while the next
    /// XREADGROUP runs on the dedicated one, so they overlap.
    ack: Option<AckFuture>,
    /// Failed, not yet deferred or dead-lettered.
    pub(super) failed: Vec<Failed<M>>,
    /// To give back unprocessed.
    pub(super) release: Vec<String>,
    reads: Reads<M>,
    pub(super) chores: Chores<M>,
    /// An error no retry can fix: the run winds down and returns it.
    fatal: Option<Error>,
    pub(super) report: WorkerReport,
    spawn: SpawnFn<M>,
}

impl<'w, M: Record> Run<'w, M> {
    pub(super) fn new(worker: &'w Worker<M>, spawn: SpawnFn<M>) -> Self {
        Self {
            worker,
            client: worker.group.client().clone(),
            tasks: FuturesUnordered::new(),
            next_slot: 0,
            running: HashMap::new(),
            acks: Vec::new(),
            oldest_ack: None,
            ack: None,
            failed: Vec::new(),
            release: Vec::new(),
            reads: Reads::new(),
            chores: Chores::new(worker.claim_min_idle),
            fatal: None,
            report: WorkerReport::default(),
            spawn,
        }
    }

    /// Runs until `shutdown` (or the client's shutdown, or a fatal error),
    /// then winds down.
    pub(super) async fn main_loop(&mut self, shutdown: &CancellationToken) -> Result<WorkerReport> {
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
            if shutdown.is_cancelled() || client_closed.is_cancelled() || self.fatal.is_some() {
                break;
            }
            let free = self.free_slots();
            if !self.schedule(free) {
                continue;
            }
            // Resetting the timer is not free: only when the wake moved.
            let wake = self.next_wake(free);
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }

            tokio::select! {
                biased;
                () = &mut cancelled => {}
                () = &mut client_cancelled => {}
                (count, result) = poll_slot(&mut self.ack) => {
                    self.ack = None;
                    self.acked(count, result);
                }
                (back, result) = poll_slot(&mut self.reads.in_flight) => {
                    self.read_done(back, result);
                }
                done = poll_slot(&mut self.chores.in_flight) => {
                    self.chores.in_flight = None;
                    self.chores.claim_reserved = 0;
                    self.chore_done(done, false);
                }
                // After the I/O branches, so a stream of quick handler
                // completions cannot delay sending the next read or ack.
                Some((slot, outcome)) = self.tasks.next(), if !self.tasks.is_empty() => {
                    self.finished(slot, outcome);
                }
                () = &mut timer => {}
            }
        }
        self.wind_down(client_closed.is_cancelled()).await
    }

    /// Reads and acks go in batches of this many entries.
    fn batch_threshold(&self) -> usize {
        self.worker.batch_size.min(self.worker.concurrency)
    }

    /// Handler slots neither running nor reserved for a read or claim.
    fn free_slots(&self) -> usize {
        let taken = self.tasks.len() + self.reads.reserved + self.chores.claim_reserved;
        self.worker.concurrency.saturating_sub(taken)
    }

    /// Starts what is due, given `free` slots: an ack, a chore, a read.
    /// Returns `false` when a claim just reserved the free slots, so they
    /// must be worked out again before anything else.
    fn schedule(&mut self, free: usize) -> bool {
        self.maybe_start_ack(free);
        let now = Instant::now();
        self.reads.end_backoff(now);
        if self.chores.in_flight.is_none() && !self.start_chore(now, free) {
            return false;
        }
        if self.reads.idle() && free >= self.batch_threshold() {
            let w = self.worker;
            self.reads.start(&w.group, free.min(w.batch_size), w.block);
        }
        true
    }

    /// Acks in batches: when a batch is complete, when nothing runs, when a
    /// batch of slots is free, or when the oldest waiting ack has lingered
    /// long enough.
    fn maybe_start_ack(&mut self, free: usize) {
        let threshold = self.batch_threshold();
        let linger_over = self.oldest_ack.is_some_and(|t| t.elapsed() >= ACK_LINGER);
        if self.ack.is_none()
            && !self.acks.is_empty()
            && (self.acks.len() >= threshold
                || self.tasks.is_empty()
                || linger_over
                || free >= threshold)
        {
            self.ack = Some(self.start_ack());
        }
    }

    /// When the loop must wake up even if nothing completes: the next timer
    /// that matters now (with a stable default, so the timer is rarely reset).
    fn next_wake(&self, free: usize) -> Instant {
        let chores = &self.chores;
        let mut wake = chores.next_claim.max(chores.next_refresh);
        if chores.in_flight.is_none() {
            if free > 0 {
                wake = wake.min(chores.next_claim);
            }
            if !self.running.is_empty() {
                wake = wake.min(chores.next_refresh);
            }
        }
        if let Some(t) = self.reads.retry_at {
            wake = wake.min(t);
        }
        if let (Some(t), None) = (self.oldest_ack, &self.ack) {
            wake = wake.min(t + ACK_LINGER);
        }
        wake
    }

    /// Takes in a finished read: runs its entries, or backs off after a
    /// transport error, or records an error no retry can fix.
    fn read_done(&mut self, back: Option<Reader>, result: Result<ReadBatch<M>>) {
        self.reads.finished(back);
        match result {
            Ok(batch) => {
                self.reads.errors = 0;
                self.start(batch);
            }
            Err(e) if e.is_transient() => {
                self.reads.errors += 1;
                self.reads.retry_at = Some(after(self.read_backoff(self.reads.errors)));
            }
            Err(e) => self.fatal = Some(e),
        }
    }

    fn read_backoff(&self, errors: u32) -> Duration {
        let retry = self.client.config().retry;
        retry
            .min_delay
            .saturating_mul(1u32 << errors.saturating_sub(1).min(16))
            .min(retry.max_delay)
    }

    /// Stops reading, finishes or releases in-flight work, and returns the
    /// report (or the fatal error).
    async fn wind_down(&mut self, client_closed: bool) -> Result<WorkerReport> {
        let w = self.worker;
        if let Some(Ok(batch)) = self.reads.stop(&w.group, client_closed).await {
            self.report.skipped += batch.failures.len() as u64;
            self.release
                .extend(batch.entries.into_iter().map(|entry| entry.id));
        }
        if let Some(in_flight) = self.chores.in_flight.take() {
            let done = in_flight.await;
            self.chore_done(done, true);
        }
        if let Some(in_flight) = self.ack.take() {
            let (count, result) = in_flight.await;
            self.acked(count, result);
        }
        self.drain_handlers().await;
        self.flush_acks().await;
        if !self.failed.is_empty() || !self.release.is_empty() {
            let done = self.start_settle().await;
            self.chore_done(done, true);
        }
        match self.fatal.take() {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut self.report)),
        }
    }

    /// Lets the running handlers finish within the shutdown grace, acking
    /// as they do; then cancels the rest and releases their entries.
    async fn drain_handlers(&mut self) {
        let deadline = after(self.worker.shutdown_grace);
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.next()).await {
                Ok(Some((slot, outcome))) => {
                    self.finished(slot, outcome);
                    if self.acks.len() >= self.batch_threshold() {
                        self.flush_acks().await;
                    }
                }
                Ok(None) => break,
                Err(_) => self.cancel_handlers(),
            }
        }
    }

    fn cancel_handlers(&mut self) {
        tracing::warn!(target: TRACE_TARGET, stream = self.worker.group.stream().key(), in_flight = self.tasks.len(), "shutdown grace is over: cancelling handlers and releasing their entries");
        // Dropping the calls cancels them; their entries go back.
        self.tasks = FuturesUnordered::new();
        for (_, running) in self.running.drain() {
            self.release.push(running.id);
        }
    }

    /// Hands a batch to the handler, one call per entry.
    fn start(&mut self, batch: ReadBatch<M>) {
        self.report.skipped += batch.failures.len() as u64;
        for entry in batch.entries {
            self.spawn_entry(entry);
        }
    }

    pub(super) fn spawn_entry(&mut self, entry: Entry<M>) {
        let kept = (self.worker.dead_letter_hook.as_ref()).map(|hook| hook.keep(&entry.message));
        let running = Running {
            id: entry.id.clone(),
            deliveries: entry.deliveries,
            kept,
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
            Err(error) => self.failed.push(Failed {
                id: entry.id,
                deliveries: entry.deliveries,
                error,
                kept: entry.kept,
            }),
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
}

/// Awaits the future in `slot`, or never completes when there is none (a
/// disabled `select!` branch that needs no precondition).
async fn poll_slot<F: Future + Unpin>(slot: &mut Option<F>) -> F::Output {
    match slot {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

/// Claim pages walked per claim tick at most.
const CLAIM_PAGES_PER_TICK: usize = 8;

impl<M: Record> Run<'_, M> {
    /// Starts the chore that is due, if any (`free` handler slots are free
    /// now). Returns `false` when it was a claim, which reserves the free
    /// slots: what is free must then be worked out again.
    pub(super) fn start_chore(&mut self, now: Instant, free: usize) -> bool {
        let w = self.worker;
        if !self.failed.is_empty() || !self.release.is_empty() {
            self.chores.in_flight = Some(self.start_settle());
        } else if now >= self.chores.next_claim && free > 0 {
            self.chores.claim_reserved = free;
            let cursor = self.chores.claim_cursor.clone();
            self.chores.in_flight = Some(self.start_claim(cursor, free));
            self.chores.next_claim = after(w.claim_interval);
            return false;
        } else if now >= self.chores.next_refresh {
            self.chores.in_flight = self.start_refresh();
            self.chores.next_refresh = after(self.chores.refresh_every);
        }
        true
    }

    /// Settles failures and releases: dead-letters entries out of
    /// deliveries, schedules retries for the others (their idle time set so
    /// they become claimable when the backoff ends), gives back releases.
    pub(super) fn start_settle(&mut self) -> ChoreFuture<M> {
        let w = self.worker;
        let mut idle_updates: Vec<(String, Duration)> = Vec::new();
        let mut dead: Vec<(String, String, Option<DeadLettering<M>>)> = Vec::new();
        for failed in std::mem::take(&mut self.failed) {
            let Failed {
                id,
                deliveries,
                error,
                kept,
            } = failed;
            if deliveries >= w.max_deliveries {
                let reason = format!(
                    "failed on delivery {deliveries} of {}: {error}",
                    w.max_deliveries
                );
                let hooked = kept.map(|message| DeadLettering {
                    id: id.clone(),
                    message,
                    deliveries,
                    error: reason.clone(),
                });
                dead.push((id, reason, hooked));
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
        let (group, hook) = (w.group.clone(), w.dead_letter_hook.clone());
        Box::pin(async move {
            if let Err(e) = group.set_idle(&idle_updates).await {
                // Still pending: they come back after `claim_min_idle` instead.
                tracing::warn!(target: TRACE_TARGET, stream = group.stream().key(), count = idle_updates.len(), code = e.code(), "worker could not schedule retries: {e}");
            }
            let mut given_up = GivenUp::default();
            for (id, reason, hooked) in dead {
                let hooked = hook.as_ref().zip(hooked);
                given_up.give_up(&group, hooked, &id, &reason).await;
            }
            Chore::Settled { given_up }
        })
    }

    /// Claims idle entries into `room` free slots, from `cursor` on.
    fn start_claim(&self, mut cursor: String, mut room: usize) -> ChoreFuture<M> {
        let w = self.worker;
        let (group, min_idle, max_deliveries) =
            (w.group.clone(), w.claim_min_idle, w.max_deliveries);
        let hook = w.dead_letter_hook.clone();
        Box::pin(async move {
            let mut entries = Vec::new();
            let (mut reclaimed, mut skipped) = (0, 0);
            let mut given_up = GivenUp::default();
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
                                    "delivered {} times without an acknowledgement (limit {max_deliveries}): its consumers crashed or timed out{}",
                                    entry.deliveries,
                                    if hook.is_some() {
                                        ", or the dead-letter hook failed"
                                    } else {
                                        ""
                                    }
                                );
                                let hooked = hook.as_ref().map(|hook| {
                                    let dead = DeadLettering {
                                        id: entry.id.clone(),
                                        message: entry.message,
                                        deliveries: entry.deliveries,
                                        error: reason.clone(),
                                    };
                                    (hook, dead)
                                });
                                given_up.give_up(&group, hooked, &entry.id, &reason).await;
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
                given_up,
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
    pub(super) fn chore_done(&mut self, done: Chore<M>, stopping: bool) {
        match done {
            Chore::Claimed {
                entries,
                next_cursor,
                reclaimed,
                skipped,
                given_up,
            } => {
                self.chores.claim_cursor = next_cursor;
                self.report.reclaimed += reclaimed;
                self.report.skipped += skipped;
                self.took_in(&given_up);
                for entry in entries {
                    if stopping {
                        self.release.push(entry.id);
                    } else {
                        self.spawn_entry(entry);
                    }
                }
            }
            Chore::Settled { given_up } => self.took_in(&given_up),
            Chore::Refreshed => {}
        }
    }

    fn took_in(&mut self, given_up: &GivenUp) {
        self.report.dead_lettered += given_up.dead_lettered;
        self.report.dead_letter_hook_failures += given_up.hook_failures;
    }
}

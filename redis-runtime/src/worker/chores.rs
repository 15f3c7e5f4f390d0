//! Redis work besides reading and acknowledging: settling failures
//! (retries and dead letters), claiming idle entries and keeping in-flight
//! entries fresh. Each runs as a future the loop polls, so the loop never
//! waits on Redis itself.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::FutureExt;
use tokio::time::Instant;

use super::run::{Failed, Run};
use super::{DeadLetterHook, DeadLettering, after};
use crate::TRACE_TARGET;
use crate::codec::Record;
use crate::stream::{ConsumerGroup, Entry, RELEASE_IDLE};

/// Claim pages walked per claim tick at most.
const CLAIM_PAGES_PER_TICK: usize = 8;

/// Redis work besides reading and acking, handed to a future so the loop
/// never waits on Redis itself (handlers keep being polled meanwhile, even
/// while Redis is slow or down). One chore runs at a time.
pub(super) type ChoreFuture<M> = Pin<Box<dyn Future<Output = Chore<M>> + Send>>;

/// What a chore did, for the loop to take in.
pub(super) enum Chore<M> {
    /// Entries claimed from idle consumers, to run.
    Claimed {
        entries: Vec<Entry<M>>,
        next_cursor: String,
        reclaimed: u64,
        skipped: u64,
        given_up: GivenUp,
    },
    /// Failures deferred or dead-lettered; releases done.
    Settled { given_up: GivenUp },
    /// Long-running entries kept fresh.
    Refreshed,
}

/// What became of the entries a chore gave up on.
#[derive(Default)]
pub(super) struct GivenUp {
    dead_lettered: u64,
    hook_failures: u64,
}

impl GivenUp {
    /// Runs the dead-letter hook (if any), then dead-letters the entry.
    async fn give_up<M: Record>(
        &mut self,
        group: &ConsumerGroup<M>,
        hook: Option<(&DeadLetterHook<M>, DeadLettering<M>)>,
        id: &str,
        reason: &str,
    ) {
        if let Some((hook, dead)) = hook {
            let outcome = std::panic::AssertUnwindSafe(hook.call(dead))
                .catch_unwind()
                .await
                .unwrap_or_else(|payload| {
                    Err(format!(
                        "dead-letter hook panicked: {}",
                        super::run::panic_text(&*payload)
                    ))
                });
            if let Err(e) = outcome {
                // Not dead-lettered: it stays pending and a claim brings it
                // back to the hook (see `Worker::on_dead_letter`).
                self.hook_failures += 1;
                tracing::warn!(target: TRACE_TARGET, stream = group.stream().key(), id, "dead-letter hook failed; the entry stays pending and the hook will run again: {e}");
                return;
            }
        }
        if dead_letter(group, id, reason).await {
            self.dead_lettered += 1;
        }
    }
}

/// The chore side of a run: the chore in flight and when the periodic ones
/// are due.
pub(super) struct Chores<M> {
    pub(super) in_flight: Option<ChoreFuture<M>>,
    /// Handler slots kept free for what the claim in flight returns.
    pub(super) claim_reserved: usize,
    /// Where the next claim continues in the pending list.
    claim_cursor: String,
    pub(super) next_claim: Instant,
    pub(super) next_refresh: Instant,
    /// How often in-flight entries are kept fresh: a third of `claim_min_idle`.
    refresh_every: Duration,
}

impl<M> Chores<M> {
    /// A claim is due at once; the first refresh a third of `claim_min_idle` on.
    pub(super) fn new(claim_min_idle: Duration) -> Self {
        let refresh_every = claim_min_idle / 3;
        Self {
            in_flight: None,
            claim_reserved: 0,
            claim_cursor: "0-0".to_string(),
            next_claim: Instant::now(),
            next_refresh: after(refresh_every),
            refresh_every,
        }
    }
}

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

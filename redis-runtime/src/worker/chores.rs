//! Redis work besides reading and acknowledging (settling failures into
//! retries and dead letters, claiming idle entries, keeping in-flight
//! entries fresh): what a chore yields, when the next is due, and giving
//! up on an entry (the dead-letter hook, then the dead-letter stream).
//! `Run` (`run.rs`) starts them, each as a future its loop polls, so the
//! loop never waits on Redis itself.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::FutureExt;
use tokio::time::Instant;

use super::{DeadLetterHook, DeadLettering, after};
use crate::TRACE_TARGET;
use crate::codec::Record;
use crate::stream::{ConsumerGroup, Entry};

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
    pub(super) dead_lettered: u64,
    pub(super) hook_failures: u64,
}

impl GivenUp {
    /// Runs the dead-letter hook (if any), then dead-letters the entry.
    pub(super) async fn give_up<M: Record>(
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
                        super::panic_text(&*payload)
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
    pub(super) claim_cursor: String,
    pub(super) next_claim: Instant,
    pub(super) next_refresh: Instant,
    /// How often in-flight entries are kept fresh: a third of `claim_min_idle`.
    pub(super) refresh_every: Duration,
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

/// Moves one entry to the dead-letter stream; whether it was moved.
pub(super) async fn dead_letter<M: Record>(
    group: &ConsumerGroup<M>,
    id: &str,
    reason: &str,
) -> bool {
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

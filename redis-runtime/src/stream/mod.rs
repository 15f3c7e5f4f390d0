//! Redis Streams, typed: producers and consumer groups.
//!
//! A [`Stream<M>`] is a stream key whose entries are `M`s, a [`Record`](crate::Record)
//! (`#[derive(RedisRecord)]` for pure messages, `#[derive(RedisEntity)]`
//! for entities whose creation enqueues them). Each entry stores the
//! record's fields with the same codec as a hash, so the same compile-time
//! checks apply and a bad entry becomes a typed error, never a panic.
//!
//! ```no_run
//! use std::time::Duration;
//! use redis_runtime::stream::Stream;
//! use redis_runtime::{Client, RedisRecord};
//!
//! #[derive(RedisRecord, Debug, Clone)]
//! struct Event { id: String, kind: String, created_at: i64 }
//!
//! # async fn demo(client: &Client) -> redis_runtime::Result<()> {
//! let events = Stream::<Event>::new(client, "events:incoming");
//! let stream_id = events
//!     .publish(&Event { id: "e1".into(), kind: "push".into(), created_at: 0 })
//!     .await?;
//!
//! let group = events.group("event-processors"); // consumer: hostname-pid
//! group.ensure().await?; // idempotent; new groups read from the beginning
//! let batch = group.read(10, Some(Duration::from_secs(5))).await?;
//! for entry in &batch.entries {
//!     println!("{} {:?}", entry.id, entry.message);
//! }
//! group.ack(batch.entries.iter().map(|e| &e.id)).await?;
//! # let _ = stream_id; Ok(()) }
//! ```
//!
//! # Delivery guarantees
//!
//! At least once: an entry stays in the group's pending list until it is
//! acknowledged, and entries whose consumer died are taken over with
//! [`ConsumerGroup::claim_idle`]. The [`worker`](crate::worker) module runs
//! the whole loop (bounded concurrency, retries with backoff, dead letters,
//! reclaiming, graceful shutdown).
//!
//! # Entries that do not decode
//!
//! An entry that cannot be decoded into `M` is skipped, reported in
//! [`ReadBatch::failures`] (and logged as a warning), and the rest of the
//! batch is returned. What happens to it is the group's [`DecodePolicy`]:
//! by default it is **moved to the dead-letter stream** (`<stream>:dead`)
//! together with the decode error, and acknowledged, in one atomic step.
//! Retrying would not help (the same bytes fail the same way every time),
//! dropping it would lose data, and leaving it pending would have it
//! redelivered forever; parked, it can be inspected with
//! [`ConsumerGroup::dead_letters`] and replayed once the code is fixed.
//!
//! # Connections
//!
//! Blocking reads (`BLOCK`) run on a dedicated connection without response
//! timeout, so a long block never trips the shared connection's timeout or
//! stalls other commands; the wait is bounded instead by the block time
//! plus the configured operation timeout. Everything else goes through
//! [`Client::run`](crate::Client::run) on the shared connection.
//!
//! # Where the code is
//!
//! `producer` holds [`Stream`] (publishing, ranges), `group` holds
//! [`ConsumerGroup`] (creating, reading, acknowledging, dead letters),
//! `claim` the pending list and taking over idle entries, `parse` the reply
//! decoding they share; the blocking reads run on a dedicated connection
//! through `crate::blocking`.

mod claim;
mod group;
mod parse;
mod producer;

use std::time::Duration;

use crate::error::Error;

pub use claim::{ClaimStrategy, PendingEntry};
pub use group::{ConsumerGroup, DeadLetter, DecodePolicy, GroupStart};
pub use producer::{BatchReport, PublishFailure, Published, Stream};

/// The idle time [`ConsumerGroup::release`] gives an entry: longer than any
/// sensible `min_idle`, so whoever claims next takes it at once.
pub const RELEASE_IDLE: Duration = Duration::from_secs(24 * 60 * 60);

/// The consumer name used unless one is given: `hostname-pid` (the host
/// name, a dash, the process id), unique per process across replicas.
///
/// ```
/// let name = redis_runtime::stream::default_consumer_name();
/// assert!(name.ends_with(&format!("-{}", std::process::id())));
/// ```
pub fn default_consumer_name() -> String {
    crate::identity::process_name()
}

/// One decoded entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<M> {
    /// The stream entry id, e.g. `1700000000000-0`; what [`ConsumerGroup::ack`] takes.
    pub id: String,
    /// The decoded message.
    pub message: M,
    /// The attempt number: how many times the group has delivered this
    /// entry, this delivery included (Redis's delivery counter).
    ///
    /// * **1** on its first delivery ([`ConsumerGroup::read`], `XREADGROUP >`).
    /// * It grows by one each time the entry is delivered again by a claim
    ///   ([`ConsumerGroup::claim_idle`], `XCLAIM`/`XAUTOCLAIM`): after its
    ///   consumer crashed, or, in a [`Worker`](crate::worker::Worker), for
    ///   each retry after a failure (retries are claims). So in a handler,
    ///   `deliveries == n` means this is attempt `n`, and with
    ///   [`Worker::max_deliveries(n)`](crate::worker::Worker::max_deliveries)
    ///   it is the last one.
    /// * It does not grow when a worker keeps an entry fresh, schedules its
    ///   retry or releases it ([`ConsumerGroup::release`]): those set the
    ///   idle time only (`XCLAIM … JUSTID`).
    /// * **0** for [`Stream::range`], which reads outside any group.
    pub deliveries: u64,
}

/// What was done with an entry that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureAction {
    /// Moved to the dead-letter stream (with the error) and acknowledged.
    DeadLettered {
        /// The id of the new dead-letter entry.
        dead_letter_id: String,
    },
    /// Acknowledged (dropped from the pending list). Entries that were
    /// deleted or trimmed from the stream before being processed end here.
    Acknowledged,
    /// Left in the pending list: the policy says so, or acting on it failed
    /// (it will come back through [`ConsumerGroup::claim_idle`]).
    LeftPending,
}

/// An entry that was skipped because it could not be decoded.
#[derive(Debug)]
pub struct DecodeFailure {
    /// The entry id; `None` only if the server's reply was too malformed to
    /// contain one.
    pub id: Option<String>,
    /// Why it was skipped: `DECODE` (naming the stream, entry and field), or
    /// `NOT_FOUND` for an entry deleted from the stream while pending.
    pub error: Error,
    /// What was done with it.
    pub action: FailureAction,
}

/// The outcome of one read or claim: decoded entries, and the entries that
/// were skipped.
#[derive(Debug)]
pub struct ReadBatch<M> {
    /// Decoded entries, in stream order.
    pub entries: Vec<Entry<M>>,
    /// Entries skipped because they did not decode, with what was done to them.
    pub failures: Vec<DecodeFailure>,
}

impl<M> Default for ReadBatch<M> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            failures: Vec::new(),
        }
    }
}

impl<M> ReadBatch<M> {
    /// Whether nothing at all was read.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.failures.is_empty()
    }

    /// The ids of the decoded entries, e.g. to [`ConsumerGroup::ack`] them.
    pub fn ids(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.id.as_str()).collect()
    }
}

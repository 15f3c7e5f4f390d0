//! Redis Streams, typed: producers and consumer groups.
//!
//! A [`Stream<M>`] is a stream key whose entries are `M`s, a [`Record`]
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
//! group.ensure().await?; // idempotent; creates the stream if needed
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
//! timeout (invariant 8), bounded instead by the block time plus the
//! configured operation timeout. Everything else goes through
//! [`Client::run`] on the shared connection.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;

use crate::client::{Client, TRACE_TARGET};
use crate::codec::{FieldSink, Record, reply_pairs, value_kind};
use crate::entity::Entity;
use crate::error::{Context, Error, Result};

static CLAIM_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("scripts/stream_claim.lua")));
static SET_IDLE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("scripts/stream_set_idle.lua")));
static DEAD_LETTER_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("scripts/stream_dead_letter.lua")));

/// The idle time [`ConsumerGroup::release`] gives an entry: longer than any
/// sensible `min_idle`, so whoever claims next takes it at once.
pub const RELEASE_IDLE: Duration = Duration::from_secs(24 * 60 * 60);

/// How many `XAUTOCLAIM` pages [`ConsumerGroup::claim_idle`] walks at most
/// in one call (each page scans up to ten times `count` pending entries).
const MAX_CLAIM_PAGES: usize = 64;

/// The consumer name used unless one is given: `hostname-pid`, unique per
/// process across replicas (the seed's `os.hostname() + "-" + process.pid`).
///
/// ```
/// let name = redis_runtime::stream::default_consumer_name();
/// assert!(name.ends_with(&format!("-{}", std::process::id())));
/// ```
pub fn default_consumer_name() -> String {
    let host = hostname::get()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string());
    format!("{host}-{}", std::process::id())
}

/// A stream of `M` entries at one key; see the [module docs](self).
///
/// Cheap to clone: a client handle and the key.
pub struct Stream<M> {
    client: Client,
    key: Arc<str>,
    maxlen: Option<u64>,
    _message: PhantomData<fn() -> M>,
}

impl<M> Clone for Stream<M> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            key: self.key.clone(),
            maxlen: self.maxlen,
            _message: PhantomData,
        }
    }
}

impl<M> std::fmt::Debug for Stream<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("key", &self.key)
            .field("maxlen", &self.maxlen)
            .finish()
    }
}

/// One published item of [`Stream::publish_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Position of the item in the batch.
    pub index: usize,
    /// The caller's id for the item (e.g. the event id).
    pub id: String,
    /// The stream entry id Redis assigned.
    pub stream_id: String,
}

/// One item of [`Stream::publish_batch`] that was not published.
#[derive(Debug)]
pub struct PublishFailure {
    /// Position of the item in the batch.
    pub index: usize,
    /// The caller's id for the item.
    pub id: String,
    /// Why: `ENCODE` when it could not be encoded (nothing was sent for
    /// it), `STORAGE_COMMAND` when the server refused it.
    pub error: Error,
}

/// The per-item outcome of [`Stream::publish_batch`], each list in batch order.
#[derive(Debug, Default)]
pub struct BatchReport {
    /// Items now on the stream.
    pub succeeded: Vec<Published>,
    /// Items that are not.
    pub failed: Vec<PublishFailure>,
}

/// One decoded entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<M> {
    /// The stream entry id, e.g. `1700000000000-0`; what [`ConsumerGroup::ack`] takes.
    pub id: String,
    /// The decoded message.
    pub message: M,
    /// How many times the group has delivered this entry, this delivery
    /// included: 1 for a fresh read, more once it was reclaimed; 0 for
    /// [`Stream::range`], which reads outside any group.
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

/// Writes a record's present fields straight into an XADD command.
struct XaddSink {
    cmd: redis::Cmd,
    fields: usize,
}

impl FieldSink for XaddSink {
    fn put(&mut self, name: &'static str, value: &[u8]) {
        self.cmd.arg(name).arg(value);
        self.fields += 1;
    }
    fn absent(&mut self, _name: &'static str) {
        // A stream entry is written once: an absent field is simply not there.
    }
}

/// `XADD key [MAXLEN ~ n] * field value ...` for one message.
fn xadd_cmd<M: Record>(key: &str, maxlen: Option<u64>, message: &M) -> Result<redis::Cmd> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key);
    if let Some(maxlen) = maxlen {
        cmd.arg("MAXLEN").arg("~").arg(maxlen);
    }
    cmd.arg("*");
    let mut sink = XaddSink { cmd, fields: 0 };
    message.write_fields(&mut sink)?;
    if sink.fields == 0 {
        return Err(Error::Encode {
            context: Context::default(),
            field: "*".to_string(),
            reason: "a stream entry needs at least one field, and every field is None".into(),
        });
    }
    Ok(sink.cmd)
}

impl<M: Record> Stream<M> {
    /// The stream at `key`, holding `M` entries. Nothing is sent to Redis.
    pub fn new(client: &Client, key: impl Into<String>) -> Self {
        Self {
            client: client.clone(),
            key: Arc::from(key.into()),
            maxlen: None,
            _message: PhantomData,
        }
    }

    /// The stream an entity is enqueued on when created
    /// (`#[redis(stream = "...", stream_maxlen = N)]`), with its trimming.
    ///
    /// Fails with `STORAGE_CONFIG` when the entity declares no stream.
    pub fn of_entity(client: &Client) -> Result<Self>
    where
        M: Entity,
    {
        let descriptor = M::descriptor();
        let stream = descriptor.stream.ok_or_else(|| {
            Error::Config(format!(
                "{} declares no stream: add #[redis(stream = \"...\")]",
                descriptor.name
            ))
        })?;
        let mut this = Self::new(client, stream.key);
        this.maxlen = stream.maxlen.filter(|n| *n > 0);
        Ok(this)
    }

    /// Trims the stream to about `maxlen` entries on every publish
    /// (`XADD MAXLEN ~`: Redis trims whole nodes, so it may keep a few more).
    /// Trimmed entries are gone even if no group has read them yet: size it
    /// well above the backlog you expect.
    pub fn with_maxlen(mut self, maxlen: u64) -> Self {
        self.maxlen = (maxlen > 0).then_some(maxlen);
        self
    }

    /// The stream key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The client this stream uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn context(&self, operation: &'static str) -> Context {
        Context::new(operation, Cow::Owned(self.key.to_string()))
    }

    fn xadd(&self, message: &M) -> Result<redis::Cmd> {
        xadd_cmd(&self.key, self.maxlen, message)
    }

    /// Appends one message; returns its stream entry id.
    ///
    /// Errors: `ENCODE` (nothing sent), or the transport's
    /// `STORAGE_UNAVAILABLE` / `STORAGE_TIMEOUT`, bounded by the operation
    /// timeout.
    pub async fn publish(&self, message: &M) -> Result<String> {
        let ctx = self.context("stream.publish");
        let cmd = self
            .xadd(message)
            .map_err(|e| e.with_context(ctx.clone()))?;
        let key = self.key.clone();
        self.client
            .run(ctx, |mut conn| async move {
                let reply: Value = cmd.query_async(&mut conn).await?;
                entry_id(&key, &reply)
            })
            .await
    }

    /// Appends many messages in one pipeline (one round trip) and reports
    /// per item. Each item comes with the caller's id for it, used only in
    /// the report.
    ///
    /// An item that fails to encode is reported and not sent; the others are
    /// still published. The call itself fails only when the pipeline could
    /// not be run (server unreachable, timeout): then it is unknown which
    /// items were written, and a retry may publish some twice (at least once).
    ///
    /// ```no_run
    /// # use redis_runtime::{stream::Stream, RedisRecord};
    /// # #[derive(RedisRecord)] struct Event { id: String }
    /// # async fn demo(events: Stream<Event>, batch: Vec<Event>) -> redis_runtime::Result<()> {
    /// let report = events
    ///     .publish_batch(batch.iter().map(|e| (e.id.clone(), e)))
    ///     .await?;
    /// for failed in &report.failed {
    ///     eprintln!("event {} not published: {}", failed.id, failed.error);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn publish_batch<'a, I, K>(&self, items: I) -> Result<BatchReport>
    where
        I: IntoIterator<Item = (K, &'a M)>,
        K: Into<String>,
        M: 'a,
    {
        let ctx = self.context("stream.publish_batch");
        let mut report = BatchReport::default();
        let mut pipe = redis::pipe();
        // Server errors come back per command instead of failing the batch.
        pipe.ignore_errors();
        let mut sent: Vec<(usize, String)> = Vec::new();
        for (index, (id, message)) in items.into_iter().enumerate() {
            let id = id.into();
            match self.xadd(message) {
                Ok(cmd) => {
                    pipe.add_command(cmd);
                    sent.push((index, id));
                }
                Err(error) => report.failed.push(PublishFailure {
                    index,
                    id,
                    error: error.with_context(ctx.clone()),
                }),
            }
        }
        if sent.is_empty() {
            return Ok(report);
        }
        let expected = sent.len();
        let replies: Vec<Value> = self
            .client
            .run(ctx.clone(), |mut conn| async move {
                let reply: Value = pipe.query_async(&mut conn).await?;
                match reply {
                    Value::Array(items) if items.len() == expected => Ok(items),
                    other => Err(Error::Command {
                        context: Context::default(),
                        message: format!(
                            "expected {expected} pipeline replies, got {}",
                            value_kind(&other)
                        ),
                    }),
                }
            })
            .await?;
        for ((index, id), reply) in sent.into_iter().zip(replies) {
            let outcome = match reply {
                Value::ServerError(e) => Err(Error::Command {
                    context: ctx.clone(),
                    message: e.to_string(),
                }),
                other => entry_id(&self.key, &other).map_err(|e| e.with_context(ctx.clone())),
            };
            match outcome {
                Ok(stream_id) => report.succeeded.push(Published {
                    index,
                    id,
                    stream_id,
                }),
                Err(error) => report.failed.push(PublishFailure { index, id, error }),
            }
        }
        report.failed.sort_by_key(|f| f.index);
        Ok(report)
    }

    /// Number of entries (`XLEN`).
    pub async fn len(&self) -> Result<u64> {
        let key = self.key.clone();
        self.client
            .run(self.context("stream.len"), |mut conn| async move {
                Ok(redis::cmd("XLEN").arg(&*key).query_async(&mut conn).await?)
            })
            .await
    }

    /// Reads entries between two ids, inclusive (`XRANGE`; `"-"` and `"+"`
    /// are the ends), at most `count`, outside any group: for monitoring,
    /// dead-letter inspection and replays. Undecodable entries are reported
    /// in `failures` with [`FailureAction::LeftPending`] and left untouched.
    pub async fn range(&self, start: &str, end: &str, count: usize) -> Result<ReadBatch<M>> {
        let ctx = self.context("stream.range");
        let key = self.key.clone();
        let (start, end) = (start.to_string(), end.to_string());
        let reply: Value = self
            .client
            .run(ctx.clone(), |mut conn| async move {
                Ok(redis::cmd("XRANGE")
                    .arg(&*key)
                    .arg(start)
                    .arg(end)
                    .arg("COUNT")
                    .arg(count.max(1))
                    .query_async(&mut conn)
                    .await?)
            })
            .await?;
        let parsed =
            parse_entries::<M>(&self.key, &reply).map_err(|e| e.with_context(ctx.clone()))?;
        let mut batch = ReadBatch::default();
        for item in parsed {
            match item {
                Parsed::Decoded { id, message } => batch.entries.push(Entry {
                    id,
                    message,
                    deliveries: 0,
                }),
                Parsed::Deleted { id } => batch.failures.push(DecodeFailure {
                    error: deleted_error(&self.key, &id, &ctx),
                    id: Some(id),
                    action: FailureAction::LeftPending,
                }),
                Parsed::Bad { id, error } => batch.failures.push(DecodeFailure {
                    id,
                    error: error.with_context(ctx.clone()),
                    action: FailureAction::LeftPending,
                }),
            }
        }
        Ok(batch)
    }

    /// A consumer group on this stream, for the default consumer name
    /// ([`default_consumer_name`]). Nothing is sent until it is used; call
    /// [`ConsumerGroup::ensure`] once at start-up.
    pub fn group(&self, name: impl Into<String>) -> ConsumerGroup<M> {
        let name: String = name.into();
        let dead_letter = format!("{}:dead", self.key);
        ConsumerGroup {
            stream: self.clone(),
            name: Arc::from(name),
            consumer: Arc::from(default_consumer_name()),
            dead_letter: Arc::from(dead_letter),
            decode_policy: DecodePolicy::default(),
            claim_strategy: ClaimStrategy::default(),
            no_autoclaim: Arc::new(AtomicBool::new(false)),
            reader: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }
}

/// What a consumer group does with an entry that does not decode; see the
/// [module docs](self#entries-that-do-not-decode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DecodePolicy {
    /// Move it to the dead-letter stream with the error, and acknowledge it
    /// (atomically). The default.
    #[default]
    DeadLetter,
    /// Acknowledge it and drop it (it stays on the stream itself until trimmed).
    Acknowledge,
    /// Leave it pending: it is redelivered by claims until someone deals with it.
    LeavePending,
}

/// How [`ConsumerGroup::claim_idle`] takes over idle entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClaimStrategy {
    /// `XAUTOCLAIM`, falling back to `XPENDING` + `XCLAIM` (and remembering
    /// to) when the server does not know it (Redis < 6.2). The default.
    #[default]
    Auto,
    /// Always `XPENDING` + `XCLAIM`.
    PendingThenClaim,
}

/// Where a new group starts reading; see [`ConsumerGroup::ensure_from`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupStart {
    /// Only entries added after the group is created (`$`), like the seed.
    NewEntries,
    /// Every entry already on the stream (`0`).
    Beginning,
    /// Entries after this id.
    After(String),
}

/// One entry of the group's pending list (`XPENDING`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// The entry id.
    pub id: String,
    /// The consumer that holds it.
    pub consumer: String,
    /// Time since it was last delivered.
    pub idle: Duration,
    /// How many times it has been delivered.
    pub deliveries: u64,
}

/// An entry of the dead-letter stream, from [`ConsumerGroup::dead_letters`].
#[derive(Debug)]
pub struct DeadLetter<M> {
    /// The dead-letter entry's own id.
    pub id: String,
    /// The id the entry had on the source stream.
    pub source_id: String,
    /// The group that gave up on it.
    pub group: String,
    /// The consumer that held it last.
    pub consumer: String,
    /// How many times it was delivered.
    pub deliveries: u64,
    /// The last handler or decode error.
    pub error: String,
    /// The original message, decoded (an error if it never decoded).
    pub message: Result<M>,
}

/// A consumer group of a [`Stream<M>`], seen as one named consumer.
///
/// Cheap to clone; clones share the dedicated connection used by blocking
/// reads. Use one consumer name per worker: several workers in one process
/// need distinct names ([`ConsumerGroup::with_consumer`]).
pub struct ConsumerGroup<M> {
    stream: Stream<M>,
    name: Arc<str>,
    consumer: Arc<str>,
    dead_letter: Arc<str>,
    decode_policy: DecodePolicy,
    claim_strategy: ClaimStrategy,
    /// Set once the server said it has no XAUTOCLAIM.
    no_autoclaim: Arc<AtomicBool>,
    /// The dedicated connection for `BLOCK` reads, opened on first use and
    /// dropped after a transport error (the next read reconnects).
    reader: Arc<tokio::sync::Mutex<Option<MultiplexedConnection>>>,
}

impl<M> Clone for ConsumerGroup<M> {
    fn clone(&self) -> Self {
        Self {
            stream: self.stream.clone(),
            name: self.name.clone(),
            consumer: self.consumer.clone(),
            dead_letter: self.dead_letter.clone(),
            decode_policy: self.decode_policy,
            claim_strategy: self.claim_strategy,
            no_autoclaim: self.no_autoclaim.clone(),
            reader: self.reader.clone(),
        }
    }
}

impl<M> std::fmt::Debug for ConsumerGroup<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerGroup")
            .field("stream", &self.stream.key)
            .field("group", &self.name)
            .field("consumer", &self.consumer)
            .field("dead_letter", &self.dead_letter)
            .field("decode_policy", &self.decode_policy)
            .field("claim_strategy", &self.claim_strategy)
            .finish()
    }
}

impl<M: Record> ConsumerGroup<M> {
    /// Acts as consumer `name` instead of `hostname-pid`. Each handle has
    /// its own dedicated read connection.
    pub fn with_consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = Arc::from(name.into());
        self.reader = Arc::new(tokio::sync::Mutex::new(None));
        self
    }

    /// Parks dead letters on `key` instead of `<stream>:dead`.
    pub fn with_dead_letter_stream(mut self, key: impl Into<String>) -> Self {
        self.dead_letter = Arc::from(key.into());
        self
    }

    /// What to do with entries that do not decode (default: dead-letter them).
    pub fn with_decode_policy(mut self, policy: DecodePolicy) -> Self {
        self.decode_policy = policy;
        self
    }

    /// How idle entries are claimed (default: XAUTOCLAIM with fallback).
    pub fn with_claim_strategy(mut self, strategy: ClaimStrategy) -> Self {
        self.claim_strategy = strategy;
        self
    }

    /// The group name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This handle's consumer name.
    pub fn consumer_name(&self) -> &str {
        &self.consumer
    }

    /// The dead-letter stream key.
    pub fn dead_letter_stream(&self) -> &str {
        &self.dead_letter
    }

    /// The stream this group reads.
    pub fn stream(&self) -> &Stream<M> {
        &self.stream
    }

    pub(crate) fn client(&self) -> &Client {
        &self.stream.client
    }

    pub(crate) fn context(&self, operation: &'static str) -> Context {
        self.stream.context(operation)
    }

    /// Creates the group (and the stream, `MKSTREAM`) reading only new
    /// entries (`$`), as the seed does. Idempotent: a group that exists
    /// (`BUSYGROUP`) is success. Returns whether it was created now.
    pub async fn ensure(&self) -> Result<bool> {
        self.ensure_from(GroupStart::NewEntries).await
    }

    /// Like [`ConsumerGroup::ensure`], choosing where a *new* group starts.
    /// An existing group keeps its position.
    pub async fn ensure_from(&self, start: GroupStart) -> Result<bool> {
        let start = match start {
            GroupStart::NewEntries => "$".to_string(),
            GroupStart::Beginning => "0".to_string(),
            GroupStart::After(id) => id,
        };
        let (key, group) = (self.stream.key.clone(), self.name.clone());
        self.client()
            .run(self.context("stream.ensure_group"), |mut conn| async move {
                let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&*key)
                    .arg(&*group)
                    .arg(start)
                    .arg("MKSTREAM")
                    .query_async(&mut conn)
                    .await;
                match created {
                    Ok(()) => Ok(true),
                    Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
                    Err(e) => Err(e.into()),
                }
            })
            .await
    }

    pub(crate) fn xreadgroup(&self, count: usize, block: Option<Duration>) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&*self.name)
            .arg(&*self.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block_ms(block));
        }
        cmd.arg("STREAMS").arg(&*self.stream.key).arg(">");
        cmd
    }

    /// Reads up to `count` new entries for this consumer (`XREADGROUP ... >`).
    ///
    /// With `block: Some(d)` it waits up to `d` for entries to arrive, on a
    /// dedicated connection (never the shared one, whose response timeout
    /// it would trip); `None` returns at once, through the shared
    /// connection. An empty batch means nothing arrived in time.
    ///
    /// Entries that do not decode are handled per the [`DecodePolicy`] and
    /// reported in [`ReadBatch::failures`]; the others are returned.
    pub async fn read(&self, count: usize, block: Option<Duration>) -> Result<ReadBatch<M>> {
        let ctx = self.context("stream.read");
        if count == 0 {
            // COUNT 0 would mean "no limit" to Redis.
            return Err(Error::Config("read count must be at least 1".into()));
        }
        let cmd = self.xreadgroup(count, block);
        let reply = match block {
            None => {
                self.client()
                    .run(ctx.clone(), |mut conn| async move {
                        Ok(cmd.query_async::<Value>(&mut conn).await?)
                    })
                    .await?
            }
            Some(block) => {
                let mut slot = self.reader.lock().await;
                blocking_query(self.client(), &mut slot, &cmd, block, ctx.clone()).await?
            }
        };
        self.settle_read(&reply, &ctx).await
    }

    /// Decodes an XREADGROUP reply and applies the decode policy.
    pub(crate) async fn settle_read(&self, reply: &Value, ctx: &Context) -> Result<ReadBatch<M>> {
        let parsed = match read_reply_entries(&self.stream.key, reply) {
            Ok(Some(entries)) => parse_entries::<M>(&self.stream.key, entries),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
        .map_err(|e| e.with_context(ctx.clone()))?;
        Ok(self.settle(parsed, &[], &[], ctx).await)
    }

    /// Splits parsed entries into the batch, applying the decode policy to
    /// the bad ones. `deliveries[i]` is entry i's delivery count (1 when
    /// absent); `removed` are ids the server already dropped from the
    /// pending list because they no longer exist.
    async fn settle(
        &self,
        parsed: Vec<Parsed<M>>,
        deliveries: &[u64],
        removed: &[String],
        ctx: &Context,
    ) -> ReadBatch<M> {
        let mut batch = ReadBatch::default();
        let mut deleted = Vec::new();
        let mut bad = Vec::new();
        for (i, item) in parsed.into_iter().enumerate() {
            match item {
                Parsed::Decoded { id, message } => batch.entries.push(Entry {
                    id,
                    message,
                    deliveries: deliveries.get(i).copied().unwrap_or(1).max(1),
                }),
                Parsed::Deleted { id } => deleted.push(id),
                Parsed::Bad { id, error } => bad.push((id, error.with_context(ctx.clone()))),
            }
        }
        for id in removed {
            batch.failures.push(DecodeFailure {
                error: deleted_error(&self.stream.key, id, ctx),
                id: Some(id.clone()),
                action: FailureAction::Acknowledged,
            });
        }
        if !deleted.is_empty() {
            // Nothing left to process: acknowledge so they leave the pending list.
            let action = match self.ack(&deleted).await {
                Ok(_) => FailureAction::Acknowledged,
                Err(_) => FailureAction::LeftPending,
            };
            for id in deleted {
                tracing::warn!(target: TRACE_TARGET, stream = %self.stream.key, id = %id, "stream entry was deleted before it was processed");
                batch.failures.push(DecodeFailure {
                    error: deleted_error(&self.stream.key, &id, ctx),
                    id: Some(id),
                    action: action.clone(),
                });
            }
        }
        for (id, error) in bad {
            let action = match &id {
                Some(id) => self.apply_decode_policy(id, &error).await,
                None => FailureAction::LeftPending,
            };
            tracing::warn!(target: TRACE_TARGET, stream = %self.stream.key, id = id.as_deref().unwrap_or("?"), code = error.code(), action = ?action, "skipping undecodable stream entry: {error}");
            batch.failures.push(DecodeFailure { id, error, action });
        }
        batch
    }

    async fn apply_decode_policy(&self, id: &str, error: &Error) -> FailureAction {
        match self.decode_policy {
            DecodePolicy::LeavePending => FailureAction::LeftPending,
            DecodePolicy::Acknowledge => match self.ack([id]).await {
                Ok(_) => FailureAction::Acknowledged,
                Err(_) => FailureAction::LeftPending,
            },
            DecodePolicy::DeadLetter => match self.dead_letter(id, &error.to_string()).await {
                Ok(Some(dead_letter_id)) => FailureAction::DeadLettered { dead_letter_id },
                // Not ours any more, or the call failed: it stays pending
                // and the policy is applied again when it is claimed.
                Ok(None) | Err(_) => FailureAction::LeftPending,
            },
        }
    }

    /// Acknowledges entries (`XACK`), removing them from the pending list;
    /// returns how many were pending. No round trip for an empty list.
    pub async fn ack<I, S>(&self, ids: I) -> Result<u64>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let ids: Vec<String> = ids.into_iter().map(|id| id.as_ref().to_string()).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let (key, group) = (self.stream.key.clone(), self.name.clone());
        self.client()
            .run(self.context("stream.ack"), |mut conn| async move {
                Ok(redis::cmd("XACK")
                    .arg(&*key)
                    .arg(&*group)
                    .arg(&ids)
                    .query_async(&mut conn)
                    .await?)
            })
            .await
    }

    /// Number of entries delivered and not yet acknowledged, all consumers.
    pub async fn pending_count(&self) -> Result<u64> {
        let (key, group) = (self.stream.key.clone(), self.name.clone());
        let ctx = self.context("stream.pending");
        self.client()
            .run(ctx, |mut conn| async move {
                let reply: Value = redis::cmd("XPENDING")
                    .arg(&*key)
                    .arg(&*group)
                    .query_async(&mut conn)
                    .await?;
                match &reply {
                    Value::Array(items) => items.first().and_then(as_u64),
                    _ => None,
                }
                .ok_or_else(|| shape_error(&key, "XPENDING summary", &reply))
            })
            .await
    }

    /// The first `count` pending entries, oldest first, all consumers.
    pub async fn pending(&self, count: usize) -> Result<Vec<PendingEntry>> {
        self.pending_from("-", count).await
    }

    async fn pending_from(&self, start: &str, count: usize) -> Result<Vec<PendingEntry>> {
        let (key, group) = (self.stream.key.clone(), self.name.clone());
        let start = start.to_string();
        let reply: Value = self
            .client()
            .run(self.context("stream.pending"), |mut conn| async move {
                Ok(redis::cmd("XPENDING")
                    .arg(&*key)
                    .arg(&*group)
                    .arg(start)
                    .arg("+")
                    .arg(count.max(1))
                    .query_async(&mut conn)
                    .await?)
            })
            .await?;
        parse_pending(&self.stream.key, &reply)
            .map_err(|e| e.with_context(self.context("stream.pending")))
    }

    /// Takes over entries that have been pending (with any consumer) for at
    /// least `min_idle`, up to `count`, for this consumer: what a consumer
    /// runs at start-up and periodically to finish the work of consumers
    /// that crashed. Each claimed entry counts as a delivery.
    ///
    /// Uses `XAUTOCLAIM` and falls back to `XPENDING` + `XCLAIM` when the
    /// server lacks it (see [`ClaimStrategy`]). Walks the pending list from
    /// its start (at most 64 pages of `10 × count` entries).
    pub async fn claim_idle(&self, min_idle: Duration, count: usize) -> Result<ReadBatch<M>> {
        let mut batch = ReadBatch::default();
        let mut cursor = "0-0".to_string();
        for _ in 0..MAX_CLAIM_PAGES {
            let want = count.saturating_sub(batch.entries.len());
            if want == 0 {
                break;
            }
            let (page, next) = self.claim_page(&cursor, min_idle, want).await?;
            batch.entries.extend(page.entries);
            batch.failures.extend(page.failures);
            if next == "0-0" {
                break;
            }
            cursor = next;
        }
        Ok(batch)
    }

    /// One page of claiming from `cursor`; returns the batch and the next
    /// cursor (`"0-0"` once the whole pending list was scanned).
    pub(crate) async fn claim_page(
        &self,
        cursor: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<(ReadBatch<M>, String)> {
        let count = count.max(1);
        let use_autoclaim = self.claim_strategy == ClaimStrategy::Auto
            && !self.no_autoclaim.load(Ordering::Relaxed);
        if use_autoclaim {
            match self.autoclaim_page(cursor, min_idle, count).await {
                Err(Error::Command { message, .. }) if is_unknown_command(&message) => {
                    tracing::info!(target: TRACE_TARGET, stream = %self.stream.key, "XAUTOCLAIM is not available; claiming with XPENDING + XCLAIM");
                    self.no_autoclaim.store(true, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        self.pending_claim_page(cursor, min_idle, count).await
    }

    async fn autoclaim_page(
        &self,
        cursor: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<(ReadBatch<M>, String)> {
        let ctx = self.context("stream.claim");
        let mut invocation = CLAIM_SCRIPT.prepare_invoke();
        invocation
            .key(&*self.stream.key)
            .arg(&*self.name)
            .arg(&*self.consumer)
            .arg(duration_ms(min_idle))
            .arg(cursor)
            .arg(count);
        let reply: Value = self
            .client()
            .run(ctx.clone(), |mut conn| async move {
                Ok(invocation.invoke_async(&mut conn).await?)
            })
            .await?;
        let key = &self.stream.key;
        let parts = match &reply {
            Value::Array(parts) if parts.len() == 4 => parts,
            other => return Err(shape_error(key, "claim reply", other).with_context(ctx)),
        };
        let next = as_text(&parts[0])
            .ok_or_else(|| shape_error(key, "claim cursor", &parts[0]).with_context(ctx.clone()))?;
        let parsed = parse_entries::<M>(key, &parts[1]).map_err(|e| e.with_context(ctx.clone()))?;
        let removed: Vec<String> = match &parts[2] {
            Value::Array(ids) => ids.iter().filter_map(as_text).collect(),
            _ => Vec::new(),
        };
        let deliveries: Vec<u64> = match &parts[3] {
            Value::Array(counts) => counts.iter().map(|c| as_u64(c).unwrap_or(1)).collect(),
            _ => Vec::new(),
        };
        let batch = self.settle(parsed, &deliveries, &removed, &ctx).await;
        Ok((batch, next))
    }

    /// The fallback for servers without XAUTOCLAIM: list a page of the
    /// pending list, keep the entries idle long enough, and XCLAIM them
    /// (which re-checks the idle time, so racing claimers cannot both win).
    async fn pending_claim_page(
        &self,
        cursor: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<(ReadBatch<M>, String)> {
        let ctx = self.context("stream.claim");
        // XAUTOCLAIM scans ten entries per wanted one; do the same.
        let scan = count.saturating_mul(10);
        let start = if cursor == "0-0" { "-" } else { cursor };
        let pending = self.pending_from(start, scan).await?;
        let exhausted = pending.len() < scan;
        let mut chosen: Vec<&PendingEntry> = Vec::new();
        let mut last_seen = None;
        for entry in &pending {
            last_seen = Some(entry.id.as_str());
            if entry.idle >= min_idle {
                chosen.push(entry);
                if chosen.len() == count {
                    break;
                }
            }
        }
        let next = match last_seen {
            Some(id) if !(exhausted && chosen.len() < count) => next_id(id),
            _ => "0-0".to_string(),
        };
        if chosen.is_empty() {
            return Ok((ReadBatch::default(), next));
        }
        let ids: Vec<String> = chosen.iter().map(|e| e.id.clone()).collect();
        let counts: std::collections::HashMap<&str, u64> = chosen
            .iter()
            .map(|e| (e.id.as_str(), e.deliveries.saturating_add(1)))
            .collect();
        let (key, group, consumer) = (
            self.stream.key.clone(),
            self.name.clone(),
            self.consumer.clone(),
        );
        let reply: Value = self
            .client()
            .run(ctx.clone(), |mut conn| async move {
                Ok(redis::cmd("XCLAIM")
                    .arg(&*key)
                    .arg(&*group)
                    .arg(&*consumer)
                    .arg(duration_ms(min_idle))
                    .arg(&ids)
                    .query_async(&mut conn)
                    .await?)
            })
            .await?;
        // Older servers answer nil for entries deleted meanwhile; skip those
        // slots rather than fail the page.
        let reply = match reply {
            Value::Array(items) => {
                Value::Array(items.into_iter().filter(|v| *v != Value::Nil).collect())
            }
            other => other,
        };
        let parsed = parse_entries::<M>(&self.stream.key, &reply)
            .map_err(|e| e.with_context(ctx.clone()))?;
        let deliveries: Vec<u64> = parsed
            .iter()
            .map(|p| p.id().and_then(|id| counts.get(id).copied()).unwrap_or(1))
            .collect();
        let batch = self.settle(parsed, &deliveries, &[], &ctx).await;
        Ok((batch, next))
    }

    /// Moves an entry this consumer holds to the dead-letter stream with
    /// `error`, and acknowledges it, atomically. Returns the dead-letter
    /// entry id, or `None` if the entry is not pending for this consumer
    /// (acknowledged already, or reclaimed by another consumer).
    pub async fn dead_letter(&self, id: &str, error: &str) -> Result<Option<String>> {
        let mut invocation = DEAD_LETTER_SCRIPT.prepare_invoke();
        invocation
            .key(&*self.stream.key)
            .key(&*self.dead_letter)
            .arg(&*self.name)
            .arg(&*self.consumer)
            .arg(id)
            .arg(error);
        let key = self.stream.key.clone();
        self.client()
            .run(self.context("stream.dead_letter"), |mut conn| async move {
                let reply: Value = invocation.invoke_async(&mut conn).await?;
                match reply {
                    Value::Nil => Ok(None),
                    other => entry_id(&key, &other).map(Some),
                }
            })
            .await
    }

    /// Sets the idle time of entries this consumer holds (see
    /// `scripts/stream_set_idle.lua`); returns how many were updated.
    pub(crate) async fn set_idle(&self, entries: &[(String, Duration)]) -> Result<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut invocation = SET_IDLE_SCRIPT.prepare_invoke();
        invocation
            .key(&*self.stream.key)
            .arg(&*self.name)
            .arg(&*self.consumer);
        for (id, idle) in entries {
            invocation.arg(id).arg(duration_ms(*idle));
        }
        self.client()
            .run(self.context("stream.set_idle"), |mut conn| async move {
                Ok(invocation.invoke_async(&mut conn).await?)
            })
            .await
    }

    /// Gives entries this consumer holds back to the group without
    /// processing them: they stay pending, with an idle time of
    /// [`RELEASE_IDLE`], so the next [`ConsumerGroup::claim_idle`] by any
    /// consumer takes them at once. Returns how many were released.
    pub async fn release<I, S>(&self, ids: I) -> Result<u64>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let entries: Vec<(String, Duration)> = ids
            .into_iter()
            .map(|id| (id.as_ref().to_string(), RELEASE_IDLE))
            .collect();
        self.set_idle(&entries).await
    }

    /// Reads up to `count` entries of the dead-letter stream, oldest first.
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter<M>>> {
        let ctx = self.context("stream.dead_letters");
        let key = self.dead_letter.clone();
        let reply: Value = self
            .client()
            .run(ctx.clone(), |mut conn| async move {
                Ok(redis::cmd("XRANGE")
                    .arg(&*key)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(count.max(1))
                    .query_async(&mut conn)
                    .await?)
            })
            .await?;
        let Value::Array(items) = &reply else {
            return Err(shape_error(&self.dead_letter, "XRANGE reply", &reply).with_context(ctx));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Some((id, fields)) = entry_parts(item) else {
                return Err(
                    shape_error(&self.dead_letter, "dead-letter entry", item).with_context(ctx)
                );
            };
            let entry_key = entry_key(&self.dead_letter, &id);
            let pairs = reply_pairs(&entry_key, fields).map_err(|e| e.with_context(ctx.clone()))?;
            let meta = |name: &str| -> String {
                pairs
                    .iter()
                    .find(|(n, _)| *n == format!("dead_letter.{name}").as_bytes())
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            out.push(DeadLetter {
                source_id: meta("id"),
                group: meta("group"),
                consumer: meta("consumer"),
                deliveries: meta("deliveries").parse().unwrap_or(0),
                error: meta("error"),
                message: M::read_fields(&entry_key, &pairs)
                    .map_err(|e| e.with_context(ctx.clone())),
                id,
            });
        }
        Ok(out)
    }
}

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
    let result = blocking_query_unmetered(client, slot, cmd, block, ctx.clone()).await;
    client.record_metrics(&ctx, started.elapsed(), &result);
    result
}

async fn blocking_query_unmetered(
    client: &Client,
    slot: &mut Option<MultiplexedConnection>,
    cmd: &redis::Cmd,
    block: Duration,
    ctx: Context,
) -> Result<Value> {
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
        Ok(Err(e)) => Error::from_redis(&e, ctx),
        Err(_) => Error::Timeout {
            context: ctx,
            elapsed_ms: duration_ms(limit),
        },
    };
    if outcome.is_transient() {
        *slot = None;
    }
    tracing::warn!(target: TRACE_TARGET, endpoint = client.config().endpoint(), code = outcome.code(), "redis error on a blocking read: {outcome}");
    Err(outcome)
}

/// One entry of a reply, parsed.
pub(crate) enum Parsed<M> {
    Decoded {
        id: String,
        message: M,
    },
    /// `[id, nil]`: the entry was deleted from the stream while pending.
    Deleted {
        id: String,
    },
    Bad {
        id: Option<String>,
        error: Error,
    },
}

impl<M> Parsed<M> {
    fn id(&self) -> Option<&str> {
        match self {
            Parsed::Decoded { id, .. } | Parsed::Deleted { id } => Some(id),
            Parsed::Bad { id, .. } => id.as_deref(),
        }
    }
}

/// How an entry is named in errors: `events:incoming entry 1700000000000-0`.
fn entry_key(stream: &str, id: &str) -> String {
    format!("{stream} entry {id}")
}

fn deleted_error(stream: &str, id: &str, ctx: &Context) -> Error {
    Error::NotFound {
        context: ctx.clone(),
        key: format!(
            "{} (deleted or trimmed from the stream while pending)",
            entry_key(stream, id)
        ),
    }
}

fn shape_error(key: &str, what: &str, found: &Value) -> Error {
    Error::Decode {
        context: Context::default(),
        key: key.to_string(),
        field: "*".to_string(),
        reason: format!("unexpected {what}: found {}", value_kind(found)),
    }
}

pub(crate) fn as_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

pub(crate) fn as_text(value: &Value) -> Option<String> {
    as_bytes(value).and_then(|b| std::str::from_utf8(b).ok().map(str::to_owned))
}

pub(crate) fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => as_bytes(other).and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()),
    }
}

/// A stream entry id from an XADD-like reply.
fn entry_id(key: &str, reply: &Value) -> Result<String> {
    as_text(reply).ok_or_else(|| shape_error(key, "stream entry id", reply))
}

/// Splits `[id, fields]`.
fn entry_parts(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Array(parts) if parts.len() == 2 => Some((as_text(&parts[0])?, &parts[1])),
        _ => None,
    }
}

/// The entries array for `stream` in an XREAD/XREADGROUP reply (RESP2
/// `[[key, entries]]` or RESP3 `{key: entries}`); `None` for a nil reply.
pub(crate) fn read_reply_entries<'v>(stream: &str, reply: &'v Value) -> Result<Option<&'v Value>> {
    let matches = |name: &Value| as_bytes(name) == Some(stream.as_bytes());
    match reply {
        Value::Nil => Ok(None),
        Value::Array(streams) => {
            for item in streams {
                match item {
                    Value::Array(pair) if pair.len() == 2 && matches(&pair[0]) => {
                        return Ok(Some(&pair[1]));
                    }
                    Value::Array(pair) if pair.len() == 2 => {}
                    other => return Err(shape_error(stream, "XREADGROUP reply item", other)),
                }
            }
            Ok(None)
        }
        Value::Map(streams) => Ok(streams
            .iter()
            .find(|(name, _)| matches(name))
            .map(|(_, entries)| entries)),
        other => Err(shape_error(stream, "XREADGROUP reply", other)),
    }
}

/// Parses an array of `[id, fields]` entries. Fails only when `entries` is
/// not an array at all; each bad entry becomes a [`Parsed::Bad`].
pub(crate) fn parse_entries<M: Record>(stream: &str, entries: &Value) -> Result<Vec<Parsed<M>>> {
    let items = match entries {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        other => return Err(shape_error(stream, "list of entries", other)),
    };
    Ok(items
        .iter()
        .map(|item| parse_entry::<M>(stream, item))
        .collect())
}

fn parse_entry<M: Record>(stream: &str, item: &Value) -> Parsed<M> {
    let Some((id, fields)) = entry_parts(item) else {
        return Parsed::Bad {
            id: match item {
                Value::Array(parts) => parts.first().and_then(as_text),
                _ => None,
            },
            error: shape_error(stream, "entry (expected [id, fields])", item),
        };
    };
    if *fields == Value::Nil {
        return Parsed::Deleted { id };
    }
    let key = entry_key(stream, &id);
    match reply_pairs(&key, fields).and_then(|pairs| M::read_fields(&key, &pairs)) {
        Ok(message) => Parsed::Decoded { id, message },
        Err(error) => Parsed::Bad {
            id: Some(id),
            error,
        },
    }
}

fn parse_pending(key: &str, reply: &Value) -> Result<Vec<PendingEntry>> {
    fn one(item: &Value) -> Option<PendingEntry> {
        let Value::Array(parts) = item else {
            return None;
        };
        let [id, consumer, idle, deliveries] = parts.as_slice() else {
            return None;
        };
        Some(PendingEntry {
            id: as_text(id)?,
            consumer: as_text(consumer)?,
            idle: Duration::from_millis(as_u64(idle)?),
            deliveries: as_u64(deliveries)?,
        })
    }
    let Value::Array(items) = reply else {
        return Err(shape_error(key, "XPENDING reply", reply));
    };
    items
        .iter()
        .map(|item| one(item).ok_or_else(|| shape_error(key, "XPENDING entry", item)))
        .collect()
}

/// The smallest id after `id` (`ms-seq` + 1), for exclusive range starts
/// on servers without `(` ranges. A malformed id restarts from the top.
fn next_id(id: &str) -> String {
    let parsed = id
        .split_once('-')
        .and_then(|(ms, seq)| Some((ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?)));
    match parsed {
        Some((ms, seq)) if seq < u64::MAX => format!("{ms}-{}", seq + 1),
        Some((ms, _)) if ms < u64::MAX => format!("{}-0", ms + 1),
        _ => "0-0".to_string(),
    }
}

fn is_unknown_command(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("unknown command") || lower.contains("unknown redis command")
}

/// Whole milliseconds, at least 1 (BLOCK 0 would mean "forever").
fn block_ms(block: Duration) -> u64 {
    duration_ms(block).max(1)
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::RawFields;
    use redis_schema::EntityDescriptor;

    /// A hand-written record: one required integer field `n`.
    #[derive(Debug, PartialEq)]
    struct N(i64);

    impl Record for N {
        fn descriptor() -> &'static EntityDescriptor {
            static D: EntityDescriptor = EntityDescriptor {
                name: "N",
                key_pattern: "",
                ttl_ms: None,
                fields: &[],
                indexes: &[],
                stream: None,
            };
            &D
        }
        fn write_fields(&self, sink: &mut dyn FieldSink) -> Result<()> {
            sink.put("n", self.0.to_string().as_bytes());
            Ok(())
        }
        fn read_fields(key: &str, fields: &RawFields<'_>) -> Result<Self> {
            let raw = fields.iter().find(|(k, _)| *k == b"n").map(|(_, v)| *v);
            crate::codec::decode_required(key, "n", raw).map(N)
        }
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn bad_entries_are_reported_and_the_rest_decoded() {
        let entries = Value::Array(vec![
            entry("1-0", &["n", "1"]),
            entry("2-0", &["n", "not a number"]),
            entry("3-0", &["n"]),                        // odd number of items
            Value::Array(vec![bulk("4-0"), Value::Nil]), // deleted
            Value::Int(7),                               // not an entry at all
            Value::Array(vec![Value::Int(1), Value::Array(vec![])]), // id not text
            entry("5-0", &["other", "x", "n", "5"]),
        ]);
        let parsed = parse_entries::<N>("s", &entries).expect("an array of entries");
        let summary: Vec<String> = parsed
            .iter()
            .map(|p| match p {
                Parsed::Decoded { id, message } => format!("ok {id} {}", message.0),
                Parsed::Deleted { id } => format!("deleted {id}"),
                Parsed::Bad { id, error } => format!("bad {id:?} {}", error.code()),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "ok 1-0 1",
                "bad Some(\"2-0\") DECODE",
                "bad Some(\"3-0\") DECODE",
                "deleted 4-0",
                "bad None DECODE",
                "bad None DECODE",
                "ok 5-0 5",
            ]
        );
        if let Parsed::Bad { error, .. } = &parsed[1] {
            let text = error.to_string();
            assert!(
                text.contains("s entry 2-0") && text.contains("`n`"),
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_read_replies_are_errors_not_panics() {
        assert!(read_reply_entries("s", &Value::Nil).expect("nil").is_none());
        for bad in [Value::Int(1), bulk("x"), Value::Array(vec![Value::Int(1)])] {
            assert_eq!(
                read_reply_entries("s", &bad).expect_err("bad").code(),
                "DECODE"
            );
        }
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![entry("1-0", &["n", "1"])]),
        ])]);
        assert!(read_reply_entries("s", &resp2).expect("ok").is_some());
        let resp3 = Value::Map(vec![(bulk("s"), Value::Array(vec![]))]);
        assert!(read_reply_entries("s", &resp3).expect("ok").is_some());
        assert!(parse_entries::<N>("s", &Value::Int(3)).is_err());
    }

    #[test]
    fn pending_replies_are_checked() {
        let good = Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            bulk("c"),
            Value::Int(1500),
            Value::Int(2),
        ])]);
        assert_eq!(
            parse_pending("s", &good).expect("ok"),
            vec![PendingEntry {
                id: "1-0".into(),
                consumer: "c".into(),
                idle: Duration::from_millis(1500),
                deliveries: 2
            }]
        );
        let bad = Value::Array(vec![Value::Array(vec![bulk("1-0"), Value::Int(-1)])]);
        assert_eq!(parse_pending("s", &bad).expect_err("bad").code(), "DECODE");
        let negative = Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            bulk("c"),
            Value::Int(-5),
            Value::Int(1),
        ])]);
        assert!(parse_pending("s", &negative).is_err());
    }

    #[test]
    fn next_id_increments_and_survives_garbage() {
        assert_eq!(next_id("5-3"), "5-4");
        assert_eq!(next_id(&format!("5-{}", u64::MAX)), "6-0");
        assert_eq!(next_id("garbage"), "0-0");
        assert_eq!(next_id(&format!("{0}-{0}", u64::MAX)), "0-0");
    }

    #[test]
    fn unknown_command_is_recognised_in_both_spellings() {
        assert!(is_unknown_command(
            "ERR unknown command 'XAUTOCLAIM', with args beginning with:"
        ));
        assert!(is_unknown_command(
            "ERR Error running script: Unknown Redis command called from script"
        ));
        assert!(!is_unknown_command("NOGROUP No such key"));
    }

    #[test]
    fn block_is_never_zero() {
        assert_eq!(block_ms(Duration::ZERO), 1);
        assert_eq!(block_ms(Duration::from_millis(250)), 250);
    }

    #[test]
    fn an_all_none_record_is_an_encode_error() {
        struct Empty;
        impl Record for Empty {
            fn descriptor() -> &'static EntityDescriptor {
                N::descriptor()
            }
            fn write_fields(&self, sink: &mut dyn FieldSink) -> Result<()> {
                sink.absent("a");
                Ok(())
            }
            fn read_fields(_: &str, _: &RawFields<'_>) -> Result<Self> {
                Ok(Empty)
            }
        }
        assert_eq!(
            xadd_cmd("s", None, &Empty).err().map(|e| e.code()),
            Some("ENCODE")
        );
    }
}

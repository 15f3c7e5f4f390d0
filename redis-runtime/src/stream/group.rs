//! [`ConsumerGroup`]: creating the group, reading, acknowledging, the
//! decode policy and the dead-letter stream.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use derive_where::derive_where;
use redis::Value;

use super::parse::{
    Parsed, deleted_error, entry_id, entry_key, entry_parts, parse_entries, read_reply_entries,
    shape_error,
};
use super::producer::xrange_cmd;
use super::{
    ClaimStrategy, DecodeFailure, Entry, FailureAction, ReadBatch, Stream, default_consumer_name,
};
use crate::TRACE_TARGET;
use crate::blocking::{Dedicated, blocking_query};
use crate::client::Client;
use crate::codec::{Record, reply_pairs};
use crate::error::{Context, Error, Result};
use crate::reply::block_ms;

static DEAD_LETTER_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(include_str!("../scripts/stream_dead_letter.lua"))
});

/// What a consumer group does with an entry that does not decode; see the
/// [module docs](crate::stream#entries-that-do-not-decode).
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

/// Where a *new* group starts reading; see [`ConsumerGroup::ensure_from`].
/// An existing group is never moved, whatever is asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GroupStart {
    /// Every entry already on the stream (`0`), then new ones: what
    /// [`ConsumerGroup::ensure`] asks for, so jobs enqueued before the
    /// group (or the first worker) existed are still delivered.
    #[default]
    Beginning,
    /// Only entries added after the group is created (`$`): for fan-out
    /// consumers that must not replay history (notifications, caches).
    NewEntriesOnly,
    /// Entries after this id.
    After(String),
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
#[derive_where(Clone)]
pub struct ConsumerGroup<M> {
    pub(super) stream: Stream<M>,
    pub(super) name: Arc<str>,
    pub(super) consumer: Arc<str>,
    dead_letter: Arc<str>,
    decode_policy: DecodePolicy,
    pub(super) claim_strategy: ClaimStrategy,
    /// Set once the server said it has no XAUTOCLAIM.
    pub(super) no_autoclaim: Arc<AtomicBool>,
    /// The dedicated connection for `BLOCK` reads, opened on first use and
    /// dropped after a transport error (the next read reconnects).
    reader: Arc<tokio::sync::Mutex<Option<Dedicated>>>,
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
    /// Group `name` of `stream`, as the default consumer, dead-lettering to
    /// `<stream>:dead`: what [`Stream::group`] returns.
    pub(super) fn new(stream: Stream<M>, name: String) -> Self {
        let dead_letter = format!("{}:dead", stream.key);
        Self {
            stream,
            name: Arc::from(name),
            consumer: Arc::from(default_consumer_name()),
            dead_letter: Arc::from(dead_letter),
            decode_policy: DecodePolicy::default(),
            claim_strategy: ClaimStrategy::default(),
            no_autoclaim: Arc::new(AtomicBool::new(false)),
            reader: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

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

    /// Creates the group (and the stream, `MKSTREAM`) if it does not exist,
    /// reading from the **beginning** of the stream ([`GroupStart::Beginning`]):
    /// entries added before the group existed are delivered too, as a job
    /// queue needs. Idempotent: a group that exists (`BUSYGROUP`) is
    /// success and is never moved. Returns whether it was created now.
    ///
    /// For a group that must see only entries added from now on, use
    /// [`ensure_from(GroupStart::NewEntriesOnly)`](ConsumerGroup::ensure_from).
    pub async fn ensure(&self) -> Result<bool> {
        self.ensure_from(GroupStart::Beginning).await
    }

    /// Like [`ConsumerGroup::ensure`], choosing where a *new* group starts.
    /// An existing group keeps its position (use `XGROUP SETID` yourself to
    /// move one on purpose).
    pub async fn ensure_from(&self, start: GroupStart) -> Result<bool> {
        let start = match start {
            GroupStart::NewEntriesOnly => "$".to_string(),
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
            None => self.client().write::<Value>(ctx.clone(), &cmd).await?,
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
    pub(super) async fn settle(
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
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&*self.stream.key).arg(&*self.name).arg(&ids);
        self.client().write(self.context("stream.ack"), &cmd).await
    }

    /// Moves an entry this consumer holds to the dead-letter stream with
    /// `error`, and acknowledges it, atomically. Returns the dead-letter
    /// entry id, or `None` if the entry is not pending for this consumer
    /// (acknowledged already, or reclaimed by another consumer).
    ///
    /// On a Redis Cluster where the dead-letter stream is in another hash
    /// slot (`jobs:stream` and `jobs:stream:dead`), no script reaches both:
    /// the entry is read, appended to the dead-letter stream, then
    /// acknowledged, in three steps. A failure between the append and the
    /// acknowledgement leaves the entry pending, to be dead-lettered again:
    /// the dead-letter stream gets it at least once (`dead_letter.id`
    /// names the original).
    pub async fn dead_letter(&self, id: &str, error: &str) -> Result<Option<String>> {
        let client = self.client();
        let apart = redis_schema::hashed_text(&self.stream.key)
            != redis_schema::hashed_text(&self.dead_letter);
        if client.config().is_cluster() && apart {
            return self.dead_letter_across_slots(id, error).await;
        }
        let mut invocation = DEAD_LETTER_SCRIPT.prepare_invoke();
        invocation
            .key(&*self.stream.key)
            .key(&*self.dead_letter)
            .arg(&*self.name)
            .arg(&*self.consumer)
            .arg(id)
            .arg(error);
        let ctx = self.context("stream.dead_letter");
        let reply: Value = self.client().write(ctx.clone(), &invocation).await?;
        match reply {
            Value::Nil => Ok(None),
            other => entry_id(&self.stream.key, &other)
                .map(Some)
                .map_err(|e| e.with_context(ctx)),
        }
    }

    /// [`dead_letter`](Self::dead_letter) to a stream in another slot of a
    /// cluster: read, append, acknowledge.
    async fn dead_letter_across_slots(&self, id: &str, error: &str) -> Result<Option<String>> {
        let ctx = self.context("stream.dead_letter");
        let mut read = DEAD_LETTER_SCRIPT.prepare_invoke();
        read.key(&*self.stream.key)
            .arg(&*self.name)
            .arg(&*self.consumer)
            .arg(id)
            .arg(error)
            .arg("read");
        let fields: Vec<Vec<u8>> = match self.client().read(ctx.clone(), &read).await? {
            // Not pending for this consumer (Lua's `false`).
            Value::Nil | Value::Boolean(false) => return Ok(None),
            reply => redis::from_redis_value(reply).map_err(|e| Error::Command {
                context: ctx.clone(),
                message: format!("unexpected dead-letter read reply: {e}"),
            })?,
        };
        let mut append = redis::cmd("XADD");
        append.arg(&*self.dead_letter).arg("*").arg(fields);
        let dead_id: String = self.client().write(ctx.clone(), &append).await?;
        let mut ack = redis::cmd("XACK");
        ack.arg(&*self.stream.key).arg(&*self.name).arg(id);
        // Acknowledging twice is harmless; the count is not used.
        let _: i64 = self.client().write_idempotent(ctx, &ack).await?;
        Ok(Some(dead_id))
    }

    /// Reads up to `count` entries of the dead-letter stream, oldest first.
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter<M>>> {
        let ctx = self.context("stream.dead_letters");
        let cmd = xrange_cmd(&self.dead_letter, "-", "+", count);
        let reply: Value = self.client().read(ctx.clone(), &cmd).await?;
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

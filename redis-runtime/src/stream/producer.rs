//! [`Stream`]: publishing one message or a batch, length and ranges.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;

use derive_where::derive_where;
use redis::Value;

use super::parse::{Parsed, deleted_error, entry_id, parse_entries};
use super::{ConsumerGroup, DecodeFailure, Entry, FailureAction, ReadBatch};
use crate::client::Client;
use crate::codec::{FieldSink, Record, value_kind};
use crate::entity::model::Entity;
use crate::error::{Context, Error, Result};

/// A stream of `M` entries at one key; see the [module docs](crate::stream).
///
/// Cheap to clone: a client handle and the key.
#[derive_where(Clone)]
pub struct Stream<M> {
    pub(super) client: Client,
    pub(super) key: Arc<str>,
    maxlen: Option<u64>,
    _message: PhantomData<fn() -> M>,
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
        this.maxlen = stream.maxlen.map(std::num::NonZeroU64::get);
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

    pub(super) fn context(&self, operation: &'static str) -> Context {
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
        let reply: Value = self.client.write(ctx.clone(), &cmd).await?;
        entry_id(&self.key, &reply).map_err(|e| e.with_context(ctx))
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
        let reply: Value = self.client.write(ctx.clone(), &pipe).await?;
        let replies = match reply {
            Value::Array(items) if items.len() == expected => items,
            other => {
                return Err(Error::Command {
                    context: ctx,
                    message: format!(
                        "expected {expected} pipeline replies, got {}",
                        value_kind(&other)
                    ),
                });
            }
        };
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
        let mut cmd = redis::cmd("XLEN");
        cmd.arg(&*self.key);
        self.client.read(self.context("stream.len"), &cmd).await
    }

    /// Reads entries between two ids, inclusive (`XRANGE`; `"-"` and `"+"`
    /// are the ends), at most `count`, outside any group: for monitoring,
    /// dead-letter inspection and replays. Undecodable entries are reported
    /// in `failures` with [`FailureAction::LeftPending`] and left untouched.
    pub async fn range(&self, start: &str, end: &str, count: usize) -> Result<ReadBatch<M>> {
        let ctx = self.context("stream.range");
        let cmd = xrange_cmd(&self.key, start, end, count);
        let reply: Value = self.client.read(ctx.clone(), &cmd).await?;
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
    ///
    /// [`default_consumer_name`]: crate::stream::default_consumer_name
    pub fn group(&self, name: impl Into<String>) -> ConsumerGroup<M> {
        ConsumerGroup::new(self.clone(), name.into())
    }
}

/// `XRANGE key start end COUNT n`, asking for at least one entry.
pub(super) fn xrange_cmd(key: &str, start: &str, end: &str, count: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("XRANGE");
    cmd.arg(key)
        .arg(start)
        .arg(end)
        .arg("COUNT")
        .arg(count.max(1));
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_all_none_record_is_an_encode_error() {
        #[derive(crate::RedisRecord)]
        struct Empty {
            a: Option<String>,
        }
        assert_eq!(
            xadd_cmd("s", None, &Empty { a: None })
                .err()
                .map(|e| e.code()),
            Some("ENCODE")
        );
    }
}

//! List queues: `LPUSH` in, `RPOP` out, first in first out.
//!
//! [`ListQueue<T>`] is a job queue, typed: push one or many, pop one, pop
//! many, blocking pop with a timeout, length, clear. Items are one value
//! each, in the [`FieldValue`] codec (`String` ids, integers, unit enums,
//! or [`Json<T>`](crate::Json) for structs), so the list stays readable by
//! `redis-cli` and by clients written in other languages.
//!
//! A plain pop removes the item: if the consumer dies before finishing it,
//! it is gone. [`ReliableQueue<T>`] fixes that: a pop moves the item to the
//! consumer's *processing list* in the same step, it stays there until
//! [`ReliableQueue::ack`], and the items of a consumer whose lease expired
//! (it crashed or hung) are put back on the queue.
//!
//! ```no_run
//! use std::time::Duration;
//! use redis_runtime::{Client, queue::ListQueue};
//!
//! # async fn demo(client: &Client) -> redis_runtime::Result<()> {
//! let queue = ListQueue::<String>::new(client, "job_queue");
//! queue.push(&"job-uuid-1".to_string()).await?;
//! queue.push_many(&["job-uuid-2".to_string(), "job-uuid-3".to_string()]).await?;
//!
//! // At most once: the item is gone from Redis once popped.
//! let job = queue.pop_blocking(Duration::from_secs(5)).await?;
//!
//! // At least once: held until acked, requeued if this consumer dies.
//! let reliable = queue.reliable(Duration::from_secs(30)).await?;
//! if let Some(held) = reliable.pop_blocking(Duration::from_secs(5)).await? {
//!     println!("processing {}", held.item);
//!     reliable.ack(&held).await?;
//! }
//! # let _ = job; Ok(()) }
//! ```
//!
//! # Items that do not decode
//!
//! They are never dropped: a popped item that does not decode is moved to
//! `<queue>:dead` (a list, newest first) and reported as a `DECODE` error;
//! [`ListQueue::pop_many`] reports them next to the good items.
//!
//! # Layout of the reliable variant
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `<queue>` | list | queued items (the same list [`ListQueue`] uses) |
//! | `<queue>:processing:<consumer>` | list | items a consumer holds |
//! | `<queue>:consumers` | zset | consumer → lease expiry (server time, ms) |
//! | `<queue>:dead` | list | items that did not decode |
//!
//! Requires Redis 6.2 or later (`LMOVE`, `BLMOVE`, `RPOP` with a count):
//! on an older server, [`ListQueue::reliable`] and [`ListQueue::pop_many`]
//! fail with `STORAGE_UNSUPPORTED` before sending anything.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use derive_where::derive_where;
use redis::Value;

use crate::TRACE_TARGET;
use crate::blocking::{Dedicated, blocking_query};
use crate::client::{Client, require_same_slot};
use crate::codec::FieldValue;
use crate::error::{Context, Error, Result};
use crate::reply::{as_bytes, block_secs, duration_ms, encode_value, shape_error};
use crate::server::Feature;
use crate::stream::default_consumer_name;
use crate::transport::Request;

static POP_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("scripts/queue_pop.lua")));
static LEASE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("scripts/queue_lease.lua")));
static REQUEUE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("scripts/queue_requeue.lua")));
static SETTLE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("scripts/queue_settle.lua")));

/// A FIFO list queue of `T`; see the [module docs](self).
///
/// Cheap to clone; clones share the dedicated connection that blocking pops
/// use (so concurrent blocking pops on clones wait for each other: give
/// each consumer task its own `ListQueue::new`).
#[derive_where(Clone)]
pub struct ListQueue<T> {
    client: Client,
    key: Arc<str>,
    blocking: Arc<tokio::sync::Mutex<Option<Dedicated>>>,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ListQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListQueue").field("key", &self.key).finish()
    }
}

/// The outcome of [`ListQueue::pop_many`]: the items, and the errors of
/// popped items that did not decode (moved to `<queue>:dead`).
#[derive(Debug)]
pub struct PopBatch<T> {
    /// Decoded items, oldest first.
    pub items: Vec<T>,
    /// One `DECODE` error per item that did not decode.
    pub failures: Vec<Error>,
}

impl<T: FieldValue + Send + 'static> ListQueue<T> {
    /// The queue at `key`. Nothing is sent to Redis.
    pub fn new(client: &Client, key: impl Into<String>) -> Self {
        Self {
            client: client.clone(),
            key: Arc::from(key.into()),
            blocking: Arc::new(tokio::sync::Mutex::new(None)),
            _item: PhantomData,
        }
    }

    /// The list key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Where items that did not decode go: `<queue>:dead`.
    pub fn dead_key(&self) -> String {
        format!("{}:dead", self.key)
    }

    fn context(&self, operation: &'static str) -> Context {
        Context::new(operation, Cow::Owned(self.key.to_string()))
    }

    /// Adds one item at the back; returns the queue's new length.
    pub async fn push(&self, item: &T) -> Result<u64> {
        self.push_many(std::slice::from_ref(item)).await
    }

    /// Adds items at the back in one command (atomic, one round trip), in
    /// order: `items[0]` is popped first. Nothing is pushed if any item
    /// fails to encode. Returns the queue's new length.
    pub async fn push_many(&self, items: &[T]) -> Result<u64> {
        let ctx = self.context("queue.push");
        let encoded = items
            .iter()
            .map(|item| encode_value(item, "item"))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| e.with_context(ctx.clone()))?;
        let request = if encoded.is_empty() {
            Request::read(self.len_cmd())
        } else {
            let mut cmd = redis::cmd("LPUSH");
            cmd.arg(&*self.key).arg(&encoded);
            Request::write(cmd)
        };
        self.client.send(ctx, request).await
    }

    /// Removes and returns the oldest item, or `None` when empty.
    pub async fn pop(&self) -> Result<Option<T>> {
        let ctx = self.context("queue.pop");
        let mut cmd = redis::cmd("RPOP");
        cmd.arg(&*self.key);
        let reply: Value = self.client.write(ctx.clone(), &cmd).await?;
        self.decode_popped(reply, &ctx).await
    }

    /// Waits up to `timeout` for an item (`BRPOP`), on a dedicated
    /// connection (not the shared one, whose response timeout a long wait
    /// would trip). `None` when nothing arrived in time; a zero timeout
    /// does not wait.
    pub async fn pop_blocking(&self, timeout: Duration) -> Result<Option<T>> {
        if timeout.is_zero() {
            return self.pop().await;
        }
        let ctx = self.context("queue.pop_blocking");
        let mut cmd = redis::cmd("BRPOP");
        cmd.arg(&*self.key).arg(block_secs(timeout));
        let reply = {
            let mut slot = self.blocking.lock().await;
            blocking_query(&self.client, &mut slot, &cmd, timeout, ctx.clone()).await?
        };
        // BRPOP answers [key, item].
        let item = match reply {
            Value::Nil => Value::Nil,
            Value::Array(mut pair) if pair.len() == 2 => pair.swap_remove(1),
            other => {
                return Err(shape_error(&self.key, "item", "BRPOP reply", &other).with_context(ctx));
            }
        };
        self.decode_popped(item, &ctx).await
    }

    /// Removes and returns up to `max` of the oldest items in one atomic
    /// step (`RPOP key count`), oldest first. Items that do not decode are
    /// moved to `<queue>:dead` and reported; the others are returned.
    pub async fn pop_many(&self, max: usize) -> Result<PopBatch<T>> {
        let ctx = self.context("queue.pop_many");
        let mut batch = PopBatch {
            items: Vec::new(),
            failures: Vec::new(),
        };
        if max == 0 {
            return Ok(batch);
        }
        self.client.require(Feature::PopCount, &ctx).await?;
        let mut cmd = redis::cmd("RPOP");
        cmd.arg(&*self.key).arg(max);
        let reply: Value = self.client.write(ctx.clone(), &cmd).await?;
        let raws = match reply {
            Value::Nil => Vec::new(),
            Value::Array(items) => items,
            other => {
                return Err(shape_error(&self.key, "item", "RPOP reply", &other).with_context(ctx));
            }
        };
        let mut dead = Vec::new();
        for raw in raws {
            match decode_item::<T>(&self.key, &raw) {
                Ok(item) => batch.items.push(item),
                Err(e) => {
                    dead.push(raw_bytes(&raw));
                    batch.failures.push(e.with_context(ctx.clone()));
                }
            }
        }
        if !dead.is_empty() {
            self.park(dead).await;
        }
        Ok(batch)
    }

    /// Number of queued items (`LLEN`).
    pub async fn len(&self) -> Result<u64> {
        self.client
            .read(self.context("queue.len"), self.len_cmd())
            .await
    }

    fn len_cmd(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("LLEN");
        cmd.arg(&*self.key);
        cmd
    }

    /// Whether the queue is empty.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Deletes every queued item atomically; returns how many there were.
    /// Items held by reliable consumers are not touched.
    pub async fn clear(&self) -> Result<u64> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("LLEN")
            .arg(&*self.key)
            .cmd("DEL")
            .arg(&*self.key);
        let (len, _): (u64, u64) = self
            .client
            .write(self.context("queue.clear"), &pipe)
            .await?;
        Ok(len)
    }

    /// The reliable variant of this queue for the consumer `hostname-pid`
    /// (with invalid key characters replaced by `_`); see
    /// [`ListQueue::reliable_as`].
    pub async fn reliable(&self, lease: Duration) -> Result<ReliableQueue<T>> {
        let name: String = default_consumer_name()
            .chars()
            .map(|c| {
                if c.is_whitespace()
                    || c.is_control()
                    || redis_schema::key::RESERVED_CHARS.contains(&c)
                {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        self.reliable_as(&name, lease).await
    }

    /// The reliable variant of this queue for consumer `consumer`, whose
    /// items are requeued by any live consumer of the queue once its lease
    /// (renewed every third of `lease` while this handle lives) has expired.
    ///
    /// The consumer name becomes part of a key, so it must be a valid key
    /// value (`INVALID_KEY` otherwise), and unique among live consumers.
    pub async fn reliable_as(&self, consumer: &str, lease: Duration) -> Result<ReliableQueue<T>> {
        let ctx = self.context("queue.reliable");
        redis_schema::validate_key_value(consumer).map_err(|e| Error::InvalidKey {
            context: ctx.clone(),
            field: "consumer".to_string(),
            reason: e.to_string(),
        })?;
        if lease < Duration::from_millis(3) {
            return Err(Error::Config(
                "a reliable queue lease must be at least 3 ms".into(),
            ));
        }
        // Every operation of a reliable queue moves items with LMOVE/BLMOVE.
        self.client.require(Feature::ListMove, &ctx).await?;
        let keys = ReliableKeys {
            queue: self.key.clone(),
            processing: Arc::from(format!("{}:processing:{consumer}", self.key)),
            registry: Arc::from(format!("{}:consumers", self.key)),
            consumer: Arc::from(consumer),
            lease,
        };
        // Items move between the queue and the processing lists, and the
        // requeue script reads the registry with them: one slot on a cluster.
        for (what, companion) in [
            ("the processing list", &keys.processing),
            ("the consumer registry", &keys.registry),
        ] {
            require_same_slot(&self.client, what, &self.key, companion)
                .map_err(|e| e.with_context(ctx.clone()))?;
        }
        keys.renew(&self.client).await?;
        let keepalive = tokio::spawn(keepalive(self.client.clone(), keys.clone()));
        Ok(ReliableQueue {
            queue: self.clone(),
            keys,
            blocking: Arc::new(tokio::sync::Mutex::new(None)),
            keepalive: Arc::new(AbortOnDrop(keepalive.abort_handle())),
        })
    }

    async fn decode_popped(&self, reply: Value, ctx: &Context) -> Result<Option<T>> {
        if reply == Value::Nil {
            return Ok(None);
        }
        match decode_item::<T>(&self.key, &reply) {
            Ok(item) => Ok(Some(item)),
            Err(e) => {
                self.park(vec![raw_bytes(&reply)]).await;
                Err(e.with_context(ctx.clone()))
            }
        }
    }

    /// Keeps undecodable popped items on the dead list instead of losing
    /// them. Best effort: the pop already happened.
    async fn park(&self, items: Vec<Vec<u8>>) {
        let count = items.len();
        let mut cmd = redis::cmd("LPUSH");
        cmd.arg(self.dead_key()).arg(&items);
        let result: Result<u64> = self.client.write(self.context("queue.park"), &cmd).await;
        match result {
            Ok(_) => {
                tracing::warn!(target: TRACE_TARGET, queue = %self.key, count, "undecodable queue items moved to the dead list");
            }
            Err(e) => {
                tracing::error!(target: TRACE_TARGET, queue = %self.key, count, code = e.code(), "undecodable queue items could not be parked and are lost: {e}");
            }
        }
    }
}

/// The keys and lease of one reliable consumer.
#[derive(Clone, Debug)]
struct ReliableKeys {
    queue: Arc<str>,
    processing: Arc<str>,
    registry: Arc<str>,
    consumer: Arc<str>,
    lease: Duration,
}

impl ReliableKeys {
    fn context(&self, operation: &'static str) -> Context {
        Context::new(operation, Cow::Owned(self.queue.to_string()))
    }

    async fn renew(&self, client: &Client) -> Result<()> {
        let mut invocation = LEASE_SCRIPT.prepare_invoke();
        invocation
            .key(&*self.registry)
            .arg(&*self.consumer)
            .arg(duration_ms(self.lease));
        let _: Value = client
            .write_idempotent(self.context("queue.renew_lease"), &invocation)
            .await?;
        Ok(())
    }

    /// Requeues the items of expired consumers (`consumer = ""`) or of one.
    async fn requeue(&self, client: &Client, consumer: &str) -> Result<u64> {
        let prefix = format!("{}:processing:", self.queue);
        let mut invocation = REQUEUE_SCRIPT.prepare_invoke();
        invocation
            .key(&*self.queue)
            .key(&*self.registry)
            .key(redis_schema::slot_guard_key(&self.queue))
            .arg(prefix)
            .arg(consumer);
        client
            .write(self.context("queue.requeue"), &invocation)
            .await
    }
}

/// Renews the lease and requeues the items of dead consumers, every third
/// of the lease, for as long as the [`ReliableQueue`] handle lives.
async fn keepalive(client: Client, keys: ReliableKeys) {
    let period = keys.lease / 3;
    let shutdown = client.shutdown_token();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        if let Err(e) = keys.renew(&client).await {
            tracing::warn!(target: TRACE_TARGET, queue = %keys.queue, code = e.code(), "could not renew the queue consumer lease: {e}");
        }
        match keys.requeue(&client, "").await {
            Ok(0) => {}
            Ok(moved) => {
                tracing::info!(target: TRACE_TARGET, queue = %keys.queue, moved, "requeued items of queue consumers whose lease expired");
            }
            Err(e) => {
                tracing::warn!(target: TRACE_TARGET, queue = %keys.queue, code = e.code(), "could not requeue stale items: {e}");
            }
        }
    }
}

/// Aborts the keepalive task when the last handle of a consumer drops,
/// which is what lets its lease expire if it never acks.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An item popped from a [`ReliableQueue`], held until acked.
#[derive(Debug, Clone, PartialEq)]
pub struct Held<T> {
    /// The decoded item.
    pub item: T,
    /// The item exactly as stored, to find it in the processing list.
    raw: Vec<u8>,
}

/// A consumer of a [`ListQueue`] that holds popped items until it acks
/// them; see the [module docs](self) and [`ListQueue::reliable_as`].
///
/// While any clone lives, a background task renews the consumer's lease
/// and requeues the items of consumers whose lease expired. Drop it (or
/// crash) without acking and its items go back on the queue once the lease
/// expires; [`ReliableQueue::close`] gives them back at once.
#[derive_where(Clone)]
pub struct ReliableQueue<T> {
    queue: ListQueue<T>,
    keys: ReliableKeys,
    blocking: Arc<tokio::sync::Mutex<Option<Dedicated>>>,
    keepalive: Arc<AbortOnDrop>,
}

impl<T> std::fmt::Debug for ReliableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReliableQueue")
            .field("queue", &self.keys.queue)
            .field("consumer", &self.keys.consumer)
            .field("lease", &self.keys.lease)
            .finish()
    }
}

impl<T: FieldValue + Send + 'static> ReliableQueue<T> {
    /// The plain queue underneath (push, length, clear).
    pub fn queue(&self) -> &ListQueue<T> {
        &self.queue
    }

    /// This consumer's name.
    pub fn consumer(&self) -> &str {
        &self.keys.consumer
    }

    /// This consumer's processing list key.
    pub fn processing_key(&self) -> &str {
        &self.keys.processing
    }

    /// Adds one item at the back of the queue; returns its new length.
    pub async fn push(&self, item: &T) -> Result<u64> {
        self.queue.push(item).await
    }

    /// Adds items at the back of the queue, in order; returns its new length.
    pub async fn push_many(&self, items: &[T]) -> Result<u64> {
        self.queue.push_many(items).await
    }

    /// Moves the oldest item to this consumer's processing list and returns
    /// it, renewing the lease in the same step; `None` when empty.
    pub async fn pop(&self) -> Result<Option<Held<T>>> {
        let ctx = self.keys.context("queue.reliable_pop");
        let mut invocation = POP_SCRIPT.prepare_invoke();
        invocation
            .key(&*self.keys.queue)
            .key(&*self.keys.processing)
            .key(&*self.keys.registry)
            .arg(&*self.keys.consumer)
            .arg(duration_ms(self.keys.lease));
        let reply: Value = self.queue.client.write(ctx.clone(), &invocation).await?;
        self.held(reply, &ctx).await
    }

    /// Waits up to `timeout` for an item (`BLMOVE` into the processing
    /// list), on a dedicated connection; `None` when nothing arrived.
    pub async fn pop_blocking(&self, timeout: Duration) -> Result<Option<Held<T>>> {
        if timeout.is_zero() {
            return self.pop().await;
        }
        let ctx = self.keys.context("queue.reliable_pop_blocking");
        // The lease must cover the item from the moment it moves.
        self.keys.renew(&self.queue.client).await?;
        let mut cmd = redis::cmd("BLMOVE");
        cmd.arg(&*self.keys.queue)
            .arg(&*self.keys.processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(block_secs(timeout));
        let reply = {
            let mut slot = self.blocking.lock().await;
            blocking_query(&self.queue.client, &mut slot, &cmd, timeout, ctx.clone()).await?
        };
        if reply != Value::Nil {
            // A long wait may have outlived the lease renewed above.
            if let Err(e) = self.keys.renew(&self.queue.client).await {
                tracing::warn!(target: TRACE_TARGET, queue = %self.keys.queue, code = e.code(), "could not renew the lease after a blocking pop: {e}");
            }
        }
        self.held(reply, &ctx).await
    }

    async fn held(&self, reply: Value, ctx: &Context) -> Result<Option<Held<T>>> {
        if reply == Value::Nil {
            return Ok(None);
        }
        let raw = raw_bytes(&reply);
        match decode_item::<T>(&self.keys.queue, &reply) {
            Ok(item) => Ok(Some(Held { item, raw })),
            Err(e) => {
                // Never lost: from the processing list to the dead list, atomically.
                let dead = self.queue.dead_key();
                if let Err(park) = self.settle(&raw, &dead).await {
                    tracing::warn!(target: TRACE_TARGET, queue = %self.keys.queue, code = park.code(), "could not park an undecodable item; it stays held and is requeued with the lease: {park}");
                }
                Err(e.with_context(ctx.clone()))
            }
        }
    }

    async fn settle(&self, raw: &[u8], to: &str) -> Result<bool> {
        let mut invocation = SETTLE_SCRIPT.prepare_invoke();
        invocation.key(&*self.keys.processing).key(to).arg(raw);
        let ctx = self.keys.context("queue.settle");
        let moved: i64 = self.queue.client.write(ctx, &invocation).await?;
        Ok(moved == 1)
    }

    /// Done with `held`: removes it from the processing list. Returns
    /// `false` if it was no longer held (the lease had expired and the item
    /// was requeued, so it may be processed again).
    pub async fn ack(&self, held: &Held<T>) -> Result<bool> {
        let mut cmd = redis::cmd("LREM");
        cmd.arg(&*self.keys.processing).arg(1).arg(&held.raw);
        let ctx = self.keys.context("queue.ack");
        let removed: i64 = self.queue.client.write(ctx, &cmd).await?;
        Ok(removed == 1)
    }

    /// Gives `held` back: it goes to the back of the queue for another try.
    /// Returns `false` if it was no longer held.
    pub async fn requeue(&self, held: &Held<T>) -> Result<bool> {
        self.settle(&held.raw, &self.keys.queue).await
    }

    /// Items this consumer holds (`LLEN` of its processing list).
    pub async fn held_count(&self) -> Result<u64> {
        let mut cmd = redis::cmd("LLEN");
        cmd.arg(&*self.keys.processing);
        self.queue
            .client
            .read(self.keys.context("queue.held"), &cmd)
            .await
    }

    /// Requeues now the items of every consumer whose lease has expired;
    /// returns how many. The keepalive task does this every third of the
    /// lease; call it to recover at once (e.g. at start-up).
    pub async fn requeue_stale(&self) -> Result<u64> {
        self.keys.requeue(&self.queue.client, "").await
    }

    /// Stops this consumer cleanly: its held items go back on the queue at
    /// once and it leaves the lease registry. Returns how many were requeued.
    pub async fn close(self) -> Result<u64> {
        self.keepalive.0.abort();
        self.keys
            .requeue(&self.queue.client, &self.keys.consumer)
            .await
    }
}

fn raw_bytes(value: &Value) -> Vec<u8> {
    as_bytes(value).map(<[u8]>::to_vec).unwrap_or_default()
}

fn decode_item<T: FieldValue>(key: &str, value: &Value) -> Result<T> {
    let raw = as_bytes(value).ok_or_else(|| shape_error(key, "item", "list item", value))?;
    T::decode_value(raw).map_err(|reason| Error::Decode {
        context: Context::default(),
        key: key.to_string(),
        field: "item".to_string(),
        reason: format!("{reason} (the item was moved to {key}:dead)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_items_are_decode_errors() {
        let err = decode_item::<i64>("q", &Value::BulkString(b"x1".to_vec())).expect_err("bad int");
        assert_eq!(err.code(), "DECODE");
        assert!(err.to_string().contains("q:dead"), "{err}");
        let err = decode_item::<String>("q", &Value::Int(3)).expect_err("not a string");
        assert_eq!(err.code(), "DECODE");
        assert_eq!(
            decode_item::<String>("q", &Value::BulkString(b"a".to_vec())).ok(),
            Some("a".into())
        );
    }
}

//! Pub/sub, typed: publish on the shared connection, subscribe on a
//! connection of its own that comes back by itself.
//!
//! A [`Channel<T>`] carries one value per message in the [`FieldValue`]
//! codec: `String`, numbers, unit enums, or [`Json<T>`](crate::Json) for
//! structs (job status updates as JSON objects, say).
//!
//! ```no_run
//! use redis_runtime::{Client, Json, pubsub::Channel};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug)]
//! struct JobUpdate { tenant_id: String, job_id: String, status: String }
//!
//! # async fn demo(client: &Client) -> redis_runtime::Result<()> {
//! let updates = Channel::<Json<JobUpdate>>::new(client, "job_updates");
//! let mut subscription = updates.subscribe().await?;
//! updates
//!     .publish(&Json(JobUpdate { tenant_id: "t1".into(), job_id: "j1".into(), status: "RUNNING".into() }))
//!     .await?;
//! while let Some(message) = subscription.next().await {
//!     match message {
//!         Ok(Json(update)) => println!("job {} is {}", update.job_id, update.status),
//!         Err(e) => eprintln!("skipping a bad message: {e}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Delivery
//!
//! Pub/sub is at most once: Redis keeps no message for a subscriber that
//! is not connected. A [`Subscription`] lives on its own connection (a
//! subscribed connection can run nothing else); when that connection drops
//! (server restart, network) a background task reconnects with the
//! client's backoff and subscribes again, and messages published meanwhile
//! are missed. Use a stream when every message matters. A message that does
//! not decode is yielded as a `DECODE` error and the subscription goes on.
//! Dropping the [`Subscription`] closes its connection.
//!
//! # On a Redis Cluster
//!
//! A channel made with [`Channel::new`] is a classic one, which the
//! cluster delivers to the subscribers of every node over its bus: a
//! subscription connects to one of the nodes the URL lists, the next one
//! on each (re)connection. Every message crosses the bus to every node.
//!
//! A channel made with [`Channel::sharded`] is a *shard channel*
//! (`SPUBLISH`/`SSUBSCRIBE`, Redis 7.0): like a key, its name has a hash
//! slot, and a message goes only to the primary serving that slot and its
//! subscribers there. A subscription runs on a cluster connection of its
//! own (RESP3, so messages come as pushes) and subscribes again, on the
//! slot's current primary, when that primary is lost or the slot moves
//! (the server then ends the subscription with `sunsubscribe`). Shard
//! channels and classic ones are separate: a service that publishes with
//! `PUBLISH` is not heard by `SSUBSCRIBE`, so both sides must agree. On one
//! server (standalone or Sentinel) a sharded channel is the classic
//! channel of that name: there is one shard, and everything a subscriber
//! hears comes from it.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use derive_where::derive_where;
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};

use crate::TRACE_TARGET;
use crate::client::Client;
use crate::codec::FieldValue;
use crate::error::{Context, Error, Result};
use crate::reply::{duration_ms, encode_value};
use crate::server::Feature;

/// How often an idle subscription pings the server, to notice a dead
/// connection that closed without a word.
const PING_INTERVAL: Duration = Duration::from_secs(15);

/// Messages buffered between the connection and a slow reader.
const BUFFER: usize = 1024;

/// A pub/sub channel carrying `T` messages; see the [module docs](self).
#[derive_where(Clone)]
pub struct Channel<T> {
    client: Client,
    name: Arc<str>,
    /// A shard channel on a cluster ([`Channel::sharded`]).
    sharded: bool,
    _message: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("name", &self.name).finish()
    }
}

impl<T: FieldValue + Send + 'static> Channel<T> {
    /// The classic channel `name`. Nothing is sent to Redis.
    pub fn new(client: &Client, name: impl Into<String>) -> Self {
        Self {
            client: client.clone(),
            name: Arc::from(name.into()),
            sharded: false,
            _message: PhantomData,
        }
    }

    /// The shard channel `name` on a Redis Cluster: published with
    /// `SPUBLISH` and heard with `SSUBSCRIBE` on the primary serving the
    /// name's hash slot only (see the [module docs](self)). On one server,
    /// the classic channel `name`. Nothing is sent to Redis.
    ///
    /// ```no_run
    /// use redis_runtime::{Client, pubsub::Channel};
    ///
    /// # async fn demo(client: &Client) -> redis_runtime::Result<()> {
    /// // A hash tag keeps a tenant's channels on the shard of its keys.
    /// let status = Channel::<String>::sharded(client, "{t1}:job-status");
    /// let mut subscription = status.subscribe().await?;
    /// status.publish(&"running".to_string()).await?;
    /// # Ok(()) }
    /// ```
    pub fn sharded(client: &Client, name: impl Into<String>) -> Self {
        Self {
            sharded: true,
            ..Self::new(client, name)
        }
    }

    /// Whether messages go through shard channels here: a sharded
    /// channel, on a cluster.
    fn through_shards(&self) -> bool {
        self.sharded && self.client.config().is_cluster()
    }

    /// The channel name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn context(&self, operation: &'static str) -> Context {
        Context::new(operation, Cow::Owned(self.name.to_string()))
    }

    /// Publishes one message; returns how many subscribers received it. On
    /// a Redis Cluster a classic channel's count is only that of the node
    /// that took the message (it reaches the others over the cluster bus);
    /// a [sharded](Self::sharded) channel's is every subscriber, since they
    /// are all on its slot's primary.
    pub async fn publish(&self, message: &T) -> Result<u64> {
        let ctx = self.context("pubsub.publish");
        let payload = encode_value(message, "message").map_err(|e| e.with_context(ctx.clone()))?;
        let mut cmd = if self.through_shards() {
            self.client.require(Feature::ShardedPubSub, &ctx).await?;
            redis::cmd("SPUBLISH")
        } else {
            redis::cmd("PUBLISH")
        };
        cmd.arg(&*self.name).arg(payload);
        self.client.write(ctx, &cmd).await
    }

    /// Subscribes on a new connection. Returns once the server confirmed
    /// the subscription, so anything published after this returns is
    /// received; fails (typed, within the operation timeout) if the first
    /// connection cannot be made. Later losses are repaired in the
    /// background.
    pub async fn subscribe(&self) -> Result<Subscription<T>> {
        if self.client.is_shut_down() {
            return Err(Error::Shutdown {
                context: self.context("pubsub.subscribe"),
            });
        }
        let (tx, rx) = mpsc::channel(BUFFER);
        let (ready_tx, ready_rx) = oneshot::channel();
        let resubscriptions = Arc::new(AtomicU64::new(0));
        if self.through_shards() {
            let ctx = self.context("pubsub.subscribe");
            self.client.require(Feature::ShardedPubSub, &ctx).await?;
        }
        let task = tokio::spawn(run_subscription::<T>(
            self.client.clone(),
            self.name.clone(),
            self.through_shards(),
            tx,
            ready_tx,
            resubscriptions.clone(),
        ));
        let subscription = Subscription {
            rx,
            task: task.abort_handle(),
            resubscriptions,
            channel: self.name.clone(),
        };
        match ready_rx.await {
            Ok(Ok(())) => Ok(subscription),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Shutdown {
                context: self.context("pubsub.subscribe"),
            }),
        }
    }
}

/// Messages of one channel, as they arrive; see the [module docs](self).
///
/// Also a [`futures_util::Stream`] of `Result<T>`. Dropping it closes its
/// connection.
pub struct Subscription<T> {
    rx: mpsc::Receiver<Result<T>>,
    task: tokio::task::AbortHandle,
    resubscriptions: Arc<AtomicU64>,
    channel: Arc<str>,
}

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.channel)
            .field("resubscriptions", &self.resubscriptions())
            .finish()
    }
}

impl<T> Subscription<T> {
    /// The next message: `Ok` with the decoded value, `Err` with a `DECODE`
    /// error for a message that did not decode. `None` once the client was
    /// shut down.
    pub async fn next(&mut self) -> Option<Result<T>> {
        self.rx.recv().await
    }

    /// How many times the subscription was re-established after its
    /// connection was lost.
    pub fn resubscriptions(&self) -> u64 {
        self.resubscriptions.load(Ordering::Acquire)
    }

    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        // Ends the task, which drops the connection: the server forgets us.
        self.task.abort();
    }
}

impl<T> futures_util::Stream for Subscription<T> {
    type Item = Result<T>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// A subscribed connection: where its messages arrive, and how to tell
/// it is still alive.
enum Subscribed {
    /// A classic subscription on a pub/sub connection.
    Classic(PubSubSink, PubSubStream),
    /// A shard channel subscription on a cluster connection of its own,
    /// whose pushes arrive on `pushes`.
    Sharded {
        connection: redis::cluster_async::ClusterConnection,
        pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
        channel: Arc<str>,
    },
}

impl Subscribed {
    /// The payload of the next message; `None` once the subscription is
    /// lost (its connection closed, or, for a shard channel, a node of the
    /// cluster lost its link or the server ended the subscription because
    /// the slot moved: subscribing again finds the slot's primary now).
    async fn next_payload(&mut self) -> Option<Vec<u8>> {
        match self {
            Subscribed::Classic(_, messages) => messages
                .next()
                .await
                .map(|message| message.get_payload_bytes().to_vec()),
            Subscribed::Sharded {
                pushes, channel, ..
            } => loop {
                let mut push = pushes.recv().await?;
                let names_channel = matches!(
                    push.data.first(),
                    Some(redis::Value::BulkString(name)) if name.as_slice() == channel.as_bytes()
                );
                match push.kind {
                    redis::PushKind::SMessage if names_channel && push.data.len() > 1 => {
                        match push.data.swap_remove(1) {
                            redis::Value::BulkString(payload) => return Some(payload),
                            _ => continue,
                        }
                    }
                    redis::PushKind::SUnsubscribe if names_channel => return None,
                    redis::PushKind::Disconnection => return None,
                    _ => continue,
                }
            },
        }
    }

    /// Whether the connection answers a `PING` within `limit`.
    async fn answers(&mut self, limit: Duration) -> bool {
        let ping = async {
            match self {
                Subscribed::Classic(sink, _) => sink.ping::<redis::Value>().await.is_ok(),
                Subscribed::Sharded { connection, .. } => redis::cmd("PING")
                    .query_async::<redis::Value>(connection)
                    .await
                    .is_ok(),
            }
        };
        matches!(tokio::time::timeout(limit, ping).await, Ok(true))
    }
}

/// Opens a pub/sub connection and subscribes, bounded by the operation timeout.
async fn connect(client: &Client, channel: &Arc<str>, sharded: bool) -> Result<Subscribed> {
    let ctx = Context::new("pubsub.subscribe", Cow::Owned(channel.to_string()));
    let limit = client.config().operation_timeout;
    let started = std::time::Instant::now();
    let attempt = async {
        if sharded {
            let (tx, pushes) = mpsc::unbounded_channel();
            let mut connection = client.sharded_subscriber(tx).await?;
            connection
                .ssubscribe(&**channel)
                .await
                .map_err(|e| Error::from_redis(&e, ctx.clone()))?;
            return Ok(Subscribed::Sharded {
                connection,
                pushes,
                channel: channel.clone(),
            });
        }
        let redis_client = client.subscriber_client().await?;
        let subscribed = async {
            let mut pubsub = redis_client.get_async_pubsub().await?;
            pubsub.subscribe(&**channel).await?;
            Ok::<_, redis::RedisError>(pubsub.split())
        };
        let (sink, messages) = subscribed
            .await
            .map_err(|e| Error::from_redis(&e, ctx.clone()))?;
        Ok(Subscribed::Classic(sink, messages))
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(subscribed)) => Ok(subscribed),
        Ok(Err(e)) => {
            // With Sentinel, the master may have moved.
            client.suspect_master(&e, started);
            Err(e.with_context(ctx))
        }
        Err(_) => Err(Error::Timeout {
            context: ctx,
            elapsed_ms: duration_ms(limit),
            // SUBSCRIBE changes nothing on the server.
            outcome_unknown: false,
        }),
    }
}

/// Owns the subscription's connection: forwards messages, and reconnects
/// and resubscribes when the connection is lost, until the [`Subscription`]
/// is dropped or the client shuts down.
async fn run_subscription<T: FieldValue + Send + 'static>(
    client: Client,
    channel: Arc<str>,
    sharded: bool,
    tx: mpsc::Sender<Result<T>>,
    ready: oneshot::Sender<Result<()>>,
    resubscriptions: Arc<AtomicU64>,
) {
    let shutdown = client.shutdown_token();
    let endpoint = client.config().endpoint().to_string();
    let mut ready = Some(ready);
    let mut failures = 0u32;
    let mut moves = client.link_moves();
    loop {
        // Marked seen before connecting: a move during the connect
        // resubscribes at once.
        moves.mark_unchanged();
        match connect(&client, &channel, sharded).await {
            Ok(mut subscribed) => {
                match ready.take() {
                    Some(ready) => {
                        let _ = ready.send(Ok(()));
                    }
                    None => {
                        resubscriptions.fetch_add(1, Ordering::AcqRel);
                        tracing::info!(target: TRACE_TARGET, endpoint, channel = %channel, "redis subscription restored");
                    }
                }
                failures = 0;
                let mut ping = tokio::time::interval(PING_INTERVAL);
                ping.reset();
                loop {
                    tokio::select! {
                        () = tx.closed() => return,
                        () = shutdown.cancelled() => return,
                        payload = subscribed.next_payload() => {
                            let Some(payload) = payload else {
                                tracing::warn!(target: TRACE_TARGET, endpoint, channel = %channel, "redis subscription lost; resubscribing");
                                break;
                            };
                            let item = T::decode_value(&payload).map_err(|reason| Error::Decode {
                                context: Context::new("pubsub.receive", Cow::Owned(channel.to_string())),
                                key: channel.to_string(),
                                field: "message".to_string(),
                                reason,
                            });
                            if tx.send(item).await.is_err() {
                                return;
                            }
                        }
                        Ok(()) = moves.changed() => {
                            // A failover: the server this connection goes to
                            // is no longer the one the client uses.
                            tracing::info!(target: TRACE_TARGET, endpoint, channel = %channel, "redis master moved; resubscribing there");
                            break;
                        }
                        _ = ping.tick() => {
                            if !subscribed.answers(client.config().operation_timeout).await {
                                tracing::warn!(target: TRACE_TARGET, endpoint, channel = %channel, "redis subscription connection is not answering; resubscribing");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(e));
                    return;
                }
                failures += 1;
                tracing::warn!(target: TRACE_TARGET, endpoint, channel = %channel, attempt = failures, code = e.code(), "redis subscription reconnect failed: {e}");
            }
        }
        let retry = client.config().retry;
        let delay = retry
            .min_delay
            .saturating_mul(1u32 << failures.min(16))
            .min(retry.max_delay);
        tokio::select! {
            () = tx.closed() => return,
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
            // A failover completed: the new master is worth trying now.
            Ok(()) = moves.changed() => {}
        }
    }
}

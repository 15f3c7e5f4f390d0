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
//! On a Redis Cluster the channels are the classic ones, which the cluster
//! delivers to the subscribers of every node: a subscription connects to
//! one of the nodes the URL lists, the next one on each (re)connection.

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

use crate::client::{Client, TRACE_TARGET};
use crate::codec::FieldValue;
use crate::error::{Context, Error, Result};
use crate::reply::{duration_ms, encode_value};

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
    _message: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("name", &self.name).finish()
    }
}

impl<T: FieldValue + Send + 'static> Channel<T> {
    /// The channel `name`. Nothing is sent to Redis.
    pub fn new(client: &Client, name: impl Into<String>) -> Self {
        Self {
            client: client.clone(),
            name: Arc::from(name.into()),
            _message: PhantomData,
        }
    }

    /// The channel name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn context(&self, operation: &'static str) -> Context {
        Context::new(operation, Cow::Owned(self.name.to_string()))
    }

    /// Publishes one message; returns how many subscribers received it.
    pub async fn publish(&self, message: &T) -> Result<u64> {
        let ctx = self.context("pubsub.publish");
        let payload = encode_value(message, "message").map_err(|e| e.with_context(ctx.clone()))?;
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&*self.name).arg(payload);
        self.client.query(ctx, &cmd).await
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
        let task = tokio::spawn(run_subscription::<T>(
            self.client.clone(),
            self.name.clone(),
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

/// Opens a pub/sub connection and subscribes, bounded by the operation timeout.
async fn connect(client: &Client, channel: &str) -> Result<(PubSubSink, PubSubStream)> {
    let ctx = Context::new("pubsub.subscribe", Cow::Owned(channel.to_string()));
    let limit = client.config().operation_timeout;
    let started = std::time::Instant::now();
    let attempt = async {
        let redis_client = client.subscriber_client().await?;
        let subscribed = async {
            let mut pubsub = redis_client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub.split())
        };
        subscribed
            .await
            .map_err(|e| Error::from_redis(&e, ctx.clone()))
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(pair)) => Ok(pair),
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
        match connect(&client, &channel).await {
            Ok((mut sink, mut messages)) => {
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
                        message = messages.next() => {
                            let Some(message) = message else {
                                tracing::warn!(target: TRACE_TARGET, endpoint, channel = %channel, "redis subscription connection lost; resubscribing");
                                break;
                            };
                            let item = T::decode_value(message.get_payload_bytes()).map_err(|reason| Error::Decode {
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
                            let alive = tokio::time::timeout(
                                client.config().operation_timeout,
                                sink.ping::<redis::Value>(),
                            )
                            .await;
                            if !matches!(alive, Ok(Ok(_))) {
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

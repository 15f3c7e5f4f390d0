//! Sending a request: the one retry loop and the operation frame every
//! call on the client goes through (the rules are the `transport`
//! module's), and replica acknowledgements after a write.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::TRACE_TARGET;
use crate::config::AckReplicas;
use crate::error::{Context, Error, Result};
use crate::transport::{Effect, Payload, Request};

use super::{Client, Connection, Source, duration_ms};

/// On a Redis Cluster, the longest a request waits between attempts. A
/// slot's master changes without notice there (no `+switch-master` ends
/// a backoff early, as with Sentinel), and a master elected after a crash
/// serves at once: with the full backoff, writes resumed 0.5 to 0.8 s
/// after the promotion (`tests/cluster_faults.rs`).
const CLUSTER_RECHECK: Duration = Duration::from_millis(100);

impl Client {
    /// After a write on `conn`: with [`Config::replica_acks`](crate::Config::replica_acks) set, waits
    /// for that many replicas to acknowledge it (see [`AckBatch`]). When
    /// too few did and it waits for all of them, counts them again in the
    /// background (a replica may be gone for good).
    async fn acknowledge(&self, conn: &Connection, context: &Context) -> Result<()> {
        let Some(acks) = self.inner.config.replica_acks else {
            return Ok(());
        };
        let batch = &conn.link.acks;
        let acknowledged = batch
            .acknowledge(&mut conn.clone(), acks.replicas, acks.timeout, context)
            .await;
        if matches!(acknowledged, Err(Error::NotReplicated { .. }))
            && acks.replicas == AckReplicas::All
            && batch.recount_due()
        {
            let (client, link) = (self.clone(), conn.link.clone());
            tokio::spawn(async move { client.count_replicas(&link).await });
        }
        acknowledged
    }

    /// Runs one operation on the shared connection, once: for work that a
    /// single request cannot express (several round trips that decode as
    /// they go). `op` counts as a write ([`Effect::Write`]): it is never
    /// sent again, and with [`Config::replica_acks`](crate::Config::replica_acks) set it is followed by
    /// `WAIT`. Prefer [`Client::read`] and [`Client::write`], which wait
    /// out server states that refused a request.
    ///
    /// Like every call on the client, it refuses work after
    /// [`Client::shutdown`], is bounded by [`Config::operation_timeout`](crate::Config::operation_timeout),
    /// attaches `context` to any error and reports to the metrics hook.
    /// redis-rs errors convert with `?` inside `op`.
    pub async fn run<T, F, Fut>(&self, context: Context, op: F) -> Result<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_with_deadline(
            context,
            self.inner.config.operation_timeout,
            Effect::Write,
            op,
        )
        .await
    }

    /// Sends `request` (a command, a pipeline or a prepared script call,
    /// and what it does to the data) and decodes its reply, within
    /// [`Config::operation_timeout`](crate::Config::operation_timeout), with `context` on any error.
    ///
    /// Whether it is sent again after a failure, and whether it waits for
    /// replica acknowledgements, follow from its [`Effect`] alone, on every
    /// topology:
    ///
    /// - every request is sent again, after a backoff
    ///   ([`Config::retry`](crate::Config) bounds: 50 ms doubling up to 2 s
    ///   by default), while the server refuses it without running it
    ///   (`LOADING`, `BUSY`, `MASTERDOWN`, `READONLY`, `TRYAGAIN`,
    ///   `CLUSTERDOWN`, a redirect not followed yet, a refused connection),
    ///   then fails with `STORAGE_UNAVAILABLE` naming the state;
    /// - after a dropped connection or a reply timeout, a read or an
    ///   idempotent write is sent again; a write fails at once with
    ///   [`Error::outcome_unknown`] set, so the caller re-reads instead of
    ///   repeating a `create`;
    /// - with [`Config::replica_acks`](crate::Config::replica_acks) set, a write or an idempotent write
    ///   is followed by `WAIT` on the same connection, and too few
    ///   acknowledgements fail it with `STORAGE_NOT_REPLICATED` (it ran;
    ///   re-read before retrying). A read never waits.
    ///
    /// [`Client::read`], [`Client::write`] and [`Client::write_idempotent`]
    /// send a [`Payload`] with their effect.
    pub async fn send<T: redis::FromRedisValue>(
        &self,
        context: Context,
        request: Request<'_>,
    ) -> Result<T> {
        let deadline = self.inner.config.operation_timeout;
        let deployment = self.inner.config.deployment();
        let payload = request.payload();
        self.run_retrying(context, deadline, request.effect(), |mut conn| async move {
            payload
                .send(&mut conn)
                .await
                .map_err(|e| Error::from_redis_on(&e, Context::default(), deployment))
        })
        .await
    }

    /// Sends a read ([`Effect::Read`]; see [`Client::send`]): sent again
    /// after any transient failure within the deadline, never waiting for
    /// replicas. Only for requests that change nothing: a write sent as a
    /// read may run twice after a dropped connection, and is not
    /// acknowledged by replicas.
    ///
    /// ```no_run
    /// # async fn demo(client: &redis_runtime::Client) -> redis_runtime::Result<()> {
    /// use redis_runtime::Context;
    ///
    /// let mut cmd = redis::cmd("SCARD");
    /// cmd.arg("jobs:status:queued");
    /// let queued: u64 = client.read(Context::new("jobs.count", "jobs:status:{status}"), &cmd).await?;
    /// # let _ = queued;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read<'r, T: redis::FromRedisValue>(
        &self,
        context: Context,
        payload: impl Into<Payload<'r>>,
    ) -> Result<T> {
        self.send(context, Request::read(payload)).await
    }

    /// Sends a write ([`Effect::Write`]; see [`Client::send`]): sent again
    /// only when the server provably did not run it, acknowledged by
    /// replicas when configured.
    ///
    /// ```no_run
    /// # async fn demo(client: &redis_runtime::Client) -> redis_runtime::Result<()> {
    /// use redis_runtime::Context;
    ///
    /// let mut cmd = redis::cmd("LPUSH");
    /// cmd.arg("audit:log").arg("job j7 started");
    /// match client.write::<u64>(Context::new("audit.append", "audit:log"), &cmd).await {
    ///     Ok(_) => {}
    ///     // The connection dropped after sending: it may have run.
    ///     Err(e) if e.outcome_unknown() => { /* re-read before appending again */ }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn write<'r, T: redis::FromRedisValue>(
        &self,
        context: Context,
        payload: impl Into<Payload<'r>>,
    ) -> Result<T> {
        self.send(context, Request::write(payload)).await
    }

    /// Sends a write that is harmless to run twice
    /// ([`Effect::IdempotentWrite`]: `SET` to a fixed value, `SADD`, …; see
    /// [`Client::send`]): sent again like a read, acknowledged like a
    /// write.
    pub async fn write_idempotent<'r, T: redis::FromRedisValue>(
        &self,
        context: Context,
        payload: impl Into<Payload<'r>>,
    ) -> Result<T> {
        self.send(context, Request::idempotent_write(payload)).await
    }

    /// Sends `payload` as a write: [`Client::write`] under its old name.
    #[deprecated(
        since = "0.1.0",
        note = "say what the request does: `Client::write` (the same behaviour), or `Client::read` for a read, which is sent again after a dropped connection and never waits for replicas"
    )]
    pub async fn query<'r, T: redis::FromRedisValue>(
        &self,
        context: Context,
        payload: impl Into<Payload<'r>>,
    ) -> Result<T> {
        self.write(context, payload).await
    }

    /// Sends `payload` as a read: [`Client::read`] under its old name.
    #[deprecated(
        since = "0.1.0",
        note = "say what the request does: `Client::read` for a read (the same behaviour), or `Client::write_idempotent` for a write that is harmless to repeat, which also waits for replica acknowledgements"
    )]
    pub async fn query_repeatable<'r, T: redis::FromRedisValue>(
        &self,
        context: Context,
        payload: impl Into<Payload<'r>>,
    ) -> Result<T> {
        self.read(context, payload).await
    }

    /// Runs `op` (one attempt of a request of `effect`) on the shared
    /// connection, and again after a backoff while it fails in a way the
    /// resend rule allows ([`Effect::may_resend`]; see the `transport`
    /// module), within `deadline` in all; acknowledges a write when
    /// configured. The one retry loop: every request goes through it, and
    /// reads that decode as they go call it directly.
    pub(crate) async fn run_retrying<T, F, Fut>(
        &self,
        context: Context,
        deadline: Duration,
        effect: Effect,
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let policy = self.inner.config.retry;
        let max_delay = if self.inner.config.is_cluster() {
            policy.max_delay.min(CLUSTER_RECHECK)
        } else {
            policy.max_delay
        };
        let started = Instant::now();
        let ctx = context.clone();
        let work = async move {
            let mut delay = policy.min_delay.min(max_delay);
            let mut retried = false;
            // Watched from the first failure on (not on the hot path): a
            // failover that completes during a backoff ends it early.
            let mut moves: Option<tokio::sync::watch::Receiver<u64>> = None;
            loop {
                let attempt_at = Instant::now();
                let attempt = async {
                    let conn = self.connection(&ctx, effect).await?;
                    let value = op(conn.clone()).await?;
                    if effect.writes() {
                        self.acknowledge(&conn, &ctx).await?;
                    }
                    Ok::<T, Error>(value)
                };
                let error = match attempt.await {
                    Ok(value) => return Ok(value),
                    Err(e) => e.with_context(ctx.clone()),
                };
                let elapsed = started.elapsed();
                // Sleeping past the deadline would only turn what the
                // server said into a bare timeout.
                if !effect.may_resend(&error) || elapsed + delay >= deadline {
                    return Err(if retried {
                        error.after_waiting(duration_ms(elapsed))
                    } else {
                        error
                    });
                }
                tracing::debug!(target: TRACE_TARGET, operation = %ctx.operation, delay_ms = duration_ms(delay), "redis not ready, retrying: {error}");
                retried = true;
                let moves = moves.get_or_insert_with(|| {
                    let mut moves = self.link_moves();
                    moves.mark_unchanged();
                    moves
                });
                // A failover explains this as well as a restart does: with
                // Sentinel, the next attempt goes wherever the master is now.
                if matches!(self.inner.source, Source::Sentinel(_)) {
                    let _ = self.refresh_master(Some(attempt_at), None).await;
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    Ok(()) = moves.changed() => {}
                }
                delay = delay.saturating_mul(2).min(max_delay);
            }
        };
        self.bounded(context, deadline, effect, work).await
    }

    /// Runs `op`, a request of `effect`, once on the shared connection
    /// within `deadline`; acknowledges a write when configured.
    pub(crate) async fn run_with_deadline<T, F, Fut>(
        &self,
        context: Context,
        deadline: Duration,
        effect: Effect,
        op: F,
    ) -> Result<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let ctx = context.clone();
        let work = async move {
            let conn = self.connection(&ctx, effect).await?;
            let value = op(conn.clone()).await?;
            if effect.writes() {
                self.acknowledge(&conn, &ctx).await?;
            }
            Ok(value)
        };
        self.bounded(context, deadline, effect, work).await
    }

    /// The frame of every operation on the shared connection: refuses work
    /// after shutdown, tracks it for graceful shutdown, bounds it by
    /// `deadline`, fills in `context`, reports to metrics and tracing. A
    /// write cut off by the deadline may have run: its outcome is unknown.
    async fn bounded<T>(
        &self,
        context: Context,
        deadline: Duration,
        effect: Effect,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = if self.is_shut_down() {
            Err(Error::Shutdown {
                context: context.clone(),
            })
        } else {
            self.note_attempt();
            let tracked = self.inner.in_flight.track_future(work);
            match tokio::time::timeout(deadline, tracked).await {
                Ok(result) => result.map_err(|e| e.with_context(context.clone())),
                Err(_) => Err(Error::Timeout {
                    context: context.clone(),
                    elapsed_ms: duration_ms(deadline),
                    outcome_unknown: effect.writes(),
                }),
            }
        };
        if let Err(error) = &result {
            self.suspect_master(error, started);
        }
        self.observe(&context, started.elapsed(), &result);
        result
    }
}

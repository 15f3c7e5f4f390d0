//! A Redis Cluster connection that follows redirects and never resends
//! anything else.
//!
//! redis-rs's cluster connection has one retry budget for everything: the
//! same setting makes it follow `MOVED`/`ASK`, wait out `TRYAGAIN`, and
//! send a request again after its connection dropped or its reply timed
//! out, which runs a write twice when the server had run it. So the
//! connection is built with no retries of its own (`retries(0)`: every
//! failure comes back to us at once; it still refreshes its slot map after
//! a `MOVED` and reconnects a node whose connection broke), and
//! [`Redirecting`] follows the redirects, which prove the node that
//! answered ran nothing. Everything else goes up to the one resend rule
//! ([`Effect::may_resend`](super::Effect)), the same on every topology.

use std::io;

use redis::aio::ConnectionLike as _;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

use super::Effect;

/// Redirects followed for one request before the last one is returned (as
/// `STORAGE_UNAVAILABLE`, reason `Redirected`, which the resend rule
/// waits out): a slot moving twice in one request's time is a topology
/// still settling.
const MAX_REDIRECTS: usize = 5;

/// redis-rs's cluster connection (built without retries), following
/// `MOVED` and `ASK` itself; see the module docs.
#[derive(Clone)]
pub(crate) struct Redirecting {
    inner: redis::cluster_async::ClusterConnection,
    /// What the requests sent through this handle do: a pipeline of
    /// independent commands that meets a redirect is split into its
    /// commands only when sending some of them twice is harmless.
    effect: Effect,
}

/// Where a redirect sends a request.
enum Redirect {
    /// `MOVED`: the slot lives on this node now.
    Moved(SingleNodeRoutingInfo),
    /// `ASK`: this key is being imported by this node; ask it with
    /// `ASKING` first, this once.
    Ask(SingleNodeRoutingInfo),
}

impl Redirect {
    /// The redirect `error` is, if it is one.
    fn of(error: &RedisError) -> Option<Redirect> {
        let (address, _slot) = error.redirect_node()?;
        let (host, port) = address.rsplit_once(':')?;
        let node = SingleNodeRoutingInfo::ByAddress {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: port.parse().ok()?,
        };
        match error.kind() {
            ErrorKind::Server(ServerErrorKind::Moved) => Some(Redirect::Moved(node)),
            ErrorKind::Server(ServerErrorKind::Ask) => Some(Redirect::Ask(node)),
            _ => None,
        }
    }
}

impl Redirecting {
    /// Wraps a cluster connection built with `retries(0)`.
    pub(crate) fn new(inner: redis::cluster_async::ClusterConnection) -> Self {
        Self {
            inner,
            effect: Effect::Write,
        }
    }

    /// This handle, for requests of `effect`.
    pub(crate) fn for_effect(mut self, effect: Effect) -> Self {
        self.effect = effect;
        self
    }

    /// Sends `cmd` to the node `routing` names, with no redirect followed
    /// (for commands that name no key, each sent to one node in turn).
    pub(crate) async fn route_command(
        &mut self,
        cmd: Cmd,
        routing: RoutingInfo,
    ) -> redis::RedisResult<Value> {
        self.inner.route_command(cmd, routing).await
    }

    /// `cmd`, following up to [`MAX_REDIRECTS`] redirects.
    async fn command(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        let mut reply = self.inner.req_packed_command(cmd).await;
        for _ in 0..MAX_REDIRECTS {
            let Some(redirect) = reply.as_ref().err().and_then(Redirect::of) else {
                break;
            };
            reply = match redirect {
                Redirect::Moved(node) => {
                    self.inner
                        .route_command(cmd.clone(), RoutingInfo::SingleNode(node))
                        .await
                }
                Redirect::Ask(node) => {
                    let mut asking = redis::pipe();
                    asking.cmd("ASKING").add_command(cmd.clone());
                    self.inner
                        .route_pipeline(asking, 1, 1, node)
                        .await
                        .and_then(|mut replies| {
                            replies.pop().ok_or_else(|| {
                                RedisError::from((
                                    ErrorKind::Client,
                                    "no reply after ASKING on the redirected node",
                                ))
                            })
                        })
                }
            };
        }
        reply
    }

    /// `pipeline`'s replies `offset..offset + count`, following redirects:
    /// as a whole when the pipeline is one command or a transaction
    /// (which a redirect aborts whole); command by command when it is
    /// independent commands whose repetition is harmless. A pipeline of
    /// independent writes that meets one has run an unknown part of
    /// itself, and fails so.
    async fn pipeline(
        &mut self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<Value>> {
        let mut reply = self
            .inner
            .req_packed_commands(pipeline, offset, count)
            .await;
        for _ in 0..MAX_REDIRECTS {
            let Some(redirect) = reply.as_ref().err().and_then(Redirect::of) else {
                break;
            };
            if !pipeline.is_transaction() && pipeline.len() > 1 {
                return match self.effect {
                    Effect::Read | Effect::IdempotentWrite => {
                        self.one_by_one(pipeline, offset, count).await
                    }
                    Effect::Write => Err(partly_run(pipeline.len(), reply)),
                };
            }
            reply = match redirect {
                Redirect::Moved(node) => {
                    self.inner
                        .route_pipeline(pipeline.clone(), offset, count, node)
                        .await
                }
                Redirect::Ask(node) => {
                    // `ASKING` holds for the next command, or for a whole
                    // transaction when that command is its `MULTI`.
                    let mut asking = redis::pipe();
                    asking.cmd("ASKING");
                    if pipeline.is_transaction() {
                        asking.cmd("MULTI");
                    }
                    for cmd in pipeline.cmd_iter() {
                        asking.add_command(cmd.clone());
                    }
                    if pipeline.is_transaction() {
                        asking.cmd("EXEC");
                    }
                    self.inner
                        .route_pipeline(asking, offset + 1, count, node)
                        .await
                }
            };
        }
        reply
    }

    /// Each command of `pipeline` on its own, each following its own
    /// redirects, all at once; the replies in pipeline order.
    async fn one_by_one(
        &mut self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<Value>> {
        let sends = pipeline.cmd_iter().map(|cmd| {
            let mut conn = self.clone();
            async move { conn.command(cmd).await }
        });
        let replies = futures_util::future::join_all(sends).await;
        replies.into_iter().skip(offset).take(count).collect()
    }
}

/// The error of a pipeline of `commands` independent writes that met a
/// redirect: the commands before the redirected one may have run, so the
/// outcome is unknown (a transport error, which the resend rule never
/// resends for a write).
fn partly_run(commands: usize, reply: redis::RedisResult<Vec<Value>>) -> RedisError {
    let said = match reply {
        Err(e) => e.to_string(),
        Ok(_) => "a redirect".to_string(),
    };
    RedisError::from(io::Error::other(format!(
        "a pipeline of {commands} writes was redirected part-way ({said}): the commands before \
         the redirected one may have run"
    )))
}

impl redis::aio::ConnectionLike for Redirecting {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.pipeline(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        0
    }
}

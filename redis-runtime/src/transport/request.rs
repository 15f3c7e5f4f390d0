//! A request and what it does to the data, which decides how it is sent.

use std::borrow::Cow;

use crate::error::Error;

/// What a request does to the data: the one fact that decides whether it
/// may be sent again after a failure and whether it waits for replica
/// acknowledgements (the rules are stated in the [module
/// docs](crate::transport)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Effect {
    /// Changes nothing a caller relies on. Sent again after any transient
    /// failure, a dropped connection and a reply timeout included, within
    /// the operation deadline; never waits for replicas.
    ///
    /// The runtime's index reads count as reads although their scripts may
    /// drop the index entries of entities already gone (expired or
    /// deleted): every later read or sweep drops them again, so losing
    /// that tidying in a failover breaks no guarantee, and running it
    /// twice changes nothing.
    Read,
    /// Changes data. Sent again only when the server provably did not run
    /// it; a dropped connection or a reply timeout after sending fails the
    /// call with [`Error::outcome_unknown`] set. Acknowledged by replicas
    /// when [`Config::replica_acks`](crate::Config) asks for it.
    Write,
    /// Changes data, but running it twice leaves what running it once
    /// does (`SET` to a fixed value, `SADD`, `ZADD` of a fixed score, a
    /// lease taken under the caller's own token). Sent again like a read,
    /// acknowledged like a write.
    IdempotentWrite,
}

impl Effect {
    /// Whether a request of this effect that failed with `error` may be
    /// sent again: the one resend rule of every topology.
    pub(crate) fn may_resend(self, error: &Error) -> bool {
        match self {
            // The server refused it without running it (`LOADING`,
            // `READONLY`, `TRYAGAIN`, a redirect, a refused connection).
            Effect::Write => error.is_transient() && !error.outcome_unknown(),
            // Running it again is harmless, whatever happened to the
            // first sending.
            Effect::Read | Effect::IdempotentWrite => error.is_transient(),
        }
    }

    /// Whether the request changes data, so that replica
    /// acknowledgements, when asked for, follow it, and a reply that never
    /// came leaves its outcome unknown.
    pub fn writes(self) -> bool {
        !matches!(self, Effect::Read)
    }
}

/// One round trip's worth of commands: a command, a pipeline or a
/// prepared script call, borrowed or owned. Built with `.into()` (or
/// implicitly by [`Client::read`](crate::Client::read) and
/// [`Client::write`](crate::Client::write)) from `redis::Cmd`,
/// `redis::Pipeline` (either by value or by reference) and
/// `&redis::ScriptInvocation`.
#[derive(Clone)]
pub enum Payload<'r> {
    /// One command.
    Command(Cow<'r, redis::Cmd>),
    /// A pipeline: all its commands in one round trip.
    Pipeline(Cow<'r, redis::Pipeline>),
    /// A Lua script call: `EVALSHA`, loading the script on `NOSCRIPT`.
    Script(&'r redis::ScriptInvocation<'r>),
}

impl Payload<'_> {
    /// Sends it once on `conn` and decodes the reply.
    pub(crate) async fn send<T: redis::FromRedisValue>(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<T> {
        match self {
            Payload::Command(cmd) => cmd.query_async(conn).await,
            Payload::Pipeline(pipeline) => pipeline.query_async(conn).await,
            Payload::Script(invocation) => invocation.invoke_async(conn).await,
        }
    }
}

impl<'r> From<&'r redis::Cmd> for Payload<'r> {
    fn from(cmd: &'r redis::Cmd) -> Self {
        Payload::Command(Cow::Borrowed(cmd))
    }
}

/// So a command built in place works too:
/// `client.read(ctx, redis::cmd("GET").arg(key))`.
impl<'r> From<&'r mut redis::Cmd> for Payload<'r> {
    fn from(cmd: &'r mut redis::Cmd) -> Self {
        Payload::Command(Cow::Borrowed(cmd))
    }
}

impl From<redis::Cmd> for Payload<'_> {
    fn from(cmd: redis::Cmd) -> Self {
        Payload::Command(Cow::Owned(cmd))
    }
}

impl<'r> From<&'r redis::Pipeline> for Payload<'r> {
    fn from(pipeline: &'r redis::Pipeline) -> Self {
        Payload::Pipeline(Cow::Borrowed(pipeline))
    }
}

impl From<redis::Pipeline> for Payload<'_> {
    fn from(pipeline: redis::Pipeline) -> Self {
        Payload::Pipeline(Cow::Owned(pipeline))
    }
}

impl<'r> From<&'r redis::ScriptInvocation<'r>> for Payload<'r> {
    fn from(invocation: &'r redis::ScriptInvocation<'r>) -> Self {
        Payload::Script(invocation)
    }
}

/// A [`Payload`] and its [`Effect`], decided where the request is built:
/// what [`Client::send`](crate::Client::send) takes.
///
/// ```no_run
/// # async fn demo(client: &redis_runtime::Client) -> redis_runtime::Result<()> {
/// use redis_runtime::{Context, Request};
///
/// /// How many jobs wait: a read, so it is sent again if the reply is lost.
/// fn queued_count() -> Request<'static> {
///     let mut cmd = redis::cmd("SCARD");
///     cmd.arg("jobs:status:queued");
///     Request::read(cmd)
/// }
///
/// let queued: u64 = client
///     .send(Context::new("jobs.count", "jobs:status:{status}"), queued_count())
///     .await?;
/// # let _ = queued;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Request<'r> {
    payload: Payload<'r>,
    effect: Effect,
}

impl<'r> Request<'r> {
    /// A request of `effect`.
    pub fn new(effect: Effect, payload: impl Into<Payload<'r>>) -> Self {
        Self {
            payload: payload.into(),
            effect,
        }
    }

    /// A request that changes nothing ([`Effect::Read`]).
    pub fn read(payload: impl Into<Payload<'r>>) -> Self {
        Self::new(Effect::Read, payload)
    }

    /// A request that changes data ([`Effect::Write`]).
    pub fn write(payload: impl Into<Payload<'r>>) -> Self {
        Self::new(Effect::Write, payload)
    }

    /// A write that is harmless to run twice ([`Effect::IdempotentWrite`]).
    pub fn idempotent_write(payload: impl Into<Payload<'r>>) -> Self {
        Self::new(Effect::IdempotentWrite, payload)
    }

    /// What it does to the data.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// What it sends.
    pub fn payload(&self) -> &Payload<'r> {
        &self.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Context;

    fn ctx() -> Context {
        Context::new("job.create", "job:{id}")
    }

    fn reply(line: &str) -> Error {
        let error = redis::parse_redis_value(format!("-{line}\r\n").as_bytes())
            .expect("parses")
            .extract_error()
            .expect_err("an error reply");
        Error::from_redis(&error, ctx())
    }

    fn io(kind: std::io::ErrorKind) -> Error {
        Error::from_redis(&redis::RedisError::from(std::io::Error::from(kind)), ctx())
    }

    const EVERY: [Effect; 3] = [Effect::Read, Effect::Write, Effect::IdempotentWrite];

    #[test]
    fn what_the_server_refused_to_run_is_sent_again_whatever_it_does() {
        let not_found = redis::RedisError::from((
            redis::ErrorKind::ClusterConnectionNotFound,
            "Requested connection not found",
        ));
        let refusals = [
            reply("LOADING Redis is loading the dataset in memory"),
            reply("BUSY Redis is busy running a script."),
            reply("MASTERDOWN Link with MASTER is down"),
            reply("READONLY You can't write against a read only replica."),
            reply("TRYAGAIN Multiple keys request during rehashing of slot"),
            reply("CLUSTERDOWN The cluster is down"),
            reply("NOREPLICAS Not enough good replicas to write."),
            reply("MOVED 3999 127.0.0.1:6381"),
            reply("ASK 3999 127.0.0.1:6381"),
            io(std::io::ErrorKind::ConnectionRefused),
            Error::from_redis(&not_found, ctx()),
        ];
        for error in &refusals {
            assert!(!error.outcome_unknown(), "{error}");
            for effect in EVERY {
                assert!(effect.may_resend(error), "{effect:?} after {error}");
            }
        }
    }

    #[test]
    fn a_write_that_may_have_run_is_never_sent_again() {
        let partly_run = Error::from_redis(
            &redis::RedisError::from(std::io::Error::other(
                "a pipeline of 2 writes was redirected part-way",
            )),
            ctx(),
        );
        for error in [
            io(std::io::ErrorKind::ConnectionReset),
            io(std::io::ErrorKind::BrokenPipe),
            io(std::io::ErrorKind::UnexpectedEof),
            io(std::io::ErrorKind::TimedOut),
            partly_run,
        ] {
            assert!(error.outcome_unknown(), "{error}");
            assert!(!Effect::Write.may_resend(&error), "{error}");
            assert!(Effect::Read.may_resend(&error), "a read: {error}");
            assert!(
                Effect::IdempotentWrite.may_resend(&error),
                "harmless to repeat: {error}"
            );
        }
    }

    #[test]
    fn refusals_that_will_not_pass_are_never_sent_again() {
        for line in [
            "OOM command not allowed",
            "NOAUTH Authentication required.",
            "WRONGPASS invalid username-password pair",
            "NOPERM no permissions",
            "NOSCRIPT No matching script.",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ] {
            let error = reply(line);
            for effect in EVERY {
                assert!(!effect.may_resend(&error), "{effect:?} after {line}");
            }
        }
        let short = Error::NotReplicated {
            context: ctx(),
            acknowledged: 0,
            required: 1,
            timeout_ms: 100,
        };
        for effect in EVERY {
            assert!(!effect.may_resend(&short), "{effect:?}: it ran");
        }
    }

    #[test]
    fn only_what_changes_data_waits_for_replicas() {
        assert!(!Effect::Read.writes());
        assert!(Effect::Write.writes());
        assert!(Effect::IdempotentWrite.writes());
    }
}

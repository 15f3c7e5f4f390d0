//! The one error type every runtime call returns.
//!
//! Each kind has a stable [`Error::code`] string, meant for logs, metrics and
//! API responses; the codes never change once released. Context (operation
//! name, key *pattern*, field) is carried, but never a password or a URL, and
//! never a concrete key unless it was built from validated values.

use std::borrow::Cow;

mod classify;

pub(crate) use classify::Deployment;
pub use classify::Unavailability;
use classify::{Class, Classified, classify};

/// Result alias used throughout the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where an error happened: the operation and the key pattern it worked on.
///
/// Key patterns (`user:{id}`) are safe to log; concrete keys may carry user
/// data, so they only appear in [`Error::Decode`] and [`Error::NotFound`],
/// which need them to be actionable, and those keys were validated before
/// they were built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The operation, e.g. `"user.create"` or `"health"`.
    pub operation: Cow<'static, str>,
    /// The key pattern the operation worked on, e.g. `"user:{id}"`.
    pub key_pattern: Cow<'static, str>,
}

impl Context {
    /// A context for `operation` on keys of `key_pattern`.
    pub fn new(
        operation: impl Into<Cow<'static, str>>,
        key_pattern: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            operation: operation.into(),
            key_pattern: key_pattern.into(),
        }
    }
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.operation.is_empty(), self.key_pattern.is_empty()) {
            (true, true) => Ok(()),
            (false, true) => write!(f, " (during {})", self.operation),
            (true, false) => write!(f, " (on {})", self.key_pattern),
            (false, false) => write!(f, " (during {} on {})", self.operation, self.key_pattern),
        }
    }
}

/// The context `$error` (an `&Error` or an `&mut Error`) carries, borrowed
/// the same way: the one list of the variants that have one, for
/// [`Error::context`] and `Error::context_mut`.
macro_rules! context_of {
    ($error:expr) => {
        match $error {
            Error::UrlMissing | Error::Config(_) => None,
            Error::Unavailable { context, .. }
            | Error::Timeout { context, .. }
            | Error::NotReplicated { context, .. }
            | Error::Command { context, .. }
            | Error::OutOfMemory { context, .. }
            | Error::Auth { context, .. }
            | Error::PermissionDenied { context, .. }
            | Error::NotFound { context, .. }
            | Error::AlreadyExists { context, .. }
            | Error::UniqueViolation { context, .. }
            | Error::Conflict { context, .. }
            | Error::Decode { context, .. }
            | Error::Encode { context, .. }
            | Error::InvalidKey { context, .. }
            | Error::Shutdown { context }
            | Error::Unsupported { context, .. } => Some(context),
        }
    };
}

/// Every failure the runtime reports.
///
/// Match on the variant, or on [`Error::code`] when the error crosses a
/// process boundary. Display text never contains secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No Redis URL was given (empty string, or `REDIS_URL` unset).
    #[error("no Redis URL configured: set REDIS_URL or pass a URL such as redis://127.0.0.1:6379")]
    UrlMissing,

    /// The configuration is invalid; the message says which setting and why.
    #[error("invalid Redis configuration: {0}")]
    Config(String),

    /// The server could not be reached, the connection broke, or the
    /// server was in a state that refuses commands for a while (`LOADING`,
    /// `BUSY`, `MASTERDOWN`, `READONLY`, `TRYAGAIN`, `CLUSTERDOWN`) for
    /// longer than the operation's deadline.
    #[error(
        "Redis is unavailable{context}: {}: {message}{}{}",
        reason.describe(),
        waited_note(*waited_ms),
        outcome_note(*outcome_unknown)
    )]
    Unavailable {
        /// Where it happened.
        context: Context,
        /// Which state made it unavailable.
        reason: Unavailability,
        /// What the server or the transport said (no addresses with
        /// credentials), never empty.
        message: String,
        /// How long the operation waited for the state to pass (0 when it
        /// was not retried).
        waited_ms: u64,
        /// The request may have been applied (the connection dropped after
        /// it was sent): re-read before retrying a write.
        outcome_unknown: bool,
    },

    /// The operation did not complete within its deadline.
    #[error(
        "Redis operation timed out after {elapsed_ms} ms{context}{}",
        outcome_note(*outcome_unknown)
    )]
    Timeout {
        /// Where it happened.
        context: Context,
        /// How long it waited.
        elapsed_ms: u64,
        /// The request may have been applied (it was sent, no reply came):
        /// re-read before retrying a write.
        outcome_unknown: bool,
    },

    /// A write was applied on the primary, but fewer replicas than
    /// [`Config::replica_acks`](crate::Config) asks for acknowledged it in
    /// time: it may be lost if the primary fails over now. Re-read before
    /// retrying; the outcome counts as unknown.
    #[error(
        "Redis write not replicated{context}: {acknowledged} of {required} replicas acknowledged it within {timeout_ms} ms; it is on the primary but may be lost if the primary fails over: re-read before retrying"
    )]
    NotReplicated {
        /// Where it happened.
        context: Context,
        /// How many replicas acknowledged the write.
        acknowledged: u64,
        /// How many were required.
        required: u32,
        /// How long the write waited for them.
        timeout_ms: u64,
    },

    /// The server answered with an error reply (e.g. `WRONGTYPE`, or a
    /// `NOSCRIPT` that loading the script did not cure).
    #[error("Redis replied with an error{context}: {message}")]
    Command {
        /// Where it happened.
        context: Context,
        /// The server's error text.
        message: String,
    },

    /// `OOM`: the server reached `maxmemory` with the `noeviction` policy
    /// and refused a command that could grow memory; it was not run.
    #[error("Redis is out of memory and refused the command{context}: {message}")]
    OutOfMemory {
        /// Where it happened.
        context: Context,
        /// What the server said.
        message: String,
    },

    /// `NOAUTH`, `WRONGPASS`, or a refused `AUTH` at connect: the
    /// credentials are missing or wrong.
    #[error("Redis refused the credentials{context}: {message}")]
    Auth {
        /// Where it happened.
        context: Context,
        /// What the server or client said (never the password).
        message: String,
    },

    /// `NOPERM`: the ACL user may not run the command or touch the key.
    #[error("Redis ACL denied the command{context}: {message}")]
    PermissionDenied {
        /// Where it happened.
        context: Context,
        /// What the server said (names the command or key pattern refused).
        message: String,
    },

    /// The entity does not exist (e.g. `patch` of a missing key).
    #[error("not found: {key}{context}")]
    NotFound {
        /// Where it happened.
        context: Context,
        /// The missing key.
        key: String,
    },

    /// `create` found the key already present; nothing was written.
    #[error("already exists: {key}{context}")]
    AlreadyExists {
        /// Where it happened.
        context: Context,
        /// The existing key.
        key: String,
    },

    /// A unique index already maps this value to another entity; nothing was written.
    #[error("unique index {index} already holds this value{context}")]
    UniqueViolation {
        /// Where it happened.
        context: Context,
        /// The unique index's name.
        index: String,
    },

    /// A write required a stored version (`#[redis(version)]`) that another
    /// write had already changed; nothing was written. Re-read and retry.
    #[error("conflict: {key} is at version {current}{context}")]
    Conflict {
        /// Where it happened.
        context: Context,
        /// The entity's key.
        key: String,
        /// The version stored now.
        current: String,
    },

    /// Data read from Redis could not be decoded into the Rust type.
    #[error("cannot decode field `{field}` of {key}{context}: {reason}")]
    Decode {
        /// Where it happened.
        context: Context,
        /// The key that held the bad data.
        key: String,
        /// The hash field (or stream entry field) that was bad.
        field: String,
        /// Why it could not be decoded.
        reason: String,
    },

    /// A value could not be encoded for Redis (e.g. a NaN, or a JSON error).
    #[error("cannot encode field `{field}`{context}: {reason}")]
    Encode {
        /// Where it happened.
        context: Context,
        /// The field that could not be encoded.
        field: String,
        /// Why.
        reason: String,
    },

    /// A value would not make a safe key segment (see `redis_schema::validate_key_value`).
    #[error("invalid key value for `{field}`{context}: {reason}")]
    InvalidKey {
        /// Where it happened.
        context: Context,
        /// The key field the value was meant for.
        field: String,
        /// Which rule the value broke (never the whole value).
        reason: String,
    },

    /// The client was shut down; no further operations are accepted.
    #[error("the Redis client has been shut down{context}")]
    Shutdown {
        /// Where it happened.
        context: Context,
    },

    /// The server is too old for a feature the operation needs; nothing was
    /// sent that it would have rejected.
    #[error("{feature} needs Redis {required} or later, but the server is {server}{context}")]
    Unsupported {
        /// Where it happened.
        context: Context,
        /// The feature, e.g. `LMOVE/BLMOVE (reliable queues)`.
        feature: &'static str,
        /// The Redis version it needs, e.g. `6.2.0`.
        required: String,
        /// The server, e.g. `redis 6.0.16`.
        server: String,
    },
}

impl Error {
    /// The stable machine-readable code of this error's kind.
    ///
    /// ```
    /// assert_eq!(redis_runtime::Error::UrlMissing.code(), "STORAGE_REDIS_URL_MISSING");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Error::UrlMissing => "STORAGE_REDIS_URL_MISSING",
            Error::Config(_) => "STORAGE_CONFIG",
            Error::Unavailable { .. } => "STORAGE_UNAVAILABLE",
            Error::Timeout { .. } => "STORAGE_TIMEOUT",
            Error::NotReplicated { .. } => "STORAGE_NOT_REPLICATED",
            Error::Command { .. } => "STORAGE_COMMAND",
            Error::OutOfMemory { .. } => "STORAGE_OOM",
            Error::Auth { .. } => "STORAGE_AUTH",
            Error::PermissionDenied { .. } => "STORAGE_NOPERM",
            Error::NotFound { .. } => "NOT_FOUND",
            Error::AlreadyExists { .. } => "ALREADY_EXISTS",
            Error::UniqueViolation { .. } => "UNIQUE_VIOLATION",
            Error::Conflict { .. } => "CONFLICT",
            Error::Decode { .. } => "DECODE",
            Error::Encode { .. } => "ENCODE",
            Error::InvalidKey { .. } => "INVALID_KEY",
            Error::Shutdown { .. } => "STORAGE_SHUTDOWN",
            Error::Unsupported { .. } => "STORAGE_UNSUPPORTED",
        }
    }

    /// The context this error carries, if any.
    pub fn context(&self) -> Option<&Context> {
        context_of!(self)
    }

    /// True for errors that a retry may fix (unavailable, timeout).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Timeout { .. })
    }

    /// Whether the failed operation may nevertheless have been applied by
    /// the server: the connection dropped or the reply timed out after the
    /// request was sent. Re-read (or make the write conditional) before
    /// retrying, rather than repeating a `create` blindly.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            Error::Unavailable {
                outcome_unknown: true,
                ..
            } | Error::Timeout {
                outcome_unknown: true,
                ..
            } | Error::NotReplicated { .. }
        )
    }

    /// Converts a redis-rs error, classifying it into our kinds (see
    /// `error/classify.rs`, the one place server error codes are read).
    ///
    /// redis-rs error text holds no credentials (its connection info redacts
    /// passwords), so it is kept as the message.
    pub fn from_redis(error: &redis::RedisError, context: Context) -> Self {
        Self::from_redis_on(error, context, Deployment::Server)
    }

    /// [`Error::from_redis`] for an error from `deployment`.
    pub(crate) fn from_redis_on(
        error: &redis::RedisError,
        context: Context,
        deployment: Deployment,
    ) -> Self {
        Self::from_classified(classify(error, deployment), context, 0)
    }

    /// Records that the operation waited `waited_ms` for a transient state
    /// to pass before failing with this error.
    pub(crate) fn after_waiting(mut self, waited_ms: u64) -> Self {
        match &mut self {
            Error::Unavailable { waited_ms: w, .. } => *w = waited_ms,
            Error::Timeout { elapsed_ms, .. } if *elapsed_ms == 0 => *elapsed_ms = waited_ms,
            _ => {}
        }
        self
    }

    /// The error a classified redis-rs error becomes, after `waited_ms` of
    /// retrying a transient state.
    fn from_classified(classified: Classified, context: Context, waited_ms: u64) -> Self {
        let Classified { class, said } = classified;
        let outcome_unknown = class.outcome_unknown();
        match class {
            Class::NotRun(reason) => Error::Unavailable {
                context,
                reason,
                message: said,
                waited_ms,
                outcome_unknown,
            },
            Class::Dropped => Error::Unavailable {
                context,
                reason: Unavailability::Connection,
                message: said,
                waited_ms,
                outcome_unknown,
            },
            Class::TimedOut => Error::Timeout {
                context,
                elapsed_ms: waited_ms,
                outcome_unknown,
            },
            Class::OutOfMemory => Error::OutOfMemory {
                context,
                message: said,
            },
            Class::Auth => Error::Auth {
                context,
                message: said,
            },
            Class::NoPerm => Error::PermissionDenied {
                context,
                message: said,
            },
            Class::Command => Error::Command {
                context,
                message: said,
            },
        }
    }

    /// Fills in the context of an error built without one (codec errors).
    pub fn with_context(mut self, new: Context) -> Self {
        if let Some(context) = self.context_mut() {
            if context.operation.is_empty() {
                context.operation = new.operation;
            }
            if context.key_pattern.is_empty() {
                context.key_pattern = new.key_pattern;
            }
        }
        self
    }

    fn context_mut(&mut self) -> Option<&mut Context> {
        context_of!(self)
    }
}

/// `; waited N ms for it to pass` when the operation retried.
fn waited_note(waited_ms: u64) -> String {
    if waited_ms == 0 {
        String::new()
    } else {
        format!("; still so after waiting {waited_ms} ms")
    }
}

/// Tells the caller to re-read when the server may have applied the request.
fn outcome_note(outcome_unknown: bool) -> &'static str {
    if outcome_unknown {
        "; the outcome is unknown: the server may have applied it, re-read before retrying"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_distinct() {
        let ctx = Context::new("op", "user:{id}");
        let all = [
            Error::UrlMissing,
            Error::Config("x".into()),
            Error::Unavailable {
                context: ctx.clone(),
                reason: Unavailability::Loading,
                message: "m".into(),
                waited_ms: 0,
                outcome_unknown: false,
            },
            Error::Timeout {
                context: ctx.clone(),
                elapsed_ms: 1,
                outcome_unknown: false,
            },
            Error::NotReplicated {
                context: ctx.clone(),
                acknowledged: 0,
                required: 1,
                timeout_ms: 100,
            },
            Error::Command {
                context: ctx.clone(),
                message: "m".into(),
            },
            Error::OutOfMemory {
                context: ctx.clone(),
                message: "m".into(),
            },
            Error::Auth {
                context: ctx.clone(),
                message: "m".into(),
            },
            Error::PermissionDenied {
                context: ctx.clone(),
                message: "m".into(),
            },
            Error::NotFound {
                context: ctx.clone(),
                key: "k".into(),
            },
            Error::AlreadyExists {
                context: ctx.clone(),
                key: "k".into(),
            },
            Error::UniqueViolation {
                context: ctx.clone(),
                index: "i".into(),
            },
            Error::Conflict {
                context: ctx.clone(),
                key: "k".into(),
                current: "2".into(),
            },
            Error::Decode {
                context: ctx.clone(),
                key: "k".into(),
                field: "f".into(),
                reason: "r".into(),
            },
            Error::Encode {
                context: ctx.clone(),
                field: "f".into(),
                reason: "r".into(),
            },
            Error::InvalidKey {
                context: ctx.clone(),
                field: "f".into(),
                reason: "r".into(),
            },
            Error::Shutdown {
                context: ctx.clone(),
            },
            Error::Unsupported {
                context: ctx,
                feature: "f",
                required: "6.2.0".into(),
                server: "redis 6.0.16".into(),
            },
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(Error::code).collect();
        assert_eq!(codes.len(), all.len());
        assert!(codes.contains("STORAGE_REDIS_URL_MISSING"));
        assert!(codes.contains("NOT_FOUND"));
        // The codes are an API: changing one breaks callers' matches.
        let expected = [
            "STORAGE_REDIS_URL_MISSING",
            "STORAGE_CONFIG",
            "STORAGE_UNAVAILABLE",
            "STORAGE_TIMEOUT",
            "STORAGE_NOT_REPLICATED",
            "STORAGE_COMMAND",
            "STORAGE_OOM",
            "STORAGE_AUTH",
            "STORAGE_NOPERM",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "UNIQUE_VIOLATION",
            "CONFLICT",
            "DECODE",
            "ENCODE",
            "INVALID_KEY",
            "STORAGE_SHUTDOWN",
            "STORAGE_UNSUPPORTED",
        ];
        assert_eq!(codes, expected.into_iter().collect());
    }

    /// The error a server reply `-<line>` becomes in `ctx`.
    fn from_reply(line: &str, ctx: Context) -> Error {
        let error = redis::parse_redis_value(format!("-{line}\r\n").as_bytes())
            .expect("parses")
            .extract_error()
            .expect_err("an error reply");
        Error::from_redis(&error, ctx)
    }

    #[test]
    fn each_server_state_has_its_code_and_a_message_naming_operation_pattern_and_reply() {
        let cases = [
            (
                "LOADING Redis is loading the dataset in memory",
                "STORAGE_UNAVAILABLE",
            ),
            (
                "BUSY Redis is busy running a script.",
                "STORAGE_UNAVAILABLE",
            ),
            ("MASTERDOWN Link with MASTER is down", "STORAGE_UNAVAILABLE"),
            (
                "READONLY You can't write against a read only replica.",
                "STORAGE_UNAVAILABLE",
            ),
            (
                "TRYAGAIN Multiple keys request during rehashing",
                "STORAGE_UNAVAILABLE",
            ),
            ("CLUSTERDOWN The cluster is down", "STORAGE_UNAVAILABLE"),
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                "STORAGE_OOM",
            ),
            ("NOAUTH Authentication required.", "STORAGE_AUTH"),
            ("WRONGPASS invalid username-password pair", "STORAGE_AUTH"),
            (
                "NOPERM this user has no permissions to run the 'set' command",
                "STORAGE_NOPERM",
            ),
            ("NOSCRIPT No matching script.", "STORAGE_COMMAND"),
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                "STORAGE_COMMAND",
            ),
        ];
        for (line, code) in cases {
            let err = from_reply(line, Context::new("job.create", "job:{id}"));
            assert_eq!(err.code(), code, "{line}");
            let text = err.to_string();
            for part in ["job.create", "job:{id}", line] {
                assert!(text.contains(part), "{line}: {text:?} lacks {part:?}");
            }
            assert!(!err.outcome_unknown(), "{line}: refused, so not applied");
        }
    }

    #[test]
    fn a_dropped_connection_says_the_outcome_is_unknown() {
        let error =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let err = Error::from_redis(&error, Context::new("job.create", "job:{id}"));
        assert_eq!(err.code(), "STORAGE_UNAVAILABLE");
        assert!(err.outcome_unknown());
        assert!(err.is_transient());
        assert!(err.to_string().contains("outcome is unknown"), "{err}");
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let err = Error::from_redis(&refused, Context::new("job.create", "job:{id}"));
        assert!(!err.outcome_unknown(), "nothing was sent: {err}");
    }

    #[test]
    fn an_error_after_waiting_says_how_long() {
        let ctx = || Context::new("job.create", "job:{id}");
        let waited = from_reply("BUSY x", ctx()).after_waiting(1500);
        assert!(
            waited.to_string().contains("after waiting 1500 ms"),
            "{waited}"
        );
    }

    #[test]
    fn an_error_without_text_still_has_a_message() {
        let error =
            redis::RedisError::from((redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm), ""));
        let err = Error::from_redis(&error, Context::new("op", "k:{id}"));
        assert_eq!(err.code(), "STORAGE_NOPERM");
        let Error::PermissionDenied { message, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(!message.trim().is_empty(), "{err:?}");
    }

    #[test]
    fn display_names_operation_and_pattern() {
        let err = Error::NotFound {
            context: Context::new("user.patch", "user:{id}"),
            key: "user:7".into(),
        };
        assert_eq!(
            err.to_string(),
            "not found: user:7 (during user.patch on user:{id})"
        );
    }

    #[test]
    fn with_context_fills_only_missing_parts() {
        let err = Error::Decode {
            context: Context::default(),
            key: "user:1".into(),
            field: "age".into(),
            reason: "not an integer".into(),
        }
        .with_context(Context::new("user.get", "user:{id}"));
        assert_eq!(err.context().map(|c| &*c.operation), Some("user.get"));
    }
}

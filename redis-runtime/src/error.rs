//! The one error type every runtime call returns.
//!
//! Each kind has a stable [`Error::code`] string, meant for logs, metrics and
//! API responses; the codes never change once released. Context (operation
//! name, key *pattern*, field) is carried, but never a password or a URL, and
//! never a concrete key unless it was built from validated values.

use std::borrow::Cow;

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
            | Error::Command { context, .. }
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

    /// The server could not be reached, or the connection broke.
    #[error("Redis is unavailable{context}: {message}")]
    Unavailable {
        /// Where it happened.
        context: Context,
        /// What the transport reported (no addresses with credentials).
        message: String,
    },

    /// The operation did not complete within its deadline.
    #[error("Redis operation timed out after {elapsed_ms} ms{context}")]
    Timeout {
        /// Where it happened.
        context: Context,
        /// How long it waited.
        elapsed_ms: u64,
    },

    /// The server answered with an error reply (e.g. `WRONGTYPE`, `NOSCRIPT`).
    #[error("Redis replied with an error{context}: {message}")]
    Command {
        /// Where it happened.
        context: Context,
        /// The server's error text.
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
            Error::Command { .. } => "STORAGE_COMMAND",
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

    /// Converts a redis-rs error, classifying it into our kinds.
    ///
    /// redis-rs error text holds no credentials (its connection info redacts
    /// passwords), so it is kept as the message.
    pub fn from_redis(error: &redis::RedisError, context: Context) -> Self {
        let message = error.to_string();
        if error.is_timeout() {
            Error::Timeout {
                context,
                elapsed_ms: 0,
            }
        } else if error.is_io_error()
            || error.is_connection_refusal()
            || error.is_connection_dropped()
            || error.is_unrecoverable_error()
        {
            Error::Unavailable { context, message }
        } else {
            Error::Command { context, message }
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
                message: "m".into(),
            },
            Error::Timeout {
                context: ctx.clone(),
                elapsed_ms: 1,
            },
            Error::Command {
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
            Error::Shutdown { context: ctx },
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(Error::code).collect();
        assert_eq!(codes.len(), all.len());
        assert!(codes.contains("STORAGE_REDIS_URL_MISSING"));
        assert!(codes.contains("NOT_FOUND"));
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

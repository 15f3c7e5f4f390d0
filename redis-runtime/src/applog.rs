//! Per-entity append logs: `job:{id}:output`, a list of lines with a TTL.
//!
//! An [`AppendLog<T>`] is a key pattern with one placeholder, one list per
//! entity: a job's output lines, say, appended while it runs, read back
//! whole, by range or counted, and kept for 24 h. Every append refreshes the
//! TTL in the same atomic step, so a log that is still being written never
//! expires under its writer, and one that went quiet disappears on its own.
//!
//! Lines are one value each in the [`FieldValue`] codec: `String` lines, or
//! [`Json<T>`](crate::Json) records. A `String` log takes `&str` lines as
//! they are (no `.to_string()`), and ids are any key part: `&str`,
//! `&String`, integers (see [`AppendLine`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use redis_runtime::{Client, applog::AppendLog};
//!
//! # async fn demo(client: &Client) -> redis_runtime::Result<()> {
//! let output = AppendLog::<String>::new(client, "job:{id}:output", Some(Duration::from_secs(24 * 3600)))?;
//! output.append("42", "cloning repository").await?;
//! let step = 2;
//! output.append("42", &format!("step {step}: build ok")).await?;
//! output.append_many("42", &["test a ok", "test b ok"]).await?;
//! assert_eq!(output.len("42").await?, 4);
//! let last_100 = output.range("42", -100, -1).await?;
//! # let _ = last_100; Ok(()) }
//! ```
//!
//! The id is validated like every key value (`INVALID_KEY` for `:`, `*`,
//! braces, whitespace…), so it cannot reach another key.
//!
//! # Declared on the entity
//!
//! `#[redis(log(name = "output", key = "job:{id}:output", ttl = "24h",
//! max_len = 10000))]` on a `#[derive(RedisEntity)]` type generates
//! `Job::output_log(&client)`: an `AppendLog<String>` made with
//! [`AppendLog::new`] from the key and TTL (and [`AppendLog::with_max_len`]
//! when `max_len` is given), so it fails the same way for a bad pattern.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use derive_where::derive_where;
use redis::Value;
use redis_schema::KeyPattern;

use crate::client::Client;
use crate::codec::{FieldValue, KeyPart, value_kind};
use crate::entity::model::Ttl;
use crate::error::{Context, Error, Result};
use crate::reply::{as_bytes, duration_ms};
use crate::transport::{Effect, Request};

/// What [`AppendLog<T>::append`] takes as a line: any `T`, and for `String`
/// logs also `str` and `&str`, encoded as the `T` they stand for.
///
/// ```no_run
/// # async fn demo(log: redis_runtime::AppendLog<String>, counts: redis_runtime::AppendLog<u64>) -> redis_runtime::Result<()> {
/// log.append("42", "a &str line").await?;
/// log.append("42", &String::from("a String line")).await?;
/// log.append_many("42", &["one", "two"]).await?;
/// counts.append("42", &7).await?;
/// # Ok(()) }
/// ```
pub trait AppendLine<T> {
    /// Appends the stored form of the line to `out`, as `T` would.
    fn encode_line(&self, out: &mut Vec<u8>) -> std::result::Result<(), String>;
}

impl<T: FieldValue> AppendLine<T> for T {
    fn encode_line(&self, out: &mut Vec<u8>) -> std::result::Result<(), String> {
        self.encode_value(out)
    }
}

impl AppendLine<String> for str {
    fn encode_line(&self, out: &mut Vec<u8>) -> std::result::Result<(), String> {
        // The `String` codec stores the text as it is.
        out.extend_from_slice(self.as_bytes());
        Ok(())
    }
}

impl AppendLine<String> for &str {
    fn encode_line(&self, out: &mut Vec<u8>) -> std::result::Result<(), String> {
        <str as AppendLine<String>>::encode_line(self, out)
    }
}

fn encode_line<T, L: AppendLine<T> + ?Sized>(line: &L) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    line.encode_line(&mut out).map_err(|reason| Error::Encode {
        context: Context::default(),
        field: "line".to_string(),
        reason,
    })?;
    Ok(out)
}

/// A list per entity at `pattern`, lines of `T`; see the [module docs](self).
#[derive_where(Clone)]
pub struct AppendLog<T> {
    client: Client,
    pattern: Arc<KeyPattern>,
    ttl: Option<Duration>,
    max_len: Option<u64>,
    _line: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for AppendLog<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendLog")
            .field("pattern", &self.pattern.source())
            .field("ttl", &self.ttl)
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl<T: FieldValue + Send + 'static> AppendLog<T> {
    /// Logs at `pattern` (exactly one placeholder, e.g. `job:{id}:output`),
    /// expiring `ttl` after the last append (`None`: never).
    ///
    /// Errors: `STORAGE_CONFIG` for a pattern that does not parse, does not
    /// have exactly one placeholder, or a zero TTL.
    pub fn new(client: &Client, pattern: &str, ttl: Option<Duration>) -> Result<Self> {
        let parsed = KeyPattern::parse(pattern)
            .map_err(|e| Error::Config(format!("append log pattern {pattern:?}: {e}")))?;
        if parsed.placeholder_count() != 1 {
            return Err(Error::Config(format!(
                "append log pattern {pattern:?} must have exactly one placeholder, like job:{{id}}:output"
            )));
        }
        if ttl.is_some_and(|t| duration_ms(t) == 0) {
            return Err(Error::Config(
                "an append log TTL must be at least 1 ms".into(),
            ));
        }
        Ok(Self {
            client: client.clone(),
            pattern: Arc::new(parsed),
            ttl,
            max_len: None,
            _line: PhantomData,
        })
    }

    /// Keeps only the newest `max_len` lines, trimmed on every append.
    pub fn with_max_len(mut self, max_len: u64) -> Self {
        self.max_len = (max_len > 0).then_some(max_len);
        self
    }

    /// The key pattern.
    pub fn pattern(&self) -> &str {
        self.pattern.source()
    }

    fn context(&self, operation: &'static str) -> Context {
        Context::new(operation, Cow::Owned(self.pattern.source().to_string()))
    }

    /// The log key of entity `id` (`INVALID_KEY` if `id` is not key-safe).
    pub fn key(&self, id: &(impl KeyPart + ?Sized)) -> Result<String> {
        let part = id.key_part();
        self.pattern
            .render(&[&part])
            .map_err(|e| Error::InvalidKey {
                context: self.context("applog.key"),
                field: self
                    .pattern
                    .placeholders()
                    .next()
                    .unwrap_or("id")
                    .to_string(),
                reason: e.rule().to_string(),
            })
    }

    /// Appends one line; returns the log's length. Refreshes the TTL.
    ///
    /// `id` is any key part (`"42"`, `&job.id`, `42u64`); `line` a `&T`, or
    /// for a `String` log a `&str` too ([`AppendLine`]).
    pub async fn append<L>(&self, id: &(impl KeyPart + ?Sized), line: &L) -> Result<u64>
    where
        L: AppendLine<T> + ?Sized,
    {
        self.append_encoded(id, vec![encode_line(line)]).await
    }

    /// Appends lines in order, trims to `max_len` and refreshes the TTL, in
    /// one atomic step (`MULTI`); returns the log's length before trimming.
    /// `lines` are `T`s, or for a `String` log `&str`s too.
    pub async fn append_many<L>(&self, id: &(impl KeyPart + ?Sized), lines: &[L]) -> Result<u64>
    where
        L: AppendLine<T>,
    {
        self.append_encoded(id, lines.iter().map(encode_line).collect())
            .await
    }

    async fn append_encoded(
        &self,
        id: &(impl KeyPart + ?Sized),
        encoded: Vec<Result<Vec<u8>>>,
    ) -> Result<u64> {
        let ctx = self.context("applog.append");
        let key = self.key(id)?;
        let encoded = encoded
            .into_iter()
            .collect::<Result<Vec<_>>>()
            .map_err(|e| e.with_context(ctx.clone()))?;
        if encoded.is_empty() {
            return self.len(id).await;
        }
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("RPUSH").arg(&key).arg(&encoded);
        if let Some(max_len) = self.max_len {
            let keep_from = -i64::try_from(max_len).unwrap_or(i64::MAX);
            pipe.cmd("LTRIM").arg(&key).arg(keep_from).arg(-1).ignore();
        }
        if let Some(ttl) = self.ttl {
            pipe.cmd("PEXPIRE").arg(&key).arg(duration_ms(ttl)).ignore();
        }
        let (len,): (u64,) = self.client.write(ctx, &pipe).await?;
        Ok(len)
    }

    /// Lines `start..=stop` by position, like `LRANGE`: 0 is the oldest,
    /// -1 the newest. A line that does not decode is a `DECODE` error naming
    /// the key and its position.
    pub async fn range(
        &self,
        id: &(impl KeyPart + ?Sized),
        start: i64,
        stop: i64,
    ) -> Result<Vec<T>> {
        let ctx = self.context("applog.range");
        let key = self.key(id)?;
        let mut cmd = redis::cmd("LRANGE");
        cmd.arg(&key).arg(start).arg(stop);
        let reply: Value = self.client.read(ctx.clone(), &cmd).await?;
        let decode_error = |field: String, reason: String| Error::Decode {
            context: ctx.clone(),
            key: key.clone(),
            field,
            reason,
        };
        let items = match &reply {
            Value::Array(items) => items,
            Value::Nil => return Ok(Vec::new()),
            other => {
                return Err(decode_error(
                    "*".into(),
                    format!("expected a list, found {}", value_kind(other)),
                ));
            }
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let raw = as_bytes(item).ok_or_else(|| {
                    decode_error(
                        format!("[{i}]"),
                        format!("expected a string, found {}", value_kind(item)),
                    )
                })?;
                T::decode_value(raw).map_err(|reason| decode_error(format!("[{i}]"), reason))
            })
            .collect()
    }

    /// Every line, oldest first.
    pub async fn all(&self, id: &(impl KeyPart + ?Sized)) -> Result<Vec<T>> {
        self.range(id, 0, -1).await
    }

    /// Number of lines (0 for a log that does not exist or expired).
    pub async fn len(&self, id: &(impl KeyPart + ?Sized)) -> Result<u64> {
        self.query_key(Effect::Read, "LLEN", id, "applog.len").await
    }

    /// The log's remaining lifetime.
    pub async fn ttl(&self, id: &(impl KeyPart + ?Sized)) -> Result<Ttl> {
        let ms: i64 = self
            .query_key(Effect::Read, "PTTL", id, "applog.ttl")
            .await?;
        Ok(match ms {
            -2 => Ttl::Missing,
            -1 => Ttl::Persistent,
            ms => Ttl::ExpiresIn(Duration::from_millis(ms.max(0).unsigned_abs())),
        })
    }

    /// Deletes the log; returns whether it existed.
    pub async fn delete(&self, id: &(impl KeyPart + ?Sized)) -> Result<bool> {
        let removed: u64 = self
            .query_key(Effect::Write, "DEL", id, "applog.delete")
            .await?;
        Ok(removed == 1)
    }

    /// Sends `command` with entity `id`'s log key as its only argument.
    async fn query_key<R: redis::FromRedisValue>(
        &self,
        effect: Effect,
        command: &str,
        id: &(impl KeyPart + ?Sized),
        operation: &'static str,
    ) -> Result<R> {
        let mut cmd = redis::cmd(command);
        cmd.arg(self.key(id)?);
        self.client
            .send(self.context(operation), Request::new(effect, cmd))
            .await
    }
}

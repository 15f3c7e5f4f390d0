//! Small helpers for the replies the messaging modules (streams, queues,
//! append logs, pub/sub) read back from Redis, and for the single values and
//! millisecond arguments they send.
//!
//! Redis answers the same thing in different shapes depending on the
//! protocol (RESP2 bulk strings, RESP3 simple or verbatim strings) and the
//! command; these helpers accept every shape that carries the value and
//! say `None` for anything else, so callers turn surprises into typed
//! `DECODE` errors instead of panics.

use std::time::Duration;

use redis::Value;

use crate::codec::{FieldValue, value_kind};
use crate::error::{Context, Error, Result};

/// The bytes of a string reply (bulk, simple or verbatim); `None` for any
/// other shape.
pub(crate) fn as_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

/// A string reply as UTF-8 text; `None` for other shapes or invalid UTF-8.
pub(crate) fn as_text(value: &Value) -> Option<String> {
    as_bytes(value).and_then(|b| std::str::from_utf8(b).ok().map(str::to_owned))
}

/// A non-negative integer reply, sent either as an integer or as decimal
/// text (Lua scripts and some commands answer counts as strings); `None`
/// for negative numbers and anything that is not a number.
pub(crate) fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => as_bytes(other).and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()),
    }
}

/// The value of `name` in an `INFO` reply (`name:value` lines).
pub(crate) fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(|value| value.trim().to_string())
}

/// Whole milliseconds of `d`, saturating at `u64::MAX` instead of
/// truncating (a command argument must not wrap around).
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The wait of a blocking command in whole milliseconds, at least 1: a
/// zero wait (`BLOCK 0`, `BRPOP key 0`) would mean "forever".
pub(crate) fn block_ms(wait: Duration) -> u64 {
    duration_ms(wait).max(1)
}

/// A blocking command's timeout in (fractional) seconds, at least 1 ms, for
/// the commands that take seconds (`BRPOP`, `BLMOVE`): `0` would mean "wait
/// forever".
pub(crate) fn block_secs(timeout: Duration) -> f64 {
    (block_ms(timeout) as f64) / 1000.0
}

/// The `DECODE` error for a reply of the wrong shape: `what` was expected
/// for `field` of `key`, and `found` came back.
pub(crate) fn shape_error(key: &str, field: &str, what: &str, found: &Value) -> Error {
    Error::Decode {
        context: Context::default(),
        key: key.to_string(),
        field: field.to_string(),
        reason: format!("unexpected {what}: found {}", value_kind(found)),
    }
}

/// One value in the [`FieldValue`] codec, as a command argument (a list
/// item, a log line, a pub/sub message). Fails with `ENCODE` naming
/// `field`; the caller adds its context.
pub(crate) fn encode_value<T: FieldValue>(value: &T, field: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    value
        .encode_value(&mut out)
        .map_err(|reason| Error::Encode {
            context: Context::default(),
            field: field.to_string(),
            reason,
        })?;
    Ok(out)
}

/// A bulk-string reply holding `s`, for the unit tests of reply parsing.
#[cfg(test)]
pub(crate) fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_shape_gives_its_bytes() {
        assert_eq!(as_bytes(&bulk("a")), Some(&b"a"[..]));
        assert_eq!(as_bytes(&Value::SimpleString("b".into())), Some(&b"b"[..]));
        let verbatim = Value::VerbatimString {
            format: redis::VerbatimFormat::Text,
            text: "c".into(),
        };
        assert_eq!(as_bytes(&verbatim), Some(&b"c"[..]));
        assert_eq!(as_bytes(&Value::Int(1)), None);
        assert_eq!(as_bytes(&Value::Nil), None);
        assert_eq!(as_text(&Value::BulkString(vec![0xff])), None, "not UTF-8");
    }

    #[test]
    fn counts_come_as_integers_or_text_and_are_never_negative() {
        assert_eq!(as_u64(&Value::Int(7)), Some(7));
        assert_eq!(as_u64(&bulk("42")), Some(42));
        assert_eq!(as_u64(&Value::Int(-1)), None);
        assert_eq!(as_u64(&bulk("-1")), None);
        assert_eq!(as_u64(&bulk("x")), None);
        assert_eq!(as_u64(&Value::Nil), None);
    }

    #[test]
    fn durations_saturate_instead_of_wrapping() {
        assert_eq!(duration_ms(Duration::from_micros(1500)), 1);
        assert_eq!(duration_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn block_is_never_zero() {
        assert_eq!(block_ms(Duration::ZERO), 1);
        assert_eq!(block_ms(Duration::from_millis(250)), 250);
        assert_eq!(block_secs(Duration::ZERO), 0.001);
        assert_eq!(block_secs(Duration::from_millis(1500)), 1.5);
    }

    #[test]
    fn shape_and_encode_errors_are_typed() {
        let err = shape_error("k", "*", "entry id", &Value::Int(1));
        assert_eq!(err.code(), "DECODE");
        assert!(err.to_string().contains("unexpected entry id"), "{err}");
        assert_eq!(
            encode_value(&"x".to_string(), "item").ok(),
            Some(b"x".to_vec())
        );
    }
}

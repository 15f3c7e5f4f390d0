//! Decoding stream replies: entries (`[id, fields]`), `XREADGROUP` replies
//! in both protocol versions, and the errors they become.

use redis::Value;

use crate::codec::{Record, reply_pairs};
use crate::error::{Context, Error, Result};
use crate::reply::{as_bytes, as_text};

/// One entry of a reply, parsed.
pub(crate) enum Parsed<M> {
    /// A well-formed entry that decoded.
    Decoded { id: String, message: M },
    /// `[id, nil]`: the entry was deleted from the stream while pending.
    Deleted { id: String },
    /// An entry that is malformed or does not decode into `M`.
    Bad { id: Option<String>, error: Error },
}

impl<M> Parsed<M> {
    /// The entry id, when the reply had one.
    pub(super) fn id(&self) -> Option<&str> {
        match self {
            Parsed::Decoded { id, .. } | Parsed::Deleted { id } => Some(id),
            Parsed::Bad { id, .. } => id.as_deref(),
        }
    }
}

/// How an entry is named in errors: `events:incoming entry 1700000000000-0`.
pub(super) fn entry_key(stream: &str, id: &str) -> String {
    format!("{stream} entry {id}")
}

/// The `NOT_FOUND` error for an entry deleted from the stream while pending.
pub(super) fn deleted_error(stream: &str, id: &str, ctx: &Context) -> Error {
    Error::NotFound {
        context: ctx.clone(),
        key: format!(
            "{} (deleted or trimmed from the stream while pending)",
            entry_key(stream, id)
        ),
    }
}

/// The `DECODE` error for a stream reply of the wrong shape (the whole
/// entry, field `*`, is at fault).
pub(super) fn shape_error(key: &str, what: &str, found: &Value) -> Error {
    crate::reply::shape_error(key, "*", what, found)
}

/// A stream entry id from an XADD-like reply.
pub(super) fn entry_id(key: &str, reply: &Value) -> Result<String> {
    as_text(reply).ok_or_else(|| shape_error(key, "stream entry id", reply))
}

/// Splits `[id, fields]`.
pub(super) fn entry_parts(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Array(parts) if parts.len() == 2 => Some((as_text(&parts[0])?, &parts[1])),
        _ => None,
    }
}

/// The entries array for `stream` in an XREAD/XREADGROUP reply (RESP2
/// `[[key, entries]]` or RESP3 `{key: entries}`); `None` for a nil reply.
pub(crate) fn read_reply_entries<'v>(stream: &str, reply: &'v Value) -> Result<Option<&'v Value>> {
    let matches = |name: &Value| as_bytes(name) == Some(stream.as_bytes());
    match reply {
        Value::Nil => Ok(None),
        Value::Array(streams) => {
            for item in streams {
                match item {
                    Value::Array(pair) if pair.len() == 2 && matches(&pair[0]) => {
                        return Ok(Some(&pair[1]));
                    }
                    Value::Array(pair) if pair.len() == 2 => {}
                    other => return Err(shape_error(stream, "XREADGROUP reply item", other)),
                }
            }
            Ok(None)
        }
        Value::Map(streams) => Ok(streams
            .iter()
            .find(|(name, _)| matches(name))
            .map(|(_, entries)| entries)),
        other => Err(shape_error(stream, "XREADGROUP reply", other)),
    }
}

/// Parses an array of `[id, fields]` entries. Fails only when `entries` is
/// not an array at all; each bad entry becomes a [`Parsed::Bad`].
pub(crate) fn parse_entries<M: Record>(stream: &str, entries: &Value) -> Result<Vec<Parsed<M>>> {
    let items = match entries {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        other => return Err(shape_error(stream, "list of entries", other)),
    };
    Ok(items
        .iter()
        .map(|item| parse_entry::<M>(stream, item))
        .collect())
}

fn parse_entry<M: Record>(stream: &str, item: &Value) -> Parsed<M> {
    let Some((id, fields)) = entry_parts(item) else {
        return Parsed::Bad {
            id: match item {
                Value::Array(parts) => parts.first().and_then(as_text),
                _ => None,
            },
            error: shape_error(stream, "entry (expected [id, fields])", item),
        };
    };
    if *fields == Value::Nil {
        return Parsed::Deleted { id };
    }
    let key = entry_key(stream, &id);
    match reply_pairs(&key, fields).and_then(|pairs| M::read_fields(&key, &pairs)) {
        Ok(message) => Parsed::Decoded { id, message },
        Err(error) => Parsed::Bad {
            id: Some(id),
            error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::bulk;

    /// A record with one required integer field `n`.
    #[derive(crate::RedisRecord, Debug, PartialEq)]
    struct N {
        n: i64,
    }

    fn entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn bad_entries_are_reported_and_the_rest_decoded() {
        let entries = Value::Array(vec![
            entry("1-0", &["n", "1"]),
            entry("2-0", &["n", "not a number"]),
            entry("3-0", &["n"]),                        // odd number of items
            Value::Array(vec![bulk("4-0"), Value::Nil]), // deleted
            Value::Int(7),                               // not an entry at all
            Value::Array(vec![Value::Int(1), Value::Array(vec![])]), // id not text
            entry("5-0", &["other", "x", "n", "5"]),
        ]);
        let parsed = parse_entries::<N>("s", &entries).expect("an array of entries");
        let summary: Vec<String> = parsed
            .iter()
            .map(|p| match p {
                Parsed::Decoded { id, message } => format!("ok {id} {}", message.n),
                Parsed::Deleted { id } => format!("deleted {id}"),
                Parsed::Bad { id, error } => format!("bad {id:?} {}", error.code()),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "ok 1-0 1",
                "bad Some(\"2-0\") DECODE",
                "bad Some(\"3-0\") DECODE",
                "deleted 4-0",
                "bad None DECODE",
                "bad None DECODE",
                "ok 5-0 5",
            ]
        );
        if let Parsed::Bad { error, .. } = &parsed[1] {
            let text = error.to_string();
            assert!(
                text.contains("s entry 2-0") && text.contains("`n`"),
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_read_replies_are_errors_not_panics() {
        assert!(read_reply_entries("s", &Value::Nil).expect("nil").is_none());
        for bad in [Value::Int(1), bulk("x"), Value::Array(vec![Value::Int(1)])] {
            assert_eq!(
                read_reply_entries("s", &bad).expect_err("bad").code(),
                "DECODE"
            );
        }
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![entry("1-0", &["n", "1"])]),
        ])]);
        assert!(read_reply_entries("s", &resp2).expect("ok").is_some());
        let resp3 = Value::Map(vec![(bulk("s"), Value::Array(vec![]))]);
        assert!(read_reply_entries("s", &resp3).expect("ok").is_some());
        assert!(parse_entries::<N>("s", &Value::Int(3)).is_err());
    }
}

//! The entries a cursor page reads from an index, decoded from a
//! `ZRANGE` reply or the cursor script's, each a typed `DECODE` error when
//! the reply has another shape.

use crate::codec::value_kind;
use crate::error::{Context, Error, Result};

use super::Cursor;

/// One entry of a cursor page: its id and, in a sorted index, its score.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub(super) member: String,
    pub(super) score: Option<f64>,
}

impl Entry {
    pub(super) fn cursor(&self) -> Cursor {
        Cursor {
            score: self.score,
            id: self.member.clone(),
        }
    }
}

fn shape(index_key: &str, reason: String) -> Error {
    Error::Decode {
        context: Context::default(),
        key: index_key.to_string(),
        field: "*".into(),
        reason,
    }
}

fn text(index_key: &str, value: &redis::Value, what: &str) -> Result<String> {
    match value {
        redis::Value::BulkString(b) => String::from_utf8(b.clone())
            .map_err(|_| shape(index_key, format!("{what} is not valid UTF-8"))),
        redis::Value::SimpleString(s) => Ok(s.clone()),
        other => Err(shape(
            index_key,
            format!("expected {what}, found {}", value_kind(other)),
        )),
    }
}

fn score(index_key: &str, value: &redis::Value) -> Result<f64> {
    if let redis::Value::Double(score) = value {
        return Ok(*score);
    }
    text(index_key, value, "a score")?
        .parse()
        .map_err(|_| shape(index_key, "a score is not a number".into()))
}

/// The entries of a `ZRANGE … WITHSCORES` reply: flat `[id, score, …]`
/// (RESP2) or `[[id, score], …]` (RESP3).
pub(super) fn zrange_entries(index_key: &str, reply: redis::Value) -> Result<Vec<Entry>> {
    let redis::Value::Array(items) = reply else {
        return Err(shape(
            index_key,
            format!("expected ids and scores, found {}", value_kind(&reply)),
        ));
    };
    let pairs: Vec<(redis::Value, redis::Value)> = if items
        .iter()
        .all(|i| matches!(i, redis::Value::Array(p) if p.len() == 2))
    {
        items
            .into_iter()
            .filter_map(|i| match i {
                redis::Value::Array(mut p) => {
                    let s = p.pop()?;
                    Some((p.pop()?, s))
                }
                _ => None,
            })
            .collect()
    } else {
        if items.len() % 2 != 0 {
            return Err(shape(index_key, "odd number of ids and scores".into()));
        }
        let mut it = items.into_iter();
        std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
    };
    pairs
        .iter()
        .map(|(m, s)| {
            Ok(Entry {
                member: text(index_key, m, "an id")?,
                score: Some(score(index_key, s)?),
            })
        })
        .collect()
}

/// The cursor script's `{more, entry…}` reply: the entries, whether more
/// follow, and with `with_fields` each entry's `HGETALL` reply.
pub(super) fn script_entries(
    index_key: &str,
    reply: redis::Value,
    sorted: bool,
    with_fields: bool,
) -> Result<(Vec<Entry>, bool, Vec<redis::Value>)> {
    let redis::Value::Array(items) = reply else {
        return Err(shape(
            index_key,
            format!("expected a cursor page, found {}", value_kind(&reply)),
        ));
    };
    let mut items = items.into_iter();
    let more = match items.next() {
        Some(redis::Value::Int(more)) => more == 1,
        other => {
            return Err(shape(
                index_key,
                format!(
                    "expected a flag, found {}",
                    other.as_ref().map_or("nothing", value_kind)
                ),
            ));
        }
    };
    let per = 1 + usize::from(sorted) + usize::from(with_fields);
    if items.len() % per != 0 {
        return Err(shape(index_key, "a cut-off entry in a cursor page".into()));
    }
    let mut entries = Vec::with_capacity(items.len() / per);
    let mut hashes = Vec::new();
    while let Some(member) = items.next() {
        let member = text(index_key, &member, "an id")?;
        let score = if sorted {
            Some(score(
                index_key,
                &items.next().unwrap_or(redis::Value::Nil),
            )?)
        } else {
            None
        };
        if with_fields {
            hashes.push(items.next().unwrap_or(redis::Value::Nil));
        }
        entries.push(Entry { member, score });
    }
    Ok((entries, more, hashes))
}

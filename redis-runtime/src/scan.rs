//! Reading a live keyspace a bounded step at a time: one `SCAN` step of
//! keys, one `ZSCAN`/`SSCAN`/`HSCAN` step of an index's entries, and the
//! type and contents of a batch of keys read together.
//!
//! Every function here sends a bounded amount of work to Redis and
//! returns; none holds more than one step's keys. The repair pass (`index::repair::pass`)
//! strings the steps together, which is what lets it pace itself and stop
//! between any two of them.

use crate::client::Client;
use crate::codec::value_kind;
use crate::error::{Context, Error, Result};
use crate::transport::Effect;
use redis_schema::IndexKind;

/// On a cluster, the bits of a walk's cursor above this one number the
/// primary being scanned (in address order); the bits below are that
/// node's own `SCAN` cursor, which stays far below 2^56 (it counts hash
/// table buckets).
const NODE_SHIFT: u32 = 56;

/// One `SCAN cursor MATCH glob COUNT count [TYPE kind]` step: the cursor
/// to continue with (0 when the iteration is over) and the keys found.
///
/// On a cluster, `SCAN` names no key and each node holds only its slots'
/// keys, so the walk scans every primary in turn, the node's number
/// carried in the cursor's top bits ([`NODE_SHIFT`]). A failover or slot
/// move during the walk can make it miss or repeat keys: run it again.
///
/// Keys that are not UTF-8 are left out: every key the runtime writes is
/// built from Rust strings, so such a key cannot be one of ours.
pub(crate) async fn keys_step(
    client: &Client,
    ctx: &Context,
    cursor: u64,
    glob: &str,
    count: usize,
    kind: Option<&str>,
) -> Result<(u64, Vec<String>)> {
    let scan = |node_cursor: u64| {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(node_cursor)
            .arg("MATCH")
            .arg(glob)
            .arg("COUNT")
            .arg(count);
        if let Some(kind) = kind {
            cmd.arg("TYPE").arg(kind);
        }
        cmd
    };
    let text = |keys: Vec<Vec<u8>>| {
        keys.into_iter()
            .filter_map(|k| String::from_utf8(k).ok())
            .collect()
    };
    if !client.config().is_cluster() {
        let (next, keys): (u64, Vec<Vec<u8>>) = client.read(ctx.clone(), &scan(cursor)).await?;
        return Ok((next, text(keys)));
    }
    let primaries = client.cluster_primaries(ctx).await?;
    let node = usize::try_from(cursor >> NODE_SHIFT).unwrap_or(usize::MAX);
    let Some(address) = primaries.get(node).cloned() else {
        // The cluster shrank under the walk: nothing left to scan.
        return Ok((0, Vec::new()));
    };
    let cmd = scan(cursor & ((1 << NODE_SHIFT) - 1));
    let reply = client
        .run_with_deadline(
            ctx.clone(),
            client.config().operation_timeout,
            Effect::Read,
            |mut conn| {
                let address = address.clone();
                async move { Ok(conn.query_node(&address, &cmd).await?) }
            },
        )
        .await?;
    let (next, keys): (u64, Vec<Vec<u8>>) =
        redis::from_redis_value(reply).map_err(|e| Error::Command {
            context: ctx.clone(),
            message: format!("unexpected SCAN reply: {e}"),
        })?;
    let node = node as u64;
    let next = match next {
        0 if node + 1 < primaries.len() as u64 => (node + 1) << NODE_SHIFT,
        0 => 0,
        next if next >> NODE_SHIFT == 0 => node << NODE_SHIFT | next,
        _ => {
            return Err(Error::Command {
                context: ctx.clone(),
                message: format!("a SCAN cursor of {address:?} does not fit below 2^{NODE_SHIFT}"),
            });
        }
    };
    Ok((next, text(keys)))
}

/// One index entry as a member scan returns it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The entity id.
    pub(crate) member: String,
    /// The score (sorted index, as Redis prints it), the unique value
    /// (unique index), or empty (set index).
    pub(crate) value: String,
}

/// Why a member scan could not read an index key.
pub(crate) enum Unreadable {
    /// The key holds another Redis type (it changed since its `TYPE`).
    WrongType,
    /// A member or value is not UTF-8: not an entry the runtime wrote.
    NotText,
}

/// One `ZSCAN`/`SSCAN`/`HSCAN` step over the index key `key`: the cursor to
/// continue with (0 when done) and the entries found.
pub(crate) async fn entries_step(
    client: &Client,
    ctx: &Context,
    kind: IndexKind,
    key: &str,
    cursor: u64,
    count: usize,
) -> Result<std::result::Result<(u64, Vec<Entry>), Unreadable>> {
    let command = match kind {
        IndexKind::Sorted => "ZSCAN",
        IndexKind::Set => "SSCAN",
        IndexKind::Unique => "HSCAN",
    };
    let mut cmd = redis::cmd(command);
    cmd.arg(key).arg(cursor).arg("COUNT").arg(count);
    let reply: redis::Value = match client.read(ctx.clone(), &cmd).await {
        Ok(reply) => reply,
        Err(e) if e.to_string().contains("WRONGTYPE") => return Ok(Err(Unreadable::WrongType)),
        Err(e) => return Err(e),
    };
    let (next, items): (u64, Vec<Vec<u8>>) =
        redis::from_redis_value(reply).map_err(|e| Error::Command {
            context: ctx.clone(),
            message: format!("unexpected {command} reply for `{key}`: {e}"),
        })?;
    let mut text = Vec::with_capacity(items.len());
    for item in items {
        match String::from_utf8(item) {
            Ok(s) => text.push(s),
            Err(_) => return Ok(Err(Unreadable::NotText)),
        }
    }
    let entries = match kind {
        IndexKind::Set => text
            .into_iter()
            .map(|member| Entry {
                member,
                value: String::new(),
            })
            .collect(),
        // Member then score.
        IndexKind::Sorted => pairs(text)
            .map(|(member, value)| Entry { member, value })
            .collect(),
        // Field (the unique value) then the member holding it.
        IndexKind::Unique => pairs(text)
            .map(|(value, member)| Entry { member, value })
            .collect(),
    };
    Ok(Ok((next, entries)))
}

fn pairs(items: Vec<String>) -> impl Iterator<Item = (String, String)> {
    let mut items = items.into_iter();
    std::iter::from_fn(move || Some((items.next()?, items.next()?)))
}

/// How far a `SCAN`-family iteration has got, from the cursor it will
/// continue with: 0.0 at the start, 1.0 when over.
///
/// Redis walks its hash table in reverse-binary order: the cursor's bits,
/// reversed, count up through the table. Reversing all 64 bits gives that
/// count as a share of the table without knowing its size. An estimate
/// (the table may be resized mid-scan), good for a progress bar and an
/// ETA, never for deciding anything.
pub(crate) fn scan_fraction(next: u64) -> f64 {
    if next == 0 {
        return 1.0;
    }
    // 2^64 as f64; the division is the fraction of the table walked.
    next.reverse_bits() as f64 / 18_446_744_073_709_551_616.0
}

/// The Redis type at a key and what reading it gave, taken in one `MULTI`
/// so the two agree. A read that failed (a foreign type) is kept as a
/// `Value::ServerError`, not returned as an error.
pub(crate) type Typed = (String, redis::Value);

/// `TYPE` and one read command per key, atomically, in one round trip.
/// On a cluster a transaction cannot span slots: one per group of keys
/// with the same hash tag (so the same slot), sent together.
pub(crate) async fn read_typed(
    client: &Client,
    ctx: &Context,
    keys: &[String],
    read: impl Fn(&mut redis::Pipeline, &str),
) -> Result<Vec<Typed>> {
    let read = &read;
    client
        .per_slot(keys, |group| async move {
            read_typed_together(client, ctx, &group, read).await
        })
        .await
        .map_err(|e| e.with_context(ctx.clone()))
}

/// [`read_typed`] in one `MULTI`.
async fn read_typed_together(
    client: &Client,
    ctx: &Context,
    keys: &[&str],
    read: &impl Fn(&mut redis::Pipeline, &str),
) -> Result<Vec<Typed>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    pipe.atomic().ignore_errors();
    for key in keys {
        pipe.cmd("TYPE").arg(key);
        read(&mut pipe, key);
    }
    let expected = keys.len() * 2;
    let replies: Vec<redis::Value> = client.read(ctx.clone(), &pipe).await?;
    if replies.len() != expected {
        return Err(Error::Command {
            context: ctx.clone(),
            message: format!("expected {expected} replies, got {}", replies.len()),
        });
    }
    let mut out = Vec::with_capacity(keys.len());
    let mut replies = replies.into_iter();
    while let (Some(kind), Some(value)) = (replies.next(), replies.next()) {
        out.push((type_name(&kind), value));
    }
    Ok(out)
}

/// `TYPE key`: the Redis type at `key` (`"none"` when absent).
pub(crate) async fn type_of(client: &Client, ctx: &Context, key: &str) -> Result<String> {
    let mut cmd = redis::cmd("TYPE");
    cmd.arg(key);
    let reply: redis::Value = client.read(ctx.clone(), &cmd).await?;
    Ok(type_name(&reply))
}

/// The type name in a `TYPE` reply.
fn type_name(reply: &redis::Value) -> String {
    match reply {
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        // `TYPE` cannot fail on an existing key; treat anything else as a
        // type we do not know.
        other => value_kind(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_fraction_counts_reversed_cursor_bits() {
        // A table of 8 buckets is walked 0, 4, 2, 6, 1, 5, 3, 7: after the
        // first bucket the cursor is 4 (binary 100, reversed 001 of 8).
        assert!((scan_fraction(4) - 1.0 / 8.0).abs() < 1e-12);
        assert!((scan_fraction(2) - 2.0 / 8.0).abs() < 1e-12);
        assert!((scan_fraction(7) - 7.0 / 8.0).abs() < 1e-12);
        assert!((scan_fraction(0) - 1.0).abs() < f64::EPSILON);
        let mut last = 0.0;
        for cursor in [4u64, 2, 6, 1, 5, 3, 7] {
            let f = scan_fraction(cursor);
            assert!(f > last, "{cursor}: {f} after {last}");
            last = f;
        }
    }

    #[test]
    fn pairs_drops_an_odd_tail() {
        let items = vec!["a".into(), "1".into(), "b".into()];
        let got: Vec<(String, String)> = pairs(items).collect();
        assert_eq!(got, [("a".to_owned(), "1".to_owned())]);
    }
}

//! Reading the entities behind index members in two steps: the members by
//! one plain command, then their hashes by one pipeline of `HGETALL`s.
//!
//! **Why not one script.** A script that reads the hashes of a page turns
//! each hash into a Lua table and back into a reply: for a page of 20 that
//! cost the server about 4× what the same 20 `HGETALL`s cost when sent as a
//! pipeline (see BENCHMARKS.md). The extra round trip is cheaper than that
//! server time as soon as more than one client shares the server.
//!
//! **What keeps it exact.** Between the two steps an entity may be deleted,
//! expire, or move to another index key. So every hash is checked as it
//! arrives ([`belongs`]): present, its key fields render the queried index
//! key, and for a range query its score is in the range. When any member
//! fails the check, the caller reads the listing again with the atomic
//! query script, which sweeps expired entities, drops dead members and
//! refills the page. A listing therefore never holds an entity that is gone
//! or now belongs elsewhere, and a page is full when enough live entries
//! exist; the fallback costs one more round trip, only when the index held
//! something dead or changing.

use redis_schema::{EntityDescriptor, IndexDescriptor};

use super::{Order, Page, ScoreRange, zrange};
use crate::client::Client;
use crate::codec::{RawFields, reply_pairs};
use crate::error::{Context, Error, Result};

/// One index member and the hash read for it.
pub(super) struct Row {
    /// The entity key the hash was read from (the member itself when it
    /// names no key, so a report can still show it).
    pub key: String,
    /// The `HGETALL` reply.
    pub fields: redis::Value,
}

/// The hashes of `members` in one pipeline, in order, if every member is
/// still a live member of `index_key` (and within `range`, when given);
/// `None` as soon as one is not, so the caller falls back to the atomic
/// script.
pub(super) async fn live_rows(
    client: &Client,
    ctx: Context,
    descriptor: &EntityDescriptor,
    index: &IndexDescriptor,
    index_key: &str,
    range: Option<&ScoreRange>,
    members: Vec<String>,
) -> Result<Option<Vec<Row>>> {
    live_rows_in(
        client,
        ctx,
        descriptor,
        &[(index, index_key)],
        range,
        members,
    )
    .await
}

/// [`live_rows`] for a listing that came from several index keys at once
/// (a filtered query): every hash must render each of `listed`'s keys;
/// `range` applies to the sorted ones.
pub(super) async fn live_rows_in(
    client: &Client,
    ctx: Context,
    descriptor: &EntityDescriptor,
    listed: &[(&IndexDescriptor, &str)],
    range: Option<&ScoreRange>,
    members: Vec<String>,
) -> Result<Option<Vec<Row>>> {
    if members.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut keys = Vec::with_capacity(members.len());
    for member in &members {
        match descriptor.key_of_member(member) {
            Some(key) => keys.push(key),
            // A member that names no entity: the script drops it.
            None => return Ok(None),
        }
    }
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("HGETALL").arg(key);
    }
    let replies: Vec<redis::Value> = client.read(ctx.clone(), &pipe).await?;
    if replies.len() != keys.len() {
        return Err(Error::Command {
            context: ctx,
            message: format!("expected {} replies, got {}", keys.len(), replies.len()),
        });
    }
    let mut rows = Vec::with_capacity(keys.len());
    for (key, fields) in keys.into_iter().zip(replies) {
        let pairs = reply_pairs(&key, &fields)?;
        let live = listed
            .iter()
            .all(|(index, index_key)| belongs(descriptor, index, index_key, range, &pairs));
        if !live {
            return Ok(None);
        }
        rows.push(Row { key, fields });
    }
    Ok(Some(rows))
}

/// The members of a `cross_slot` index key (on a cluster) that belong
/// there now, each with its hash, in order; the others are passed over:
/// their moves are still pending (see `cross_slot::pending`). The hashes are
/// read one pipeline per slot, all slots at once.
pub(super) async fn matching_rows(
    client: &Client,
    ctx: &Context,
    descriptor: &EntityDescriptor,
    index: &IndexDescriptor,
    index_key: &str,
    range: Option<&ScoreRange>,
    members: Vec<String>,
) -> Result<Vec<(String, Row)>> {
    let listed = [(index, index_key)];
    matching_rows_in(client, ctx, descriptor, &listed, range, members).await
}

/// [`matching_rows`] for members that must belong in every key of
/// `listed` (the first one's score in `range`, when given): a filtered
/// listing's sorted key and set keys, checked against each entity's
/// current values.
pub(super) async fn matching_rows_in(
    client: &Client,
    ctx: &Context,
    descriptor: &EntityDescriptor,
    listed: &[(&IndexDescriptor, &str)],
    range: Option<&ScoreRange>,
    members: Vec<String>,
) -> Result<Vec<(String, Row)>> {
    let wanted: Vec<(usize, String)> = members
        .iter()
        .enumerate()
        .filter_map(|(i, member)| descriptor.key_of_member(member).map(|key| (i, key)))
        .collect();
    let read = client
        .per_slot_of(
            &wanted,
            |(_, key)| key.as_str(),
            |group| async move {
                let mut pipe = redis::pipe();
                for (_, key) in &group {
                    pipe.cmd("HGETALL").arg(key);
                }
                let replies: Vec<redis::Value> = client.read(ctx.clone(), &pipe).await?;
                if replies.len() != group.len() {
                    return Err(Error::Command {
                        context: ctx.clone(),
                        message: format!("expected {} replies, got {}", group.len(), replies.len()),
                    });
                }
                Ok(group.into_iter().zip(replies).collect::<Vec<_>>())
            },
        )
        .await?;
    // `per_slot_of` answers in the order of `wanted`, which is the members'.
    let mut rows = Vec::with_capacity(read.len());
    for ((position, key), fields) in read {
        let pairs = reply_pairs(key, &fields)?;
        let in_every = listed.iter().enumerate().all(|(i, (index, index_key))| {
            let range = range.filter(|_| i == 0);
            belongs(descriptor, index, index_key, range, &pairs)
        });
        if in_every {
            let row = Row {
                key: key.clone(),
                fields,
            };
            rows.push((members[*position].clone(), row));
        }
    }
    Ok(rows)
}

/// Whether a hash read for a member of `index_key` is a live entity that
/// belongs there now: not empty (deleted or expired), its key fields
/// render `index_key`, and its score, when `range` is given, is in it.
fn belongs(
    descriptor: &EntityDescriptor,
    index: &IndexDescriptor,
    index_key: &str,
    range: Option<&ScoreRange>,
    pairs: &RawFields<'_>,
) -> bool {
    if pairs.is_empty() {
        return false;
    }
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(field, _)| *field == name.as_bytes())
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    };
    if descriptor.render(index.key, value).as_deref() != Some(index_key) {
        return false;
    }
    match (range, index.value_field) {
        (Some(range), Some(field)) => value(field)
            .and_then(|text| text.parse::<f64>().ok())
            .is_some_and(|score| range.contains(score)),
        _ => true,
    }
}

/// Rows from the query script's `[member, {field, value, ...}, ...]` reply.
pub(super) fn script_rows(
    descriptor: &EntityDescriptor,
    index_key: &str,
    reply: redis::Value,
) -> Result<Vec<Row>> {
    let shape = |reason: String| Error::Decode {
        context: Context::default(),
        key: index_key.to_string(),
        field: "*".into(),
        reason,
    };
    let redis::Value::Array(items) = reply else {
        return Err(shape(format!(
            "expected id/hash pairs, found {}",
            crate::codec::value_kind(&reply)
        )));
    };
    if items.len() % 2 != 0 {
        return Err(shape("odd number of items in a page".into()));
    }
    let mut rows = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(member), Some(fields)) = (items.next(), items.next()) {
        let member = match member {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            other => {
                return Err(shape(format!(
                    "expected an id, found {}",
                    crate::codec::value_kind(&other)
                )));
            }
        };
        let key = descriptor.key_of_member(&member).unwrap_or(member);
        rows.push(Row { key, fields });
    }
    Ok(rows)
}

/// The windows of a `cross_slot` sorted index key on a cluster, read by
/// offset: each window's members by one `ZRANGE` (within `range`, in
/// `order`), then their hashes, keeping the entities that render every
/// listed key. The one walk of the offset pages and filtered listings of
/// such an index (a cursor page walks by cursor instead).
pub(super) struct Windows<'a> {
    client: &'a Client,
    ctx: &'a Context,
    descriptor: &'a EntityDescriptor,
    /// The sorted index key walked, then any set keys the rows must be in.
    listed: &'a [(&'a IndexDescriptor, &'a str)],
    range: &'a ScoreRange,
    order: Order,
    offset: u64,
    ended: bool,
}

impl<'a> Windows<'a> {
    /// The walk of `listed[0]` from `offset`.
    pub(super) fn new(
        (client, ctx, descriptor): (&'a Client, &'a Context, &'a EntityDescriptor),
        listed: &'a [(&'a IndexDescriptor, &'a str)],
        range: &'a ScoreRange,
        order: Order,
        offset: u64,
    ) -> Self {
        Windows {
            client,
            ctx,
            descriptor,
            listed,
            range,
            order,
            offset,
            ended: false,
        }
    }

    /// The matching rows of the next `size` entries, in index order;
    /// `None` once the index has ended.
    pub(super) async fn next(&mut self, size: u64) -> Result<Option<Vec<(String, Row)>>> {
        if self.ended {
            return Ok(None);
        }
        let window = Page {
            offset: self.offset,
            limit: size,
            order: self.order,
        };
        let request = zrange(self.listed[0].1, self.range, window);
        let members: Vec<String> = self.client.send(self.ctx.clone(), request).await?;
        let read = members.len() as u64;
        self.ended = read < size;
        self.offset = self.offset.saturating_add(read);
        let (client, ctx, range) = (self.client, self.ctx, Some(self.range));
        matching_rows_in(client, ctx, self.descriptor, self.listed, range, members)
            .await
            .map(Some)
    }
}

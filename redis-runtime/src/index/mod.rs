//! Reading through secondary indexes, and keeping them honest.
//!
//! Index entries are written by the entity write script in the same atomic
//! step as the entity (see [`crate::entity`]), so for entities without a TTL
//! an index holds exactly the live entities that belong in it. The one
//! exception is an index declared `cross_slot`, on a Redis Cluster: its
//! entries follow just after the write (see [`settle`] and the `pending`
//! module), and its reads check every entity against the index key.
//!
//! **TTL strategy.** An entity with indexes and a TTL is also recorded in a
//! *TTL registry*: a sorted set (`__ttl:session:id` for `session:{id}`, see
//! `redis_schema::ttl_registry_key`) scoring each id by its expiry time, and
//! a companion hash (`…:fields`) holding the values its
//! index entries were built from. Every index query first sweeps registry
//! entries that are due (all of them, 1,000 per step) and removes their index
//! entries, so counts and pages never include an expired entity. No keyspace
//! notifications and no `CONFIG SET` are needed. As a second line of defence,
//! a query that meets an id whose hash is gone (a TTL set behind the
//! runtime's back) drops it from the index on the spot. [`sweep`] runs the
//! same cleanup on demand, e.g. from a periodic task for indexes that are
//! rarely read.
//!
//! Counts, id lists and unique lookups are one round trip each: a Lua
//! script (EVALSHA) that sweeps and reads the index. Entity listings (pages
//! and set members) read the members with one plain command and their
//! hashes with one pipeline, checking each hash as it arrives and falling
//! back to the atomic script when one is dead or has moved (see `fetch`).

use redis_schema::{IndexDescriptor, IndexKind};

use crate::TRACE_TARGET;
use crate::client::Client;
use crate::codec::{reply_pairs, value_kind};
use crate::entity::Entity;
use crate::error::{Context, Error, Result};
use crate::script;
use crate::transport::Request;

pub(crate) mod bulk;
mod cursor;
mod fetch;
mod filter;
mod listing;
mod page;
mod repair;

use fetch::Row;

pub use crate::cross_slot::pending::{SettleReport, settle};
pub use bulk::{BATCH, delete_all};
pub use cursor::{
    Cursor, CursorIds, CursorListing, CursorPage, ParseCursorError, ids_after, page_after,
};
pub use filter::{SetFilter, filtered_count, filtered_page};
pub use listing::Listing;
use page::check_range;
pub use page::{Order, Page, ScoreRange};
#[cfg(feature = "admin")]
pub(crate) use repair::pass;
pub use repair::{
    Drift, DriftKind, RebuildReport, SkipReason, Skipped, VerifyReport, rebuild, verify,
};

/// Registry entries swept per query.
const SWEEP_BUDGET: u64 = 1000;

/// The largest budget [`sweep`] passes on (see there).
const MAX_SWEEP_BUDGET: u64 = 999_999_999;

fn context<E: Entity>(index: &IndexDescriptor, verb: &str) -> Context {
    Context::new(
        format!("{}.{}.{}", E::descriptor().name, index.name, verb),
        index.key_pattern,
    )
}

/// The 1-based position of `index` among `E`'s indexes, as the scripts'
/// layout numbers them. Generated code passes `E`'s own descriptors, so a
/// foreign one is a programming error reported as a configuration error.
fn position<E: Entity>(index: &IndexDescriptor) -> Result<usize> {
    E::descriptor()
        .index_position(index)
        .map(|p| p + 1)
        .ok_or_else(|| {
            Error::Config(format!(
                "index {} is not one of {}'s indexes",
                index.name,
                E::descriptor().name
            ))
        })
}

/// Whether reads of `index` on `client` take the `cross_slot` path: the
/// index key may be in another slot than its entities, so no script can
/// read both, and every entity read is checked against the key instead
/// (see [`pending`]).
fn across_slots(client: &Client, index: &IndexDescriptor) -> bool {
    index.cross_slot && client.config().is_cluster()
}

/// A page of a `cross_slot` sorted index on a cluster: each window of
/// members read by one `ZRANGE`, their hashes read and checked, and the
/// page refilled from the next window while members were passed over and
/// more follow. Members with their rows, in index order.
async fn page_across_slots<E: Entity>(
    client: &Client,
    ctx: &Context,
    index: &IndexDescriptor,
    index_key: &str,
    range: &ScoreRange,
    page: Page,
) -> Result<Vec<(String, Row)>> {
    let listed = [(index, index_key)];
    let reading = (client, ctx, E::descriptor());
    let mut windows = fetch::Windows::new(reading, &listed, range, page.order, page.offset);
    let mut rows = Vec::new();
    while (rows.len() as u64) < page.limit {
        // Each window refills what the last one passed over.
        match windows.next(page.limit - rows.len() as u64).await? {
            Some(matching) => rows.extend(matching),
            None => break,
        }
    }
    Ok(rows)
}

/// Runs the query script for one index.
async fn query<E: Entity>(
    client: &Client,
    index: &IndexDescriptor,
    verb: &str,
    index_key: Result<String>,
    args: Vec<Vec<u8>>,
) -> Result<(String, redis::Value)> {
    let ctx = context::<E>(index, verb);
    let index_key = index_key.map_err(|e| e.with_context(ctx.clone()))?;
    let position = position::<E>(index)?;
    let scripts = script::for_client(client, E::descriptor(), &ctx)?;
    let mut invocation = scripts.call(&scripts.query, &index_key);
    invocation.key(&index_key).arg(verb).arg(position).arg(args);
    let reply = client.read(ctx, &invocation).await?;
    Ok((index_key, reply))
}

fn range_args(range: &ScoreRange, page: Page) -> Vec<Vec<u8>> {
    let rev = match page.order {
        Order::Descending => "1",
        Order::Ascending => "0",
    };
    vec![
        rev.into(),
        range.min.clone().into_bytes(),
        range.max.clone().into_bytes(),
        page.offset.to_string().into_bytes(),
        page.limit.to_string().into_bytes(),
    ]
}

fn decode_ids(index_key: &str, reply: &redis::Value) -> Result<Vec<String>> {
    let shape = |what: String| Error::Decode {
        context: Context::default(),
        key: index_key.to_string(),
        field: "*".into(),
        reason: what,
    };
    match reply {
        redis::Value::Array(items) | redis::Value::Set(items) => items
            .iter()
            .map(|item| match item {
                redis::Value::BulkString(b) => String::from_utf8(b.clone())
                    .map_err(|_| shape("an id is not valid UTF-8".into())),
                other => Err(shape(format!("expected ids, found {}", value_kind(other)))),
            })
            .collect(),
        other => Err(shape(format!(
            "expected an array of ids, found {}",
            value_kind(other)
        ))),
    }
}

/// Decodes the rows of a listing into entities, in order. An entity whose
/// hash does not decode is passed over and reported in the listing (with a
/// warning in the log).
fn decode_rows<E: Entity>(rows: &[Row]) -> Listing<E> {
    let descriptor = E::descriptor();
    let mut out = Vec::with_capacity(rows.len());
    let mut skipped = Vec::new();
    for Row { key, fields } in rows {
        let decoded = reply_pairs(key, fields).and_then(|pairs| E::read_fields(key, &pairs));
        match decoded {
            Ok(entity) => out.push(entity),
            Err(error) => {
                tracing::warn!(
                    target: TRACE_TARGET,
                    entity = descriptor.name,
                    key = %key,
                    code = error.code(),
                    "passed over an entity that does not decode: {error}"
                );
                skipped.push(Skipped {
                    key: key.clone(),
                    reason: repair::undecodable(error),
                });
            }
        }
    }
    Listing::new(out, skipped)
}

/// Runs the query script's `verb` (`page`, `members`, `unique`): the atomic
/// read, used directly for unique lookups and as the fallback of the
/// pipelined listings.
async fn script_listing<E: Entity>(
    client: &Client,
    index: &'static IndexDescriptor,
    verb: &str,
    index_key: String,
    args: Vec<Vec<u8>>,
) -> Result<Listing<E>> {
    let (key, reply) = query::<E>(client, index, verb, Ok(index_key), args).await?;
    let rows = fetch::script_rows(E::descriptor(), &key, reply)
        .map_err(|e| e.with_context(context::<E>(index, verb)))?;
    Ok(decode_rows(&rows))
}

/// The members of a page of a sorted index, by one `ZRANGE`: a read.
fn zrange(index_key: &str, range: &ScoreRange, page: Page) -> Request<'static> {
    let mut cmd = redis::cmd("ZRANGE");
    cmd.arg(index_key);
    // Redis takes ranks and counts as signed 64-bit numbers.
    let clamp = |n: u64| n.min(i64::MAX.unsigned_abs());
    let (offset, limit) = (clamp(page.offset), clamp(page.limit));
    let last = clamp(page.offset.saturating_add(page.limit - 1));
    match (range.is_all(), page.order) {
        (true, Order::Descending) => cmd.arg(offset).arg(last).arg("REV"),
        (true, Order::Ascending) => cmd.arg(offset).arg(last),
        (false, Order::Descending) => cmd
            .arg(&range.max)
            .arg(&range.min)
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(offset)
            .arg(limit),
        (false, Order::Ascending) => cmd
            .arg(&range.min)
            .arg(&range.max)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(offset)
            .arg(limit),
    };
    Request::read(cmd)
}

/// Entities of a page of a sorted index, within a score range: the ids by
/// one `ZRANGE`, the hashes by one pipeline (two round trips; a third when
/// the page met a dead or moved entry, see `fetch`). Entities that do not
/// decode are passed over and reported in the [`Listing`].
pub async fn page<E: Entity>(
    client: &Client,
    index: &'static IndexDescriptor,
    index_key: Result<String>,
    range: &ScoreRange,
    page: Page,
) -> Result<Listing<E>> {
    if page.limit == 0 {
        return Ok(Listing::new(Vec::new(), Vec::new()));
    }
    let ctx = context::<E>(index, "page");
    let index_key = index_key.map_err(|e| e.with_context(ctx.clone()))?;
    check_range(range, index, &ctx)?;
    // Its fallback is a script: refused up front rather than now and then.
    script::check_cluster(client, E::descriptor())?;
    if across_slots(client, index) {
        let rows = page_across_slots::<E>(client, &ctx, index, &index_key, range, page).await?;
        let rows: Vec<Row> = rows.into_iter().map(|(_, row)| row).collect();
        return Ok(decode_rows(&rows));
    }
    let ids: Vec<String> = client
        .send(ctx.clone(), zrange(&index_key, range, page))
        .await?;
    let descriptor = E::descriptor();
    let fetched =
        fetch::live_rows(client, ctx, descriptor, index, &index_key, Some(range), ids).await?;
    match fetched {
        Some(rows) => Ok(decode_rows(&rows)),
        None => script_listing(client, index, "page", index_key, range_args(range, page)).await,
    }
}

/// Ids of a page of a sorted index, within a score range; one round trip.
// The same parameters as `page` on purpose: the generated `by_x` and
// `by_x_ids` methods pass the same arguments to one or the other.
pub async fn page_ids<E: Entity>(
    client: &Client,
    index: &'static IndexDescriptor,
    index_key: Result<String>,
    range: &ScoreRange,
    page: Page,
) -> Result<Vec<String>> {
    let ctx = context::<E>(index, "ids");
    check_range(range, index, &ctx)?;
    if page.limit == 0 {
        return Ok(Vec::new());
    }
    if across_slots(client, index) {
        let index_key = index_key.map_err(|e| e.with_context(ctx.clone()))?;
        let rows = page_across_slots::<E>(client, &ctx, index, &index_key, range, page).await?;
        return Ok(rows.into_iter().map(|(member, _)| member).collect());
    }
    let (key, reply) = query::<E>(client, index, "ids", index_key, range_args(range, page)).await?;
    decode_ids(&key, &reply)
}

/// How many live entities an index key holds.
pub async fn count<E: Entity>(
    client: &Client,
    index: &'static IndexDescriptor,
    index_key: Result<String>,
) -> Result<u64> {
    if across_slots(client, index) {
        let ctx = context::<E>(index, "count");
        let index_key = index_key.map_err(|e| e.with_context(ctx.clone()))?;
        let command = match index.kind {
            IndexKind::Sorted => "ZCARD",
            _ => "SCARD",
        };
        let mut card = redis::cmd(command);
        card.arg(&index_key);
        return client.read(ctx, &card).await;
    }
    let (key, reply) = query::<E>(client, index, "count", index_key, Vec::new()).await?;
    match reply {
        redis::Value::Int(n) => Ok(n.max(0).unsigned_abs()),
        other => Err(Error::Decode {
            context: context::<E>(index, "count"),
            key,
            field: "*".into(),
            reason: format!("expected a count, found {}", value_kind(&other)),
        }),
    }
}

/// All entities of a set index key, sorted by id: the ids by one
/// `SMEMBERS`, the hashes by one pipeline (a third round trip when a member
/// was dead or moved, see `fetch`). Entities that do not decode are passed
/// over and reported in the [`Listing`].
pub async fn members<E: Entity>(
    client: &Client,
    index: &'static IndexDescriptor,
    index_key: Result<String>,
) -> Result<Listing<E>> {
    let ctx = context::<E>(index, "members");
    let index_key = index_key.map_err(|e| e.with_context(ctx.clone()))?;
    script::check_cluster(client, E::descriptor())?;
    let ids = sorted_members(client, &ctx, &index_key).await?;
    let descriptor = E::descriptor();
    if across_slots(client, index) {
        let rows = fetch::matching_rows(client, &ctx, descriptor, index, &index_key, None, ids);
        let rows: Vec<Row> = rows.await?.into_iter().map(|(_, row)| row).collect();
        return Ok(decode_rows(&rows));
    }
    let fetched = fetch::live_rows(client, ctx, descriptor, index, &index_key, None, ids).await?;
    let listing = match fetched {
        Some(rows) => return Ok(decode_rows(&rows)),
        None => script_listing::<E>(client, index, "members", index_key, Vec::new()).await?,
    };
    // The script returns members in set order.
    let skipped = listing.skipped().to_vec();
    let mut pairs = listing
        .into_iter()
        .map(|e| e.member().map(|m| (m, e)))
        .collect::<Result<Vec<_>>>()?;
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Listing::new(
        pairs.into_iter().map(|(_, e)| e).collect(),
        skipped,
    ))
}

/// The members of the set at `index_key`, sorted, by one `SMEMBERS`.
async fn sorted_members(client: &Client, ctx: &Context, index_key: &str) -> Result<Vec<String>> {
    let mut smembers = redis::cmd("SMEMBERS");
    smembers.arg(index_key);
    let mut ids: Vec<String> = client.read(ctx.clone(), &smembers).await?;
    ids.sort();
    Ok(ids)
}

/// All ids of a set index key, sorted; one round trip.
pub async fn member_ids<E: Entity>(
    client: &Client,
    index: &'static IndexDescriptor,
    index_key: Result<String>,
) -> Result<Vec<String>> {
    if across_slots(client, index) {
        let ctx = context::<E>(index, "ids");
        let index_key = index_key.map_err(|e| e.with_context(ctx.clone()))?;
        let ids = sorted_members(client, &ctx, &index_key).await?;
        let descriptor = E::descriptor();
        let rows = fetch::matching_rows(client, &ctx, descriptor, index, &index_key, None, ids);
        return Ok(rows.await?.into_iter().map(|(member, _)| member).collect());
    }
    let (key, reply) = query::<E>(client, index, "sids", index_key, Vec::new()).await?;
    let mut ids = decode_ids(&key, &reply)?;
    ids.sort();
    Ok(ids)
}

/// The entity holding `value` in a unique index, if any; one round trip.
pub async fn unique<E: Entity>(
    client: &Client,
    index: &'static IndexDescriptor,
    index_key: Result<String>,
    value: Result<Vec<u8>>,
) -> Result<Option<E>> {
    let value = value.map_err(|e| e.with_context(context::<E>(index, "get")))?;
    let index_key = index_key.map_err(|e| e.with_context(context::<E>(index, "get")))?;
    if across_slots(client, index) {
        let ctx = context::<E>(index, "get");
        return crate::cross_slot::unique_claims::lookup(client, &ctx, index, &index_key, &value)
            .await;
    }
    // One entity: all or nothing.
    let found = script_listing::<E>(client, index, "unique", index_key, vec![value])
        .await?
        .strict()?;
    Ok(found.into_iter().next())
}

/// Removes index entries of expired entities of type `E`, up to `budget`
/// registry entries; returns how many were looked at (fewer than `budget`
/// means none are left due).
///
/// A type with a registry per hash tag value has its registries found
/// with `SCAN` (on a cluster, on every primary) and swept in turn, the
/// budget shared among them.
pub async fn sweep<E: Entity>(client: &Client, budget: u64) -> Result<u64> {
    let descriptor = E::descriptor();
    let Some(registry) = descriptor.ttl_registry else {
        return Ok(0);
    };
    let ctx = Context::new(format!("{}.sweep", descriptor.name), descriptor.key_pattern);
    if descriptor.ttl_registry_per_tag {
        return sweep_tagged(client, &ctx, descriptor, budget).await;
    }
    sweep_registry(client, &ctx, descriptor, registry, budget).await
}

/// [`sweep`] of every registry of a type with one per hash tag value.
async fn sweep_tagged(
    client: &Client,
    ctx: &Context,
    descriptor: &'static redis_schema::EntityDescriptor,
    budget: u64,
) -> Result<u64> {
    let glob = descriptor
        .ttl_registry_pattern()
        .and_then(|pattern| redis_schema::KeyPattern::parse(&pattern).ok())
        .map(|pattern| pattern.scan_glob())
        .ok_or_else(|| {
            Error::Config(format!(
                "{}: no pattern for its TTL registries",
                descriptor.name
            ))
        })?;
    let (mut cursor, mut looked_at) = (0, 0);
    loop {
        let (next, keys) =
            crate::scan::keys_step(client, ctx, cursor, &glob, 1000, Some("zset")).await?;
        for key in keys {
            let left = budget.saturating_sub(looked_at);
            if left == 0 {
                return Ok(looked_at);
            }
            looked_at += sweep_registry(client, ctx, descriptor, &key, left).await?;
        }
        if next == 0 {
            return Ok(looked_at);
        }
        cursor = next;
    }
}

/// One sweep script call on the registry `registry`.
async fn sweep_registry(
    client: &Client,
    ctx: &Context,
    descriptor: &'static redis_schema::EntityDescriptor,
    registry: &str,
    budget: u64,
) -> Result<u64> {
    let scripts = script::for_client(client, descriptor, ctx)?;
    let mut invocation = scripts.call(&scripts.sweep, registry);
    // Any budget the type accepts works. The script holds it as a Lua
    // number, which the server prints back into the command; a number of
    // all nines prints as plain digits in every formatter (a round one
    // may come out as `1e+14`, which `LIMIT` refuses).
    invocation
        .key(registry)
        .arg(budget.clamp(1, MAX_SWEEP_BUDGET));
    client.write_idempotent(ctx.clone(), &invocation).await
}

pub(super) async fn sweep_all<E: Entity>(client: &Client) -> Result<()> {
    while sweep::<E>(client, SWEEP_BUDGET).await? >= SWEEP_BUDGET {}
    Ok(())
}

/// Encodes a unique-index lookup value the way the field is stored.
pub fn lookup_value<T: crate::codec::FieldValue>(
    field: &'static str,
    value: &T,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    crate::codec::encode_field(field, value, &mut out)?;
    Ok(out)
}

//! Reading through secondary indexes, and keeping them honest.
//!
//! Index entries are written by the entity write script in the same atomic
//! step as the entity (see [`crate::entity`]), so for entities without a TTL
//! an index holds exactly the live entities that belong in it.
//!
//! **TTL strategy.** An entity with indexes and a TTL is also recorded in a
//! *TTL registry*: a sorted set (`<key pattern>:__ttl`) scoring each id by its
//! expiry time, and a companion hash (`…:__ttl:fields`) holding the values its
//! index entries were built from. Every index query first sweeps registry
//! entries that are due (all of them, 1,000 per step) and removes their index
//! entries, so counts and pages never include an expired entity. No keyspace
//! notifications and no `CONFIG SET` are needed. As a second line of defence,
//! a query that meets an id whose hash is gone (a TTL set behind the
//! runtime's back) drops it from the index on the spot. [`sweep`] runs the
//! same cleanup on demand, e.g. from a periodic task for indexes that are
//! rarely read.
//!
//! Each query is one round trip: a Lua script (EVALSHA) that sweeps, reads
//! the index and, for entity queries, the hashes of the page.

use std::collections::{BTreeMap, BTreeSet};

use redis::AsyncCommands;
use redis_schema::{IndexDescriptor, KeyPattern};

use crate::client::Client;
use crate::codec::{reply_pairs, value_kind};
use crate::entity::{Entity, IndexKind, reindex};
use crate::error::{Context, Error, Result};
use crate::script;

/// Registry entries swept per query.
const SWEEP_BUDGET: u64 = 1000;

/// Which end of a sorted index comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Highest score first: newest first for timestamps.
    #[default]
    Descending,
    /// Lowest score first: oldest first for timestamps.
    Ascending,
}

/// A page of a sorted index: skip `offset` entries, return at most `limit`.
///
/// ```
/// use redis_runtime::index::{Order, Page};
///
/// let page = Page::newest_first(20).skip(40);
/// assert_eq!((page.offset, page.limit, page.order), (40, 20, Order::Descending));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Entries to skip.
    pub offset: u64,
    /// Most entries to return.
    pub limit: u64,
    /// Which end comes first.
    pub order: Order,
}

impl Page {
    /// The first `limit` entries, highest score (newest) first.
    pub fn newest_first(limit: u64) -> Self {
        Self {
            offset: 0,
            limit,
            order: Order::Descending,
        }
    }

    /// The first `limit` entries, lowest score (oldest) first.
    pub fn oldest_first(limit: u64) -> Self {
        Self {
            offset: 0,
            limit,
            order: Order::Ascending,
        }
    }

    /// The same page size, starting `offset` entries in.
    pub fn skip(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }
}

/// A range of scores, inclusive unless built with `after`/`before`.
///
/// ```
/// use redis_runtime::index::ScoreRange;
///
/// let since = ScoreRange::at_least(1_700_000_000_000.0);
/// let window = ScoreRange::between(10.0, 20.0);
/// # let _ = (since, window);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRange {
    min: String,
    max: String,
}

impl ScoreRange {
    /// Every score.
    pub fn all() -> Self {
        Self {
            min: "-inf".into(),
            max: "+inf".into(),
        }
    }

    /// Scores `>= min` (e.g. jobs since a timestamp).
    pub fn at_least(min: f64) -> Self {
        Self {
            min: bound(min),
            max: "+inf".into(),
        }
    }

    /// Scores `> min`.
    pub fn after(min: f64) -> Self {
        Self {
            min: format!("({}", bound(min)),
            max: "+inf".into(),
        }
    }

    /// Scores `<= max`.
    pub fn at_most(max: f64) -> Self {
        Self {
            min: "-inf".into(),
            max: bound(max),
        }
    }

    /// Scores `< max`.
    pub fn before(max: f64) -> Self {
        Self {
            min: "-inf".into(),
            max: format!("({}", bound(max)),
        }
    }

    /// Scores in `min..=max`.
    pub fn between(min: f64, max: f64) -> Self {
        Self {
            min: bound(min),
            max: bound(max),
        }
    }
}

fn bound(value: f64) -> String {
    if value.is_nan() {
        // NaN matches nothing: an empty range.
        return "(0".into();
    }
    if value == f64::INFINITY {
        "+inf".into()
    } else if value == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        value.to_string()
    }
}

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
    let mut invocation = script::for_entity(E::descriptor()).query.prepare_invoke();
    invocation.key(&index_key).arg(verb).arg(position).arg(args);
    let reply = client.query(ctx, &invocation).await?;
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

/// Decodes `[id, [field, value, ...], id, ...]` into entities, in order.
fn decode_entities<E: Entity>(index_key: &str, reply: &redis::Value) -> Result<Vec<E>> {
    let redis::Value::Array(items) = reply else {
        return Err(Error::Decode {
            context: Context::default(),
            key: index_key.to_string(),
            field: "*".into(),
            reason: format!("expected id/hash pairs, found {}", value_kind(reply)),
        });
    };
    let descriptor = E::descriptor();
    let mut out = Vec::with_capacity(items.len() / 2);
    for pair in items.chunks(2) {
        let [id, fields] = pair else {
            return Err(Error::Decode {
                context: Context::default(),
                key: index_key.to_string(),
                field: "*".into(),
                reason: "odd number of items in a page".into(),
            });
        };
        let member = match id {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => {
                return Err(Error::Decode {
                    context: Context::default(),
                    key: index_key.to_string(),
                    field: "*".into(),
                    reason: format!("expected an id, found {}", value_kind(other)),
                });
            }
        };
        let key = descriptor.key_of_member(&member).unwrap_or(member);
        let pairs = reply_pairs(&key, fields)?;
        out.push(E::read_fields(&key, &pairs)?);
    }
    Ok(out)
}

/// Entities of a page of a sorted index, within a score range; one round trip.
pub async fn page<E: Entity>(
    client: &Client,
    index: &'static IndexDescriptor,
    index_key: Result<String>,
    range: &ScoreRange,
    page: Page,
) -> Result<Vec<E>> {
    if page.limit == 0 {
        return Ok(Vec::new());
    }
    let (key, reply) =
        query::<E>(client, index, "page", index_key, range_args(range, page)).await?;
    decode_entities(&key, &reply).map_err(|e| e.with_context(context::<E>(index, "page")))
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
    if page.limit == 0 {
        return Ok(Vec::new());
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

/// All entities of a set index key, sorted by id; one round trip.
pub async fn members<E: Entity>(
    client: &Client,
    index: &'static IndexDescriptor,
    index_key: Result<String>,
) -> Result<Vec<E>> {
    let (key, reply) = query::<E>(client, index, "members", index_key, Vec::new()).await?;
    let mut pairs = decode_entities::<E>(&key, &reply)?
        .into_iter()
        .map(|e| e.member().map(|m| (m, e)))
        .collect::<Result<Vec<_>>>()?;
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(pairs.into_iter().map(|(_, e)| e).collect())
}

/// All ids of a set index key, sorted; one round trip.
pub async fn member_ids<E: Entity>(
    client: &Client,
    index: &'static IndexDescriptor,
    index_key: Result<String>,
) -> Result<Vec<String>> {
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
    let (key, reply) = query::<E>(client, index, "unique", index_key, vec![value]).await?;
    Ok(decode_entities::<E>(&key, &reply)?.into_iter().next())
}

/// Removes index entries of expired entities of type `E`, up to `budget`
/// registry entries; returns how many were looked at (fewer than `budget`
/// means none are left due).
pub async fn sweep<E: Entity>(client: &Client, budget: u64) -> Result<u64> {
    let descriptor = E::descriptor();
    let Some(registry) = descriptor.ttl_registry else {
        return Ok(0);
    };
    let mut invocation = script::for_entity(descriptor).sweep.prepare_invoke();
    invocation.key(registry).arg(budget.max(1));
    let ctx = Context::new(format!("{}.sweep", descriptor.name), descriptor.key_pattern);
    client.query(ctx, &invocation).await
}

async fn sweep_all<E: Entity>(client: &Client) -> Result<()> {
    while sweep::<E>(client, SWEEP_BUDGET).await? >= SWEEP_BUDGET {}
    Ok(())
}

/// One index entry that does not match the entities.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// The index's name.
    pub index: &'static str,
    /// The concrete index key.
    pub index_key: String,
    /// The entity id.
    pub member: String,
    /// For unique indexes, the unique value of the entry.
    pub value: Option<String>,
    /// What is wrong.
    pub problem: DriftKind,
}

/// The kinds of [`Drift`].
#[derive(Debug, Clone, PartialEq)]
pub enum DriftKind {
    /// The index holds an id that does not belong there (entity gone, or
    /// its indexed value changed).
    Orphan,
    /// A live entity is missing from the index.
    Missing,
    /// The sorted index holds the id with a score that differs from the field.
    WrongScore {
        /// The score the entity's field gives.
        expected: f64,
        /// The score in the index.
        actual: f64,
    },
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyReport {
    /// Entities scanned.
    pub entities: u64,
    /// Index entries scanned.
    pub entries: u64,
    /// Every mismatch; empty when the indexes are exact.
    pub drift: Vec<Drift>,
}

/// Expected entries: (index position, index key) -> member -> score (sorted)
/// or "" (set), and value -> member for unique indexes.
type Expected = BTreeMap<(usize, String), BTreeMap<String, String>>;

async fn scan_keys(client: &Client, glob: String, ctx: &Context) -> Result<Vec<String>> {
    client
        .run(ctx.clone(), |mut conn| async move {
            let mut keys = Vec::new();
            let mut iter: redis::AsyncIter<'_, String> = conn
                .scan_options(
                    redis::ScanOptions::default()
                        .with_pattern(glob)
                        .with_count(1000),
                )
                .await?;
            while let Some(key) = futures_util::StreamExt::next(&mut iter).await {
                keys.push(key?);
            }
            Ok(keys)
        })
        .await
}

fn parse_pattern(pattern: &'static str) -> Result<KeyPattern> {
    KeyPattern::parse(pattern)
        .map_err(|e| Error::Config(format!("bad key pattern {pattern:?}: {e}")))
}

/// Compares every index of `E` with its entities (SCAN-based, batched) and
/// reports orphans, missing entries and wrong scores. Sweeps expired
/// entries first. Read-only apart from that sweep; intended for tests,
/// maintenance and a CLI, not hot paths.
pub async fn verify<E: Entity>(client: &Client) -> Result<VerifyReport> {
    sweep_all::<E>(client).await?;
    let descriptor = E::descriptor();
    let indexed_fields = descriptor.indexed_fields();
    let ctx = Context::new(
        format!("{}.verify", descriptor.name),
        descriptor.key_pattern,
    );
    let entity_pattern = parse_pattern(descriptor.key_pattern)?;
    let mut report = VerifyReport::default();

    // What the indexes should hold, from the entities' stored values.
    let mut expected: Expected = BTreeMap::new();
    // Unique values claimed by more than one entity: (position, key, value) -> members.
    let mut claims: BTreeMap<(usize, String, String), BTreeSet<String>> = BTreeMap::new();
    let keys: Vec<String> = scan_keys(client, entity_pattern.scan_glob(), &ctx)
        .await?
        .into_iter()
        .filter(|k| entity_pattern.parse_key(k).is_some())
        .collect();
    for batch in keys.chunks(500) {
        let batch_for_query = batch.to_vec();
        let names = indexed_fields.clone();
        let rows: Vec<Vec<Option<String>>> = client
            .run(ctx.clone(), |mut conn| async move {
                let batch = batch_for_query;
                let mut pipe = redis::pipe();
                for key in &batch {
                    if names.is_empty() {
                        pipe.cmd("EXISTS").arg(key).ignore();
                    } else {
                        pipe.cmd("HMGET").arg(key).arg(&names);
                    }
                }
                if names.is_empty() {
                    let _: () = pipe.query_async(&mut conn).await?;
                    return Ok(vec![Vec::new(); batch.len()]);
                }
                Ok(pipe.query_async(&mut conn).await?)
            })
            .await?;
        for (key, row) in batch.iter().zip(&rows) {
            report.entities += 1;
            let Some(values_list) = entity_pattern.parse_key(key) else {
                continue;
            };
            let member = values_list.join(":");
            let values: BTreeMap<&str, String> = indexed_fields
                .iter()
                .zip(row)
                .filter_map(|(name, v)| v.clone().map(|v| (*name, v)))
                .collect();
            for (position, index) in descriptor.indexes.iter().enumerate() {
                let value_of = |name: &str| values.get(name).map(String::as_str);
                let Some(index_key) = descriptor.render(index.key, value_of) else {
                    continue;
                };
                let value = index
                    .score_field
                    .and_then(value_of)
                    .map(str::to_owned)
                    .unwrap_or_default();
                let entries = expected.entry((position, index_key.clone())).or_default();
                // Unique indexes map value -> member (a member may wrongly
                // hold two values); the others member -> score or "".
                if index.kind == IndexKind::Unique {
                    claims
                        .entry((position, index_key, value.clone()))
                        .or_default()
                        .insert(member.clone());
                    entries.insert(value, member.clone());
                } else {
                    entries.insert(member.clone(), value);
                }
            }
        }
    }

    // What the indexes hold.
    for (position, index) in descriptor.indexes.iter().enumerate() {
        let pattern = parse_pattern(index.key_pattern)?;
        let index_keys: BTreeSet<String> = scan_keys(client, pattern.scan_glob(), &ctx)
            .await?
            .into_iter()
            .filter(|k| pattern.parse_key(k).is_some() || pattern.placeholder_count() == 0)
            .collect();
        let wanted: Vec<&String> = expected
            .keys()
            .filter(|(p, _)| *p == position)
            .map(|(_, k)| k)
            .collect();
        let all_keys: BTreeSet<String> = index_keys
            .into_iter()
            .chain(wanted.into_iter().cloned())
            .collect();
        for index_key in all_keys {
            let actual = read_index(client, &ctx, index.kind, &index_key).await?;
            report.entries += actual.len() as u64;
            let want = expected
                .get(&(position, index_key.clone()))
                .cloned()
                .unwrap_or_default();
            compare(
                index.name,
                index.kind,
                &index_key,
                &want,
                &actual,
                &mut report.drift,
            );
            // Every claimant of a unique value that does not hold it is
            // missing from the index (two entities share the value).
            for ((_, key, value), members) in claims
                .range((position, index_key.clone(), String::new())..)
                .take_while(|((p, key, _), _)| *p == position && *key == index_key)
            {
                for member in members {
                    let drift = Drift {
                        index: index.name,
                        index_key: key.clone(),
                        member: member.clone(),
                        value: Some(value.clone()),
                        problem: DriftKind::Missing,
                    };
                    if actual.get(value) != Some(member) && !report.drift.contains(&drift) {
                        report.drift.push(drift);
                    }
                }
            }
        }
    }
    Ok(report)
}

/// member -> score (sorted) / "" (set); value -> member (unique).
async fn read_index(
    client: &Client,
    ctx: &Context,
    kind: IndexKind,
    key: &str,
) -> Result<BTreeMap<String, String>> {
    let key = key.to_string();
    client
        .run(ctx.clone(), |mut conn| async move {
            Ok(match kind {
                IndexKind::Sorted => {
                    let rows: Vec<(String, f64)> = conn.zrange_withscores(&key, 0, -1).await?;
                    rows.into_iter().map(|(m, s)| (m, s.to_string())).collect()
                }
                IndexKind::Set => {
                    let rows: Vec<String> = conn.smembers(&key).await?;
                    rows.into_iter().map(|m| (m, String::new())).collect()
                }
                IndexKind::Unique => conn.hgetall(&key).await?,
            })
        })
        .await
}

fn compare(
    index: &'static str,
    kind: IndexKind,
    index_key: &str,
    want: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
    drift: &mut Vec<Drift>,
) {
    let entry = |member: &str, value: Option<&String>, problem| Drift {
        index,
        index_key: index_key.to_string(),
        member: member.to_string(),
        value: value.cloned(),
        problem,
    };
    if kind == IndexKind::Unique {
        // Both maps are value -> member.
        for (value, member) in actual {
            if want.get(value) != Some(member) {
                drift.push(entry(member, Some(value), DriftKind::Orphan));
            }
        }
        for (value, member) in want {
            if actual.get(value) != Some(member) {
                drift.push(entry(member, Some(value), DriftKind::Missing));
            }
        }
        return;
    }
    for (member, value) in actual {
        match want.get(member) {
            None => drift.push(entry(member, None, DriftKind::Orphan)),
            Some(expected) if kind == IndexKind::Sorted => {
                let e = expected.parse::<f64>().unwrap_or(f64::NAN);
                let a = value.parse::<f64>().unwrap_or(f64::NAN);
                if e != a {
                    drift.push(entry(
                        member,
                        None,
                        DriftKind::WrongScore {
                            expected: e,
                            actual: a,
                        },
                    ));
                }
            }
            Some(_) => {}
        }
    }
    for member in want.keys() {
        if !actual.contains_key(member) {
            drift.push(entry(member, None, DriftKind::Missing));
        }
    }
}

/// What [`rebuild`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RebuildReport {
    /// Entities whose entries were re-added.
    pub reindexed: u64,
    /// Stale entries removed.
    pub removed: u64,
    /// Drift left after the repair (normally empty; entries of unique
    /// indexes held by two entities stay reported here).
    pub remaining: Vec<Drift>,
}

/// Repairs `E`'s indexes from its hashes: for use when an index is added to
/// existing data, or after drift. Finds drift with [`verify`], re-adds the
/// entries of affected entities (each an atomic reindex of one entity) and
/// removes stale entries (each re-checked atomically against the entity's
/// current values, so concurrent writers are never undone).
pub async fn rebuild<E: Entity>(client: &Client) -> Result<RebuildReport> {
    let found = verify::<E>(client).await?;
    let descriptor = E::descriptor();
    let mut report = RebuildReport::default();
    let mut reindex_members: BTreeSet<String> = BTreeSet::new();
    for drift in &found.drift {
        match drift.problem {
            DriftKind::Missing | DriftKind::WrongScore { .. } => {
                reindex_members.insert(drift.member.clone());
            }
            DriftKind::Orphan => {
                let Some(position) = descriptor
                    .indexes
                    .iter()
                    .position(|i| i.name == drift.index)
                else {
                    continue;
                };
                let value = drift.value.clone().unwrap_or_default();
                let mut invocation = script::for_entity(descriptor).unindex.prepare_invoke();
                invocation
                    .key(&drift.index_key)
                    .arg(position + 1)
                    .arg(&drift.member)
                    .arg(value);
                let ctx = Context::new(
                    format!("{}.rebuild", descriptor.name),
                    descriptor.key_pattern,
                );
                let removed: i64 = client.query(ctx, &invocation).await?;
                report.removed += u64::from(removed > 0);
            }
        }
    }
    for member in reindex_members {
        let Some(key) = descriptor.key_of_member(&member) else {
            continue;
        };
        match reindex::<E>(client, key, member).await {
            Ok(true) => report.reindexed += 1,
            Ok(false) => {}
            // Two entities claim one unique value: nothing is written for
            // this one, and the conflict stays in `remaining` for a human.
            Err(Error::UniqueViolation { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    report.remaining = verify::<E>(client).await?.drift;
    Ok(report)
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

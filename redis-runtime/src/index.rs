//! Reading through secondary indexes, and keeping them honest.
//!
//! Index entries are written by the entity write script in the same atomic
//! step as the entity (see [`crate::entity`]), so for entities without a TTL
//! an index holds exactly the live entities that belong in it.
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

/// A key that [`verify`] or [`rebuild`] passed over instead of failing:
/// it matches one of the entity type's key patterns but holds something
/// the runtime did not write there (foreign data), or, for [`rebuild`], a
/// repair Redis refused. Each key is listed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// The concrete key.
    pub key: String,
    /// Why it was passed over.
    pub reason: SkipReason,
}

/// Why a key is in [`VerifyReport::skipped`] or [`RebuildReport::skipped`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The key fits the entity's key pattern but is not a hash (a counter
    /// at `job:next_id`, a list at `job:42`). It is not counted as an
    /// entity, never expected in an index, and never written to.
    NotAHash {
        /// The Redis type the key holds (`"string"`, `"list"`, ...).
        found: String,
    },
    /// A hash at an entity key, or an index key of the right type, whose
    /// contents do not decode: a required field is missing or a value is
    /// malformed. A hash like this is not counted as an entity and not
    /// expected in any index, so entries pointing at it are reported as
    /// drift; [`rebuild`] removes them only once the hash no longer maps
    /// to them.
    Undecodable {
        /// The field that failed (`"*"` when the whole reply was malformed).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An index key holds a Redis type other than the one its index uses
    /// (a string at `jobs:status:queued`). Its entries are not compared, so
    /// no drift is reported for it, and [`rebuild`] does not write to it.
    WrongIndexType {
        /// The index's name.
        index: &'static str,
        /// The Redis type the index uses: `"zset"`, `"set"` or `"hash"`.
        expected: &'static str,
        /// The Redis type the key holds.
        found: String,
    },
    /// [`rebuild`] only: Redis refused to repair this entity's entries (or
    /// to remove this stale entry) because of the data it met, e.g. one of
    /// the entity's index keys holds a foreign type. Nothing was written
    /// for it; the rest of the repair went ahead.
    RepairRefused {
        /// The server's or the codec's message.
        reason: String,
    },
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyReport {
    /// Entities scanned: hashes at entity keys that decode as the entity
    /// type (foreign keys in `skipped` are not counted).
    pub entities: u64,
    /// Index entries scanned.
    pub entries: u64,
    /// Every mismatch; empty when the indexes are exact.
    pub drift: Vec<Drift>,
    /// Keys passed over because they hold foreign data, sorted by key;
    /// empty when every key matching the patterns is the runtime's own.
    pub skipped: Vec<Skipped>,
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

/// The Redis type at `key` and what reading it with `read` gave, taken in
/// one `MULTI` so the two agree. `read` failing (a foreign type) is not an
/// error of the call: its reply is kept as a `Value::ServerError`.
type Typed = (String, redis::Value);

/// `TYPE` and one read command per key, atomically, in one round trip.
async fn read_typed(
    client: &Client,
    ctx: &Context,
    keys: &[String],
    read: impl Fn(&mut redis::Pipeline, &str),
) -> Result<Vec<Typed>> {
    let mut pipe = redis::pipe();
    pipe.atomic().ignore_errors();
    for key in keys {
        pipe.cmd("TYPE").arg(key);
        read(&mut pipe, key);
    }
    let expected = keys.len() * 2;
    let replies: Vec<redis::Value> = client.query(ctx.clone(), &pipe).await?;
    if replies.len() != expected {
        return Err(Error::Command {
            context: ctx.clone(),
            message: format!("expected {expected} replies, got {}", replies.len()),
        });
    }
    let mut out = Vec::with_capacity(keys.len());
    let mut replies = replies.into_iter();
    while let (Some(kind), Some(value)) = (replies.next(), replies.next()) {
        let kind = match kind {
            redis::Value::SimpleString(s) => s,
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            // `TYPE` cannot fail on an existing key; treat anything else as
            // a type we do not know.
            other => value_kind(&other).to_string(),
        };
        out.push((kind, value));
    }
    Ok(out)
}

/// The field and reason of a decoding error, for [`SkipReason::Undecodable`].
fn undecodable(error: Error) -> SkipReason {
    match error {
        Error::Decode { field, reason, .. } => SkipReason::Undecodable { field, reason },
        other => SkipReason::Undecodable {
            field: "*".into(),
            reason: other.to_string(),
        },
    }
}

/// Compares every index of `E` with its entities (SCAN-based, batched) and
/// reports orphans, missing entries and wrong scores. Sweeps expired
/// entries first. Read-only apart from that sweep; intended for tests,
/// maintenance and a CLI, not hot paths.
///
/// Foreign data never aborts the scan: keys matching the entity pattern
/// that are not hashes or do not decode, and index keys of the wrong Redis
/// type, are listed in [`VerifyReport::skipped`] (see [`SkipReason`]).
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
        let stored = read_typed(client, &ctx, batch, |pipe, key| {
            pipe.cmd("HGETALL").arg(key);
        })
        .await?;
        for (key, (kind, reply)) in batch.iter().zip(&stored) {
            match kind.as_str() {
                "hash" => {}
                // Gone since the SCAN (expired or deleted).
                "none" => continue,
                _ => {
                    let reason = SkipReason::NotAHash {
                        found: kind.clone(),
                    };
                    report.skipped.push(Skipped {
                        key: key.clone(),
                        reason,
                    });
                    continue;
                }
            }
            let decoded = reply_pairs(key, reply)
                .and_then(|pairs| E::read_fields(key, &pairs).map(|_| pairs));
            let pairs = match decoded {
                Ok(pairs) => pairs,
                Err(e) => {
                    report.skipped.push(Skipped {
                        key: key.clone(),
                        reason: undecodable(e),
                    });
                    continue;
                }
            };
            let Some(values_list) = entity_pattern.parse_key(key) else {
                continue;
            };
            report.entities += 1;
            let member = values_list.join(":");
            let values: BTreeMap<&str, String> = indexed_fields
                .iter()
                .filter_map(|name| {
                    let (_, v) = pairs.iter().find(|(f, _)| *f == name.as_bytes())?;
                    Some((*name, std::str::from_utf8(v).ok()?.to_owned()))
                })
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
            let actual = match read_index(client, &ctx, index, &index_key).await? {
                Ok(actual) => actual,
                Err(reason) => {
                    report.skipped.push(Skipped {
                        key: index_key,
                        reason,
                    });
                    continue;
                }
            };
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
    sort_skipped(&mut report.skipped);
    Ok(report)
}

/// Sorts by key and drops repeats, so each key is listed once.
fn sort_skipped(skipped: &mut Vec<Skipped>) {
    skipped.sort_by(|a, b| a.key.cmp(&b.key));
    skipped.dedup_by(|a, b| a.key == b.key);
}

/// The Redis type each kind of index keeps its entries in.
fn redis_type(kind: IndexKind) -> &'static str {
    match kind {
        IndexKind::Sorted => "zset",
        IndexKind::Set => "set",
        IndexKind::Unique => "hash",
    }
}

/// member -> score (sorted) / "" (set); value -> member (unique); or why
/// the key was passed over (it holds a foreign type or undecodable data).
async fn read_index(
    client: &Client,
    ctx: &Context,
    index: &'static IndexDescriptor,
    key: &str,
) -> Result<std::result::Result<BTreeMap<String, String>, SkipReason>> {
    let expected = redis_type(index.kind);
    let keys = [key.to_string()];
    let read = read_typed(client, ctx, &keys, |pipe, key| match index.kind {
        IndexKind::Sorted => {
            pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES");
        }
        IndexKind::Set => {
            pipe.cmd("SMEMBERS").arg(key);
        }
        IndexKind::Unique => {
            pipe.cmd("HGETALL").arg(key);
        }
    })
    .await?;
    let Some((kind, reply)) = read.into_iter().next() else {
        return Ok(Ok(BTreeMap::new()));
    };
    if kind != expected && kind != "none" {
        return Ok(Err(SkipReason::WrongIndexType {
            index: index.name,
            expected,
            found: kind,
        }));
    }
    let decoded = match index.kind {
        IndexKind::Sorted => redis::from_redis_value::<Vec<(String, f64)>>(reply)
            .map(|rows| rows.into_iter().map(|(m, s)| (m, s.to_string())).collect()),
        IndexKind::Set => redis::from_redis_value::<Vec<String>>(reply)
            .map(|rows| rows.into_iter().map(|m| (m, String::new())).collect()),
        IndexKind::Unique => redis::from_redis_value::<BTreeMap<String, String>>(reply),
    };
    Ok(decoded.map_err(|e| SkipReason::Undecodable {
        field: "*".into(),
        reason: e.to_string(),
    }))
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
    /// Keys left untouched, sorted by key: foreign data found by the final
    /// [`verify`], and repairs Redis refused
    /// ([`SkipReason::RepairRefused`]).
    pub skipped: Vec<Skipped>,
    /// TTL registry entries moved over from the name versions before 0.2
    /// used ([`crate::migrate::move_legacy_ttl_registry`]).
    pub registry_entries_moved: u64,
}

/// Whether a failed repair step was refused because of the data it met (a
/// foreign type, an undecodable or unsafe value), rather than because
/// Redis is unreachable: such a step is reported and the repair goes on.
fn refused_for_data(error: &Error) -> bool {
    match error {
        Error::Decode { .. } | Error::InvalidKey { .. } => true,
        Error::Command { message, .. } => ["WRONGTYPE", "DECODE", "INVALID_KEY"]
            .iter()
            .any(|code| message.contains(code)),
        _ => false,
    }
}

/// Repairs `E`'s indexes from its hashes: for use when an index is added to
/// existing data, or after drift. Finds drift with [`verify`], re-adds the
/// entries of affected entities (each an atomic reindex of one entity) and
/// removes stale entries (each re-checked atomically against the entity's
/// current values, so concurrent writers are never undone).
///
/// It first moves a TTL registry kept under the name older versions used
/// ([`crate::migrate`]). Foreign data is left untouched and reported in
/// [`RebuildReport::skipped`]; a repair step refused because of it is
/// reported there too, and the rest of the repair goes ahead.
pub async fn rebuild<E: Entity>(client: &Client) -> Result<RebuildReport> {
    // First, so that entities an older version registered are swept too.
    let registry_entries_moved = crate::migrate::move_legacy_ttl_registry::<E>(client).await?;
    let found = verify::<E>(client).await?;
    let descriptor = E::descriptor();
    let ctx = Context::new(
        format!("{}.rebuild", descriptor.name),
        descriptor.key_pattern,
    );
    let mut report = RebuildReport {
        registry_entries_moved,
        ..RebuildReport::default()
    };
    let mut refused: Vec<Skipped> = Vec::new();
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
                match client.query::<i64>(ctx.clone(), &invocation).await {
                    Ok(removed) => report.removed += u64::from(removed > 0),
                    Err(e) if refused_for_data(&e) => refused.push(Skipped {
                        key: drift.index_key.clone(),
                        reason: SkipReason::RepairRefused {
                            reason: e.to_string(),
                        },
                    }),
                    Err(e) => return Err(e),
                }
            }
        }
    }
    for member in reindex_members {
        let Some(key) = descriptor.key_of_member(&member) else {
            continue;
        };
        match reindex::<E>(client, key.clone(), member).await {
            Ok(true) => report.reindexed += 1,
            Ok(false) => {}
            // Two entities claim one unique value: nothing is written for
            // this one, and the conflict stays in `remaining` for a human.
            Err(Error::UniqueViolation { .. }) => {}
            Err(e) if refused_for_data(&e) => refused.push(Skipped {
                key,
                reason: SkipReason::RepairRefused {
                    reason: e.to_string(),
                },
            }),
            Err(e) => return Err(e),
        }
    }
    let after = verify::<E>(client).await?;
    report.remaining = after.drift;
    // A refusal says more than the foreign data behind it: it goes first,
    // so it is the one kept for its key.
    refused.extend(after.skipped);
    report.skipped = refused;
    sort_skipped(&mut report.skipped);
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

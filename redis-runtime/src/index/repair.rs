//! Keeping indexes honest: [`verify`] compares every index of an entity
//! type with its hashes, [`rebuild`] repairs what it finds, and both pass
//! over foreign data (keys of another Redis type, hashes that do not
//! decode) and report it by key instead of aborting.

use std::collections::{BTreeMap, BTreeSet};

use redis::AsyncCommands;
use redis_schema::{IndexDescriptor, KeyPattern};

use super::sweep_all;
use crate::client::Client;
use crate::codec::{reply_pairs, value_kind};
use crate::entity::{Entity, IndexKind, reindex};
use crate::error::{Context, Error, Result};
use crate::script;

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
pub(super) fn undecodable(error: Error) -> SkipReason {
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

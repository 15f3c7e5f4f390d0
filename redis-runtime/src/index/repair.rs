//! Keeping indexes honest: [`verify`] compares every index of an entity
//! type with its hashes, [`rebuild`] repairs what it finds, and both pass
//! over foreign data (keys of another Redis type, hashes that do not
//! decode) and report it by key instead of aborting.

use std::sync::{Mutex, PoisonError};

use crate::client::Client;
use crate::entity::Entity;
use crate::error::{Error, Result};

pub(crate) mod pass;

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
    /// On a cluster, the entities whose `cross_slot` index moves are still
    /// pending (see [`settle`](crate::index::settle)): drift on their
    /// entries may be those moves, not yet applied. 0 elsewhere.
    pub pending: u64,
}

/// The field and reason of a decoding error, for [`SkipReason::Undecodable`].
pub(crate) fn undecodable(error: Error) -> SkipReason {
    match error {
        Error::Decode { field, reason, .. } => SkipReason::Undecodable { field, reason },
        other => SkipReason::Undecodable {
            field: "*".into(),
            reason: other.to_string(),
        },
    }
}

/// Compares every index of `E` with its entities and reports orphans,
/// missing entries and wrong scores. Sweeps expired entries first.
/// Read-only apart from that sweep; intended for tests, maintenance and a
/// CLI, not hot paths.
///
/// It walks the keyspace a batch at a time (`SCAN`, then `ZSCAN`/`SSCAN`/
/// `HSCAN` per index key, 500 keys or entries per step) and holds one
/// batch in memory, plus the drift it returns.
///
/// Foreign data never aborts the scan: keys matching the entity pattern
/// that are not hashes or do not decode, and index keys of the wrong Redis
/// type, are listed in [`VerifyReport::skipped`] (see [`SkipReason`]).
pub async fn verify<E: Entity>(client: &Client) -> Result<VerifyReport> {
    let collected = Collect::default();
    let tally = pass::run::<E>(client, false, &collected).await?;
    let Collect { found, skipped, .. } = collected;
    let mut skipped = into_inner(skipped);
    sort_skipped(&mut skipped);
    let ctx = crate::error::Context::new(
        format!("{}.verify", E::descriptor().name),
        E::descriptor().key_pattern,
    );
    Ok(VerifyReport {
        entities: tally.entities,
        entries: tally.entries,
        drift: into_inner(found),
        skipped,
        // Boxed, like the pass: it keeps the depth of `verify`'s future
        // within the compiler's limit for the futures that await it.
        pending: Box::pin(crate::cross_slot::pending::count(
            client,
            E::descriptor(),
            &ctx,
        ))
        .await?,
    })
}

/// Sorts by key and drops repeats, so each key is listed once (the first
/// of a key's entries is kept).
fn sort_skipped(skipped: &mut Vec<Skipped>) {
    skipped.sort_by(|a, b| a.key.cmp(&b.key));
    skipped.dedup_by(|a, b| a.key == b.key);
}

/// The [`pass::Control`] of the plain [`verify`] and [`rebuild`]: keeps
/// everything, never pauses, never stops.
#[derive(Default)]
struct Collect {
    found: Mutex<Vec<Drift>>,
    left: Mutex<Vec<Drift>>,
    skipped: Mutex<Vec<Skipped>>,
    refused: Mutex<Vec<Skipped>>,
}

fn into_inner<T>(items: Mutex<Vec<T>>) -> Vec<T> {
    items.into_inner().unwrap_or_else(PoisonError::into_inner)
}

fn push<T>(items: &Mutex<Vec<T>>, item: T) {
    items
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(item);
}

impl pass::Control for Collect {
    fn found(&self, drift: &Drift) {
        push(&self.found, drift.clone());
    }

    fn left(&self, drift: &Drift) {
        push(&self.left, drift.clone());
    }

    fn skipped(&self, skipped: Skipped) {
        if matches!(skipped.reason, SkipReason::RepairRefused { .. }) {
            push(&self.refused, skipped);
        } else {
            push(&self.skipped, skipped);
        }
    }

    fn step<'a>(&'a self, _step: pass::Step<'a>) -> pass::Pause<'a> {
        Box::pin(std::future::ready(pass::Flow::Continue))
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
pub(crate) fn refused_for_data(error: &Error) -> bool {
    match error {
        Error::Decode { .. } | Error::InvalidKey { .. } => true,
        Error::Command { message, .. } => ["WRONGTYPE", "DECODE", "INVALID_KEY"]
            .iter()
            .any(|code| message.contains(code)),
        _ => false,
    }
}

/// Repairs `E`'s indexes from its hashes: for use when an index is added to
/// existing data, or after drift. Walks the keyspace like [`verify`], a
/// batch at a time, and repairs each batch's drift before moving on: it
/// re-adds the entries of affected entities (each an atomic reindex of one
/// entity) and removes stale entries (each re-checked atomically against
/// the entity's current values, so concurrent writers are never undone),
/// then checks the repaired items again for [`RebuildReport::remaining`].
///
/// It first moves a TTL registry kept under the name older versions used
/// ([`crate::migrate`]), and on a cluster applies the `cross_slot` index
/// moves clients left pending ([`settle`](crate::index::settle)). Foreign data is left untouched and reported in
/// [`RebuildReport::skipped`]; a repair step refused because of it is
/// reported there too, and the rest of the repair goes ahead.
pub async fn rebuild<E: Entity>(client: &Client) -> Result<RebuildReport> {
    let collected = Collect::default();
    let tally = pass::run::<E>(client, true, &collected).await?;
    let Collect {
        left,
        skipped,
        refused,
        ..
    } = collected;
    // A refusal says more than the foreign data behind it: it goes first,
    // so it is the one kept for its key.
    let mut all = into_inner(refused);
    all.extend(into_inner(skipped));
    sort_skipped(&mut all);
    Ok(RebuildReport {
        reindexed: tally.reindexed,
        removed: tally.removed,
        remaining: into_inner(left),
        skipped: all,
        registry_entries_moved: tally.registry_entries_moved,
    })
}

//! The pass behind [`verify`](super::verify) and [`rebuild`](super::rebuild):
//! one walk over an entity type's keys, a bounded batch at a time, that a
//! [`Control`] can pace, watch and stop between any two batches and resume
//! later from a [`Checkpoint`].
//!
//! It runs in two phases. **Entities**: `SCAN` the entity pattern; for each
//! batch read every hash (with its type, atomically), decode it and ask the
//! indexes, in one pipeline, whether each entry the entity should have is
//! there (`ZSCORE`/`SISMEMBER`/`HGET`): missing entries and wrong scores.
//! **Entries**, per index: `SCAN` the index's key pattern and walk each
//! index key with `ZSCAN`/`SSCAN`/`HSCAN`; for each batch read the entities
//! the entries name and report entries whose entity is gone, does not
//! decode, or no longer maps to this key (orphans). Memory stays bounded by
//! one batch plus a set of 64-bit key hashes used to ignore keys `SCAN`
//! returns twice.
//!
//! A repairing pass fixes each batch's drift before moving on (an atomic
//! reindex per entity, an atomic re-checked removal per orphan, so
//! concurrent writers are never undone), then checks the same items again:
//! what is still wrong is the drift left. Every repair is idempotent, which
//! is what makes a resumed pass safe even if `SCAN` returns a key on both
//! sides of the stop.

// Pacing, progress and resuming are the admin command's (feature
// `admin`); without it only the collecting control is used.
#![cfg_attr(not(feature = "admin"), allow(dead_code))]

mod entities;
mod entries;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::marker::PhantomData;
use std::pin::Pin;

use redis_schema::{EntityDescriptor, KeyPattern};
use serde::{Deserialize, Serialize};

use super::{Drift, SkipReason, Skipped};
use crate::client::Client;
use crate::codec::reply_pairs;
use crate::cross_slot::pending;
use crate::entity::Entity;
use crate::error::{Context, Error, Result};

/// Keys per `SCAN` step, entries per member-scan step, unless the
/// [`Control`] says otherwise.
pub(crate) const DEFAULT_SCAN_COUNT: usize = 500;

/// What a pass is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    /// Not started: a repair first moves a legacy TTL registry, then both
    /// sweep expired entities' entries.
    #[default]
    Start,
    /// Walking the entity hashes.
    Entities,
    /// Walking the keys of the index at this position (0-based).
    Entries(usize),
    /// Finished.
    Done,
}

/// Where a pass continues: the phase and its `SCAN` cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// The phase.
    pub(crate) phase: Phase,
    /// The `SCAN` cursor the phase continues with.
    pub(crate) cursor: u64,
    /// Entries phase only: of the keys the `SCAN` step issued with `cursor`
    /// returns, those sorting before this one are done, and this one
    /// continues its member scan at `key_cursor`. The step is issued again
    /// on resume, so a stop inside a large index key loses nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
    /// The member-scan cursor of `key`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) key_cursor: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Checkpoint {
    fn at(phase: Phase) -> Self {
        Checkpoint {
            phase,
            ..Checkpoint::default()
        }
    }
}

/// What a pass counted, for the reports and the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Tally {
    /// Entity hashes that decode.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) entities: u64,
    /// Index entries walked.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) entries: u64,
    /// Drift found (before any repair).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) drift: u64,
    /// Entities reindexed (repair).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) reindexed: u64,
    /// Stale entries removed (repair).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) removed: u64,
    /// Drift still there after its repair (repair).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) remaining: u64,
    /// Keys passed over: foreign data and refused repairs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) skipped: u64,
    /// Legacy TTL registry entries moved (repair).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) registry_entries_moved: u64,
    /// Redis commands sent (a script call or `MULTI` block counts each
    /// command in it once; `MULTI`/`EXEC` themselves are not counted).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) ops: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.entities += other.entities;
        self.entries += other.entries;
        self.drift += other.drift;
        self.reindexed += other.reindexed;
        self.removed += other.removed;
        self.remaining += other.remaining;
        self.skipped += other.skipped;
        self.registry_entries_moved += other.registry_entries_moved;
        self.ops += other.ops;
    }
}

/// One finished batch, as the pass reports it to its [`Control`].
#[derive(Debug)]
pub(crate) struct Step<'a> {
    /// The entity type.
    pub(crate) entity: &'static str,
    /// The phase the batch belonged to.
    pub(crate) phase: Phase,
    /// Where the pass continues: a resumed pass starting here does exactly
    /// the work this one has not done.
    pub(crate) next: &'a Checkpoint,
    /// Redis commands this batch sent.
    pub(crate) ops: u64,
    /// Everything counted so far in this pass.
    pub(crate) tally: &'a Tally,
    /// Estimated share of the current phase done (0.0 to 1.0).
    pub(crate) fraction: f64,
}

/// Whether a pass goes on after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Next batch.
    Continue,
    /// Stop now; the last [`Step::next`] is where to resume.
    Stop,
}

/// The future [`Control::step`] returns.
pub(crate) type Pause<'a> = Pin<Box<dyn Future<Output = Flow> + Send + 'a>>;

/// Receives what a pass finds and decides its pace: the admin command's
/// rate limit, progress display and Ctrl-C, or, for the plain
/// [`verify`](super::verify)/[`rebuild`](super::rebuild), a collector.
pub(crate) trait Control: Send + Sync {
    /// Keys per `SCAN` step and entries per member-scan step.
    fn scan_count(&self) -> usize {
        DEFAULT_SCAN_COUNT
    }
    /// Where the pass of `entity` starts.
    fn start(&self, _entity: &'static str) -> Checkpoint {
        Checkpoint::default()
    }
    /// One drift item found (each reported once per pass).
    fn found(&self, drift: &Drift);
    /// Repair only: one drift item still there after its repair.
    fn left(&self, drift: &Drift);
    /// One key passed over (each foreign key once per pass).
    fn skipped(&self, skipped: Skipped);
    /// After each batch: wait as long as the pace requires, then say
    /// whether to go on.
    fn step<'a>(&'a self, step: Step<'a>) -> Pause<'a>;
}

/// Runs the pass of `E` from `control.start()` to the end or to a stop.
/// Returns the pass's tally; whether it was stopped the control knows (it
/// said so).
pub(crate) async fn run<E: Entity>(
    client: &Client,
    repair: bool,
    control: &dyn Control,
) -> Result<Tally> {
    let descriptor = E::descriptor();
    // Its index pipelines and scripts need the type's keys in one slot.
    crate::script::check_cluster(client, descriptor)?;
    if repair {
        // Moves left pending by a client that died are applied first:
        // they are what most `cross_slot` drift on a cluster is.
        // Boxed: the pass's future is deep already, and the compiler's
        // layout queries of the callers' futures have a depth limit.
        Box::pin(pending::settle::<E>(client)).await?;
    }
    let verb = if repair { "rebuild" } else { "verify" };
    let mut pass = Pass::<E> {
        client,
        control,
        repair,
        descriptor,
        ctx: Context::new(
            format!("{}.{verb}", descriptor.name),
            descriptor.key_pattern,
        ),
        count: control.scan_count().max(1),
        tally: Tally::default(),
        current: Phase::Start,
        seen_entities: HashSet::new(),
        seen_foreign: HashSet::new(),
        wrong_types: HashMap::new(),
        entity: PhantomData,
    };
    pass.run(control.start(descriptor.name)).await?;
    Ok(pass.tally)
}

struct Pass<'a, E> {
    client: &'a Client,
    control: &'a dyn Control,
    repair: bool,
    descriptor: &'static EntityDescriptor,
    ctx: Context,
    count: usize,
    tally: Tally,
    /// The phase being walked.
    current: Phase,
    /// Hashes of the entity keys handled, so a key `SCAN` returns twice is
    /// handled once.
    seen_entities: HashSet<u64>,
    /// Hashes of the foreign keys reported, so each is reported once.
    seen_foreign: HashSet<u64>,
    /// Index keys found to hold another Redis type, with that type.
    wrong_types: HashMap<String, String>,
    entity: PhantomData<fn() -> E>,
}

/// One index entry an entity should have.
struct Want {
    /// The entity's key and member.
    key: usize,
    member: String,
    position: usize,
    index_key: String,
    /// Score text (sorted), unique value (unique), or empty (set).
    value: String,
}

/// What an entity key holds, for deciding whether entries belong to it:
/// the stored text of its indexed fields, or `None` when it is not a live
/// entity of this type (absent, another type, or undecodable).
type Values = Option<BTreeMap<&'static str, String>>;

/// A 64-bit digest of `value`, for the sets of keys and entries a walk
/// has met (`SCAN` may return one twice): 8 bytes each, not the text.
pub(crate) fn hash_of(value: &(impl Hash + ?Sized)) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Parses a descriptor's key pattern; a bad one is a `CONFIG` error.
pub(crate) fn parse_pattern(pattern: &'static str) -> Result<KeyPattern> {
    KeyPattern::parse(pattern)
        .map_err(|e| Error::Config(format!("bad key pattern {pattern:?}: {e}")))
}

impl<E: Entity> Pass<'_, E> {
    async fn run(&mut self, mut at: Checkpoint) -> Result<()> {
        if at.phase == Phase::Start {
            let mut ops = 0;
            if self.repair {
                // First, so that entities an older version registered are
                // swept too.
                self.tally.registry_entries_moved =
                    crate::migrate::move_legacy_ttl_registry::<E>(self.client).await?;
                ops += 1;
            }
            // Expired entities' entries are not drift. The admin command
            // sweeps in paced steps before this, so this is one call there.
            super::super::sweep_all::<E>(self.client).await?;
            ops += 1;
            at = Checkpoint::at(Phase::Entities);
            if self.step(&at, ops, 0.0).await == Flow::Stop {
                return Ok(());
            }
        }
        if at.phase == Phase::Entities {
            match self.entities(at.cursor).await? {
                Some(next) => at = next,
                None => return Ok(()),
            }
        }
        while let Phase::Entries(position) = at.phase {
            match self.entries(position, at).await? {
                Some(next) => at = next,
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Counts the batch and asks the control whether to go on. The control
    /// is not asked once the pass is done: there is nothing to stop.
    async fn step(&mut self, next: &Checkpoint, ops: u64, fraction: f64) -> Flow {
        self.tally.ops += ops;
        self.control
            .step(Step {
                entity: self.descriptor.name,
                phase: self.current,
                next,
                ops,
                tally: &self.tally,
                fraction,
            })
            .await
    }

    fn skip(&mut self, key: String, reason: SkipReason) {
        if self.seen_foreign.insert(hash_of(&[key.as_str()])) {
            self.tally.skipped += 1;
            self.control.skipped(Skipped { key, reason });
        }
    }

    fn refused(&mut self, key: String, error: &Error) {
        self.tally.skipped += 1;
        self.control.skipped(Skipped {
            key,
            reason: SkipReason::RepairRefused {
                reason: error.to_string(),
            },
        });
    }
}

/// The stored text of `E`'s indexed fields in one `HGETALL` reply, if the
/// hash decodes as `E`.
fn decode_values<E: Entity>(
    key: &str,
    reply: &redis::Value,
    indexed_fields: &[&'static str],
) -> Result<BTreeMap<&'static str, String>> {
    let pairs = reply_pairs(key, reply)?;
    E::read_fields(key, &pairs)?;
    Ok(indexed_fields
        .iter()
        .filter_map(|name| {
            let (_, v) = pairs.iter().find(|(f, _)| *f == name.as_bytes())?;
            Some((*name, std::str::from_utf8(v).ok()?.to_owned()))
        })
        .collect())
}

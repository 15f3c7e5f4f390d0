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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::marker::PhantomData;
use std::pin::Pin;

use redis_schema::{EntityDescriptor, IndexDescriptor, KeyPattern};
use serde::{Deserialize, Serialize};

use super::{Drift, DriftKind, SkipReason, Skipped, refused_for_data, undecodable};
use crate::client::Client;
use crate::codec::reply_pairs;
use crate::cross_slot::{pending, unique_claims};
use crate::entity::{Entity, IndexKind, reindex};
use crate::error::{Context, Error, Result};
use crate::scan::{self, Entry, Unreadable, read_typed, scan_fraction};
use crate::script;

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

fn hash_of(parts: &[&str]) -> u64 {
    let mut hasher = DefaultHasher::new();
    parts.hash(&mut hasher);
    hasher.finish()
}

fn parse_pattern(pattern: &'static str) -> Result<KeyPattern> {
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

    /// The checkpoint after the entities phase.
    fn after_entities(&self) -> Checkpoint {
        if self.descriptor.indexes.is_empty() {
            Checkpoint::at(Phase::Done)
        } else {
            Checkpoint::at(Phase::Entries(0))
        }
    }

    /// The entities phase from `cursor`; the checkpoint to go on from, or
    /// `None` if stopped.
    async fn entities(&mut self, mut cursor: u64) -> Result<Option<Checkpoint>> {
        self.current = Phase::Entities;
        let pattern = parse_pattern(self.descriptor.key_pattern)?;
        let glob = pattern.scan_glob();
        loop {
            let (next, keys) =
                scan::keys_step(self.client, &self.ctx, cursor, &glob, self.count, None).await?;
            let keys: Vec<String> = keys
                .into_iter()
                .filter(|k| pattern.parse_key(k).is_some())
                .filter(|k| self.seen_entities.insert(hash_of(&[k.as_str()])))
                .collect();
            let ops = 1 + self.entity_batch(&pattern, &keys).await?;
            cursor = next;
            let at = if next == 0 {
                self.after_entities()
            } else {
                Checkpoint {
                    phase: Phase::Entities,
                    cursor: next,
                    ..Checkpoint::default()
                }
            };
            if self.step(&at, ops, scan_fraction(next)).await == Flow::Stop {
                return Ok(None);
            }
            if cursor == 0 {
                return Ok(Some(at));
            }
        }
    }

    /// Checks (and for a repair, fixes) one batch of entity keys; returns
    /// the commands sent.
    async fn entity_batch(&mut self, pattern: &KeyPattern, keys: &[String]) -> Result<u64> {
        let (wants, mut ops) = self.wants(pattern, keys, true).await?;
        let (drift, check_ops) = self.check_wants(&wants).await?;
        ops += check_ops;
        for (_, d) in &drift {
            self.tally.drift += 1;
            self.control.found(d);
        }
        if !self.repair || drift.is_empty() {
            return Ok(ops);
        }
        // Each drifted entity is reindexed once, however many of its
        // entries were wrong.
        let mut targets: Vec<usize> = drift.iter().map(|(k, _)| *k).collect();
        targets.sort_unstable();
        targets.dedup();
        let client = self.client;
        let repairs = targets.iter().map(|&k| {
            let key = keys[k].clone();
            let member = pattern.parse_key(&key).unwrap_or_default().join(":");
            async move { (k, reindex::<E>(client, key, member).await) }
        });
        let results = futures_util::future::join_all(repairs).await;
        ops += results.len() as u64;
        for (k, result) in results {
            match result {
                Ok(true) => self.tally.reindexed += 1,
                // Gone since it was read.
                Ok(false) => {}
                // Two entities claim one unique value: nothing is written
                // for this one, and the conflict stays as drift left for a
                // human.
                Err(Error::UniqueViolation { .. }) => {}
                Err(e) if refused_for_data(&e) => self.refused(keys[k].clone(), &e),
                Err(e) => return Err(e),
            }
        }
        // What is still wrong after the repair.
        let again: Vec<String> = targets.iter().map(|&k| keys[k].clone()).collect();
        let (wants, read_ops) = self.wants(pattern, &again, false).await?;
        let (left, check_ops) = self.check_wants(&wants).await?;
        ops += read_ops + check_ops;
        for (_, d) in &left {
            self.tally.remaining += 1;
            self.control.left(d);
        }
        Ok(ops)
    }

    /// Reads the entities at `keys` and lists the index entries each should
    /// have. On the first look (`first`), counts them and reports foreign
    /// data. Returns the wants and the commands sent.
    async fn wants(
        &mut self,
        pattern: &KeyPattern,
        keys: &[String],
        first: bool,
    ) -> Result<(Vec<Want>, u64)> {
        let stored = read_typed(self.client, &self.ctx, keys, |pipe, key| {
            pipe.cmd("HGETALL").arg(key);
        })
        .await?;
        let ops = 2 * keys.len() as u64;
        let indexed_fields = self.descriptor.indexed_fields();
        let mut wants = Vec::new();
        for (k, (key, (kind, reply))) in keys.iter().zip(&stored).enumerate() {
            match kind.as_str() {
                "hash" => {}
                // Gone since the SCAN (expired or deleted).
                "none" => continue,
                _ => {
                    if first {
                        let found = kind.clone();
                        self.skip(key.clone(), SkipReason::NotAHash { found });
                    }
                    continue;
                }
            }
            let values = match decode_values::<E>(key, reply, &indexed_fields) {
                Ok(values) => values,
                Err(e) => {
                    if first {
                        self.skip(key.clone(), undecodable(e));
                    }
                    continue;
                }
            };
            let Some(parts) = pattern.parse_key(key) else {
                continue;
            };
            if first {
                self.tally.entities += 1;
            }
            let member = parts.join(":");
            for (position, index) in self.descriptor.indexes.iter().enumerate() {
                let value_of = |name: &str| values.get(name).map(String::as_str);
                let Some(index_key) = self.descriptor.render(index.key, value_of) else {
                    continue;
                };
                let value = index
                    .score_field
                    .and_then(value_of)
                    .map(str::to_owned)
                    .unwrap_or_default();
                wants.push(Want {
                    key: k,
                    member: member.clone(),
                    position,
                    index_key,
                    value,
                });
            }
        }
        Ok((wants, ops))
    }

    /// Asks the indexes, in one pipeline, whether each wanted entry is
    /// there: missing entries and wrong scores, with the position of the
    /// entity key each belongs to, and the commands sent.
    async fn check_wants(&mut self, wants: &[Want]) -> Result<(Vec<(usize, Drift)>, u64)> {
        let indexes = self.descriptor.indexes;
        let asked: Vec<&Want> = wants
            .iter()
            .filter(|w| !self.wrong_types.contains_key(&w.index_key))
            .collect();
        if asked.is_empty() {
            return Ok((Vec::new(), 0));
        }
        // One pipeline per slot: on a cluster, index keys tagged by a
        // field's value are spread over slots.
        let (client, ctx) = (self.client, &self.ctx);
        let replies: Vec<redis::Value> = client
            .per_slot_of(
                &asked,
                |w| w.index_key.as_str(),
                |group| async move {
                    let mut pipe = redis::pipe();
                    pipe.ignore_errors();
                    for w in group {
                        match indexes[w.position].kind {
                            IndexKind::Sorted => {
                                pipe.cmd("ZSCORE").arg(&w.index_key).arg(&w.member)
                            }
                            IndexKind::Set => {
                                pipe.cmd("SISMEMBER").arg(&w.index_key).arg(&w.member)
                            }
                            IndexKind::Unique => pipe.cmd("HGET").arg(&w.index_key).arg(&w.value),
                        };
                    }
                    client.read(ctx.clone(), &pipe).await
                },
            )
            .await?;
        let mut ops = asked.len() as u64;
        if replies.len() != asked.len() {
            return Err(Error::Command {
                context: self.ctx.clone(),
                message: format!("expected {} replies, got {}", asked.len(), replies.len()),
            });
        }
        let mut drift = Vec::new();
        for (w, reply) in asked.into_iter().zip(replies) {
            let index = &indexes[w.position];
            let problem = match (index.kind, reply) {
                (_, redis::Value::ServerError(e)) if e.code() == "WRONGTYPE" => {
                    ops += self.wrong_type(index, &w.index_key).await?;
                    continue;
                }
                (_, redis::Value::ServerError(e)) => {
                    return Err(Error::Command {
                        context: self.ctx.clone(),
                        message: format!("reading `{}`: {e}", w.index_key),
                    });
                }
                (IndexKind::Sorted, redis::Value::Nil) => DriftKind::Missing,
                (IndexKind::Sorted, score) => {
                    let actual: String = redis::from_redis_value(score).unwrap_or_default();
                    let expected = w.value.parse::<f64>().unwrap_or(f64::NAN);
                    let actual = actual.parse::<f64>().unwrap_or(f64::NAN);
                    if expected == actual {
                        continue;
                    }
                    DriftKind::WrongScore { expected, actual }
                }
                (IndexKind::Set, reply) => {
                    if redis::from_redis_value::<bool>(reply).unwrap_or(false) {
                        continue;
                    }
                    DriftKind::Missing
                }
                // Missing, or held by another entity: either way this
                // claimant is not in the index.
                (IndexKind::Unique, reply) => {
                    let holder: Option<String> = redis::from_redis_value(reply).unwrap_or(None);
                    if holder.as_deref() == Some(w.member.as_str()) {
                        continue;
                    }
                    DriftKind::Missing
                }
            };
            drift.push((
                w.key,
                Drift {
                    index: index.name,
                    index_key: w.index_key.clone(),
                    member: w.member.clone(),
                    value: (index.kind == IndexKind::Unique).then(|| w.value.clone()),
                    problem,
                },
            ));
        }
        Ok((drift, ops))
    }

    /// Records that `index_key` holds another Redis type than `index`
    /// uses, and reports it once; returns the commands sent.
    async fn wrong_type(
        &mut self,
        index: &'static IndexDescriptor,
        index_key: &str,
    ) -> Result<u64> {
        if self.wrong_types.contains_key(index_key) {
            return Ok(0);
        }
        let found = scan::type_of(self.client, &self.ctx, index_key).await?;

        self.wrong_types.insert(index_key.to_owned(), found.clone());
        self.skip(
            index_key.to_owned(),
            SkipReason::WrongIndexType {
                index: index.name,
                expected: index.kind.redis_type(),
                found,
            },
        );
        Ok(1)
    }

    /// The checkpoint after the index at `position`.
    fn after_index(&self, position: usize) -> Checkpoint {
        if position + 1 < self.descriptor.indexes.len() {
            Checkpoint::at(Phase::Entries(position + 1))
        } else {
            Checkpoint::at(Phase::Done)
        }
    }

    /// The entries phase of the index at `position`, from `at`; the
    /// checkpoint to go on from, or `None` if stopped.
    async fn entries(&mut self, position: usize, mut at: Checkpoint) -> Result<Option<Checkpoint>> {
        let Some(index) = self.descriptor.indexes.get(position) else {
            return Ok(Some(Checkpoint::at(Phase::Done)));
        };
        self.current = Phase::Entries(position);
        let pattern = parse_pattern(index.key_pattern)?;
        let glob = pattern.scan_glob();
        let literal = pattern.placeholder_count() == 0;
        let mut seen_keys: HashSet<u64> = HashSet::new();
        loop {
            let issued = at.cursor;
            let (next, keys) =
                scan::keys_step(self.client, &self.ctx, issued, &glob, self.count, None).await?;
            let mut keys: Vec<String> = keys
                .into_iter()
                .filter(|k| literal || pattern.parse_key(k).is_some())
                .collect();
            keys.sort_unstable();
            keys.dedup();
            // Resuming inside this step: keys before the checkpoint's are done.
            let resume = at.key.take().map(|key| (key, at.key_cursor));
            if let Some((from, _)) = &resume {
                keys.retain(|k| k >= from);
            }
            let mut ops = 1;
            let mut fraction_before = if issued == 0 {
                0.0
            } else {
                scan_fraction(issued)
            };
            let fraction_after = scan_fraction(next);
            let total = keys.len();
            for (i, key) in keys.iter().enumerate() {
                let start = match &resume {
                    Some((from, cursor)) if from == key => *cursor,
                    _ => 0,
                };
                if start == 0 && !seen_keys.insert(hash_of(&[key.as_str()])) {
                    continue;
                }
                // The checkpoint after this key is done.
                let after_key = match keys.get(i + 1) {
                    Some(following) => Checkpoint {
                        phase: Phase::Entries(position),
                        cursor: issued,
                        key: Some(following.clone()),
                        key_cursor: 0,
                    },
                    None if next == 0 => self.after_index(position),
                    None => Checkpoint {
                        phase: Phase::Entries(position),
                        cursor: next,
                        ..Checkpoint::default()
                    },
                };
                let share = (fraction_after - fraction_before) / (total - i) as f64;
                let stopped = self
                    .walk_index_key(
                        position,
                        index,
                        key,
                        start,
                        &after_key,
                        issued,
                        ops,
                        (fraction_before, share),
                    )
                    .await?;
                ops = 0;
                fraction_before += share;
                if stopped {
                    return Ok(None);
                }
            }
            if keys.is_empty() || ops > 0 {
                // No key in this step took a step of its own.
                at = if next == 0 {
                    self.after_index(position)
                } else {
                    Checkpoint {
                        phase: Phase::Entries(position),
                        cursor: next,
                        ..Checkpoint::default()
                    }
                };
                if self.step(&at, ops, fraction_after).await == Flow::Stop {
                    return Ok(None);
                }
            } else {
                at = Checkpoint {
                    phase: Phase::Entries(position),
                    cursor: next,
                    ..Checkpoint::default()
                };
            }
            if next == 0 {
                return Ok(Some(self.after_index(position)));
            }
        }
    }

    /// Walks one index key from member-scan cursor `start`, a batch at a
    /// time, reporting each batch; returns whether the control stopped the
    /// pass. `pending_ops` are commands sent before the first batch (the
    /// `SCAN` step), `fraction` the phase's share done before this key and
    /// this key's share of it.
    #[allow(clippy::too_many_arguments)]
    async fn walk_index_key(
        &mut self,
        position: usize,
        index: &'static IndexDescriptor,
        key: &str,
        start: u64,
        after_key: &Checkpoint,
        issued: u64,
        pending_ops: u64,
        fraction: (f64, f64),
    ) -> Result<bool> {
        let mut ops = pending_ops;
        let expected = index.kind.redis_type();
        if start == 0 {
            let found = scan::type_of(self.client, &self.ctx, key).await?;
            ops += 1;

            if found == "none" {
                return Ok(self.step(after_key, ops, fraction.0 + fraction.1).await == Flow::Stop);
            }
            if found != expected {
                self.skip(
                    key.to_owned(),
                    SkipReason::WrongIndexType {
                        index: index.name,
                        expected,
                        found,
                    },
                );
                return Ok(self.step(after_key, ops, fraction.0 + fraction.1).await == Flow::Stop);
            }
        }
        // Entries `ZSCAN` returns twice (possible while the set is resized)
        // are checked once.
        let mut seen: HashSet<u64> = HashSet::new();
        let mut cursor = start;
        loop {
            let step =
                scan::entries_step(self.client, &self.ctx, index.kind, key, cursor, self.count)
                    .await?;
            ops += 1;
            let (next, entries) = match step {
                Ok(step) => step,
                Err(Unreadable::WrongType) => {
                    // Replaced by another type since its `TYPE`.
                    let found = scan::type_of(self.client, &self.ctx, key).await?;
                    ops += 1;

                    if found != "none" {
                        self.skip(
                            key.to_owned(),
                            SkipReason::WrongIndexType {
                                index: index.name,
                                expected,
                                found,
                            },
                        );
                    }
                    return Ok(
                        self.step(after_key, ops, fraction.0 + fraction.1).await == Flow::Stop
                    );
                }
                Err(Unreadable::NotText) => {
                    self.skip(
                        key.to_owned(),
                        SkipReason::Undecodable {
                            field: "*".into(),
                            reason: "an entry is not UTF-8 text".into(),
                        },
                    );
                    return Ok(
                        self.step(after_key, ops, fraction.0 + fraction.1).await == Flow::Stop
                    );
                }
            };
            let entries: Vec<Entry> = entries
                .into_iter()
                .filter(|e| seen.insert(hash_of(&[e.member.as_str(), e.value.as_str()])))
                .collect();
            self.tally.entries += entries.len() as u64;
            ops += self.entry_batch(position, index, key, &entries).await?;
            let at = if next == 0 {
                after_key.clone()
            } else {
                Checkpoint {
                    phase: Phase::Entries(position),
                    cursor: issued,
                    key: Some(key.to_owned()),
                    key_cursor: next,
                }
            };
            let done = fraction.0 + fraction.1 * scan_fraction(next);
            if self.step(&at, ops, done).await == Flow::Stop {
                return Ok(true);
            }
            ops = 0;
            if next == 0 {
                return Ok(false);
            }
            cursor = next;
        }
    }

    /// Checks (and for a repair, removes) one batch of entries of
    /// `index_key`; returns the commands sent.
    async fn entry_batch(
        &mut self,
        position: usize,
        index: &'static IndexDescriptor,
        index_key: &str,
        entries: &[Entry],
    ) -> Result<u64> {
        let (orphans, mut ops) = self.orphans(index, index_key, entries).await?;
        for d in &orphans {
            self.tally.drift += 1;
            self.control.found(d);
        }
        if !self.repair || orphans.is_empty() {
            return Ok(ops);
        }
        let (client, ctx) = (self.client, &self.ctx);
        let scripts = script::for_client(client, self.descriptor, ctx)?;
        // A `cross_slot` index on a cluster has no script that reads both
        // the entry and its entity: the entry goes through the entity's
        // pending record instead (see `cross_slot::pending`).
        let across_slots = super::super::across_slots(client, index);
        let invocations = orphans.iter().map(|d| async move {
            if across_slots && index.kind == IndexKind::Unique {
                let value = d.value.as_deref().unwrap_or_default();
                let release = unique_claims::release_stale::<E>(
                    client,
                    ctx,
                    index,
                    &d.index_key,
                    value,
                    &d.member,
                );
                return Box::pin(release).await;
            }
            if across_slots {
                let (key, member) = (&d.index_key, &d.member);
                let recheck =
                    pending::recheck::<E>(client, ctx, scripts, key, position + 1, member);
                return Box::pin(recheck).await;
            }
            let mut invocation = scripts.call(&scripts.unindex, &d.index_key);
            invocation
                .key(&d.index_key)
                .arg(position + 1)
                .arg(&d.member)
                .arg(d.value.clone().unwrap_or_default());
            client.write::<i64>(ctx.clone(), &invocation).await
        });
        let results = futures_util::future::join_all(invocations).await;
        ops += results.len() as u64;
        let mut again = Vec::new();
        for (d, result) in orphans.iter().zip(results) {
            match result {
                Ok(removed) if removed > 0 => self.tally.removed += 1,
                // Not removed: gone already, or its entity maps to it after
                // all; the re-check below tells.
                Ok(_) => again.push(d),
                Err(e) if refused_for_data(&e) => {
                    self.refused(index_key.to_owned(), &e);
                    again.push(d);
                }
                Err(e) => return Err(e),
            }
        }
        if again.is_empty() {
            return Ok(ops);
        }
        // Still in the index, and still not belonging there?
        let still = self.still_present(index, index_key, &again).await?;
        ops += again.len() as u64;
        let (left, check_ops) = self.orphans(index, index_key, &still).await?;
        ops += check_ops;
        for d in &left {
            self.tally.remaining += 1;
            self.control.left(d);
        }
        Ok(ops)
    }

    /// Of the drift items `drift` (entries of `index_key`), those whose
    /// entry is still in the index, as entries.
    async fn still_present(
        &self,
        index: &'static IndexDescriptor,
        index_key: &str,
        drift: &[&Drift],
    ) -> Result<Vec<Entry>> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for d in drift {
            match index.kind {
                IndexKind::Sorted => pipe.cmd("ZSCORE").arg(index_key).arg(&d.member),
                IndexKind::Set => pipe.cmd("SISMEMBER").arg(index_key).arg(&d.member),
                IndexKind::Unique => pipe
                    .cmd("HGET")
                    .arg(index_key)
                    .arg(d.value.as_deref().unwrap_or_default()),
            };
        }
        let replies: Vec<redis::Value> = self.client.read(self.ctx.clone(), &pipe).await?;
        let mut out = Vec::new();
        for (d, reply) in drift.iter().zip(replies) {
            let present = match (index.kind, reply) {
                (_, redis::Value::ServerError(_) | redis::Value::Nil) => false,
                (IndexKind::Set, reply) => redis::from_redis_value::<bool>(reply).unwrap_or(false),
                (IndexKind::Sorted, _) => true,
                (IndexKind::Unique, reply) => {
                    redis::from_redis_value::<String>(reply).ok().as_deref()
                        == Some(d.member.as_str())
                }
            };
            if present {
                out.push(Entry {
                    member: d.member.clone(),
                    value: d.value.clone().unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    /// The entries of `index_key` among `entries` that do not belong there:
    /// their entity is gone, not a hash, undecodable, or maps to another
    /// key (or, unique index, holds another value). Returns them as drift,
    /// with the commands sent.
    async fn orphans(
        &self,
        index: &'static IndexDescriptor,
        index_key: &str,
        entries: &[Entry],
    ) -> Result<(Vec<Drift>, u64)> {
        if entries.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let entity_keys: Vec<Option<String>> = entries
            .iter()
            .map(|e| self.descriptor.key_of_member(&e.member))
            .collect();
        let mut distinct: Vec<String> = entity_keys.iter().flatten().cloned().collect();
        distinct.sort_unstable();
        distinct.dedup();
        let stored = read_typed(self.client, &self.ctx, &distinct, |pipe, key| {
            pipe.cmd("HGETALL").arg(key);
        })
        .await?;
        let ops = 2 * distinct.len() as u64;
        let indexed_fields = self.descriptor.indexed_fields();
        let states: HashMap<&str, Values> = distinct
            .iter()
            .zip(&stored)
            .map(|(key, (kind, reply))| {
                let values = (kind == "hash")
                    .then(|| decode_values::<E>(key, reply, &indexed_fields).ok())
                    .flatten();
                (key.as_str(), values)
            })
            .collect();
        let mut orphans = Vec::new();
        for (entry, key) in entries.iter().zip(&entity_keys) {
            let values = key
                .as_deref()
                .and_then(|k| states.get(k))
                .and_then(Option::as_ref);
            let belongs = values.is_some_and(|values| {
                let value_of = |name: &str| values.get(name).map(String::as_str);
                self.descriptor.render(index.key, value_of).as_deref() == Some(index_key)
                    && (index.kind != IndexKind::Unique
                        || index.score_field.and_then(value_of) == Some(entry.value.as_str()))
            });
            if !belongs {
                orphans.push(Drift {
                    index: index.name,
                    index_key: index_key.to_owned(),
                    member: entry.member.clone(),
                    value: (index.kind == IndexKind::Unique).then(|| entry.value.clone()),
                    problem: DriftKind::Orphan,
                });
            }
        }
        Ok((orphans, ops))
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

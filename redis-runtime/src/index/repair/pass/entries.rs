//! The entries phase of a pass, per index: `SCAN` the index's key
//! pattern, walk each index key with `ZSCAN`/`SSCAN`/`HSCAN`, read the
//! entities a batch of entries names, and report entries whose entity is
//! gone, does not decode or no longer maps to this key (orphans); a
//! repairing pass removes each orphan with an atomic re-check.

use std::collections::{HashMap, HashSet};

use redis_schema::IndexDescriptor;

use crate::cross_slot::{pending, unique_claims};
use crate::entity::{Entity, IndexKind};
use crate::error::Result;
use crate::index::repair::{Drift, DriftKind, SkipReason, refused_for_data};
use crate::scan::{self, Entry, Unreadable, read_typed, scan_fraction};
use crate::script;

use super::{Checkpoint, Flow, Pass, Phase, Values, decode_values, hash_of, parse_pattern};

impl<E: Entity> Pass<'_, E> {
    /// The checkpoint after the index at `position`.
    pub(super) fn after_index(&self, position: usize) -> Checkpoint {
        if position + 1 < self.descriptor.indexes.len() {
            Checkpoint::at(Phase::Entries(position + 1))
        } else {
            Checkpoint::at(Phase::Done)
        }
    }

    /// The entries phase of the index at `position`, from `at`; the
    /// checkpoint to go on from, or `None` if stopped.
    pub(super) async fn entries(
        &mut self,
        position: usize,
        mut at: Checkpoint,
    ) -> Result<Option<Checkpoint>> {
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
    /// Reads the type of `key` (one command, counted in `ops`): whether it
    /// is the index's. A key of another type is passed over as foreign
    /// data; an absent one is simply not there.
    async fn holds_index_type(
        &mut self,
        index: &'static IndexDescriptor,
        key: &str,
        ops: &mut u64,
    ) -> Result<bool> {
        let expected = index.kind.redis_type();
        let found = scan::type_of(self.client, &self.ctx, key).await?;
        *ops += 1;
        if found == expected {
            return Ok(true);
        }
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
        Ok(false)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn walk_index_key(
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
        if start == 0 && !self.holds_index_type(index, key, &mut ops).await? {
            return Ok(self.step(after_key, ops, fraction.0 + fraction.1).await == Flow::Stop);
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
                    self.holds_index_type(index, key, &mut ops).await?;
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
    pub(super) async fn entry_batch(
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
        let across_slots = crate::index::across_slots(client, index);
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
    pub(super) async fn still_present(
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
    pub(super) async fn orphans(
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
                        || index.value_field.and_then(value_of) == Some(entry.value.as_str()))
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

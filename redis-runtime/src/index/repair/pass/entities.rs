//! The entities phase of a pass: `SCAN` the entity pattern, read each
//! batch of hashes with their types, and ask the indexes in one pipeline
//! whether every entry each entity should have is there (missing entries,
//! wrong scores); a repairing pass reindexes what is wrong and checks
//! again.

use redis_schema::{IndexDescriptor, KeyPattern};

use crate::entity::{Entity, IndexKind, reindex};
use crate::error::{Error, Result};
use crate::index::repair::{Drift, DriftKind, SkipReason, refused_for_data, undecodable};
use crate::scan::{self, read_typed, scan_fraction};

use super::{Checkpoint, Flow, Pass, Phase, Want, decode_values, hash_of, parse_pattern};

impl<E: Entity> Pass<'_, E> {
    /// The checkpoint after the entities phase.
    pub(super) fn after_entities(&self) -> Checkpoint {
        if self.descriptor.indexes.is_empty() {
            Checkpoint::at(Phase::Done)
        } else {
            Checkpoint::at(Phase::Entries(0))
        }
    }

    /// The entities phase from `cursor`; the checkpoint to go on from, or
    /// `None` if stopped.
    pub(super) async fn entities(&mut self, mut cursor: u64) -> Result<Option<Checkpoint>> {
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
    pub(super) async fn entity_batch(
        &mut self,
        pattern: &KeyPattern,
        keys: &[String],
    ) -> Result<u64> {
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
    pub(super) async fn wants(
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
                    .value_field
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
    pub(super) async fn check_wants(
        &mut self,
        wants: &[Want],
    ) -> Result<(Vec<(usize, Drift)>, u64)> {
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
    pub(super) async fn wrong_type(
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
}

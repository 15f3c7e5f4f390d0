//! `stats`: per entity type, how many entities there are, what a sample of
//! them costs in memory and how long they have to live, how big the
//! indexes are, and how far behind the stream's consumer groups are.
//!
//! Everything is read a `SCAN` step at a time under the rate limit, like
//! the other walks. Figures from the sample (memory, TTL) are estimates;
//! counts are exact for keys present for the whole scan.

use std::collections::HashSet;

use redis_schema::{EntityDescriptor, IndexDescriptor};
use serde_json::{Value, json};

use super::output::Out;
use super::progress::Update;
use super::session::Session;
use crate::entity::IndexKind;
use crate::error::{Context, Result};
use crate::index::pass::{Flow, hash_of, parse_pattern};
use crate::keyspace::EntityOps;

/// The default of `--sample`: keys whose memory and TTL are read.
pub(super) const DEFAULT_SAMPLE: usize = 100;

/// Pending entries read to find the longest idle one; past this only the
/// oldest pending entry's idle time is reported.
const PENDING_SCAN_LIMIT: u64 = 1000;

/// One millisecond-based TTL bucket per upper bound, as `PTTL` reports.
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Stops the walk (Ctrl-C) with the stats gathered so far.
struct Interrupted;

/// What `stats` found for one entity type.
struct EntityStats {
    count: u64,
    sample: Vec<String>,
    memory: Option<u64>,
    /// Sampled keys whose memory was read (some may vanish mid-way).
    memory_keys: u64,
    memory_error: Option<String>,
    /// none, < 1 min, < 1 h, < 1 d, >= 1 d.
    ttl: [u64; 5],
    indexes: Vec<IndexStats>,
    registry: Option<Value>,
    stream: Option<Value>,
}

struct IndexStats {
    index: &'static IndexDescriptor,
    keys: u64,
    entries: u64,
    foreign: u64,
}

/// Runs `stats` over `entities`; returns whether Ctrl-C cut it short.
pub(super) async fn stats(
    session: &Session,
    entities: &[&EntityOps],
    sample: usize,
    json_out: bool,
    out: &mut Out,
) -> Result<bool> {
    let mut all = Vec::new();
    let mut interrupted = false;
    for entity in entities {
        let mut walk = Walk {
            session,
            descriptor: entity.descriptor,
            ctx: Context::new(
                format!("{}.stats", entity.name()),
                entity.descriptor.key_pattern,
            ),
        };
        match walk.entity(sample).await? {
            Ok(stats) => all.push((entity.descriptor, stats)),
            Err(Interrupted) => {
                interrupted = true;
                break;
            }
        }
    }
    session.finish();
    if json_out {
        let mut value = json!({
            "entities": all.iter().map(|(d, s)| to_json(d, s)).collect::<Vec<_>>(),
            "run": session.summary_json(),
        });
        if interrupted {
            value["interrupted"] = json!(true);
        }
        out.json(&value);
    } else {
        for (descriptor, stats) in &all {
            to_text(out, descriptor, stats);
        }
        if interrupted {
            out.line("interrupted: the entity types above are complete, the rest not read");
        }
        out.line(session.summary());
    }
    Ok(interrupted)
}

struct Walk<'a> {
    session: &'a Session,
    descriptor: &'static EntityDescriptor,
    ctx: Context,
}

type Step<T> = Result<std::result::Result<T, Interrupted>>;

impl Walk<'_> {
    /// Shows progress, paces `ops` commands, and says whether to go on.
    async fn paced(&self, phase: &str, fraction: f64, counts: &str, cursor: u64, ops: u64) -> Flow {
        self.session.show(&Update {
            command: "stats",
            entity: self.descriptor.name,
            phase,
            fraction,
            counts,
            rate: self.session.rate(),
            cursor,
        });
        self.session.pace(ops).await
    }

    async fn entity(&mut self, sample: usize) -> Step<EntityStats> {
        let pattern = parse_pattern(self.descriptor.key_pattern)?;
        let glob = pattern.scan_glob();
        let mut seen = HashSet::new();
        let mut stats = EntityStats {
            count: 0,
            sample: Vec::new(),
            memory: None,
            memory_keys: 0,
            memory_error: None,
            ttl: [0; 5],
            indexes: Vec::new(),
            registry: None,
            stream: None,
        };
        let mut cursor = 0;
        loop {
            let (next, keys) = scan_step(self, cursor, &glob, Some("hash")).await?;
            for key in keys {
                if pattern.parse_key(&key).is_some() && seen.insert(hash_of(&key)) {
                    stats.count += 1;
                    if stats.sample.len() < sample {
                        stats.sample.push(key);
                    }
                }
            }
            cursor = next;
            let counts = format!("{} entities", stats.count);
            let fraction = crate::scan::scan_fraction(next);
            if self.paced("count", fraction, &counts, next, 1).await == Flow::Stop {
                return Ok(Err(Interrupted));
            }
            if cursor == 0 {
                break;
            }
        }
        drop(seen);
        self.sample(&mut stats).await?;
        for index in self.descriptor.indexes {
            match self.index(index).await? {
                Ok(index_stats) => stats.indexes.push(index_stats),
                Err(Interrupted) => return Ok(Err(Interrupted)),
            }
        }
        if let Some(registry) = self.descriptor.ttl_registry
            && self.descriptor.ttl_registry_per_tag
        {
            // One registry per tag value: counted by no single ZCARD.
            stats.registry = Some(json!({ "key": registry, "per_tag": true }));
        } else if let Some(registry) = self.descriptor.ttl_registry {
            let mut cmd = redis::cmd("ZCARD");
            cmd.arg(registry);
            let reply: redis::Value = query_lenient(self, &cmd).await?;
            stats.registry = Some(json!({ "key": registry, "entries": count_of(&reply) }));
        }
        if let Some(stream) = &self.descriptor.stream {
            stats.stream = Some(self.stream(stream.key).await?);
        }
        Ok(Ok(stats))
    }

    /// `MEMORY USAGE` and `PTTL` of the sample, in one pipeline.
    async fn sample(&self, stats: &mut EntityStats) -> Result<()> {
        if stats.sample.is_empty() {
            return Ok(());
        }
        let (client, ctx) = (&self.session.client, &self.ctx);
        // One pipeline per hash slot on a cluster, where one may not span slots.
        let replies: Vec<(redis::Value, redis::Value)> = client
            .per_slot(&stats.sample, |group| async move {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for key in &group {
                    pipe.cmd("MEMORY").arg("USAGE").arg(*key);
                    pipe.cmd("PTTL").arg(*key);
                }
                let replies: Vec<redis::Value> = client.read(ctx.clone(), &pipe).await?;
                let mut replies = replies.into_iter();
                let mut pairs = Vec::with_capacity(group.len());
                while let (Some(usage), Some(ttl)) = (replies.next(), replies.next()) {
                    pairs.push((usage, ttl));
                }
                Ok(pairs)
            })
            .await?;
        let mut memory = 0;
        let mut read = 0;
        for (usage, ttl) in &replies {
            match usage {
                redis::Value::Int(bytes) => {
                    memory += u64::try_from(*bytes).unwrap_or(0);
                    read += 1;
                }
                redis::Value::ServerError(e) => {
                    // E.g. an ACL without MEMORY: say why, once.
                    stats.memory_error.get_or_insert_with(|| e.to_string());
                }
                // Gone since the scan.
                _ => {}
            }
            if let redis::Value::Int(ms) = ttl {
                let bucket = match *ms {
                    -2 => continue,
                    ms if ms < 0 => 0,
                    ms if ms < MINUTE_MS => 1,
                    ms if ms < HOUR_MS => 2,
                    ms if ms < DAY_MS => 3,
                    _ => 4,
                };
                stats.ttl[bucket] += 1;
            }
        }
        if read > 0 {
            stats.memory = Some(memory);
            // Keys that vanished are not part of the mean.
            stats.memory_keys = read;
        }
        self.session.pace(2 * stats.sample.len() as u64).await;
        Ok(())
    }

    /// The keys and entries of one index, by `ZCARD`/`SCARD`/`HLEN` per
    /// index key found by `SCAN`.
    async fn index(&self, index: &'static IndexDescriptor) -> Step<IndexStats> {
        let pattern = parse_pattern(index.key_pattern)?;
        let glob = pattern.scan_glob();
        let literal = pattern.placeholder_count() == 0;
        let card = match index.kind {
            IndexKind::Sorted => "ZCARD",
            IndexKind::Set => "SCARD",
            IndexKind::Unique => "HLEN",
        };
        let mut stats = IndexStats {
            index,
            keys: 0,
            entries: 0,
            foreign: 0,
        };
        let mut seen = HashSet::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = scan_step(self, cursor, &glob, None).await?;
            let keys: Vec<String> = keys
                .into_iter()
                .filter(|k| literal || pattern.parse_key(k).is_some())
                .filter(|k| seen.insert(hash_of(k)))
                .collect();
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for key in &keys {
                    pipe.cmd(card).arg(key);
                }
                let replies: Vec<redis::Value> =
                    self.session.client.read(self.ctx.clone(), &pipe).await?;
                for reply in replies {
                    match reply {
                        redis::Value::Int(n) if n > 0 => {
                            stats.keys += 1;
                            stats.entries += n.unsigned_abs();
                        }
                        redis::Value::ServerError(_) => stats.foreign += 1,
                        // Emptied since the scan.
                        _ => {}
                    }
                }
            }
            cursor = next;
            let counts = format!("{} keys, {} entries", stats.keys, stats.entries);
            let phase = format!("index {}", index.name);
            let fraction = crate::scan::scan_fraction(next);
            let ops = 1 + keys.len() as u64;
            if self.paced(&phase, fraction, &counts, next, ops).await == Flow::Stop {
                return Ok(Err(Interrupted));
            }
            if cursor == 0 {
                return Ok(Ok(stats));
            }
        }
    }

    /// The stream's length and each consumer group's pending entries, lag
    /// and oldest pending entry.
    async fn stream(&self, key: &'static str) -> Result<Value> {
        let mut cmd = redis::cmd("XLEN");
        cmd.arg(key);
        let length = query_lenient(self, &cmd).await?;
        if let redis::Value::ServerError(e) = &length {
            return Ok(json!({ "key": key, "error": e.to_string() }));
        }
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(key);
        let groups = match query_lenient(self, &cmd).await? {
            redis::Value::Array(groups) => groups,
            // No such key: no groups.
            _ => Vec::new(),
        };
        let mut out = Vec::new();
        for group in &groups {
            let field = |name: &str| field_of(group, name);
            let Some(name) = field("name").and_then(text_of) else {
                continue;
            };
            let pending = field("pending").map(count_of).unwrap_or(0);
            let mut entry = json!({
                "name": name,
                "consumers": field("consumers").map(count_of),
                "pending": pending,
                // Redis 7+ reports the lag, and nil when it cannot tell.
                "lag": field("lag").and_then(|v| match v {
                    redis::Value::Int(n) => Some(*n),
                    _ => None,
                }),
                "last_delivered_id": field("last-delivered-id").and_then(text_of),
                "entries_read": field("entries-read").and_then(|v| match v {
                    redis::Value::Int(n) => Some(*n),
                    _ => None,
                }),
                "oldest_pending": Value::Null,
                "max_pending_idle_ms": Value::Null,
            });
            if pending > 0 {
                self.pending(key, &name, pending, &mut entry).await?;
            }
            out.push(entry);
        }
        self.session.pace(2 + groups.len() as u64 * 2).await;
        Ok(json!({ "key": key, "length": count_of(&length), "groups": out }))
    }

    /// The oldest pending entry of `group` (lowest id: delivered longest
    /// ago) and, when there are few enough to read, the longest idle time
    /// of any pending entry.
    async fn pending(&self, key: &str, group: &str, pending: u64, entry: &mut Value) -> Result<()> {
        let count = if pending <= PENDING_SCAN_LIMIT {
            pending
        } else {
            1
        };
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(key).arg(group).arg("-").arg("+").arg(count);
        let redis::Value::Array(rows) = query_lenient(self, &cmd).await? else {
            return Ok(());
        };
        // Each row: id, consumer, idle ms, deliveries.
        let parsed: Vec<(String, String, i64, i64)> = rows
            .into_iter()
            .filter_map(|row| redis::from_redis_value(row).ok())
            .collect();
        if let Some((id, consumer, idle, deliveries)) = parsed.first() {
            entry["oldest_pending"] = json!({
                "id": id,
                "consumer": consumer,
                "idle_ms": idle,
                "deliveries": deliveries,
            });
        }
        if pending <= PENDING_SCAN_LIMIT {
            entry["max_pending_idle_ms"] = json!(parsed.iter().map(|p| p.2).max());
        }
        Ok(())
    }
}

/// One `SCAN` step for `walk`.
async fn scan_step(
    walk: &Walk<'_>,
    cursor: u64,
    glob: &str,
    kind: Option<&str>,
) -> Result<(u64, Vec<String>)> {
    crate::scan::keys_step(
        &walk.session.client,
        &walk.ctx,
        cursor,
        glob,
        walk.session.scan_count,
        kind,
    )
    .await
}

/// Sends `cmd`, keeping a server error (a foreign type, an ACL refusal) as
/// the reply instead of failing the whole command.
async fn query_lenient(walk: &Walk<'_>, cmd: &redis::Cmd) -> Result<redis::Value> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors().add_command(cmd.clone());
    let mut replies: Vec<redis::Value> = walk.session.client.read(walk.ctx.clone(), &pipe).await?;
    Ok(replies.pop().unwrap_or(redis::Value::Nil))
}

/// A field of an `XINFO` reply: a flat list of names and values (RESP2) or
/// a map (RESP3).
fn field_of<'v>(reply: &'v redis::Value, name: &str) -> Option<&'v redis::Value> {
    match reply {
        redis::Value::Array(items) => items
            .chunks(2)
            .find(|pair| text_of(&pair[0]).as_deref() == Some(name))
            .and_then(|pair| pair.get(1)),
        redis::Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text_of(k).as_deref() == Some(name))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn text_of(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn count_of(value: &redis::Value) -> u64 {
    match value {
        redis::Value::Int(n) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

fn kind_name(kind: IndexKind) -> &'static str {
    match kind {
        IndexKind::Sorted => "sorted",
        IndexKind::Set => "set",
        IndexKind::Unique => "unique",
    }
}

/// The mean memory per sampled entity and the estimate for all.
fn memory_figures(stats: &EntityStats) -> Option<(u64, u64)> {
    let total = stats.memory?;
    let mean = total.checked_div(stats.memory_keys)?;
    Some((mean, mean.saturating_mul(stats.count)))
}

fn to_json(descriptor: &EntityDescriptor, stats: &EntityStats) -> Value {
    let (mean, estimate) = memory_figures(stats).unzip();
    let [none, under_1m, under_1h, under_1d, at_least_1d] = stats.ttl;
    json!({
        "entity": descriptor.name,
        "key_pattern": descriptor.key_pattern,
        "count": stats.count,
        "sample": {
            "keys": stats.sample.len(),
            "memory_bytes": stats.memory,
            "mean_bytes": mean,
            "estimated_total_bytes": estimate,
            "memory_error": stats.memory_error,
        },
        "ttl": {
            "none": none,
            "under_1m": under_1m,
            "under_1h": under_1h,
            "under_1d": under_1d,
            "at_least_1d": at_least_1d,
        },
        "indexes": stats.indexes.iter().map(|i| json!({
            "name": i.index.name,
            "kind": kind_name(i.index.kind),
            "key_pattern": i.index.key_pattern,
            "keys": i.keys,
            "entries": i.entries,
            "foreign_keys": i.foreign,
        })).collect::<Vec<_>>(),
        "ttl_registry": stats.registry,
        "stream": stats.stream,
    })
}

/// Bytes for people: `312 B`, `6.0 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn to_text(out: &mut Out, descriptor: &EntityDescriptor, stats: &EntityStats) {
    out.line(format_args!(
        "{} ({}): {} entities",
        descriptor.name, descriptor.key_pattern, stats.count
    ));
    let sampled = stats.sample.len();
    match (memory_figures(stats), &stats.memory_error) {
        (Some((mean, estimate)), _) => out.line(format_args!(
            "  memory: ~{} per entity (sample of {sampled}), ~{} in all",
            bytes(mean),
            bytes(estimate)
        )),
        (None, Some(error)) => out.line(format_args!("  memory: not available ({error})")),
        (None, None) => {}
    }
    if sampled > 0 {
        let [none, m, h, d, long] = stats.ttl;
        out.line(format_args!(
            "  TTL (sample of {sampled}): none {none}, <1m {m}, <1h {h}, <1d {d}, >=1d {long}"
        ));
    }
    for i in &stats.indexes {
        let foreign = if i.foreign > 0 {
            format!(", {} keys of another type", i.foreign)
        } else {
            String::new()
        };
        out.line(format_args!(
            "  index {} ({}, {}): {} keys, {} entries{foreign}",
            i.index.name,
            kind_name(i.index.kind),
            i.index.key_pattern,
            i.keys,
            i.entries
        ));
    }
    if let Some(registry) = &stats.registry {
        out.line(format_args!(
            "  TTL registry {}: {} entries",
            registry["key"].as_str().unwrap_or_default(),
            registry["entries"]
        ));
    }
    if let Some(stream) = &stats.stream {
        let key = stream["key"].as_str().unwrap_or_default();
        if let Some(error) = stream["error"].as_str() {
            out.line(format_args!("  stream {key}: not readable ({error})"));
            return;
        }
        out.line(format_args!("  stream {key}: {} entries", stream["length"]));
        for g in stream["groups"].as_array().into_iter().flatten() {
            let lag = match g["lag"].as_i64() {
                Some(lag) => lag.to_string(),
                None => "unknown".to_owned(),
            };
            let oldest = match g["oldest_pending"]["idle_ms"].as_i64() {
                Some(ms) => format!(
                    ", oldest pending {} idle {:.1}s",
                    g["oldest_pending"]["id"].as_str().unwrap_or_default(),
                    ms as f64 / 1000.0
                ),
                None => String::new(),
            };
            out.line(format_args!(
                "    group {}: {} consumers, {} pending, lag {lag}{oldest}",
                g["name"].as_str().unwrap_or_default(),
                g["consumers"],
                g["pending"]
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_printed_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(6 * 1024 * 1024), "6.0 MiB");
    }

    #[test]
    fn xinfo_fields_are_read_from_both_reply_shapes() {
        let name = redis::Value::BulkString(b"name".to_vec());
        let flat = redis::Value::Array(vec![
            name.clone(),
            redis::Value::BulkString(b"workers".to_vec()),
            redis::Value::BulkString(b"lag".to_vec()),
            redis::Value::Nil,
        ]);
        assert_eq!(
            field_of(&flat, "name").and_then(text_of).as_deref(),
            Some("workers")
        );
        assert_eq!(field_of(&flat, "lag"), Some(&redis::Value::Nil));
        assert_eq!(field_of(&flat, "pending"), None);
        let map = redis::Value::Map(vec![(name, redis::Value::SimpleString("w2".into()))]);
        assert_eq!(
            field_of(&map, "name").and_then(text_of).as_deref(),
            Some("w2")
        );
    }
}

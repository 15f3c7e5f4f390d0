//! The pending list and taking over idle entries: `XPENDING`, `XAUTOCLAIM`
//! (through `scripts/stream_claim.lua`) with its `XPENDING` + `XCLAIM`
//! fallback for servers older than Redis 6.2, and setting idle times.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::Value;

use super::parse::{parse_entries, shape_error};
use super::{ConsumerGroup, RELEASE_IDLE, ReadBatch};
use crate::TRACE_TARGET;
use crate::codec::Record;
use crate::error::{Error, Result};
use crate::reply::{as_text, as_u64, duration_ms};

static CLAIM_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("../scripts/stream_claim.lua")));
static SET_IDLE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("../scripts/stream_set_idle.lua")));

/// How many `XAUTOCLAIM` pages [`ConsumerGroup::claim_idle`] walks at most
/// in one call (each page scans up to ten times `count` pending entries).
const MAX_CLAIM_PAGES: usize = 64;

/// How [`ConsumerGroup::claim_idle`] takes over idle entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClaimStrategy {
    /// `XAUTOCLAIM`, falling back to `XPENDING` + `XCLAIM` (and remembering
    /// to) when the server does not know it (Redis < 6.2). The default.
    #[default]
    Auto,
    /// Always `XPENDING` + `XCLAIM`.
    PendingThenClaim,
}

/// One entry of the group's pending list (`XPENDING`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// The entry id.
    pub id: String,
    /// The consumer that holds it.
    pub consumer: String,
    /// Time since it was last delivered.
    pub idle: Duration,
    /// How many times it has been delivered.
    pub deliveries: u64,
}

/// One page of claiming, as [`ConsumerGroup::claim_page`] hands it to
/// either way of claiming: from `cursor`, entries idle at least `min_idle`,
/// at most `count` (at least 1).
#[derive(Clone, Copy)]
struct Page<'a> {
    cursor: &'a str,
    min_idle: Duration,
    count: usize,
}

impl<M: Record> ConsumerGroup<M> {
    /// Number of entries delivered and not yet acknowledged, all consumers.
    pub async fn pending_count(&self) -> Result<u64> {
        let key = &self.stream.key;
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&**key).arg(&*self.name);
        let ctx = self.context("stream.pending");
        let reply: Value = self.client().read(ctx.clone(), &cmd).await?;
        match &reply {
            Value::Array(items) => items.first().and_then(as_u64),
            _ => None,
        }
        .ok_or_else(|| shape_error(key, "XPENDING summary", &reply).with_context(ctx))
    }

    /// The first `count` pending entries, oldest first, all consumers.
    pub async fn pending(&self, count: usize) -> Result<Vec<PendingEntry>> {
        self.pending_from("-", count).await
    }

    async fn pending_from(&self, start: &str, count: usize) -> Result<Vec<PendingEntry>> {
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&*self.stream.key)
            .arg(&*self.name)
            .arg(start)
            .arg("+")
            .arg(count.max(1));
        let reply: Value = self
            .client()
            .read(self.context("stream.pending"), &cmd)
            .await?;
        parse_pending(&self.stream.key, &reply)
            .map_err(|e| e.with_context(self.context("stream.pending")))
    }

    /// Takes over entries that have been pending (with any consumer) for at
    /// least `min_idle`, up to `count`, for this consumer: what a consumer
    /// runs at start-up and periodically to finish the work of consumers
    /// that crashed. Each claimed entry counts as a delivery.
    ///
    /// Uses `XAUTOCLAIM` and falls back to `XPENDING` + `XCLAIM` when the
    /// server lacks it (see [`ClaimStrategy`]). Walks the pending list from
    /// its start (at most 64 pages of `10 × count` entries).
    pub async fn claim_idle(&self, min_idle: Duration, count: usize) -> Result<ReadBatch<M>> {
        let mut batch = ReadBatch::default();
        let mut cursor = "0-0".to_string();
        for _ in 0..MAX_CLAIM_PAGES {
            let want = count.saturating_sub(batch.entries.len());
            if want == 0 {
                break;
            }
            let (page, next) = self.claim_page(&cursor, min_idle, want).await?;
            batch.entries.extend(page.entries);
            batch.failures.extend(page.failures);
            if next == "0-0" {
                break;
            }
            cursor = next;
        }
        Ok(batch)
    }

    /// One page of claiming from `cursor`; returns the batch and the next
    /// cursor (`"0-0"` once the whole pending list was scanned).
    pub(crate) async fn claim_page(
        &self,
        cursor: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<(ReadBatch<M>, String)> {
        let page = Page {
            cursor,
            min_idle,
            count: count.max(1),
        };
        let use_autoclaim = self.claim_strategy == ClaimStrategy::Auto
            && !self.no_autoclaim.load(Ordering::Relaxed);
        if use_autoclaim {
            match self.autoclaim_page(page).await {
                Err(Error::Command { message, .. }) if is_unknown_command(&message) => {
                    tracing::info!(target: TRACE_TARGET, stream = %self.stream.key, "XAUTOCLAIM is not available; claiming with XPENDING + XCLAIM");
                    self.no_autoclaim.store(true, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        self.pending_claim_page(page).await
    }

    async fn autoclaim_page(&self, page: Page<'_>) -> Result<(ReadBatch<M>, String)> {
        let ctx = self.context("stream.claim");
        let mut invocation = CLAIM_SCRIPT.prepare_invoke();
        invocation
            .key(&*self.stream.key)
            .arg(&*self.name)
            .arg(&*self.consumer)
            .arg(duration_ms(page.min_idle))
            .arg(page.cursor)
            .arg(page.count);
        let reply: Value = self.client().write(ctx.clone(), &invocation).await?;
        let key = &self.stream.key;
        let parts = match &reply {
            Value::Array(parts) if parts.len() == 4 => parts,
            other => return Err(shape_error(key, "claim reply", other).with_context(ctx)),
        };
        let next = as_text(&parts[0])
            .ok_or_else(|| shape_error(key, "claim cursor", &parts[0]).with_context(ctx.clone()))?;
        let parsed = parse_entries::<M>(key, &parts[1]).map_err(|e| e.with_context(ctx.clone()))?;
        let removed: Vec<String> = match &parts[2] {
            Value::Array(ids) => ids.iter().filter_map(as_text).collect(),
            _ => Vec::new(),
        };
        let deliveries: Vec<u64> = match &parts[3] {
            Value::Array(counts) => counts.iter().map(|c| as_u64(c).unwrap_or(1)).collect(),
            _ => Vec::new(),
        };
        let batch = self.settle(parsed, &deliveries, &removed, &ctx).await;
        Ok((batch, next))
    }

    /// The fallback for servers without XAUTOCLAIM: list a page of the
    /// pending list, keep the entries idle long enough, and XCLAIM them
    /// (which re-checks the idle time, so racing claimers cannot both win).
    async fn pending_claim_page(&self, page: Page<'_>) -> Result<(ReadBatch<M>, String)> {
        let ctx = self.context("stream.claim");
        // XAUTOCLAIM scans ten entries per wanted one; do the same.
        let scan = page.count.saturating_mul(10);
        let start = if page.cursor == "0-0" {
            "-"
        } else {
            page.cursor
        };
        let pending = self.pending_from(start, scan).await?;
        let exhausted = pending.len() < scan;
        let mut chosen: Vec<&PendingEntry> = Vec::new();
        let mut last_seen = None;
        for entry in &pending {
            last_seen = Some(entry.id.as_str());
            if entry.idle >= page.min_idle {
                chosen.push(entry);
                if chosen.len() == page.count {
                    break;
                }
            }
        }
        let next = match last_seen {
            Some(id) if !(exhausted && chosen.len() < page.count) => next_id(id),
            _ => "0-0".to_string(),
        };
        if chosen.is_empty() {
            return Ok((ReadBatch::default(), next));
        }
        let ids: Vec<String> = chosen.iter().map(|e| e.id.clone()).collect();
        let counts: std::collections::HashMap<&str, u64> = chosen
            .iter()
            .map(|e| (e.id.as_str(), e.deliveries.saturating_add(1)))
            .collect();
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&*self.stream.key)
            .arg(&*self.name)
            .arg(&*self.consumer)
            .arg(duration_ms(page.min_idle))
            .arg(&ids);
        let reply: Value = self.client().write(ctx.clone(), &cmd).await?;
        // Older servers answer nil for entries deleted meanwhile; skip those
        // slots rather than fail the page.
        let reply = match reply {
            Value::Array(items) => {
                Value::Array(items.into_iter().filter(|v| *v != Value::Nil).collect())
            }
            other => other,
        };
        let parsed = parse_entries::<M>(&self.stream.key, &reply)
            .map_err(|e| e.with_context(ctx.clone()))?;
        let deliveries: Vec<u64> = parsed
            .iter()
            .map(|p| p.id().and_then(|id| counts.get(id).copied()).unwrap_or(1))
            .collect();
        let batch = self.settle(parsed, &deliveries, &[], &ctx).await;
        Ok((batch, next))
    }

    /// Sets the idle time of entries this consumer holds (see
    /// `scripts/stream_set_idle.lua`); returns how many were updated.
    pub(crate) async fn set_idle(&self, entries: &[(String, Duration)]) -> Result<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut invocation = SET_IDLE_SCRIPT.prepare_invoke();
        invocation
            .key(&*self.stream.key)
            .arg(&*self.name)
            .arg(&*self.consumer);
        for (id, idle) in entries {
            invocation.arg(id).arg(duration_ms(*idle));
        }
        self.client()
            .write(self.context("stream.set_idle"), &invocation)
            .await
    }

    /// Gives entries this consumer holds back to the group without
    /// processing them: they stay pending, with an idle time of
    /// [`RELEASE_IDLE`], so the next [`ConsumerGroup::claim_idle`] by any
    /// consumer takes them at once. Returns how many were released.
    pub async fn release<I, S>(&self, ids: I) -> Result<u64>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let entries: Vec<(String, Duration)> = ids
            .into_iter()
            .map(|id| (id.as_ref().to_string(), RELEASE_IDLE))
            .collect();
        self.set_idle(&entries).await
    }
}

fn parse_pending(key: &str, reply: &Value) -> Result<Vec<PendingEntry>> {
    fn one(item: &Value) -> Option<PendingEntry> {
        let Value::Array(parts) = item else {
            return None;
        };
        let [id, consumer, idle, deliveries] = parts.as_slice() else {
            return None;
        };
        Some(PendingEntry {
            id: as_text(id)?,
            consumer: as_text(consumer)?,
            idle: Duration::from_millis(as_u64(idle)?),
            deliveries: as_u64(deliveries)?,
        })
    }
    let Value::Array(items) = reply else {
        return Err(shape_error(key, "XPENDING reply", reply));
    };
    items
        .iter()
        .map(|item| one(item).ok_or_else(|| shape_error(key, "XPENDING entry", item)))
        .collect()
}

/// The smallest id after `id` (`ms-seq` + 1), for exclusive range starts
/// on servers without `(` ranges. A malformed id restarts from the top.
fn next_id(id: &str) -> String {
    let parsed = id
        .split_once('-')
        .and_then(|(ms, seq)| Some((ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?)));
    match parsed {
        Some((ms, seq)) if seq < u64::MAX => format!("{ms}-{}", seq + 1),
        Some((ms, _)) if ms < u64::MAX => format!("{}-0", ms + 1),
        _ => "0-0".to_string(),
    }
}

fn is_unknown_command(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("unknown command") || lower.contains("unknown redis command")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::bulk;

    #[test]
    fn pending_replies_are_checked() {
        let good = Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            bulk("c"),
            Value::Int(1500),
            Value::Int(2),
        ])]);
        assert_eq!(
            parse_pending("s", &good).expect("ok"),
            vec![PendingEntry {
                id: "1-0".into(),
                consumer: "c".into(),
                idle: Duration::from_millis(1500),
                deliveries: 2
            }]
        );
        let bad = Value::Array(vec![Value::Array(vec![bulk("1-0"), Value::Int(-1)])]);
        assert_eq!(parse_pending("s", &bad).expect_err("bad").code(), "DECODE");
        let negative = Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            bulk("c"),
            Value::Int(-5),
            Value::Int(1),
        ])]);
        assert!(parse_pending("s", &negative).is_err());
    }

    #[test]
    fn next_id_increments_and_survives_garbage() {
        assert_eq!(next_id("5-3"), "5-4");
        assert_eq!(next_id(&format!("5-{}", u64::MAX)), "6-0");
        assert_eq!(next_id("garbage"), "0-0");
        assert_eq!(next_id(&format!("{0}-{0}", u64::MAX)), "0-0");
    }

    #[test]
    fn unknown_command_is_recognised_in_both_spellings() {
        assert!(is_unknown_command(
            "ERR unknown command 'XAUTOCLAIM', with args beginning with:"
        ));
        assert!(is_unknown_command(
            "ERR Error running script: Unknown Redis command called from script"
        ));
        assert!(!is_unknown_command("NOGROUP No such key"));
    }
}

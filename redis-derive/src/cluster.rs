//! `#[redis(cluster)]`: every key one write touches is in the entity's
//! Redis Cluster hash slot, checked here from the patterns alone; and
//! `cross_slot`, the index setting that lets an index key be elsewhere,
//! and `stream_cross_slot`, its counterpart for the stream.
//!
//! A write (create, save, update, patch, delete) is one Lua script, and on
//! a cluster a script may only touch keys of one slot. It touches the
//! entity's hash, every index key (old and new entries; a unique index's
//! holder, which has the same tag) but those marked `cross_slot`, the TTL
//! registry and its `:fields` hash (every type with indexes has one, but on
//! a cluster a type with a `cross_slot` index or a `stream_cross_slot`
//! stream keeps none: it never expires, see below) and the stream, unless
//! `stream_cross_slot`. Logs are not among them: they are written by their
//! own commands.
//!
//! A key shares the entity's slot when both hash the same non-empty tag
//! ([`redis_schema::SlotSource::shares_slot_with`]). So:
//!
//! * an entity key without a tag is accepted only when the write touches
//!   no other key (every index `cross_slot`, and no stream or a
//!   `stream_cross_slot` one): one key is always one slot;
//! * a stream is one fixed key, so it can only share the slot of a type
//!   pinned to one slot by a constant tag (`job:{{jobs}}:{id}`);
//! * the TTL registry follows the entity key: a pinned type's registry
//!   carries its tag, and a type whose tag is a field's value keeps one
//!   registry per tag value (`valid::ttl_registry`), so neither is checked
//!   here;
//! * an index of a type tagged by a field must carry the same tag: it then
//!   lists the entities of one tag value (a tenant's jobs).
//!
//! Each key that fails is reported at its own attribute, with a pattern
//! that would pass.

use redis_schema::{KeyPattern, SlotSource, slot_source};

use crate::ast::Container;
use crate::cross_slot::{STREAM_CROSS_SLOT_COST, cross_slot_cost, expiry, may_cross_slot};
use crate::ctxt::Ctxt;
use crate::model::{IndexModel, KeyModel, StreamModel};
use crate::slot_plan::{Pin, Plan, describe, into_slot, plan, slots, stream_into_slot};
use crate::symbol::{CLUSTER, CROSS_SLOT, KEY, STREAM, STREAM_CROSS_SLOT};

/// The last words of every message about a key outside the slot: the way
/// out that always works.
const DROP: &str = "or drop `cluster` (standalone and Sentinel only)";

/// Reports every key a write touches that is not in the entity's slot.
/// Runs on a layout that passed every other check, so patterns parse.
pub(crate) fn check(
    cx: &Ctxt,
    c: &Container<'_>,
    key: &KeyModel,
    indexes: &[IndexModel],
    stream: Option<&StreamModel>,
) {
    let Some(plan) = plan(c, key) else {
        return;
    };
    // A `cross_slot` index and a `stream_cross_slot` stream are kept in
    // step after the write, not in it.
    let stream_attr = c
        .stream
        .as_ref()
        .zip(stream)
        .filter(|(_, stream)| !stream.cross_slot);
    let in_write: Vec<&IndexModel> = indexes.iter().filter(|index| !index.cross_slot).collect();
    if matches!(plan.kind, Pin::Whole)
        && (!in_write.is_empty() || stream_attr.is_some())
        && let Some(lit) = &c.key
    {
        cx.error_spanned_by(lit, unpinned_key(c, &plan, indexes, stream));
    }
    for (index, attr) in indexes.iter().zip(&c.indexes) {
        if index.cross_slot {
            continue;
        }
        let (Some(lit), Ok(pattern)) = (&attr.key, KeyPattern::parse(&index.key.source)) else {
            continue;
        };
        let slot = slot_source(&pattern);
        if !plan.slot.shares_slot_with(&slot) {
            cx.error_spanned_by(lit, index_outside(c, &plan, index, &pattern, &slot));
        }
    }
    if let Some((lit, _)) = stream_attr
        && let Ok(pattern) = KeyPattern::parse(&lit.value())
    {
        let slot = slot_source(&pattern);
        if !plan.slot.shares_slot_with(&slot) {
            cx.error_spanned_by(lit, stream_outside(c, &plan, indexes, &pattern, &slot));
        }
    }
}

/// The entity key has no tag, but the write touches other keys: the
/// indexes not marked `cross_slot`, the stream unless `stream_cross_slot`,
/// the TTL registry (kept by the write unless it defers a key: a
/// `cross_slot` index or a `stream_cross_slot` stream).
fn unpinned_key(
    c: &Container<'_>,
    plan: &Plan<'_>,
    indexes: &[IndexModel],
    stream: Option<&StreamModel>,
) -> String {
    let in_write: Vec<&IndexModel> = indexes.iter().filter(|index| !index.cross_slot).collect();
    let stream_in_write = stream.is_some_and(|stream| !stream.cross_slot);
    let defers = indexes.iter().any(|index| index.cross_slot)
        || stream.is_some_and(|stream| stream.cross_slot);
    let mut others: Vec<String> = in_write
        .iter()
        .map(|index| format!("index `{}`", index.name))
        .collect();
    if stream_in_write {
        others.push("the stream".into());
    }
    if !indexes.is_empty() && !defers {
        others.push("the TTL registry".into());
    }
    let pin = match &plan.pinned_key {
        Some(key) => format!("e.g. {KEY} = \"{key}\""),
        None => "e.g. `{{name}}` in it".into(),
    };
    // Marking the indexes `cross_slot` and the stream `stream_cross_slot`
    // takes them out of the write, when they may be.
    let stream_cross_slot = format!("`{STREAM_CROSS_SLOT}` ({STREAM_CROSS_SLOT_COST})");
    let cross_slot = if !in_write.is_empty() && may_cross_slot(c, &in_write) {
        let which = match in_write.len() {
            1 => "the index",
            _ => "those indexes",
        };
        let stream = if stream_in_write {
            format!(", and add {stream_cross_slot} or drop the stream")
        } else {
            String::new()
        };
        let cost = cross_slot_cost(&in_write);
        format!(", or mark {which} `{CROSS_SLOT}` ({cost}){stream}")
    } else if in_write.is_empty() && stream_in_write && expiry(c).is_none() {
        format!(", or add {stream_cross_slot}")
    } else {
        String::new()
    };
    format!(
        "with `{CLUSTER}`, the entity key \"{}\" needs a hash tag: without one its slot comes from the whole key, \
         and no other key its writes touch ({}) can share that slot; pin the type to one slot with a constant tag, \
         {pin}, and put the same tag in those keys{cross_slot}, {DROP}",
        plan.key.source,
        others.join(", ")
    )
}

fn index_outside(
    c: &Container<'_>,
    plan: &Plan<'_>,
    index: &IndexModel,
    pattern: &KeyPattern,
    slot: &SlotSource,
) -> String {
    let mut fix = into_slot(plan, index, pattern);
    if may_cross_slot(c, &[index]) {
        let cost = cross_slot_cost(&[index]);
        fix.push_str(&format!(", or mark the index `{CROSS_SLOT}` ({cost})"));
    }
    format!(
        "with `{CLUSTER}`, {}: a write touching both would span two slots, which Redis Cluster refuses; {fix}, {DROP}",
        slots(plan, &describe(index, pattern), slot)
    )
}

/// The stream (`pattern`, written in the create) is outside the entity's
/// slot.
fn stream_outside(
    c: &Container<'_>,
    plan: &Plan<'_>,
    indexes: &[IndexModel],
    pattern: &KeyPattern,
    slot: &SlotSource,
) -> String {
    let mut fix = match plan.kind {
        Pin::Pinned => stream_into_slot(plan, pattern),
        Pin::ByField | Pin::Whole => format!(
            "it can only share the slot of a type pinned to one slot with a constant tag: pin the type, \
             e.g. {}{}; or drop the stream",
            plan.pinned_key_and(),
            plan.pinned_setting(&STREAM.to_string(), pattern)
        ),
    };
    // Offered where it alone would compile: a type that does not expire,
    // and whose key, if it has no tag, would then be alone in the write.
    let alone = !matches!(plan.kind, Pin::Whole) || indexes.iter().all(|index| index.cross_slot);
    if expiry(c).is_none() && alone {
        fix.push_str(&format!(
            ", or let it be in another slot with `{STREAM_CROSS_SLOT}` ({STREAM_CROSS_SLOT_COST})"
        ));
    }
    let what = format!("the stream \"{}\"", pattern.source());
    format!(
        "with `{CLUSTER}`, {}: the create that appends to it would span two slots, which Redis Cluster refuses; \
         a stream is one key for every entity of the type, so {fix}, {DROP}",
        slots(plan, &what, slot)
    )
}

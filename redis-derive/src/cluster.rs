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
//!
//! # `cross_slot`
//!
//! `index(key = "jobs:status:{status}", cross_slot)` (or `sorted_index`)
//! takes the index out of the write: its key may be in any slot. The write
//! script records, in a key in the entity's slot, that the entity's entries
//! are due to move, and the client then moves them (the record outlives a
//! client that dies first, and is applied later). Until then the index may
//! list an entity that no longer matches, or miss one, so its queries check
//! each entity they read against the index. [`check_cross_slot`] refuses it
//! where that cannot work, each time at the `cross_slot` token:
//!
//! * without `cluster`: every index is written in the write's script;
//! * on a `unique` index whose key has placeholders: a cross-slot unique
//!   value is claimed in one hash for the whole type, and a key with
//!   placeholders would need a claim in each hash it renders (nor on a
//!   constant key hashed whole that holds a brace: no claims hash can be
//!   put in its slot, see [`redis_schema::unique_claims_key`]);
//! * on a type that expires (`ttl`, an `expires_at` field): Redis expires
//!   the hash without running a script, so nothing would remove the entries
//!   in other slots;
//! * on an index that shares the entity's slot already: it is not needed,
//!   and without it the index is written atomically with the entity.
//!
//! A `cross_slot` unique index (`unique(key = "users:by_email", field =
//! "email", cross_slot)`) has one hash for the whole type. A write that
//! sets a new value first claims it, in the unique hash's slot, then
//! writes the entity in its own slot, where a fence refuses the write if
//! the claim was taken back since; the values it no longer holds are
//! released just after. Until then the hash may map a value to an entity
//! that no longer holds it, so lookups check the entity they read.
//!
//! # `stream_cross_slot`
//!
//! `#[redis(stream = "jobs:stream", stream_cross_slot)]` takes the stream
//! out of the create the same way: the create records the entry in the
//! entity's slot (the entity's pending record) and the client appends it
//! to the stream just after, at least once (a client that dies after
//! appending but before removing the record's entry leaves it to be
//! appended again by a repair pass). On one server the entry is still
//! appended in the write. [`check_stream_cross_slot`] refuses it, at its
//! token, without a `stream`, without `cluster`, on a stream that shares
//! the entity's slot already (nothing to defer), and on a type that
//! expires (a write that defers keeps no TTL registry, as with
//! `cross_slot`).

use redis_schema::{KeyPattern, KeySegment, SlotSource, TagPart, slot_source};

use crate::ast::{Container, IndexKind};
use crate::ctxt::Ctxt;
use crate::symbol::{CLUSTER, CROSS_SLOT, EXPIRES_AT, KEY, STREAM, STREAM_CROSS_SLOT, Symbol, TTL};
use crate::valid::{IndexModel, KeyModel, StreamModel};

/// The last words of every message about a key outside the slot: the way
/// out that always works.
const DROP: &str = "or drop `cluster` (standalone and Sentinel only)";

/// What marking an index `cross_slot` costs, for the messages that offer it.
const CROSS_SLOT_COST: &str = "the index is then updated just after the write instead of in it, \
                               and queries check each entity against it";

/// What marking a `unique` index `cross_slot` costs, for the messages that
/// offer it.
const UNIQUE_CROSS_SLOT_COST: &str = "each write that sets a new value then claims it first in the unique hash's slot, \
                                      two more round trips, and releases old values just after";

/// What declaring the stream `stream_cross_slot` costs, for the messages
/// that offer it.
const STREAM_CROSS_SLOT_COST: &str =
    "the entry is then appended just after the write instead of in it, at least once";

/// How the entity's slot is chosen.
enum Pin {
    /// A constant tag: every entity of the type is in one slot.
    Pinned,
    /// A tag with a field's value in it: entities spread over slots.
    ByField,
    /// No tag: the whole key is hashed.
    Whole,
}

/// What the messages need to know about the entity key.
struct Plan<'a> {
    key: &'a KeyModel,
    slot: SlotSource,
    kind: Pin,
    /// The tag, as pattern source, that pins the type: its own constant tag
    /// or, for an unpinned type, one made from the key's first word.
    pin_tag: String,
    /// The entity key pinned with `pin_tag`, if it is not pinned already.
    pinned_key: Option<String>,
}

impl Plan<'_> {
    /// `key = "job:{{jobs}}:{id}" and ` when the type is not pinned yet,
    /// else nothing.
    fn pinned_key_and(&self) -> String {
        match &self.pinned_key {
            Some(key) => format!("{KEY} = \"{key}\" and "),
            None => String::new(),
        }
    }

    /// `setting = "<pattern with the pin tag>"`, or a description when no
    /// such pattern could be made.
    fn pinned_setting(&self, setting: &str, pattern: &KeyPattern) -> String {
        match retag(pattern, &self.pin_tag) {
            Some(better) => format!("{setting} = \"{better}\""),
            None => format!("a {setting} with the tag `{}` in it", self.pin_tag),
        }
    }
}

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

fn plan<'a>(c: &Container<'_>, key: &'a KeyModel) -> Option<Plan<'a>> {
    let pattern = KeyPattern::parse(&key.source).ok()?;
    let slot = slot_source(&pattern);
    let kind = match &slot {
        SlotSource::WholeKey => Pin::Whole,
        tag if tag.is_fixed() => Pin::Pinned,
        SlotSource::Tag(_) => Pin::ByField,
    };
    let (pin_tag, pinned_key) = match (&kind, &slot) {
        (Pin::Pinned, SlotSource::Tag(parts)) => (tag_source(parts), None),
        _ => {
            let tag = format!("{{{{{}}}}}", pin_word(&pattern, c.ident));
            let pinned = retag(&pattern, &tag);
            (tag, pinned)
        }
    };
    Some(Plan {
        key,
        slot,
        kind,
        pin_tag,
        pinned_key,
    })
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

/// Whether `indexes` may all be marked `cross_slot`: the type does not
/// expire, and each unique one has a constant key with a claims hash
/// (else `check_cross_slot` would refuse it).
fn may_cross_slot(c: &Container<'_>, indexes: &[&IndexModel]) -> bool {
    expiry(c).is_none()
        && indexes.iter().all(|index| {
            index.kind != IndexKind::Unique
                || KeyPattern::parse(&index.key.source)
                    .is_ok_and(|pattern| unique_refusal(&pattern).is_none())
        })
}

/// What marking `indexes` `cross_slot` costs: the cost of a set or sorted
/// index, of a unique one, or both.
fn cross_slot_cost(indexes: &[&IndexModel]) -> String {
    let unique = indexes
        .iter()
        .filter(|index| index.kind == IndexKind::Unique)
        .count();
    match unique {
        0 => CROSS_SLOT_COST.to_string(),
        n if n == indexes.len() => UNIQUE_CROSS_SLOT_COST.to_string(),
        _ => format!("{CROSS_SLOT_COST}; for a unique index, {UNIQUE_CROSS_SLOT_COST}"),
    }
}

/// Why a `unique` index whose key is `pattern` cannot be `cross_slot`
/// wherever its key is, if it cannot: its value is claimed in the claims
/// hash of its one unique hash ([`redis_schema::unique_claims_key`]).
enum UniqueRefusal {
    /// The key has placeholders: one unique hash per rendered key.
    Placeholders,
    /// The key, rendered, is hashed whole and holds a brace: no claims
    /// hash can be put in its slot.
    NoClaims(String),
}

fn unique_refusal(pattern: &KeyPattern) -> Option<UniqueRefusal> {
    if pattern.placeholders().next().is_some() {
        return Some(UniqueRefusal::Placeholders);
    }
    match pattern.render(&[]) {
        Ok(key) if redis_schema::unique_claims_key(&key).is_some() => None,
        Ok(key) => Some(UniqueRefusal::NoClaims(key)),
        // A constant pattern always renders; refuse rather than guess.
        Err(_) => Some(UniqueRefusal::NoClaims(pattern.source().to_string())),
    }
}

/// `pattern` without its placeholders, as a constant key that would pass
/// as a `cross_slot` unique key: `members:{org_id}:by_email` becomes
/// `members:by_email`. `None` when none would.
fn constant_key(pattern: &KeyPattern) -> Option<String> {
    let constant = without_placeholders(pattern, |_| true)?;
    unique_refusal(&constant)
        .is_none()
        .then(|| constant.source().to_string())
}

/// `pattern` without the placeholders `drop` picks, with the `:` parts
/// they leave empty closed up: `members:{org_id}:by_email` without
/// `org_id` is `members:by_email`. `None` if a dropped placeholder is in
/// the hash tag, or the result does not parse.
fn without_placeholders(pattern: &KeyPattern, drop: impl Fn(&str) -> bool) -> Option<KeyPattern> {
    if let SlotSource::Tag(parts) = slot_source(pattern)
        && parts
            .iter()
            .any(|part| matches!(part, TagPart::Field(name) if drop(name)))
    {
        return None;
    }
    let mut source = String::new();
    for segment in pattern.segments() {
        match segment {
            KeySegment::Literal(text) => source.push_str(&escape(text)),
            KeySegment::Placeholder(name) if !drop(name) => {
                source.push('{');
                source.push_str(name);
                source.push('}');
            }
            KeySegment::Placeholder(_) => {}
        }
    }
    let source = source
        .split(':')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(":");
    KeyPattern::parse(&source).ok()
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

/// `index `by_status` ("jobs:status:{status}")`, with the kind of index.
fn describe(index: &IndexModel, pattern: &KeyPattern) -> String {
    let what = match index.kind {
        IndexKind::Set => "index",
        IndexKind::Sorted => "sorted index",
        IndexKind::Unique => "unique index",
    };
    format!("{what} `{}` (\"{}\")", index.name, pattern.source())
}

/// How to put the key of `index` (`pattern`, outside the entity's slot)
/// into the entity's slot, with patterns that would pass.
fn into_slot(plan: &Plan<'_>, index: &IndexModel, pattern: &KeyPattern) -> String {
    let setting = plan.pinned_setting(&KEY.to_string(), pattern);
    match (&plan.kind, &plan.slot) {
        (Pin::Pinned, _) => format!("put the type's tag in the index key, e.g. {setting}"),
        (Pin::ByField, SlotSource::Tag(parts)) => {
            let own = tag_source(parts);
            // A key field in the tag is dropped from the rest of the key:
            // `members:{org_id}:by_email` becomes
            // `members:{{{org_id}}}:by_email`.
            let in_tag = |name: &str| {
                parts
                    .iter()
                    .any(|part| matches!(part, TagPart::Field(field) if field == name))
            };
            let retagged = retag(pattern, &own).or_else(|| {
                let rest = without_placeholders(pattern, in_tag)?;
                retag(&rest, &own)
            });
            let tagged = match retagged {
                Some(better) => format!("{KEY} = \"{better}\""),
                None => format!("a {KEY} with the tag `{own}` in it"),
            };
            let then = match index.kind {
                IndexKind::Unique => "a value is then unique among the entities of one tag value",
                IndexKind::Set | IndexKind::Sorted => {
                    "the index then lists the entities of one tag value"
                }
            };
            format!(
                "put the entity's tag in the index key, e.g. {tagged} ({then}), \
                 or pin the type to one slot with a constant tag, e.g. {}{setting}",
                plan.pinned_key_and()
            )
        }
        _ => format!(
            "pin the type to one slot with a constant tag, e.g. {}{setting}",
            plan.pinned_key_and()
        ),
    }
}

/// Reports each `cross_slot` that cannot work, at its token, with what to
/// do instead: one error per index, the first that applies of: no
/// `cluster`, an index that shares the entity's slot anyway, a `unique`
/// index whose key has placeholders or has no claims hash, a type that
/// expires. Runs on a layout that passed every other check, like
/// [`check`].
pub(crate) fn check_cross_slot(
    cx: &Ctxt,
    c: &Container<'_>,
    key: Option<&KeyModel>,
    indexes: &[IndexModel],
) {
    let plan = key.and_then(|key| plan(c, key));
    let expiry = expiry(c);
    for (index, attr) in indexes.iter().zip(&c.indexes) {
        let Some(flag) = &attr.cross_slot else {
            continue;
        };
        if c.cluster.is_none() {
            cx.error_spanned_by(
                flag,
                format!(
                    "`{CROSS_SLOT}` applies to types declared `{CLUSTER}`: it lets an index key be in another \
                     Redis Cluster hash slot than the entity; add `{CLUSTER}` to the type's #[redis(...)], \
                     or remove `{CROSS_SLOT}` (without `{CLUSTER}` every index is written in the same step as the entity)"
                ),
            );
            continue;
        }
        let Some(plan) = &plan else {
            continue;
        };
        let Ok(pattern) = KeyPattern::parse(&index.key.source) else {
            continue;
        };
        let slot = slot_source(&pattern);
        let what = describe(index, &pattern);
        if plan.slot.shares_slot_with(&slot) {
            let atomically = "the index is written atomically with the entity";
            cx.error_spanned_by(flag, not_needed(CROSS_SLOT, &what, &slot, plan, atomically));
        } else if index.kind == IndexKind::Unique
            && let Some(refusal) = unique_refusal(&pattern)
        {
            let in_slot = format!(
                "keep the index in the entity's slot: remove `{CROSS_SLOT}` and {}, \
                 or drop `{CLUSTER}` and `{CROSS_SLOT}` (standalone and Sentinel only)",
                into_slot(plan, index, &pattern)
            );
            let message = match refusal {
                UniqueRefusal::Placeholders => {
                    // A constant key passes only on a type that does not
                    // expire.
                    let constant = match (&expiry, constant_key(&pattern)) {
                        (Some(_), _) => String::new(),
                        (None, Some(key)) => format!(
                            "use a constant key, e.g. {KEY} = \"{key}\" (a value is then unique across the whole type), or "
                        ),
                        (None, None) => {
                            "use a constant key (a value is then unique across the whole type), or "
                                .into()
                        }
                    };
                    format!(
                        "`{CROSS_SLOT}` cannot be used on {what}: its key has placeholders, and a cross-slot unique value \
                         is claimed in one hash for the whole type, where a key with placeholders would need a claim \
                         in each hash it renders; {constant}{in_slot}"
                    )
                }
                UniqueRefusal::NoClaims(key) => format!(
                    "`{CROSS_SLOT}` cannot be used on {what}: a cross-slot unique value is claimed in a claims hash \
                     put in the unique hash's slot by holding its key as a hash tag, and \"{key}\" is hashed whole and \
                     holds a brace, which a hash tag cannot hold; take the braces out of the key, or {in_slot}"
                ),
            };
            cx.error_spanned_by(flag, message);
        } else if let Some((expires, remove)) = &expiry {
            cx.error_spanned_by(
                flag,
                format!(
                    "`{CROSS_SLOT}` cannot be used on a type that expires ({expires}): Redis expires the entity \
                     without running a script, so nothing would remove its entry from {what} in another hash slot; \
                     remove {remove}, or keep the index in the entity's slot: remove `{CROSS_SLOT}` and {}",
                    into_slot(plan, index, &pattern)
                ),
            );
        }
    }
}

/// How the type expires, for messages, and what to remove so it does not:
/// `ttl = "1h"` or an `expires_at` field.
fn expiry(c: &Container<'_>) -> Option<(String, String)> {
    if let Some(ttl) = &c.ttl {
        let ttl = format!("{TTL} = {:?}", ttl.value());
        return Some((ttl.clone(), format!("`{ttl}`")));
    }
    let field = c
        .fields
        .iter()
        .flatten()
        .find(|field| field.expires_at.is_some())?;
    Some((
        format!(
            "field `{}` is `{EXPIRES_AT}`",
            crate::valid::unraw(field.ident)
        ),
        format!("`{EXPIRES_AT}` from `{}`", crate::valid::unraw(field.ident)),
    ))
}

/// `<what> takes its hash slot from <slot>, the entity key "…" from <slot>`.
fn slots(plan: &Plan<'_>, what: &str, slot: &SlotSource) -> String {
    let entity = &plan.key.source;
    if matches!(
        (slot, &plan.slot),
        (SlotSource::WholeKey, SlotSource::WholeKey)
    ) {
        format!(
            "{what} and the entity key \"{entity}\" each take their hash slot from the whole key"
        )
    } else {
        format!(
            "{what} takes its hash slot from {slot}, the entity key \"{entity}\" from {}",
            plan.slot
        )
    }
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

/// How to put the stream (`pattern`, outside the entity's slot) into the
/// entity's slot, with patterns that would pass.
fn stream_into_slot(plan: &Plan<'_>, pattern: &KeyPattern) -> String {
    let setting = plan.pinned_setting(&STREAM.to_string(), pattern);
    match plan.kind {
        Pin::Pinned => format!("put the type's tag in it, e.g. {setting}"),
        Pin::ByField | Pin::Whole => format!(
            "pin the type to one slot with a constant tag, e.g. {}{setting}",
            plan.pinned_key_and()
        ),
    }
}

/// The message for a `flag` (`cross_slot`, `stream_cross_slot`) on a key,
/// `what`, that shares the entity's slot anyway: without the flag it is
/// written `atomically`.
fn not_needed(
    flag: Symbol,
    what: &str,
    slot: &SlotSource,
    plan: &Plan<'_>,
    atomically: &str,
) -> String {
    format!(
        "`{flag}` is not needed: {what} takes its hash slot from {slot}, as the entity key \"{}\" does; \
         remove it, and {atomically}",
        plan.key.source
    )
}

/// Reports a `stream_cross_slot` that cannot work, at its token, with what
/// to do instead: the first that applies of no `stream`, no `cluster`, a
/// stream that shares the entity's slot anyway, a type that expires. Needs
/// only the attributes and the entity key (`None` when it did not pass),
/// so it runs with the checks of single attributes and its error comes
/// with theirs.
pub(crate) fn check_stream_cross_slot(cx: &Ctxt, c: &Container<'_>, key: Option<&KeyModel>) {
    let Some(flag) = &c.stream_cross_slot else {
        return;
    };
    let Some(lit) = &c.stream else {
        let cluster = if c.cluster.is_none() {
            format!(", and `{CLUSTER}`")
        } else {
            String::new()
        };
        cx.error_spanned_by(
            flag,
            format!(
                "`{STREAM_CROSS_SLOT}` needs a stream: it lets the type's stream be in another Redis Cluster \
                 hash slot than the entity, and this type has none; remove `{STREAM_CROSS_SLOT}`, \
                 or add a stream, e.g. {STREAM} = \"jobs:stream\"{cluster}"
            ),
        );
        return;
    };
    if c.cluster.is_none() {
        cx.error_spanned_by(
            flag,
            format!(
                "`{STREAM_CROSS_SLOT}` applies to types declared `{CLUSTER}`: it lets the stream be in another \
                 Redis Cluster hash slot than the entity; add `{CLUSTER}` to the type's #[redis(...)], \
                 or remove `{STREAM_CROSS_SLOT}` (without `{CLUSTER}` the entry is appended in the same step as the entity)"
            ),
        );
        return;
    }
    // A key or stream that did not pass is reported already; a stream
    // with a placeholder has no one slot.
    let Some(plan) = key.and_then(|key| plan(c, key)) else {
        return;
    };
    let Some(pattern) = KeyPattern::parse(&lit.value())
        .ok()
        .filter(|pattern| pattern.placeholders().next().is_none())
    else {
        return;
    };
    let slot = slot_source(&pattern);
    let what = format!("the stream \"{}\"", pattern.source());
    if plan.slot.shares_slot_with(&slot) {
        let atomically = "the entry is appended atomically with the entity";
        cx.error_spanned_by(
            flag,
            not_needed(STREAM_CROSS_SLOT, &what, &slot, &plan, atomically),
        );
    } else if let Some((expires, remove)) = expiry(c) {
        cx.error_spanned_by(
            flag,
            format!(
                "`{STREAM_CROSS_SLOT}` cannot be used on a type that expires ({expires}): on a Redis Cluster its \
                 create records the entry in the entity's slot for the client to append after it, and a write \
                 that defers a key this way keeps no TTL registry, so the type cannot expire (as with `{CROSS_SLOT}`); \
                 remove {remove}, or keep {what} in the entity's slot: remove `{STREAM_CROSS_SLOT}` and {}",
                stream_into_slot(&plan, &pattern)
            ),
        );
    }
}

/// A tag as pattern source: `{{jobs}}`, `{{{user_id}}}`, `{{u-{user_id}}}`.
fn tag_source(parts: &[TagPart]) -> String {
    let mut out = String::from("{{");
    for part in parts {
        match part {
            TagPart::Literal(text) => out.push_str(&escape(text)),
            TagPart::Field(name) => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
    }
    out.push_str("}}");
    out
}

fn escape(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

/// The name a suggested constant tag is made of: the key's first word in
/// the plural (`job:{id}` → `jobs`), else the type's name.
fn pin_word(pattern: &KeyPattern, ident: &syn::Ident) -> String {
    let first = pattern.literal_prefix();
    let word: String = first
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .collect();
    let word = if word.is_empty() {
        crate::valid::unraw(ident).to_lowercase()
    } else {
        word
    };
    if word.ends_with('s') {
        word
    } else {
        format!("{word}s")
    }
}

/// `pattern` with `tag` (pattern source, e.g. `{{jobs}}`) as its hash tag,
/// in a segment of its own after the first word: `jobs:status:{status}`
/// becomes `jobs:{{jobs}}:status:{status}`. A tag it has already loses its
/// braces, keeping its text (`job:{{{user_id}}}:{id}` becomes
/// `job:{{jobs}}:{user_id}:{id}`). `None` if the result would not parse or
/// not have that tag.
fn retag(pattern: &KeyPattern, tag: &str) -> Option<String> {
    let has_tag = matches!(slot_source(pattern), SlotSource::Tag(_));
    // 0: before the old tag's `{`; 1: inside it; 2: after its `}`.
    let mut at = if has_tag { 0 } else { 2 };
    let mut inserted = false;
    let mut out = String::new();
    for segment in pattern.segments() {
        match segment {
            KeySegment::Literal(text) => {
                for ch in text.chars() {
                    match (at, ch) {
                        (0, '{') => at = 1,
                        (1, '}') => at = 2,
                        _ => {
                            out.push_str(&escape(&ch.to_string()));
                            if ch == ':' && !inserted {
                                out.push_str(tag);
                                out.push(':');
                                inserted = true;
                            }
                        }
                    }
                }
            }
            KeySegment::Placeholder(name) => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
    }
    if !inserted {
        out.push(':');
        out.push_str(tag);
    }
    let wanted = KeyPattern::parse(&format!("x:{tag}")).ok()?;
    let result = KeyPattern::parse(&out).ok()?;
    (result.is_unambiguous() && slot_source(&result).shares_slot_with(&slot_source(&wanted)))
        .then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retagged(pattern: &str, tag: &str) -> Option<String> {
        retag(&KeyPattern::parse(pattern).expect("pattern"), tag)
    }

    #[test]
    fn retag_puts_the_tag_after_the_first_word() {
        let jobs = "{{jobs}}";
        assert_eq!(
            retagged("jobs:status:{status}", jobs).as_deref(),
            Some("jobs:{{jobs}}:status:{status}")
        );
        assert_eq!(
            retagged("job:{{{user_id}}}:{id}", jobs).as_deref(),
            Some("job:{{jobs}}:{user_id}:{id}")
        );
        assert_eq!(
            retagged("jobs:{{other}}:by_user", jobs).as_deref(),
            Some("jobs:{{jobs}}:other:by_user")
        );
        assert_eq!(
            retagged("jobs:status:{status}", "{{{user_id}}}").as_deref(),
            Some("jobs:{{{user_id}}}:status:{status}")
        );
        assert_eq!(
            retagged("jobstream", jobs).as_deref(),
            Some("jobstream:{{jobs}}")
        );
    }

    fn pattern(source: &str) -> KeyPattern {
        KeyPattern::parse(source).expect("pattern")
    }

    #[test]
    fn a_cross_slot_unique_key_is_constant_with_a_claims_hash() {
        assert!(unique_refusal(&pattern("users:by_email")).is_none());
        assert!(unique_refusal(&pattern("users:{{users}}:by_email")).is_none());
        assert!(matches!(
            unique_refusal(&pattern("members:{org_id}:by_email")),
            Some(UniqueRefusal::Placeholders)
        ));
        assert!(matches!(
            unique_refusal(&pattern("users:{{}}:by_email")),
            Some(UniqueRefusal::NoClaims(key)) if key == "users:{}:by_email"
        ));
    }

    #[test]
    fn constant_keys_drop_the_placeholders() {
        let constant = |source: &str| constant_key(&pattern(source));
        assert_eq!(
            constant("members:{org_id}:by_email").as_deref(),
            Some("members:by_email")
        );
        assert_eq!(
            constant("members:by_email:{org_id}:{team}").as_deref(),
            Some("members:by_email")
        );
        assert_eq!(constant("{org_id}").as_deref(), None);
        assert_eq!(constant("members:{{{org_id}}}:by_email").as_deref(), None);
        assert_eq!(constant("users:{{}}:{org_id}").as_deref(), None);
    }

    #[test]
    fn tags_print_as_pattern_source() {
        let tag = |pattern: &str| match slot_source(&KeyPattern::parse(pattern).expect("pattern")) {
            SlotSource::Tag(parts) => tag_source(&parts),
            SlotSource::WholeKey => String::new(),
        };
        assert_eq!(tag("a:{{jobs}}:{id}"), "{{jobs}}");
        assert_eq!(tag("a:{{{user_id}}}:{id}"), "{{{user_id}}}");
        assert_eq!(tag("a:{{u-{user_id}}}:{id}"), "{{u-{user_id}}}");
    }
}

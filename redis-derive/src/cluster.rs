//! `#[redis(cluster)]`: every key one write touches is in the entity's
//! Redis Cluster hash slot, checked here from the patterns alone.
//!
//! A write (create, save, update, patch, delete) is one Lua script, and on
//! a cluster a script may only touch keys of one slot. It touches the
//! entity's hash, every index key (old and new entries; a unique index's
//! holder, which has the same tag), the TTL registry and its `:fields` hash
//! (every type with indexes has one) and the stream. Logs are not among
//! them: they are written by their own commands.
//!
//! A key shares the entity's slot when both hash the same non-empty tag
//! ([`redis_schema::SlotSource::shares_slot_with`]). So:
//!
//! * an entity key without a tag is accepted only when the write touches
//!   no other key (no index, no stream): one key is always one slot;
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

use redis_schema::{KeyPattern, KeySegment, SlotSource, TagPart, slot_source};

use crate::ast::{Container, IndexKind};
use crate::ctxt::Ctxt;
use crate::symbol::{CLUSTER, KEY, STREAM};
use crate::valid::{IndexModel, KeyModel};

/// The last words of every message: the way out that always works.
const DROP: &str = "or drop `cluster` (standalone and Sentinel only)";

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
    stream: Option<&(String, u64)>,
) {
    let Some(plan) = plan(c, key) else {
        return;
    };
    let stream_attr = c.stream.as_ref().zip(stream);
    if matches!(plan.kind, Pin::Whole)
        && (!indexes.is_empty() || stream_attr.is_some())
        && let Some(lit) = &c.key
    {
        cx.error_spanned_by(lit, unpinned_key(&plan, indexes, stream_attr.is_some()));
    }
    for (index, attr) in indexes.iter().zip(&c.indexes) {
        let (Some(lit), Ok(pattern)) = (&attr.key, KeyPattern::parse(&index.key.source)) else {
            continue;
        };
        let slot = slot_source(&pattern);
        if !plan.slot.shares_slot_with(&slot) {
            cx.error_spanned_by(lit, index_outside(&plan, index, &pattern, &slot));
        }
    }
    if let Some((lit, _)) = stream_attr
        && let Ok(pattern) = KeyPattern::parse(&lit.value())
    {
        let slot = slot_source(&pattern);
        if !plan.slot.shares_slot_with(&slot) {
            cx.error_spanned_by(lit, stream_outside(&plan, &pattern, &slot));
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

/// The entity key has no tag, but the write touches other keys.
fn unpinned_key(plan: &Plan<'_>, indexes: &[IndexModel], stream: bool) -> String {
    let mut others: Vec<String> = indexes
        .iter()
        .map(|index| format!("index `{}`", index.name))
        .collect();
    if stream {
        others.push("the stream".into());
    }
    if !indexes.is_empty() {
        others.push("the TTL registry".into());
    }
    let pin = match &plan.pinned_key {
        Some(key) => format!("e.g. {KEY} = \"{key}\""),
        None => "e.g. `{{name}}` in it".into(),
    };
    format!(
        "with `{CLUSTER}`, the entity key \"{}\" needs a hash tag: without one its slot comes from the whole key, \
         and no other key its writes touch ({}) can share that slot; pin the type to one slot with a constant tag, \
         {pin}, and put the same tag in those keys, {DROP}",
        plan.key.source,
        others.join(", ")
    )
}

fn index_outside(
    plan: &Plan<'_>,
    index: &IndexModel,
    pattern: &KeyPattern,
    slot: &SlotSource,
) -> String {
    let what = match index.kind {
        IndexKind::Set => "index",
        IndexKind::Sorted => "sorted index",
        IndexKind::Unique => "unique index",
    };
    let setting = plan.pinned_setting(&KEY.to_string(), pattern);
    let fix = match (&plan.kind, &plan.slot) {
        (Pin::Pinned, _) => format!("put the type's tag in the index key, e.g. {setting}"),
        (Pin::ByField, SlotSource::Tag(parts)) => {
            let own = tag_source(parts);
            let tagged = match retag(pattern, &own) {
                Some(better) => format!("{KEY} = \"{better}\""),
                None => format!("a {KEY} with the tag `{own}` in it"),
            };
            format!(
                "put the entity's tag in the index key, e.g. {tagged} (the index then lists the entities \
                 of one tag value), or pin the type to one slot with a constant tag, e.g. {}{setting}",
                plan.pinned_key_and()
            )
        }
        _ => format!(
            "pin the type to one slot with a constant tag, e.g. {}{setting}",
            plan.pinned_key_and()
        ),
    };
    let what = format!("{what} `{}` (\"{}\")", index.name, pattern.source());
    format!(
        "with `{CLUSTER}`, {}: a write touching both would span two slots, which Redis Cluster refuses; {fix}, {DROP}",
        slots(plan, &what, slot)
    )
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

fn stream_outside(plan: &Plan<'_>, pattern: &KeyPattern, slot: &SlotSource) -> String {
    let setting = plan.pinned_setting(&STREAM.to_string(), pattern);
    let fix = match plan.kind {
        Pin::Pinned => format!("put the type's tag in it, e.g. {setting}"),
        Pin::ByField | Pin::Whole => format!(
            "it can only share the slot of a type pinned to one slot with a constant tag: pin the type, \
             e.g. {}{setting}; or drop the stream",
            plan.pinned_key_and()
        ),
    };
    let what = format!("the stream \"{}\"", pattern.source());
    format!(
        "with `{CLUSTER}`, {}: the create that appends to it would span two slots, which Redis Cluster refuses; \
         a stream is one key for every entity of the type, so {fix}, {DROP}",
        slots(plan, &what, slot)
    )
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

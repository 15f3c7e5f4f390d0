//! Where a type's keys hash on a Redis Cluster, for the messages of the
//! `cluster` and `cross_slot` checks: how the entity's slot is chosen
//! ([`Pin`], [`Plan`]), which slot a key takes, and the patterns that
//! would share the entity's slot.

use redis_schema::{KeyPattern, KeySegment, SlotSource, TagPart, escape_braces, slot_source};

use crate::ast::{Container, IndexKind};
use crate::model::{IndexModel, KeyModel};
use crate::symbol::{KEY, STREAM};

/// How the entity's slot is chosen.
pub(crate) enum Pin {
    /// A constant tag: every entity of the type is in one slot.
    Pinned,
    /// A tag with a field's value in it: entities spread over slots.
    ByField,
    /// No tag: the whole key is hashed.
    Whole,
}

/// What the messages need to know about the entity key.
pub(crate) struct Plan<'a> {
    pub(crate) key: &'a KeyModel,
    pub(crate) slot: SlotSource,
    pub(crate) kind: Pin,
    /// The tag, as pattern source, that pins the type: its own constant tag
    /// or, for an unpinned type, one made from the key's first word.
    pub(crate) pin_tag: String,
    /// The entity key pinned with `pin_tag`, if it is not pinned already.
    pub(crate) pinned_key: Option<String>,
}

impl Plan<'_> {
    /// `key = "job:{{jobs}}:{id}" and ` when the type is not pinned yet,
    /// else nothing.
    pub(crate) fn pinned_key_and(&self) -> String {
        match &self.pinned_key {
            Some(key) => format!("{KEY} = \"{key}\" and "),
            None => String::new(),
        }
    }

    /// `setting = "<pattern with the pin tag>"`, or a description when no
    /// such pattern could be made.
    pub(crate) fn pinned_setting(&self, setting: &str, pattern: &KeyPattern) -> String {
        match retag(pattern, &self.pin_tag) {
            Some(better) => format!("{setting} = \"{better}\""),
            None => format!("a {setting} with the tag `{}` in it", self.pin_tag),
        }
    }
}

pub(crate) fn plan<'a>(c: &Container<'_>, key: &'a KeyModel) -> Option<Plan<'a>> {
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

/// A tag as pattern source: `{{jobs}}`, `{{{user_id}}}`, `{{u-{user_id}}}`.
pub(crate) fn tag_source(parts: &[TagPart]) -> String {
    let mut out = String::from("{{");
    for part in parts {
        match part {
            TagPart::Literal(text) => out.push_str(&escape_braces(text)),
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

/// The name a suggested constant tag is made of: the key's first word in
/// the plural (`job:{id}` → `jobs`), else the type's name.
pub(crate) fn pin_word(pattern: &KeyPattern, ident: &syn::Ident) -> String {
    let first = pattern.literal_prefix();
    let word: String = first
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .collect();
    let word = if word.is_empty() {
        crate::model::unraw(ident).to_lowercase()
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
/// becomes `jobs:{{jobs}}:status:{status}`. A constant tag it has already
/// is replaced in place, most likely a misspelling of the type's
/// (`carts:{{cart}}:by_user` becomes `carts:{{carts}}:by_user`); a tag with
/// placeholders loses its braces, keeping its text
/// (`job:{{{user_id}}}:{id}` becomes `job:{{jobs}}:{user_id}:{id}`).
/// `None` if the result would not parse or not have that tag.
pub(crate) fn retag(pattern: &KeyPattern, tag: &str) -> Option<String> {
    let (has_tag, constant_tag) = match slot_source(pattern) {
        SlotSource::Tag(parts) => (
            true,
            parts.iter().all(|part| matches!(part, TagPart::Literal(_))),
        ),
        SlotSource::WholeKey => (false, false),
    };
    // 0: before the old tag's `{`; 1: inside it; 2: after its `}`.
    let mut at = if has_tag { 0 } else { 2 };
    let mut inserted = false;
    let mut out = String::new();
    for segment in pattern.segments() {
        match segment {
            KeySegment::Literal(text) => {
                for ch in text.chars() {
                    match (at, ch) {
                        (0, '{') if constant_tag => {
                            out.push_str(tag);
                            inserted = true;
                            at = 1;
                        }
                        (0, '{') => at = 1,
                        (1, '}') => at = 2,
                        (1, _) if constant_tag => {}
                        _ => {
                            out.push_str(&escape_braces(&ch.to_string()));
                            if ch == ':' && !inserted && !constant_tag {
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

/// `pattern` without the placeholders `drop` picks, with the `:` parts
/// they leave empty closed up: `members:{org_id}:by_email` without
/// `org_id` is `members:by_email`. `None` if a dropped placeholder is in
/// the hash tag, or the result does not parse.
pub(crate) fn without_placeholders(
    pattern: &KeyPattern,
    drop: impl Fn(&str) -> bool,
) -> Option<KeyPattern> {
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
            KeySegment::Literal(text) => source.push_str(&escape_braces(text)),
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

/// `index `by_status` ("jobs:status:{status}")`, with the kind of index.
pub(crate) fn describe(index: &IndexModel, pattern: &KeyPattern) -> String {
    let what = match index.kind {
        IndexKind::Set => "index",
        IndexKind::Sorted => "sorted index",
        IndexKind::Unique => "unique index",
    };
    format!("{what} `{}` (\"{}\")", index.name, pattern.source())
}

/// How to put the key of `index` (`pattern`, outside the entity's slot)
/// into the entity's slot, with patterns that would pass.
pub(crate) fn into_slot(plan: &Plan<'_>, index: &IndexModel, pattern: &KeyPattern) -> String {
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

/// How to put the stream (`pattern`, outside the entity's slot) into the
/// entity's slot, with patterns that would pass.
pub(crate) fn stream_into_slot(plan: &Plan<'_>, pattern: &KeyPattern) -> String {
    let setting = plan.pinned_setting(&STREAM.to_string(), pattern);
    match plan.kind {
        Pin::Pinned => format!("put the type's tag in it, e.g. {setting}"),
        Pin::ByField | Pin::Whole => format!(
            "pin the type to one slot with a constant tag, e.g. {}{setting}",
            plan.pinned_key_and()
        ),
    }
}

/// `<what> takes its hash slot from <slot>, the entity key "…" from <slot>`.
pub(crate) fn slots(plan: &Plan<'_>, what: &str, slot: &SlotSource) -> String {
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
        // A constant tag is replaced, not kept as a segment.
        assert_eq!(
            retagged("jobs:{{other}}:by_user", jobs).as_deref(),
            Some("jobs:{{jobs}}:by_user")
        );
        assert_eq!(
            retagged("carts:{{cart}}:user:{user_id}", "{{carts}}").as_deref(),
            Some("carts:{{carts}}:user:{user_id}")
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

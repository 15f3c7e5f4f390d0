//! What decides the Redis Cluster hash slot of a pattern's keys, read from
//! the pattern alone.
//!
//! Redis Cluster hashes a key's *hash tag*, the text between its first `{`
//! and the first `}` after it, when that text is not empty; otherwise the
//! whole key. Key values may not contain braces
//! ([`crate::validate_key_value`]), so in every key a pattern renders the
//! first `{` and the next `}` are literal braces of the pattern (`{{` and
//! `}}` in its source): which text a key hashes is fixed by the pattern.
//! Two patterns whose tags are the same sequence of literal text and
//! placeholders put the keys rendered from one entity's values in the same
//! slot, always; that is what keeps a multi-key write atomic on a cluster.
//!
//! ```
//! use redis_schema::{KeyPattern, slot_source};
//!
//! let job = slot_source(&KeyPattern::parse("job:{{{user_id}}}:{id}")?);
//! let by_status = slot_source(&KeyPattern::parse("jobs:{{{user_id}}}:status:{status}")?);
//! let all_jobs = slot_source(&KeyPattern::parse("jobs:by_status:{status}")?);
//! assert!(job.shares_slot_with(&by_status));
//! assert!(!job.shares_slot_with(&all_jobs));
//! assert_eq!(job.to_string(), "hash tag `{user_id}`");
//! # Ok::<(), redis_schema::PatternError>(())
//! ```

use std::fmt;

use crate::key::{KeyPattern, KeySegment};
pub use crate::reserved::PENDING_INDEX_PREFIX;
use crate::reserved::{
    PENDING_INDEX_LEASE_PREFIX, SLOT_GUARD_PREFIX, UNIQUE_CLAIMS_PREFIX, UNIQUE_FENCE_PREFIX,
};

/// One piece of a hash tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagPart {
    /// Fixed text.
    Literal(String),
    /// The value of the named placeholder.
    Field(String),
}

/// What Redis Cluster hashes for the keys of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotSource {
    /// No hash tag (or an empty one): the whole key is hashed.
    WholeKey,
    /// The hash tag: literal text and placeholder values, in order.
    Tag(Vec<TagPart>),
}

/// The [`SlotSource`] of `pattern`'s keys.
pub fn slot_source(pattern: &KeyPattern) -> SlotSource {
    // The pattern's keys as literal characters and placeholders, looking
    // for the first literal `{` and then the first literal `}`.
    let mut tag: Option<Vec<TagPart>> = None;
    for segment in pattern.segments() {
        match segment {
            KeySegment::Literal(text) => {
                for ch in text.chars() {
                    match (&mut tag, ch) {
                        (None, '{') => tag = Some(Vec::new()),
                        (None, _) => {}
                        (Some(parts), '}') => {
                            return if parts.is_empty() {
                                SlotSource::WholeKey
                            } else {
                                SlotSource::Tag(std::mem::take(parts))
                            };
                        }
                        (Some(parts), ch) => match parts.last_mut() {
                            Some(TagPart::Literal(text)) => text.push(ch),
                            _ => parts.push(TagPart::Literal(ch.to_string())),
                        },
                    }
                }
            }
            KeySegment::Placeholder(name) => {
                if let Some(parts) = &mut tag {
                    parts.push(TagPart::Field(name.clone()));
                }
            }
        }
    }
    // An opening brace without a closing one is no tag.
    SlotSource::WholeKey
}

/// The part of a rendered key that Redis Cluster hashes to pick its slot:
/// the text between the first `{` and the first `}` after it when that is
/// not empty, otherwise the whole key. Keys with the same hashed text are
/// in the same slot.
///
/// ```
/// use redis_schema::hashed_text;
///
/// assert_eq!(hashed_text("job:{u1}:j7"), "u1");
/// assert_eq!(hashed_text("job:{}:j7"), "job:{}:j7");
/// assert_eq!(hashed_text("job:j7"), "job:j7");
/// ```
pub fn hashed_text(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The *slot guard* of `key`: a key in `key`'s hash slot that is never
/// written. A script on a Redis Cluster declares it beside its own keys so
/// that the server refuses the call (`TRYAGAIN`, or `ASK` and then
/// `TRYAGAIN`) for as long as the slot is migrating: Redis runs a call on a
/// migrating or importing slot only when every key it declares is present
/// on that node, and the guard never is. A script that reads keys it cannot
/// declare (index keys named by stored values) therefore never runs while
/// some of those keys have moved and others not.
///
/// A key whose whole text is hashed and holds a `}` has no guard that
/// hashes like it; the key itself is returned, declared twice (such a key
/// has no companion keys in its slot to protect).
///
/// ```
/// use redis_schema::{hashed_text, slot_guard_key};
///
/// assert_eq!(slot_guard_key("job:{jobs}:j7"), "__slot_guard:{jobs}");
/// assert_eq!(hashed_text(&slot_guard_key("job:j7")), "job:j7");
/// assert_eq!(slot_guard_key("a}b"), "a}b");
/// ```
pub fn slot_guard_key(key: &str) -> String {
    let hashed = hashed_text(key);
    if hashed.contains('}') {
        return key.to_string();
    }
    format!("{SLOT_GUARD_PREFIX}{{{hashed}}}")
}

/// The *pending index key* of the entity at `key`: a hash in the entity's
/// hash slot that lists the `cross_slot` index keys which may still hold
/// the entity after a write (one field per key, its value the index's
/// 1-based position) and counts the writes not yet applied to those
/// indexes (field [`PENDING_WRITES`]). The write script fills it in the
/// same step as the entity; the client then moves the entries and removes
/// it.
///
/// A key with a hash tag keeps it: the prefix goes before the key. A key
/// hashed whole becomes the tag, which hashes the same text. `None` when
/// such a key holds a brace, which no tag can repeat.
///
/// ```
/// use redis_schema::{entity_of_pending_index_key, hashed_text, pending_index_key};
///
/// assert_eq!(pending_index_key("job:j7").as_deref(), Some("__pending_index:{job:j7}"));
/// assert_eq!(pending_index_key("job:{jobs}:j7").as_deref(), Some("__pending_index:job:{jobs}:j7"));
/// let pending = pending_index_key("job:j7").unwrap();
/// assert_eq!(hashed_text(&pending), hashed_text("job:j7"));
/// assert_eq!(entity_of_pending_index_key(&pending), Some("job:j7"));
/// assert_eq!(pending_index_key("a}b"), None);
/// ```
pub fn pending_index_key(key: &str) -> Option<String> {
    pending_key(PENDING_INDEX_PREFIX, key)
}

/// The lease of `key`'s [pending index key](pending_index_key): held by
/// the one client applying the entity's pending moves, so that two clients
/// never interleave them. In the same slot; `None` where the pending key
/// is.
///
/// ```
/// use redis_schema::pending_index_lease_key;
///
/// assert_eq!(
///     pending_index_lease_key("job:j7").as_deref(),
///     Some("__pending_index_lease:{job:j7}")
/// );
/// ```
pub fn pending_index_lease_key(key: &str) -> Option<String> {
    pending_key(PENDING_INDEX_LEASE_PREFIX, key)
}

fn pending_key(prefix: &str, key: &str) -> Option<String> {
    if hashed_text(key) != key {
        return Some(format!("{prefix}{key}"));
    }
    if key.contains(['{', '}']) {
        return None;
    }
    Some(format!("{prefix}{{{key}}}"))
}

/// The *claims hash* of a `cross_slot` unique index whose hash is at
/// `unique_key` (`users:by_email`), in the unique hash's slot: one field
/// per value the unique hash maps, holding the token of the claim that
/// last took it. Every claim writes a new token, even by the entity that
/// already holds the value, so a client that read a value's holder and
/// token can change the mapping only if nothing claimed the value since
/// (a compare-and-set on both). The unique hash itself keeps the shared
/// layout (value → member), which other services read and write.
///
/// `None` when the key is hashed whole and holds a brace.
///
/// ```
/// use redis_schema::{hashed_text, unique_claims_key};
///
/// let claims = unique_claims_key("users:by_email").unwrap();
/// assert_eq!(claims, "__unique_claims:{users:by_email}");
/// assert_eq!(hashed_text(&claims), "users:by_email");
/// ```
pub fn unique_claims_key(unique_key: &str) -> Option<String> {
    pending_key(UNIQUE_CLAIMS_PREFIX, unique_key)
}

/// The *unique fence* of the entity at `key`, in its slot: a counter that
/// a client raises, in the entity's slot and in one step with checking
/// that the entity does not hold a value, before it takes that value from
/// the entity in a `cross_slot` unique hash (to release it, or to give it
/// to another entity). A write that sets a value it claimed carries the
/// fence it read before claiming and is refused if the fence moved since,
/// so a claim taken from an entity can never be written by it after.
///
/// `None` when the key is hashed whole and holds a brace.
///
/// ```
/// use redis_schema::unique_fence_key;
///
/// assert_eq!(unique_fence_key("user:u1").as_deref(), Some("__unique_fence:{user:u1}"));
/// ```
pub fn unique_fence_key(key: &str) -> Option<String> {
    pending_key(UNIQUE_FENCE_PREFIX, key)
}

/// The entity key a [pending index key](pending_index_key) belongs to.
///
/// ```
/// use redis_schema::{entity_of_pending_index_key, pending_index_key};
///
/// let pending = pending_index_key("job:{jobs}:j7").unwrap();
/// assert_eq!(entity_of_pending_index_key(&pending), Some("job:{jobs}:j7"));
/// assert_eq!(entity_of_pending_index_key("job:j7"), None);
/// ```
pub fn entity_of_pending_index_key(pending: &str) -> Option<&str> {
    let rest = pending.strip_prefix(PENDING_INDEX_PREFIX)?;
    let whole = rest
        .strip_prefix('{')
        .and_then(|inner| inner.strip_suffix('}'))
        .filter(|inner| !inner.contains(['{', '}']));
    Some(whole.unwrap_or(rest))
}

/// The key patterns of the [pending index keys](pending_index_key) of the
/// entities whose keys match `entity_pattern` (pattern source), and of
/// their [leases](pending_index_lease_key). `None` when the pattern does
/// not parse, or hashes whole and holds a literal brace.
///
/// ```
/// use redis_schema::pending_index_patterns;
///
/// let (record, lease) = pending_index_patterns("job:{id}").unwrap();
/// assert_eq!(record, "__pending_index:{{job:{id}}}");
/// assert_eq!(lease, "__pending_index_lease:{{job:{id}}}");
/// let (record, _) = pending_index_patterns("run:{{{user_id}}}:{id}").unwrap();
/// assert_eq!(record, "__pending_index:run:{{{user_id}}}:{id}");
/// ```
pub fn pending_index_patterns(entity_pattern: &str) -> Option<(String, String)> {
    Some((
        companion_pattern(PENDING_INDEX_PREFIX, entity_pattern)?,
        companion_pattern(PENDING_INDEX_LEASE_PREFIX, entity_pattern)?,
    ))
}

/// The key patterns of the [unique fences](unique_fence_key) of the
/// entities whose keys match `entity_pattern`, as
/// [`pending_index_patterns`] gives theirs.
///
/// ```
/// use redis_schema::unique_fence_pattern;
///
/// assert_eq!(unique_fence_pattern("user:{id}").as_deref(), Some("__unique_fence:{{user:{id}}}"));
/// ```
pub fn unique_fence_pattern(entity_pattern: &str) -> Option<String> {
    companion_pattern(UNIQUE_FENCE_PREFIX, entity_pattern)
}

/// The key pattern of the [claims hash](unique_claims_key) of the unique
/// hash whose pattern is `unique_pattern` (constant, for a `cross_slot`
/// unique index).
///
/// ```
/// use redis_schema::unique_claims_pattern;
///
/// assert_eq!(
///     unique_claims_pattern("users:by_email").as_deref(),
///     Some("__unique_claims:{{users:by_email}}")
/// );
/// ```
pub fn unique_claims_pattern(unique_pattern: &str) -> Option<String> {
    companion_pattern(UNIQUE_CLAIMS_PREFIX, unique_pattern)
}

/// The pattern of the keys [`pending_key`] makes with `prefix` for the
/// keys of `pattern`: the prefix before a pattern with a hash tag, the
/// whole pattern as the tag of one without (as literal braces). `None`
/// when the pattern does not parse, or hashes whole and holds a literal
/// brace.
fn companion_pattern(prefix: &str, pattern: &str) -> Option<String> {
    match slot_source(&KeyPattern::parse(pattern).ok()?) {
        SlotSource::Tag(_) => Some(format!("{prefix}{pattern}")),
        SlotSource::WholeKey if pattern.contains("{{") || pattern.contains("}}") => None,
        SlotSource::WholeKey => Some(format!("{prefix}{{{{{pattern}}}}}")),
    }
}

/// The field of a [pending index key](pending_index_key) that counts the
/// writes not yet applied: the empty name, which no index key can have,
/// so it never meets the fields that name index keys.
pub const PENDING_WRITES: &str = "";

/// What the field of a stream entry recorded in a [pending index
/// key](pending_index_key) starts with, before the write count that
/// recorded it (`stream 3`): a type whose stream is `stream_cross_slot`
/// records its entry there on a cluster, for the client to append. No
/// index key holds a space, so these fields never meet theirs. The value
/// is the entry's field/value pairs, each as its byte length, `:`, and its
/// bytes (`2:id2:j7`).
pub const PENDING_STREAM_ENTRY: &str = "stream ";

/// What the field of a released unique value recorded in a [pending index
/// key](pending_index_key) starts with, before the index's 1-based
/// position, a space, and the value (`unique 1 ada@example.com`): a write
/// that moves an entity off a value of a `cross_slot` unique index records
/// it there on a cluster, and the client releases the value from the
/// unique hash once the entity no longer holds it. The field's value is
/// the unique hash's key.
pub const PENDING_UNIQUE_VALUE: &str = "unique ";

impl SlotSource {
    /// Whether the keys of two patterns rendered from the same entity's
    /// values are always in one hash slot: both hash the same non-empty
    /// tag. Two patterns that hash their whole key are not (unless they are
    /// one pattern, which the caller can see).
    pub fn shares_slot_with(&self, other: &SlotSource) -> bool {
        matches!((self, other), (SlotSource::Tag(a), SlotSource::Tag(b)) if a == b)
    }

    /// Whether every key of the pattern is in one slot: the tag is fixed
    /// text (a type pinned to one shard).
    pub fn is_fixed(&self) -> bool {
        matches!(self, SlotSource::Tag(parts) if parts.iter().all(|p| matches!(p, TagPart::Literal(_))))
    }
}

impl fmt::Display for SlotSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotSource::WholeKey => f.write_str("the whole key"),
            SlotSource::Tag(parts) => {
                f.write_str("hash tag `")?;
                for part in parts {
                    match part {
                        TagPart::Literal(text) => f.write_str(text)?,
                        TagPart::Field(name) => write!(f, "{{{name}}}")?,
                    }
                }
                f.write_str("`")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(pattern: &str) -> SlotSource {
        slot_source(&KeyPattern::parse(pattern).expect("pattern"))
    }

    fn field(name: &str) -> TagPart {
        TagPart::Field(name.into())
    }

    #[test]
    fn tags_are_read_from_the_literal_braces() {
        assert_eq!(source("user:{id}"), SlotSource::WholeKey);
        assert_eq!(source("user:{{{id}}}"), SlotSource::Tag(vec![field("id")]));
        assert_eq!(
            source("jobs:{{tenant-{tenant}}}:{id}"),
            SlotSource::Tag(vec![TagPart::Literal("tenant-".into()), field("tenant")])
        );
        assert_eq!(
            source("jobs:{{all}}:{id}"),
            SlotSource::Tag(vec![TagPart::Literal("all".into())])
        );
        // Only the first tag counts; an empty or unclosed one is none.
        assert_eq!(
            source("a:{{{x}}}:{{{y}}}"),
            SlotSource::Tag(vec![field("x")])
        );
        assert_eq!(source("a:{{}}:{{{y}}}"), SlotSource::WholeKey);
        assert_eq!(source("a:{{:{y}"), SlotSource::WholeKey);
    }

    #[test]
    fn slots_are_shared_only_by_equal_tags() {
        let job = source("job:{{{user_id}}}:{id}");
        assert!(job.shares_slot_with(&source("jobs:{{{user_id}}}:by_status:{status}")));
        assert!(!job.shares_slot_with(&source("jobs:{{{status}}}:{user_id}")));
        assert!(!job.shares_slot_with(&source("jobs:{user_id}")));
        assert!(!source("job:{id}").shares_slot_with(&source("job:{id}:log")));
        assert!(source("job:{{jobs}}:{id}").is_fixed());
        assert!(!job.is_fixed());
        assert_eq!(source("job:{{jobs}}:{id}").to_string(), "hash tag `jobs`");
        assert_eq!(source("job:{id}").to_string(), "the whole key");
    }

    #[test]
    fn shared_slots_hold_for_rendered_keys() {
        let patterns = [
            "job:{{{user_id}}}:{id}",
            "jobs:{{{user_id}}}:status:{status}",
            "x:{{u-{user_id}}}:{id}",
            "y:{{u-{user_id}}}",
            "z:{{jobs}}:{id}",
            "w:{{jobs}}:{status}",
            "v:{id}",
        ];
        let values = [
            ("user_id", ["u1", "u2"]),
            ("id", ["7", "8"]),
            ("status", ["q", "r"]),
        ];
        for a in patterns {
            for b in patterns {
                let (pa, pb) = (
                    KeyPattern::parse(a).expect("pattern a"),
                    KeyPattern::parse(b).expect("pattern b"),
                );
                if !slot_source(&pa).shares_slot_with(&slot_source(&pb)) {
                    continue;
                }
                for pick in 0..2 {
                    let value = |name: &str| {
                        values
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, v)| v[pick])
                            .expect("a value for every placeholder")
                    };
                    let render = |p: &KeyPattern| {
                        let vals: Vec<&str> = p.placeholders().map(value).collect();
                        p.render(&vals).expect("safe values render")
                    };
                    let (ka, kb) = (render(&pa), render(&pb));
                    assert_eq!(
                        hashed_text(&ka),
                        hashed_text(&kb),
                        "{a} and {b}: {ka} / {kb}"
                    );
                }
            }
        }
    }
}

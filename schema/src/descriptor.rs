//! Static descriptors of entities, fields, indexes and streams: the one
//! description of an entity type's storage.
//!
//! The derive macro fills these in as `static` data. Everything else reads
//! them: the runtime compiles its Lua scripts from them, builds and splits
//! keys with them, and tools and tests introspect through them. They hold
//! only `&'static` data and are `Copy`, so a descriptor costs nothing at run
//! time.
//!
//! A key pattern is kept twice in one place: as its source text
//! (`"job:{id}"`, for messages and `SCAN` globs) and as [`PatternPart`]s, the
//! form the runtime renders keys from, with each placeholder resolved to the
//! stored field that fills it. The macro derives both from one parse.
//!
//! ```
//! use redis_schema::{EntityDescriptor, FieldDescriptor, FieldEncoding, PatternPart};
//!
//! const FIELDS: &[FieldDescriptor] = &[
//!     FieldDescriptor {
//!         rust_name: "id",
//!         hash_name: "id",
//!         optional: false,
//!         is_key: true,
//!         encoding: FieldEncoding::Text,
//!     },
//!     FieldDescriptor {
//!         rust_name: "created_at",
//!         hash_name: "createdAt",
//!         optional: false,
//!         is_key: false,
//!         encoding: FieldEncoding::TimestampMillis,
//!     },
//! ];
//!
//! const SESSION: EntityDescriptor = EntityDescriptor {
//!     name: "Session",
//!     key_pattern: "session:{id}",
//!     key: &[PatternPart::Literal("session:"), PatternPart::Field(0)],
//!     ttl_ms: Some(7 * 24 * 60 * 60 * 1000),
//!     fields: FIELDS,
//!     indexes: &[],
//!     stream: None,
//!     ttl_registry: None,
//!     ttl_registry_per_tag: false,
//!     logs: &[],
//!     version: None,
//!     cluster: false,
//! };
//!
//! assert_eq!(SESSION.field("createdAt").map(|f| f.rust_name), Some("created_at"));
//! assert_eq!(SESSION.key_fields().count(), 1);
//! assert_eq!(SESSION.key_of_member("abc").as_deref(), Some("session:abc"));
//! assert_eq!(SESSION.member_of_key("session:abc").as_deref(), Some("abc"));
//! ```

use std::num::NonZeroU64;
use std::time::Duration;

use crate::key::{KeyPattern, KeySegment, validate_key_value};
use crate::reserved::TTL_REGISTRY_PREFIX;
use crate::slot::slot_source;

/// One piece of a key pattern, as the runtime renders keys from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatternPart {
    /// Fixed text, already unescaped (`{{` in the source is `{` here).
    Literal(&'static str),
    /// The stored value of the field at this position of
    /// [`EntityDescriptor::fields`].
    Field(usize),
}

/// The TTL registry key of an entity type: a sorted set scoring each
/// entity's id by its expiry, kept so that index entries of expired
/// entities can be removed. Its companion hash, holding the values each
/// entity was indexed under, is this key plus `:fields`.
///
/// The name is `__ttl:` followed by the entity's key pattern with each
/// placeholder written as its bare name and literal braces left out, so it
/// carries no Redis Cluster hash tag and does not read like a template:
///
/// ```
/// use redis_schema::{KeyPattern, ttl_registry_key};
///
/// let pattern = KeyPattern::parse("session:{id}")?;
/// assert_eq!(ttl_registry_key(&pattern), "__ttl:session:id");
/// let tagged = KeyPattern::parse("member:{{{org}}}:{user}")?;
/// assert_eq!(ttl_registry_key(&tagged), "__ttl:member:org:user");
/// # Ok::<(), redis_schema::PatternError>(())
/// ```
pub fn ttl_registry_key(entity_pattern: &KeyPattern) -> String {
    let mut key = String::from(TTL_REGISTRY_PREFIX);
    for segment in entity_pattern.segments() {
        match segment {
            KeySegment::Literal(text) => {
                key.extend(text.chars().filter(|c| !matches!(c, '{' | '}')))
            }
            KeySegment::Placeholder(name) => key.push_str(name),
        }
    }
    key
}

/// The TTL registry key of an entity type declared `#[redis(cluster)]`
/// whose key pattern is pinned to one Redis Cluster hash slot by a constant
/// hash tag ([`SlotSource::is_fixed`]): [`ttl_registry_key`]'s name with
/// the braces of that tag kept, so that the registry, its companion
/// `:fields` hash and every entity of the type are in one slot and a write
/// touching all of them stays on one node. `None` when the pattern has no
/// tag, or one that depends on a placeholder's value: one registry key
/// cannot share the slot of entities spread over many slots.
///
/// [`ttl_registry_key`] itself stays as it is, so that types without
/// `cluster` keep their registries where they are.
///
/// ```
/// use redis_schema::{KeyPattern, cluster_ttl_registry_key, slot_source};
///
/// let pinned = KeyPattern::parse("job:{{jobs}}:{id}")?;
/// let registry = cluster_ttl_registry_key(&pinned).expect("a constant tag");
/// assert_eq!(registry, "__ttl:job:{jobs}:id");
/// // As a pattern (its braces are literal text) it hashes the entity's tag.
/// let as_pattern = KeyPattern::parse(&registry.replace('{', "{{").replace('}', "}}"))?;
/// assert!(slot_source(&as_pattern).shares_slot_with(&slot_source(&pinned)));
///
/// let per_user = KeyPattern::parse("job:{{{user_id}}}:{id}")?;
/// assert_eq!(cluster_ttl_registry_key(&per_user), None);
/// assert_eq!(cluster_ttl_registry_key(&KeyPattern::parse("job:{id}")?), None);
/// # Ok::<(), redis_schema::PatternError>(())
/// ```
///
/// [`SlotSource::is_fixed`]: crate::SlotSource::is_fixed
pub fn cluster_ttl_registry_key(entity_pattern: &KeyPattern) -> Option<String> {
    if !slot_source(entity_pattern).is_fixed() {
        return None;
    }
    // Where the scan is: before the tag's `{`, inside the tag, after its `}`.
    #[derive(PartialEq)]
    enum At {
        Before,
        InTag,
        After,
    }
    let mut at = At::Before;
    let mut key = String::from(TTL_REGISTRY_PREFIX);
    for segment in entity_pattern.segments() {
        match segment {
            KeySegment::Literal(text) => {
                for ch in text.chars() {
                    match (&at, ch) {
                        (At::Before, '{') => {
                            at = At::InTag;
                            key.push(ch);
                        }
                        (At::InTag, '}') => {
                            at = At::After;
                            key.push(ch);
                        }
                        // The tag is hashed as written, a `{` in it too.
                        (At::InTag, _) => key.push(ch),
                        (_, '{' | '}') => {}
                        _ => key.push(ch),
                    }
                }
            }
            // A fixed tag holds no placeholder, so this is outside it.
            KeySegment::Placeholder(name) => key.push_str(name),
        }
    }
    Some(key)
}

/// The TTL registry of the entities in `slot_key`'s hash slot, for an
/// entity type declared `#[redis(cluster)]` whose hash tag holds a field's
/// value ([`EntityDescriptor::ttl_registry_per_tag`]): one registry per tag
/// value, named after the type's `registry` ([`ttl_registry_key`]) and
/// carrying the tag, so that it, its `:fields` hash and the entities it
/// lists share one slot. `slot_key` is any key of that slot: the entity's,
/// one of its index keys, or the registry itself.
///
/// ```
/// use redis_schema::tagged_ttl_registry_key;
///
/// let registry = "__ttl:run:user_id:id";
/// let of_u1 = tagged_ttl_registry_key(registry, "run:{u1}:r7");
/// assert_eq!(of_u1, "__ttl:run:user_id:id:{u1}");
/// assert_eq!(tagged_ttl_registry_key(registry, "runs:{u1}:by_status:done"), of_u1);
/// assert_eq!(tagged_ttl_registry_key(registry, &of_u1), of_u1);
/// ```
pub fn tagged_ttl_registry_key(registry: &str, slot_key: &str) -> String {
    format!("{registry}:{{{}}}", crate::hashed_text(slot_key))
}

/// The key pattern of [`tagged_ttl_registry_key`]'s keys for entities of
/// `entity_pattern` (for the keyspace manifest): `registry`, then the
/// pattern's hash tag as pattern source. `None` if the pattern has no tag.
///
/// ```
/// use redis_schema::{KeyPattern, tagged_ttl_registry_pattern};
///
/// let runs = KeyPattern::parse("run:{{{user_id}}}:{id}")?;
/// assert_eq!(
///     tagged_ttl_registry_pattern("__ttl:run:user_id:id", &runs).as_deref(),
///     Some("__ttl:run:user_id:id:{{{user_id}}}")
/// );
/// # Ok::<(), redis_schema::PatternError>(())
/// ```
pub fn tagged_ttl_registry_pattern(registry: &str, entity_pattern: &KeyPattern) -> Option<String> {
    let crate::SlotSource::Tag(parts) = slot_source(entity_pattern) else {
        return None;
    };
    let mut pattern = format!("{registry}:{{{{");
    for part in parts {
        match part {
            crate::TagPart::Literal(text) => {
                pattern.push_str(&crate::escape_braces(&text));
            }
            crate::TagPart::Field(name) => {
                pattern.push('{');
                pattern.push_str(&name);
                pattern.push('}');
            }
        }
    }
    pattern.push_str("}}");
    Some(pattern)
}

/// The TTL registry key versions before 0.2 used: the entity's key pattern
/// source plus `:__ttl` (`session:{id}:__ttl`). Kept so that
/// `index::rebuild` can move such a registry to [`ttl_registry_key`].
///
/// ```
/// assert_eq!(redis_schema::legacy_ttl_registry_key("session:{id}"), "session:{id}:__ttl");
/// ```
pub fn legacy_ttl_registry_key(entity_pattern: &str) -> String {
    format!("{entity_pattern}:__ttl")
}

/// Everything known statically about one entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityDescriptor {
    /// The Rust type name, e.g. `"Job"`.
    pub name: &'static str,
    /// The key pattern source, e.g. `"job:{id}"`.
    pub key_pattern: &'static str,
    /// The key pattern as parts; empty for records, which have no key.
    pub key: &'static [PatternPart],
    /// Time to live in milliseconds, if entities expire.
    pub ttl_ms: Option<u64>,
    /// The stored fields, in declaration order.
    pub fields: &'static [FieldDescriptor],
    /// Secondary indexes maintained on every write.
    pub indexes: &'static [IndexDescriptor],
    /// The stream an entry is appended to on create, if any.
    pub stream: Option<StreamDescriptor>,
    /// The TTL registry ([`ttl_registry_key`]) for entity types with
    /// indexes, whose entries must not outlive an expiring entity (the
    /// name of the registries, when [`ttl_registry_per_tag`](Self::ttl_registry_per_tag)).
    pub ttl_registry: Option<&'static str>,
    /// Append logs declared on the entity (`#[redis(log(...))]`).
    pub logs: &'static [LogDescriptor],
    /// The hash field of the `#[redis(version)]` field, if any: every write
    /// stores the previous version plus one (a new entity gets 1).
    pub version: Option<&'static str>,
    /// The type keeps one TTL registry per hash tag value instead of one
    /// for the type: it is declared `#[redis(cluster)]` and its hash tag
    /// holds a field's value, so that a write's registry entry is in the
    /// entity's slot. [`ttl_registry`](Self::ttl_registry) names them
    /// ([`tagged_ttl_registry_key`]).
    pub ttl_registry_per_tag: bool,
    /// Declared `#[redis(cluster)]`: every key a write touches was checked
    /// at compile time to share the entity's hash slot (then a pinned type's
    /// [`ttl_registry`](Self::ttl_registry) is [`cluster_ttl_registry_key`]).
    pub cluster: bool,
}

impl EntityDescriptor {
    /// The field stored under `hash_name` in the Redis hash.
    pub fn field(&self, hash_name: &str) -> Option<&FieldDescriptor> {
        self.fields
            .iter()
            .find(|field| field.hash_name == hash_name)
    }

    /// The field whose Rust name is `rust_name`.
    pub fn field_by_rust_name(&self, rust_name: &str) -> Option<&FieldDescriptor> {
        self.fields
            .iter()
            .find(|field| field.rust_name == rust_name)
    }

    /// The fields that appear in the key pattern, in declaration order.
    pub fn key_fields(&self) -> impl Iterator<Item = &FieldDescriptor> {
        self.fields.iter().filter(|field| field.is_key)
    }

    /// The index called `name`.
    pub fn index(&self, name: &str) -> Option<&IndexDescriptor> {
        self.indexes.iter().find(|index| index.name == name)
    }

    /// The position of `index` in [`indexes`](Self::indexes), if it is one
    /// of this entity's (compared by address: descriptors are statics).
    pub fn index_position(&self, index: &IndexDescriptor) -> Option<usize> {
        self.indexes
            .iter()
            .position(|candidate| std::ptr::eq(candidate, index))
    }

    /// [`ttl_ms`](Self::ttl_ms) as a [`Duration`].
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl_ms.map(Duration::from_millis)
    }

    /// The hash name of the field a [`PatternPart::Field`] refers to.
    pub fn hash_name(&self, field: usize) -> &'static str {
        self.fields.get(field).map_or("", |f| f.hash_name)
    }

    /// Whether an index key, score or unique value is built from the hash
    /// field `hash_name` (a write that changes it must move index entries).
    pub fn is_indexed_field(&self, hash_name: &str) -> bool {
        self.indexes.iter().any(|index| {
            index.value_field == Some(hash_name)
                || index.key.iter().any(
                    |part| matches!(part, PatternPart::Field(n) if self.hash_name(*n) == hash_name),
                )
        })
    }

    /// The hash fields index keys, scores and unique values are built from,
    /// each once, in index order (key fields first, then the value field).
    pub fn indexed_fields(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for index in self.indexes {
            let key_fields = index.key.iter().filter_map(|part| match part {
                PatternPart::Field(n) => Some(self.hash_name(*n)),
                PatternPart::Literal(_) => None,
            });
            for name in key_fields.chain(index.value_field) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Renders `parts` (this entity's key or one of its index keys) from
    /// stored values: `value(hash_name)` gives a field's stored text. `None`
    /// if a value is missing or could not be part of a key.
    pub fn render<'v>(
        &self,
        parts: &[PatternPart],
        value: impl Fn(&str) -> Option<&'v str>,
    ) -> Option<String> {
        let mut key = String::new();
        for part in parts {
            match part {
                PatternPart::Literal(text) => key.push_str(text),
                PatternPart::Field(n) => {
                    let text = value(self.hash_name(*n))?;
                    validate_key_value(text).ok()?;
                    key.push_str(text);
                }
            }
        }
        Some(key)
    }

    /// The entity key of an index member, the inverse of joining the key's
    /// placeholder values with `:`; `None` if the member does not fit.
    pub fn key_of_member(&self, member: &str) -> Option<String> {
        let mut values = member.split(':');
        let mut key = String::with_capacity(member.len() + 16);
        for part in self.key {
            match part {
                PatternPart::Literal(text) => key.push_str(text),
                PatternPart::Field(_) => {
                    let value = values.next()?;
                    validate_key_value(value).ok()?;
                    key.push_str(value);
                }
            }
        }
        values.next().is_none().then_some(key)
    }

    /// The index member of an entity key, the inverse of
    /// [`key_of_member`](Self::key_of_member): the key's placeholder values
    /// joined with `:`. `None` if `key` is not a key of this pattern. Each
    /// value ends where the pattern's next literal text begins, so
    /// patterns whose placeholders are separated by literals read back
    /// (for `run:{user_id}:{id}`, `run:u1:r7` is member `u1:r7`).
    pub fn member_of_key(&self, key: &str) -> Option<String> {
        let mut rest = key;
        let mut values: Vec<&str> = Vec::new();
        let mut parts = self.key.iter().peekable();
        while let Some(part) = parts.next() {
            match part {
                PatternPart::Literal(text) => rest = rest.strip_prefix(text)?,
                PatternPart::Field(_) => {
                    let end = match parts.peek() {
                        Some(PatternPart::Literal(next)) => rest.find(next)?,
                        _ => rest.len(),
                    };
                    let (value, after) = rest.split_at(end);
                    validate_key_value(value).ok()?;
                    values.push(value);
                    rest = after;
                }
            }
        }
        (rest.is_empty() && !values.is_empty()).then(|| values.join(":"))
    }
}

/// One stored field of an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDescriptor {
    /// The field's name in the Rust struct (without any `r#`).
    pub rust_name: &'static str,
    /// The hash field it is stored under, after renaming.
    pub hash_name: &'static str,
    /// Whether it is an `Option`; `None` is stored as an absent hash field.
    pub optional: bool,
    /// Whether it fills a placeholder of the entity's key pattern.
    pub is_key: bool,
    /// How the value is written into the hash.
    pub encoding: FieldEncoding,
}

/// How a field's value is encoded as a hash field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldEncoding {
    /// UTF-8 text, stored as is.
    Text,
    /// An integer in decimal, so `HINCRBY` and Lua can use it.
    Integer,
    /// A floating-point number in its shortest round-trip decimal form.
    Float,
    /// A boolean.
    Bool,
    /// A unit enum stored as its (renamed) variant name.
    Enum,
    /// Raw bytes.
    Bytes,
    /// A point in time as integer milliseconds since the Unix epoch, so it can
    /// be used as a sorted-index score.
    TimestampMillis,
    /// A value serialized as JSON.
    Json,
    /// A user-provided codec.
    Custom,
}

/// What kind of Redis structure backs an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexKind {
    /// A set of ids per indexed value.
    Set,
    /// A sorted set of ids scored by a numeric field.
    Sorted,
    /// One id per indexed value; a second entity with the same value is
    /// rejected.
    Unique,
}

impl IndexKind {
    /// The Redis type of the key that backs an index of this kind, as
    /// `TYPE` names it.
    pub fn redis_type(self) -> &'static str {
        match self {
            IndexKind::Set => "set",
            IndexKind::Sorted => "zset",
            IndexKind::Unique => "hash",
        }
    }
}

/// One secondary index of an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDescriptor {
    /// The kind of index.
    pub kind: IndexKind,
    /// The index name, used for generated query methods and introspection.
    pub name: &'static str,
    /// The index key pattern source, e.g. `"jobs:status:{status}"`.
    pub key_pattern: &'static str,
    /// The index key pattern as parts, resolved against the entity's fields.
    pub key: &'static [PatternPart],
    /// The hash name of the field whose value places an entity in the
    /// index: for [`IndexKind::Sorted`] its score, for [`IndexKind::Unique`]
    /// the value that must be unique; `None` for [`IndexKind::Set`].
    pub value_field: Option<&'static str>,
    /// Declared `cross_slot`: on a Redis Cluster the index key may be in
    /// another hash slot than the entity, so the write script records the
    /// move in the entity's [`pending_index_key`](crate::pending_index_key)
    /// and the client applies it right after (see the runtime's
    /// `cross_slot::pending`). On one server it is written in the same script
    /// as every other index.
    pub cross_slot: bool,
}

/// A per-entity append log declared with `#[redis(log(...))]`: a Redis list
/// at a key pattern with one placeholder, the entity's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDescriptor {
    /// The log's name; its accessor is `<name>_log()`.
    pub name: &'static str,
    /// The key pattern source, e.g. `"job:{id}:output"`.
    pub key_pattern: &'static str,
    /// Time to live in milliseconds, refreshed on every append, if any.
    pub ttl_ms: Option<u64>,
    /// The most lines kept (`LTRIM`), if bounded.
    pub max_len: Option<u64>,
}

/// The stream an entity is appended to when created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDescriptor {
    /// The stream key, e.g. `"jobs:stream"`.
    pub key: &'static str,
    /// Approximate maximum length (`XADD MAXLEN ~`), if trimmed.
    pub maxlen: Option<NonZeroU64>,
    /// Declared `stream_cross_slot`: on a Redis Cluster the stream may be
    /// in another hash slot than the entity, so the create records the
    /// entry beside the entity and the client appends it just after
    /// (see [`pending_index_key`](crate::pending_index_key)). On one server
    /// the entry is appended in the write as always.
    pub cross_slot: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashed_text;

    const FIELDS: &[FieldDescriptor] = &[
        FieldDescriptor {
            rust_name: "id",
            hash_name: "id",
            optional: false,
            is_key: true,
            encoding: FieldEncoding::Text,
        },
        FieldDescriptor {
            rust_name: "user_id",
            hash_name: "userId",
            optional: false,
            is_key: false,
            encoding: FieldEncoding::Text,
        },
        FieldDescriptor {
            rust_name: "created_at",
            hash_name: "created_at",
            optional: false,
            is_key: false,
            encoding: FieldEncoding::TimestampMillis,
        },
        FieldDescriptor {
            rust_name: "error",
            hash_name: "error",
            optional: true,
            is_key: false,
            encoding: FieldEncoding::Text,
        },
    ];

    const INDEXES: &[IndexDescriptor] = &[
        IndexDescriptor {
            kind: IndexKind::Sorted,
            name: "by_user",
            key_pattern: "jobs:user:{user_id}",
            key: &[PatternPart::Literal("jobs:user:"), PatternPart::Field(1)],
            value_field: Some("created_at"),
            cross_slot: false,
        },
        IndexDescriptor {
            kind: IndexKind::Set,
            name: "by_status",
            key_pattern: "jobs:status:{status}",
            key: &[PatternPart::Literal("jobs:status:"), PatternPart::Field(3)],
            value_field: None,
            cross_slot: false,
        },
    ];

    const JOB: EntityDescriptor = EntityDescriptor {
        name: "Job",
        key_pattern: "job:{id}",
        key: &[PatternPart::Literal("job:"), PatternPart::Field(0)],
        ttl_ms: None,
        fields: FIELDS,
        indexes: INDEXES,
        stream: Some(StreamDescriptor {
            cross_slot: false,
            key: "jobs:stream",
            maxlen: NonZeroU64::new(10_000),
        }),
        ttl_registry: None,
        ttl_registry_per_tag: false,
        logs: &[],
        version: None,
        cluster: false,
    };

    #[test]
    fn cluster_registries_hash_the_pinned_entity_tag() {
        for (pattern, registry) in [
            ("job:{{jobs}}:{id}", "__ttl:job:{jobs}:id"),
            ("{{all}}:job:{id}", "__ttl:{all}:job:id"),
            ("t:{{a-b}}:{x}:{y}:{{c}}", "__ttl:t:{a-b}:x:y:c"),
            ("a}}b:{{j{{k}}:{id}", "__ttl:ab:{j{k}:id"),
        ] {
            let parsed = KeyPattern::parse(pattern).expect("pattern");
            let key = cluster_ttl_registry_key(&parsed).expect("a fixed tag");
            assert_eq!(key, registry, "{pattern}");
            let values: Vec<&str> = parsed.placeholders().map(|_| "v7").collect();
            let entity = parsed.render(&values).expect("safe values");
            assert_eq!(hashed_text(&key), hashed_text(&entity), "{pattern}");
            assert_eq!(hashed_text(&format!("{key}:fields")), hashed_text(&entity));
            // The name without `cluster` is the same name without braces.
            assert_eq!(ttl_registry_key(&parsed), key.replace(['{', '}'], ""));
        }
        for unpinned in [
            "job:{id}",
            "job:{{{user_id}}}:{id}",
            "j:{{u-{u}}}:{id}",
            "j:{{}}:{id}",
        ] {
            let parsed = KeyPattern::parse(unpinned).expect("pattern");
            assert_eq!(cluster_ttl_registry_key(&parsed), None, "{unpinned}");
        }
    }

    #[test]
    fn looks_up_fields_by_hash_name() {
        assert_eq!(JOB.field("userId").map(|f| f.rust_name), Some("user_id"));
        assert_eq!(JOB.field("user_id"), None);
        assert_eq!(JOB.field("missing"), None);
        assert!(JOB.field("error").is_some_and(|f| f.optional));
    }

    #[test]
    fn looks_up_fields_by_rust_name_and_key() {
        assert_eq!(
            JOB.field_by_rust_name("user_id").map(|f| f.hash_name),
            Some("userId")
        );
        assert_eq!(
            JOB.key_fields().map(|f| f.rust_name).collect::<Vec<_>>(),
            ["id"]
        );
    }

    #[test]
    fn looks_up_indexes_and_stream() {
        assert_eq!(
            JOB.index("by_user").and_then(|i| i.value_field),
            Some("created_at")
        );
        assert_eq!(JOB.index("by_status").map(|i| i.kind), Some(IndexKind::Set));
        assert_eq!(JOB.index("nope"), None);
        assert_eq!(JOB.stream.map(|s| s.key), Some("jobs:stream"));
    }

    #[test]
    fn ttl_as_duration() {
        assert_eq!(JOB.ttl(), None);
        let session = EntityDescriptor {
            ttl_ms: Some(1_500),
            ..JOB
        };
        assert_eq!(session.ttl(), Some(Duration::from_millis(1_500)));
    }

    #[test]
    fn keys_of_members_and_indexed_values() {
        assert_eq!(JOB.key_of_member("42").as_deref(), Some("job:42"));
        assert_eq!(JOB.key_of_member("4:2"), None, "one placeholder, one value");
        assert_eq!(JOB.key_of_member(""), None);
        assert_eq!(JOB.member_of_key("job:42").as_deref(), Some("42"));
        assert_eq!(JOB.member_of_key("job:"), None, "an empty value");
        assert_eq!(JOB.member_of_key("jobs:42"), None);
        let run = EntityDescriptor {
            key: &[
                PatternPart::Literal("run:"),
                PatternPart::Field(1),
                PatternPart::Literal(":"),
                PatternPart::Field(0),
            ],
            ..JOB
        };
        assert_eq!(run.member_of_key("run:u1:r7").as_deref(), Some("u1:r7"));
        let key = run.key_of_member("u1:r7").expect("a key");
        assert_eq!(run.member_of_key(&key).as_deref(), Some("u1:r7"));
        assert_eq!(run.member_of_key("run:u1"), None);
        assert_eq!(JOB.indexed_fields(), ["userId", "created_at", "error"]);
        let values = |name: &str| match name {
            "userId" => Some("u1"),
            "error" => Some("bad value"),
            _ => None,
        };
        assert_eq!(
            JOB.render(JOB.indexes[0].key, values).as_deref(),
            Some("jobs:user:u1")
        );
        assert_eq!(JOB.render(JOB.indexes[1].key, values), None, "whitespace");
        static STATIC_JOB: EntityDescriptor = JOB;
        assert_eq!(STATIC_JOB.index_position(&STATIC_JOB.indexes[1]), Some(1));
        let copy = STATIC_JOB.indexes[1];
        assert_eq!(
            STATIC_JOB.index_position(&copy),
            None,
            "compared by address"
        );
    }
}

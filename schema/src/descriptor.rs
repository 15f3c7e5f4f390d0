//! Static descriptors of entities, fields, indexes and streams.
//!
//! The derive macro fills these in as `const`/`static` data so that the
//! runtime, tools and tests can introspect an entity without the macro having
//! to generate that logic. They hold only `&'static` data and are `Copy`, so a
//! descriptor costs nothing at run time.
//!
//! Key patterns are stored as source text (`"job:{id}"`) rather than as a
//! parsed [`KeyPattern`](crate::KeyPattern) because parsing allocates and so
//! cannot happen in a `const`; the macro has already validated them, and the
//! runtime parses each one once.
//!
//! ```
//! use redis_schema::{EntityDescriptor, FieldDescriptor, FieldEncoding};
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
//!     ttl_ms: Some(7 * 24 * 60 * 60 * 1000),
//!     fields: FIELDS,
//!     indexes: &[],
//!     stream: None,
//! };
//!
//! assert_eq!(SESSION.field("createdAt").map(|f| f.rust_name), Some("created_at"));
//! assert_eq!(SESSION.key_fields().count(), 1);
//! ```

use std::time::Duration;

/// Everything known statically about one entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityDescriptor {
    /// The Rust type name, e.g. `"Job"`.
    pub name: &'static str,
    /// The key pattern source, e.g. `"job:{id}"`.
    pub key_pattern: &'static str,
    /// Time to live in milliseconds, if entities expire.
    pub ttl_ms: Option<u64>,
    /// The stored fields, in declaration order.
    pub fields: &'static [FieldDescriptor],
    /// Secondary indexes maintained on every write.
    pub indexes: &'static [IndexDescriptor],
    /// The stream an entry is appended to on create, if any.
    pub stream: Option<StreamDescriptor>,
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

    /// [`ttl_ms`](Self::ttl_ms) as a [`Duration`].
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl_ms.map(Duration::from_millis)
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

/// One secondary index of an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDescriptor {
    /// The kind of index.
    pub kind: IndexKind,
    /// The index name, used for generated query methods and introspection.
    pub name: &'static str,
    /// The index key pattern source, e.g. `"jobs:status:{status}"`.
    pub key_pattern: &'static str,
    /// For [`IndexKind::Sorted`], the hash name of the field that gives the
    /// score; for [`IndexKind::Unique`], the field whose value must be unique.
    pub score_field: Option<&'static str>,
}

/// The stream an entity is appended to when created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDescriptor {
    /// The stream key, e.g. `"jobs:stream"`.
    pub key: &'static str,
    /// Approximate maximum length (`XADD MAXLEN ~`), if trimmed.
    pub maxlen: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

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
            score_field: Some("created_at"),
        },
        IndexDescriptor {
            kind: IndexKind::Set,
            name: "by_status",
            key_pattern: "jobs:status:{status}",
            score_field: None,
        },
    ];

    const JOB: EntityDescriptor = EntityDescriptor {
        name: "Job",
        key_pattern: "job:{id}",
        ttl_ms: None,
        fields: FIELDS,
        indexes: INDEXES,
        stream: Some(StreamDescriptor {
            key: "jobs:stream",
            maxlen: Some(10_000),
        }),
    };

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
            JOB.index("by_user").and_then(|i| i.score_field),
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
}

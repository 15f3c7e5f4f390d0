//! The pure, I/O-free model of a Redis keyspace.
//!
//! This crate is shared by both halves of the data layer:
//!
//! * the `redis-derive` proc macro uses it at compile time to parse and
//!   validate what a user declared (key patterns, TTL literals, rename rules)
//!   and to report mistakes as compile errors;
//! * the `redis-runtime` crate uses it at run time to build and split keys
//!   safely and to introspect entities through their descriptors.
//!
//! Because the same code validates at compile time and renders at run time,
//! the two cannot disagree about what a key looks like. Nothing here touches
//! the network or the file system, and no input makes it panic.
//!
//! | module | concept |
//! | --- | --- |
//! | [`key`] | key patterns such as `user:{id}`, and the rules for values placed in them |
//! | [`overlap`](mod@overlap) | whether two key patterns can produce the same key, with a witness |
//! | [`duration`] | TTL literals such as `"7d"` |
//! | [`case`] | rename rules such as `camelCase` |
//! | [`descriptor`] | static descriptors the generated code fills in |
//! | [`owned`] | every key an entity type owns, for the collision checks and the manifest |
//!
//! ```
//! use redis_schema::{KeyPattern, RenameRule, parse_ttl};
//!
//! let key = KeyPattern::parse("session:{id}")?;
//! assert_eq!(key.render(&["abc"])?, "session:abc");
//! assert_eq!(parse_ttl("7d")?.as_secs(), 7 * 86_400);
//! assert_eq!(RenameRule::CamelCase.apply("user_id"), "userId");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod case;
pub mod descriptor;
pub mod duration;
pub mod key;
pub mod overlap;
pub mod owned;
pub mod reserved;
pub mod slot;

pub use case::RenameRule;
pub use descriptor::{
    EntityDescriptor, FieldDescriptor, FieldEncoding, IndexDescriptor, IndexKind, LogDescriptor,
    PatternPart, StreamDescriptor, cluster_ttl_registry_key, legacy_ttl_registry_key,
    tagged_ttl_registry_key, tagged_ttl_registry_pattern, ttl_registry_key,
};
pub use duration::{DurationError, format_ttl, parse_ttl};
pub use key::{
    KeyPattern, KeySegment, KeyValueError, PatternError, escape_braces, validate_key_value,
};
pub use overlap::{Overlap, first_overlap, overlap};
pub use owned::{IndexLayout, KeyLayout, OwnedKey, OwnedRole};
pub use slot::{
    PENDING_INDEX_PREFIX, PENDING_STREAM_ENTRY, PENDING_UNIQUE_VALUE, PENDING_WRITES, SlotSource,
    TagPart, entity_of_pending_index_key, hashed_text, pending_index_key, pending_index_lease_key,
    pending_index_patterns, slot_guard_key, slot_source, unique_claims_key, unique_claims_pattern,
    unique_fence_key, unique_fence_pattern,
};

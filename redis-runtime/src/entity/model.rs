//! What an entity is to the runtime: the traits `#[derive(RedisEntity)]`
//! implements, the key it builds, and the values entity operations
//! return. Re-exported by [`entity`](super), where they are documented
//! for users.

use std::time::Duration;

use crate::codec::{FieldSink, RawFields, Record, reply_pairs};
use crate::error::Result;

/// A stored entity: a [`Record`] with a key. Implemented by the derive.
pub trait Entity: Record {
    /// This entity's key, built from its key fields (validated: `INVALID_KEY`
    /// if a value could break out of its segment).
    fn key(&self) -> Result<String>;

    /// The id stored in indexes: the key's placeholder values joined by `:`.
    fn member(&self) -> Result<String>;

    /// Key and member together (the derive builds them in one pass).
    fn entity_key(&self) -> Result<EntityKey> {
        Ok(EntityKey {
            key: self.key()?,
            member: self.member()?,
        })
    }

    /// Checks that every value an index key is built from is key-safe.
    fn check_index_values(&self) -> Result<()> {
        Ok(())
    }

    /// Absolute expiry in epoch milliseconds, for `#[redis(expires_at)]`.
    fn expires_at_ms(&self) -> Result<Option<i64>> {
        Ok(None)
    }
}

/// A typed partial update of an entity (the derive's `…Patch` struct).
pub trait Patch: Send + Sync {
    /// The entity this patches.
    type Entity: Entity;

    /// Writes the fields to set ([`FieldSink::put`]) and to remove
    /// ([`FieldSink::absent`]); untouched fields are not mentioned.
    fn write_patch(&self, sink: &mut dyn FieldSink) -> Result<()>;

    /// Checks that patched index values are key-safe.
    fn check_index_values(&self) -> Result<()> {
        Ok(())
    }

    /// A new absolute expiry, if the patch sets the `expires_at` field.
    fn expires_at_ms(&self) -> Result<Option<i64>> {
        Ok(None)
    }
}

/// An entity's concrete key and its member id (the key's placeholder
/// values joined by `:`, as stored in indexes). Built by generated code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityKey {
    /// The hash key, e.g. `user:42`.
    pub key: String,
    /// The id stored in indexes, e.g. `42`.
    pub member: String,
}

/// What a write does to the entity's TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlChange {
    /// Keep whatever time is left (the default for update and patch).
    Keep,
    /// Restart the declared TTL (`ttl = "…"`) from now.
    Refresh,
}

/// An entity's remaining lifetime, from [`ttl`](super::ttl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// No such entity.
    Missing,
    /// It exists and never expires.
    Persistent,
    /// It expires after this long.
    ExpiresIn(Duration),
}

/// What one write script call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Whether the entity existed before.
    pub existed: bool,
    /// The stream entry id when the write enqueued one (creation of an
    /// entity declared with a stream). On a Redis Cluster, for a
    /// `stream_cross_slot` stream, the entry is appended just after the
    /// write, and this is `None` when another client appended it (it held
    /// the entity's pending moves) or it is left for `index::settle`.
    pub stream_id: Option<String>,
}

/// What a conditional write ([`patch_if`](super::patch_if)) did.
#[derive(Debug, Clone, PartialEq)]
pub enum Conditional<E> {
    /// Every expected value held, and the write was applied.
    Applied,
    /// A field did not hold its expected value: nothing was written.
    /// `current` is the entity as it is stored now, read in the same step.
    Failed {
        /// The stored entity the condition was checked against.
        current: E,
    },
}

impl<E> Conditional<E> {
    /// Whether the write was applied.
    pub fn applied(&self) -> bool {
        matches!(self, Conditional::Applied)
    }
}

/// Decodes one `HGETALL` reply; an empty hash is an absent entity.
pub fn decode_hash<E: Record>(key: &str, reply: &redis::Value) -> Result<Option<E>> {
    let pairs = reply_pairs(key, reply)?;
    if pairs.is_empty() {
        return Ok(None);
    }
    let fields: &RawFields<'_> = &pairs;
    E::read_fields(key, fields).map(Some)
}

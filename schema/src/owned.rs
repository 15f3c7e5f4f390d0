//! Every key an entity type owns, listed in one place: the derive checks
//! at compile time that no two of them can be the same Redis key, and the
//! runtime's keyspace checks the same across every type of an application
//! and describes them in its manifest.

use crate::descriptor::{EntityDescriptor, IndexKind, tagged_ttl_registry_pattern};
use crate::key::{KeyPattern, PatternError, escape_braces};
use crate::slot::{pending_index_patterns, unique_claims_pattern, unique_fence_pattern};

/// The keys of one entity type as declared: what [`KeyLayout::owned_keys`]
/// lists them from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout<'a> {
    /// The entity key pattern, e.g. `"user:{id}"`.
    pub key_pattern: &'a str,
    /// Its secondary indexes, in declaration order.
    pub indexes: Vec<IndexLayout<'a>>,
    /// The TTL registry key, if the type keeps one.
    pub ttl_registry: Option<&'a str>,
    /// Whether the registry is kept per hash tag of the entity key.
    pub ttl_registry_per_tag: bool,
    /// The outbox stream's key (a fixed key, braces and all), if any, and
    /// whether it is `stream_cross_slot`.
    pub stream: Option<(&'a str, bool)>,
    /// The append logs: name and key pattern.
    pub logs: Vec<(&'a str, &'a str)>,
}

/// One secondary index of a [`KeyLayout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexLayout<'a> {
    /// The index name.
    pub name: &'a str,
    /// Its key pattern.
    pub key_pattern: &'a str,
    /// Set, sorted or unique.
    pub kind: IndexKind,
    /// Declared `cross_slot`.
    pub cross_slot: bool,
}

/// What an owned key is for. Serialized (feature `serde`) as
/// `{"role": "index", "name": "by_email"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(
    feature = "serde",
    serde(tag = "role", content = "name", rename_all = "snake_case")
)]
pub enum OwnedRole<'a> {
    /// The entity's hash.
    Entity,
    /// A secondary index, by name.
    Index(&'a str),
    /// The TTL registry (a sorted set of ids by expiry).
    TtlRegistry,
    /// The TTL registry's companion hash of indexed values.
    TtlRegistryFields,
    /// The outbox stream written on create.
    Stream,
    /// An append log, by name.
    Log(&'a str),
    /// On a Redis Cluster, the record of the `cross_slot` moves not
    /// applied yet ([`crate::pending_index_key`]).
    PendingIndexMoves,
    /// The lease of the client applying those moves.
    PendingIndexLease,
    /// On a Redis Cluster, the entity's unique fence
    /// ([`crate::unique_fence_key`]).
    UniqueFence,
    /// On a Redis Cluster, the claims hash of a `cross_slot` unique index,
    /// by the index's name ([`crate::unique_claims_key`]).
    UniqueClaims(&'a str),
}

impl std::fmt::Display for OwnedRole<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnedRole::Entity => f.write_str("entity hash"),
            OwnedRole::Index(name) => write!(f, "index {name}"),
            OwnedRole::TtlRegistry => f.write_str("TTL registry"),
            OwnedRole::TtlRegistryFields => f.write_str("TTL registry fields"),
            OwnedRole::Stream => f.write_str("stream"),
            OwnedRole::Log(name) => write!(f, "log {name}"),
            OwnedRole::PendingIndexMoves => f.write_str("pending index moves"),
            OwnedRole::PendingIndexLease => f.write_str("pending index lease"),
            OwnedRole::UniqueFence => f.write_str("unique fence"),
            OwnedRole::UniqueClaims(name) => write!(f, "unique claims of {name}"),
        }
    }
}

/// One key pattern an entity type owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedKey<'a> {
    /// What it is for.
    pub role: OwnedRole<'a>,
    /// Its pattern source (`"jobs:user:{user_id}"`); a stream's is its key
    /// itself (`"jobs:{jobs}:stream"`), whose braces are literal.
    pub pattern: String,
    /// The Redis type stored there, as `TYPE` names it.
    pub redis_type: &'static str,
}

impl OwnedKey<'_> {
    /// Its pattern, parsed (a stream's key as the fixed key it is).
    pub fn parse(&self) -> Result<KeyPattern, PatternError> {
        if self.role == OwnedRole::Stream {
            KeyPattern::parse(&escape_braces(&self.pattern))
        } else {
            KeyPattern::parse(&self.pattern)
        }
    }
}

impl<'a> KeyLayout<'a> {
    /// Every key pattern the type owns, in a fixed order: hash, indexes,
    /// TTL registry and its field hash, stream, logs, then the companions
    /// of the `cross_slot` protocol on a cluster (pending record and
    /// lease, unique fence, each unique index's claims hash).
    ///
    /// ```
    /// use redis_schema::{IndexKind, IndexLayout, KeyLayout, OwnedRole};
    ///
    /// let layout = KeyLayout {
    ///     key_pattern: "user:{id}",
    ///     indexes: vec![IndexLayout {
    ///         name: "by_email",
    ///         key_pattern: "users:by_email",
    ///         kind: IndexKind::Unique,
    ///         cross_slot: false,
    ///     }],
    ///     ttl_registry: None,
    ///     ttl_registry_per_tag: false,
    ///     stream: None,
    ///     logs: vec![],
    /// };
    /// let roles: Vec<OwnedRole> = layout.owned_keys().iter().map(|k| k.role).collect();
    /// assert_eq!(roles, [OwnedRole::Entity, OwnedRole::Index("by_email")]);
    /// ```
    pub fn owned_keys(&self) -> Vec<OwnedKey<'a>> {
        let key = |role, pattern: String, redis_type| OwnedKey {
            role,
            pattern,
            redis_type,
        };
        let mut keys = vec![key(OwnedRole::Entity, self.key_pattern.into(), "hash")];
        for index in &self.indexes {
            let pattern = index.key_pattern.into();
            keys.push(key(
                OwnedRole::Index(index.name),
                pattern,
                index.kind.redis_type(),
            ));
        }
        if let Some(registry) = self.ttl_registry_pattern() {
            let fields = format!("{registry}:fields");
            keys.push(key(OwnedRole::TtlRegistry, registry, "zset"));
            keys.push(key(OwnedRole::TtlRegistryFields, fields, "hash"));
        }
        if let Some((stream, _)) = self.stream {
            keys.push(key(OwnedRole::Stream, stream.into(), "stream"));
        }
        for (name, pattern) in &self.logs {
            keys.push(key(OwnedRole::Log(name), (*pattern).into(), "list"));
        }
        if self.defers_on_cluster()
            && let Some((record, lease)) = pending_index_patterns(self.key_pattern)
        {
            keys.push(key(OwnedRole::PendingIndexMoves, record, "hash"));
            keys.push(key(OwnedRole::PendingIndexLease, lease, "string"));
        }
        let cross_slot_unique = self
            .indexes
            .iter()
            .filter(|index| index.cross_slot && index.kind == IndexKind::Unique);
        for (n, index) in cross_slot_unique.enumerate() {
            if n == 0
                && let Some(fence) = unique_fence_pattern(self.key_pattern)
            {
                keys.push(key(OwnedRole::UniqueFence, fence, "string"));
            }
            if let Some(claims) = unique_claims_pattern(index.key_pattern) {
                keys.push(key(OwnedRole::UniqueClaims(index.name), claims, "hash"));
            }
        }
        keys
    }

    /// Whether, on a Redis Cluster, writes record moves in a pending
    /// record ([`EntityDescriptor::defers_on_cluster`]).
    pub fn defers_on_cluster(&self) -> bool {
        defers_on_cluster(
            self.indexes.iter().map(|index| index.cross_slot),
            self.stream.is_some_and(|(_, cross_slot)| cross_slot),
        )
    }

    /// The TTL registry's key as a pattern: the fixed key, or for a
    /// registry per tag the pattern of every tag's registry.
    pub fn ttl_registry_pattern(&self) -> Option<String> {
        registry_pattern(
            self.ttl_registry?,
            self.ttl_registry_per_tag,
            self.key_pattern,
        )
    }
}

/// Whether a type with these indexes (`cross_slot` each) and stream
/// defers on a cluster: any part of it is `cross_slot`.
pub(crate) fn defers_on_cluster(
    mut indexes_cross_slot: impl Iterator<Item = bool>,
    stream_cross_slot: bool,
) -> bool {
    indexes_cross_slot.any(|cross_slot| cross_slot) || stream_cross_slot
}

/// The pattern of the TTL `registry` of entities at `key_pattern`: the
/// fixed key, or `per_tag`, the pattern of every tag's registry.
pub(crate) fn registry_pattern(registry: &str, per_tag: bool, key_pattern: &str) -> Option<String> {
    if !per_tag {
        return Some(escape_braces(registry));
    }
    KeyPattern::parse(key_pattern)
        .ok()
        .and_then(|pattern| tagged_ttl_registry_pattern(registry, &pattern))
}

impl EntityDescriptor {
    /// Whether, on a Redis Cluster, the writes of this type record effects
    /// outside its hash slot in its [pending index key](crate::pending_index_key)
    /// for the client to apply just after: entries of `cross_slot` indexes,
    /// or the entry of a `stream_cross_slot` stream.
    pub fn defers_on_cluster(&self) -> bool {
        crate::owned::defers_on_cluster(
            self.indexes.iter().map(|index| index.cross_slot),
            self.stream.is_some_and(|stream| stream.cross_slot),
        )
    }

    /// Its TTL registry as a key pattern: the one key (a brace in it is
    /// literal text, a hash tag, so escaped), or, with a registry per hash
    /// tag value, the pattern of those keys. `None` for a type without
    /// one.
    ///
    /// ```
    /// # use redis_schema::EntityDescriptor;
    /// # fn show(runs: &EntityDescriptor) {
    /// // A type tagged by `user_id`: "__ttl:run:user_id:id:{{{user_id}}}"
    /// let pattern = runs.ttl_registry_pattern();
    /// # let _ = pattern;
    /// # }
    /// ```
    pub fn ttl_registry_pattern(&self) -> Option<String> {
        let registry = self.ttl_registry?;
        crate::owned::registry_pattern(registry, self.ttl_registry_per_tag, self.key_pattern)
    }

    /// This type's [`KeyLayout`].
    pub fn key_layout(&self) -> KeyLayout<'static> {
        KeyLayout {
            key_pattern: self.key_pattern,
            indexes: self
                .indexes
                .iter()
                .map(|index| IndexLayout {
                    name: index.name,
                    key_pattern: index.key_pattern,
                    kind: index.kind,
                    cross_slot: index.cross_slot,
                })
                .collect(),
            ttl_registry: self.ttl_registry,
            ttl_registry_per_tag: self.ttl_registry_per_tag,
            stream: self.stream.map(|stream| (stream.key, stream.cross_slot)),
            logs: self
                .logs
                .iter()
                .map(|log| (log.name, log.key_pattern))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cross_slot_layout_owns_the_protocol_companions_and_a_fixed_stream() {
        let layout = KeyLayout {
            key_pattern: "member:{id}",
            indexes: vec![IndexLayout {
                name: "by_email",
                key_pattern: "members:by_email",
                kind: IndexKind::Unique,
                cross_slot: true,
            }],
            ttl_registry: None,
            ttl_registry_per_tag: false,
            stream: Some(("members:{m}:stream", false)),
            logs: vec![],
        };
        let keys = layout.owned_keys();
        let roles: Vec<OwnedRole<'_>> = keys.iter().map(|key| key.role).collect();
        assert_eq!(
            roles,
            [
                OwnedRole::Entity,
                OwnedRole::Index("by_email"),
                OwnedRole::Stream,
                OwnedRole::PendingIndexMoves,
                OwnedRole::PendingIndexLease,
                OwnedRole::UniqueFence,
                OwnedRole::UniqueClaims("by_email"),
            ]
        );
        let stream = keys[2].parse().expect("a fixed key");
        assert_eq!(stream.render(&[]).as_deref(), Ok("members:{m}:stream"));
        for key in &keys {
            key.parse().expect("every owned pattern parses");
        }
    }
}

//! An application's keyspace: every key its entity types can touch, checked
//! so that no two can ever be the same Redis key, and described in a
//! manifest that other services and tools can read.
//!
//! Each entity type's own keys (its hash, index keys, TTL registry, stream
//! and logs) are checked against each other when the derive runs. A
//! [`Keyspace`] checks them across entity types too: declare the types an
//! application stores once, at start-up, and it refuses to build if two
//! patterns can produce one key, naming both and a key they share.
//!
//! ```
//! use redis_runtime::{RedisEntity, keyspace};
//!
//! #[derive(RedisEntity)]
//! #[redis(key = "user:{id}")]
//! #[redis(unique(key = "users:by_email", field = "email"))]
//! struct User { id: String, email: String }
//!
//! #[derive(RedisEntity)]
//! #[redis(key = "session:{id}", ttl = "7d")]
//! struct Session { id: String, user_id: String }
//!
//! let keyspace = keyspace!(User, Session)?;
//! assert!(keyspace.to_markdown().contains("`users:by_email`"));
//! # Ok::<(), redis_runtime::keyspace::KeyspaceError>(())
//! ```
//!
//! The manifest ([`Keyspace::manifest`], [`Keyspace::to_json`],
//! [`Keyspace::to_markdown`]) lists every pattern with its Redis type, TTL,
//! index kind and score, stream and its length limit, which keys one write
//! touches, and how each field's value is encoded: what a service written
//! in another language needs to read and write the same data.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use redis_schema::{EntityDescriptor, FieldEncoding, IndexKind, KeyPattern, Overlap, overlap};
use serde::Serialize;

/// Builds a [`Keyspace`] from entity types:
/// `keyspace!(User, Session, Job)` is
/// `Keyspace::new([User::descriptor(), Session::descriptor(), Job::descriptor()])`.
#[macro_export]
macro_rules! keyspace {
    ($($entity:ty),+ $(,)?) => {
        $crate::keyspace::Keyspace::new([
            $(<$entity as $crate::Record>::descriptor()),+
        ])
    };
}

/// Builds a [`KeyspaceOps`] from entity types, for `admin::main` (the
/// `admin` feature's operator command) and other tools that work on every type of
/// an application without naming it:
/// `keyspace_ops!(User, Session)` is
/// `KeyspaceOps::new([EntityOps::of::<User>(), EntityOps::of::<Session>()])`.
///
/// Unlike [`keyspace!`] it does not fail: the overlap check's outcome is
/// kept in [`KeyspaceOps::keyspace`], for a `check` command to report.
#[macro_export]
macro_rules! keyspace_ops {
    ($($entity:ty),+ $(,)?) => {
        $crate::keyspace::KeyspaceOps::new([
            $($crate::keyspace::EntityOps::of::<$entity>()),+
        ])
    };
}

/// A boxed future of an [`EntityOps`] operation.
pub type OpFuture<'a, T> = Pin<Box<dyn Future<Output = crate::Result<T>> + Send + 'a>>;

/// One entity type's maintenance operations without its type parameter:
/// [`crate::index::verify`], [`crate::index::rebuild`] and
/// [`crate::index::sweep`] for `E`, callable from a list of types.
#[derive(Clone, Copy)]
pub struct EntityOps {
    /// The entity type's storage description.
    pub descriptor: &'static EntityDescriptor,
    verify: for<'a> fn(&'a crate::Client) -> OpFuture<'a, crate::index::VerifyReport>,
    rebuild: for<'a> fn(&'a crate::Client) -> OpFuture<'a, crate::index::RebuildReport>,
    sweep: for<'a> fn(&'a crate::Client, u64) -> OpFuture<'a, u64>,
    /// The paced, resumable verify or repair pass the admin command drives.
    #[cfg(feature = "admin")]
    pass: for<'a> fn(
        &'a crate::Client,
        bool,
        &'a dyn crate::index::pass::Control,
    ) -> OpFuture<'a, crate::index::pass::Tally>,
}

impl fmt::Debug for EntityOps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntityOps")
            .field("entity", &self.descriptor.name)
            .finish_non_exhaustive()
    }
}

impl EntityOps {
    /// The operations of entity type `E`.
    pub fn of<E: crate::Entity>() -> Self {
        Self {
            descriptor: E::descriptor(),
            verify: |client| Box::pin(crate::index::verify::<E>(client)),
            rebuild: |client| Box::pin(crate::index::rebuild::<E>(client)),
            sweep: |client, budget| Box::pin(crate::index::sweep::<E>(client, budget)),
            #[cfg(feature = "admin")]
            pass: |client, repair, control| {
                Box::pin(crate::index::pass::run::<E>(client, repair, control))
            },
        }
    }

    /// The entity type's name, e.g. `"User"`.
    pub fn name(&self) -> &'static str {
        self.descriptor.name
    }

    /// [`crate::index::verify`] for this type.
    pub fn verify<'a>(
        &self,
        client: &'a crate::Client,
    ) -> OpFuture<'a, crate::index::VerifyReport> {
        (self.verify)(client)
    }

    /// [`crate::index::rebuild`] for this type.
    pub fn rebuild<'a>(
        &self,
        client: &'a crate::Client,
    ) -> OpFuture<'a, crate::index::RebuildReport> {
        (self.rebuild)(client)
    }

    /// [`crate::index::sweep`] for this type: removes index entries of
    /// expired entities, up to `budget` registry entries; returns how many
    /// were looked at.
    pub fn sweep<'a>(&self, client: &'a crate::Client, budget: u64) -> OpFuture<'a, u64> {
        (self.sweep)(client, budget)
    }

    /// The verify (or, with `repair`, rebuild) pass of this type under
    /// `control`, which receives what it finds and paces it.
    #[cfg(feature = "admin")]
    pub(crate) fn pass<'a>(
        &self,
        client: &'a crate::Client,
        repair: bool,
        control: &'a dyn crate::index::pass::Control,
    ) -> OpFuture<'a, crate::index::pass::Tally> {
        (self.pass)(client, repair, control)
    }
}

/// The entity types of an application with their operations
/// ([`keyspace_ops!`]), and the outcome of checking their keys never
/// collide.
#[derive(Debug, Clone)]
pub struct KeyspaceOps {
    entities: Vec<EntityOps>,
    keyspace: Result<Keyspace, KeyspaceError>,
}

impl KeyspaceOps {
    /// Keeps the operations and runs the [`Keyspace`] overlap check.
    pub fn new(entities: impl IntoIterator<Item = EntityOps>) -> Self {
        let entities: Vec<EntityOps> = entities.into_iter().collect();
        let keyspace = Keyspace::new(entities.iter().map(|e| e.descriptor));
        Self { entities, keyspace }
    }

    /// The entity types' operations, in declaration order.
    pub fn entities(&self) -> &[EntityOps] {
        &self.entities
    }

    /// The checked keyspace, or why the check failed.
    pub fn keyspace(&self) -> Result<&Keyspace, &KeyspaceError> {
        self.keyspace.as_ref()
    }

    /// The manifest of these types, whether or not their keys collide (a
    /// description is still useful to find out where they do).
    pub fn manifest_keyspace(&self) -> Keyspace {
        match &self.keyspace {
            Ok(keyspace) => keyspace.clone(),
            Err(_) => Keyspace {
                entities: self.entities.iter().map(|e| e.descriptor).collect(),
            },
        }
    }
}

/// The entity types of an application, checked to never share a key.
#[derive(Debug, Clone)]
pub struct Keyspace {
    entities: Vec<&'static EntityDescriptor>,
}

/// What one key pattern of an entity type is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "role", content = "name", rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyRole {
    /// The entity's hash.
    Entity,
    /// A secondary index, by name.
    Index(&'static str),
    /// The TTL registry (a sorted set of ids by expiry).
    TtlRegistry,
    /// The TTL registry's companion hash of indexed values.
    TtlRegistryFields,
    /// The outbox stream written on create.
    Stream,
    /// An append log, by name.
    Log(&'static str),
    /// On a Redis Cluster, the record of an entity's `cross_slot` index
    /// moves not applied yet (`redis_schema::pending_index_key`).
    PendingIndexMoves,
    /// The lease of the client applying those moves.
    PendingIndexLease,
    /// On a Redis Cluster, the entity's unique fence, which a write that
    /// sets claimed values of a `cross_slot` unique index checks
    /// (`redis_schema::unique_fence_key`).
    UniqueFence,
    /// On a Redis Cluster, the claims hash of a `cross_slot` unique index,
    /// by the index's name (`redis_schema::unique_claims_key`).
    UniqueClaims(&'static str),
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRole::Entity => f.write_str("entity hash"),
            KeyRole::Index(name) => write!(f, "index {name}"),
            KeyRole::TtlRegistry => f.write_str("TTL registry"),
            KeyRole::TtlRegistryFields => f.write_str("TTL registry fields"),
            KeyRole::Stream => f.write_str("stream"),
            KeyRole::Log(name) => write!(f, "log {name}"),
            KeyRole::PendingIndexMoves => f.write_str("pending index moves"),
            KeyRole::PendingIndexLease => f.write_str("pending index lease"),
            KeyRole::UniqueFence => f.write_str("unique fence"),
            KeyRole::UniqueClaims(name) => write!(f, "unique claims of {name}"),
        }
    }
}

/// One key pattern an entity type owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnedKey {
    /// The entity type, e.g. `"User"`.
    pub entity: &'static str,
    /// What the key is for.
    #[serde(flatten)]
    pub role: KeyRole,
    /// The key pattern source, e.g. `"jobs:user:{user_id}"`; a TTL
    /// registry's too (`"__ttl:job:{{jobs}}:id"`, `"__ttl:run:user_id:id:{{{user_id}}}"`),
    /// while a stream is its key itself (`"jobs:{jobs}:stream"`).
    pub pattern: String,
    /// The Redis type stored there, as `TYPE` names it.
    pub redis_type: &'static str,
}

impl fmt::Display for OwnedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` ({} of {})", self.pattern, self.role, self.entity)
    }
}

/// Why a [`Keyspace`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyspaceError {
    /// Two key patterns can produce the same Redis key.
    Overlap {
        /// One of them.
        first: Box<OwnedKey>,
        /// The other.
        second: Box<OwnedKey>,
        /// A key both can produce, e.g. `cj:by_slot`.
        witness: String,
    },
    /// A descriptor holds a pattern that does not parse (descriptors are
    /// written by the derive, so this means one was written by hand).
    BadPattern {
        /// The key with the bad pattern.
        key: Box<OwnedKey>,
        /// What is wrong with it.
        reason: String,
    },
}

impl KeyspaceError {
    /// A stable code for logs and metrics: `KEYSPACE_OVERLAP` or
    /// `KEYSPACE_BAD_PATTERN`.
    pub fn code(&self) -> &'static str {
        match self {
            KeyspaceError::Overlap { .. } => "KEYSPACE_OVERLAP",
            KeyspaceError::BadPattern { .. } => "KEYSPACE_BAD_PATTERN",
        }
    }
}

impl fmt::Display for KeyspaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyspaceError::Overlap {
                first,
                second,
                witness,
            } => write!(
                f,
                "{}: {first} and {second} can both be the key `{witness}`; \
                 give one of them a prefix the other cannot produce",
                self.code()
            ),
            KeyspaceError::BadPattern { key, reason } => {
                write!(f, "{}: {key}: {reason}", self.code())
            }
        }
    }
}

impl std::error::Error for KeyspaceError {}

/// Every key pattern `entity` owns, in a fixed order: hash, indexes, TTL
/// registry, stream, logs.
pub fn owned_keys(entity: &'static EntityDescriptor) -> Vec<OwnedKey> {
    let key = |role, pattern: &str, redis_type| OwnedKey {
        entity: entity.name,
        role,
        pattern: pattern.to_owned(),
        redis_type,
    };
    let mut keys = vec![key(KeyRole::Entity, entity.key_pattern, "hash")];
    for index in entity.indexes {
        let role = KeyRole::Index(index.name);
        keys.push(key(role, index.key_pattern, index.kind.redis_type()));
    }
    if let Some(registry) = entity.ttl_registry_pattern() {
        keys.push(key(KeyRole::TtlRegistry, &registry, "zset"));
        let fields = format!("{registry}:fields");
        keys.push(key(KeyRole::TtlRegistryFields, &fields, "hash"));
    }
    if let Some(stream) = entity.stream {
        keys.push(key(KeyRole::Stream, stream.key, "stream"));
    }
    for log in entity.logs {
        keys.push(key(KeyRole::Log(log.name), log.key_pattern, "list"));
    }
    if entity.defers_on_cluster()
        && let Some((record, lease)) = redis_schema::pending_index_patterns(entity.key_pattern)
    {
        keys.push(key(KeyRole::PendingIndexMoves, &record, "hash"));
        keys.push(key(KeyRole::PendingIndexLease, &lease, "string"));
    }
    let cross_slot_unique = entity
        .indexes
        .iter()
        .filter(|index| index.cross_slot && index.kind == IndexKind::Unique);
    for (n, index) in cross_slot_unique.enumerate() {
        if n == 0
            && let Some(fence) = redis_schema::unique_fence_pattern(entity.key_pattern)
        {
            keys.push(key(KeyRole::UniqueFence, &fence, "string"));
        }
        if let Some(claims) = redis_schema::unique_claims_pattern(index.key_pattern) {
            keys.push(key(KeyRole::UniqueClaims(index.name), &claims, "hash"));
        }
    }
    keys
}

/// The pattern of an owned key. A stream is stored as the key itself,
/// where a brace is literal text (a hash tag), so it is escaped before
/// being read as a pattern.
fn pattern_of(key: &OwnedKey) -> Result<KeyPattern, KeyspaceError> {
    let fixed = key.role == KeyRole::Stream;
    let source = if fixed {
        key.pattern.replace('{', "{{").replace('}', "}}")
    } else {
        key.pattern.clone()
    };
    KeyPattern::parse(&source).map_err(|e| KeyspaceError::BadPattern {
        key: Box::new(key.clone()),
        reason: e.message(),
    })
}

impl Keyspace {
    /// Checks that no two keys of these entity types (their hashes, index
    /// keys, TTL registries, streams and logs) can ever be the same Redis
    /// key, and keeps them for the manifest.
    ///
    /// # Errors
    ///
    /// [`KeyspaceError::Overlap`] naming the first two colliding patterns
    /// and a key both produce.
    pub fn new(
        entities: impl IntoIterator<Item = &'static EntityDescriptor>,
    ) -> Result<Self, KeyspaceError> {
        let entities: Vec<&'static EntityDescriptor> = entities.into_iter().collect();
        let keys: Vec<OwnedKey> = entities.iter().flat_map(|e| owned_keys(e)).collect();
        let patterns = keys.iter().map(pattern_of).collect::<Result<Vec<_>, _>>()?;
        for (i, first) in patterns.iter().enumerate() {
            for (j, second) in patterns.iter().enumerate().skip(i + 1) {
                if let Some(Overlap { key, .. }) = overlap(first, second) {
                    return Err(KeyspaceError::Overlap {
                        first: Box::new(keys[i].clone()),
                        second: Box::new(keys[j].clone()),
                        witness: key,
                    });
                }
            }
        }
        Ok(Self { entities })
    }

    /// The entity types, in declaration order.
    pub fn entities(&self) -> &[&'static EntityDescriptor] {
        &self.entities
    }

    /// The machine-readable description of this keyspace.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            entities: self
                .entities
                .iter()
                .map(|e| EntityManifest::of(e))
                .collect(),
            encodings: ENCODINGS
                .iter()
                .filter(|(encoding, ..)| self.uses(*encoding))
                .map(|(_, name, meaning)| EncodingManifest { name, meaning })
                .collect(),
        }
    }

    fn uses(&self, encoding: FieldEncoding) -> bool {
        let fields = self.entities.iter().flat_map(|e| e.fields);
        fields.into_iter().any(|f| f.encoding == encoding)
    }

    /// The manifest as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain strings, numbers and vectors cannot fail.
        serde_json::to_string_pretty(&self.manifest()).unwrap_or_default()
    }

    /// The manifest for people: one section per entity type with its keys,
    /// fields and what a write touches.
    pub fn to_markdown(&self) -> String {
        render_markdown(&self.manifest())
    }
}

/// Bumped when the manifest's shape changes incompatibly.
pub const MANIFEST_FORMAT: u32 = 1;

/// How each field encoding stores a value, for readers in other languages.
const ENCODINGS: &[(FieldEncoding, &str, &str)] = &[
    (FieldEncoding::Text, "text", "UTF-8 text as is"),
    (
        FieldEncoding::Integer,
        "integer",
        "decimal integer text, e.g. `-42`",
    ),
    (
        FieldEncoding::Float,
        "float",
        "shortest round-trip decimal text, e.g. `0.1`; NaN is never stored",
    ),
    (
        FieldEncoding::Bool,
        "bool",
        "`true` or `false` (`1`/`0` are read too)",
    ),
    (
        FieldEncoding::Enum,
        "enum",
        "the variant's stored name, snake_case unless renamed, e.g. `queued`",
    ),
    (FieldEncoding::Bytes, "bytes", "raw bytes as is"),
    (
        FieldEncoding::TimestampMillis,
        "timestamp_ms",
        "integer milliseconds since the Unix epoch, decimal text",
    ),
    (FieldEncoding::Json, "json", "JSON text"),
    (FieldEncoding::Custom, "custom", "a type-specific text form"),
];

fn encoding_name(encoding: FieldEncoding) -> &'static str {
    ENCODINGS
        .iter()
        .find(|(e, ..)| *e == encoding)
        .map_or("custom", |(_, name, _)| name)
}

/// The machine-readable keyspace description ([`Keyspace::manifest`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// One entry per entity type.
    pub entities: Vec<EntityManifest>,
    /// The field encodings in use and what each stores.
    pub encodings: Vec<EncodingManifest>,
}

/// One entity type in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityManifest {
    /// The Rust type name.
    pub name: &'static str,
    /// Every key pattern it owns.
    pub keys: Vec<OwnedKeyManifest>,
    /// Time to live in milliseconds, if entities expire.
    pub ttl_ms: Option<u64>,
    /// The hash fields.
    pub fields: Vec<FieldManifest>,
    /// Secondary indexes.
    pub indexes: Vec<IndexManifest>,
    /// The outbox stream, if any.
    pub stream: Option<StreamManifest>,
    /// The key patterns one create, update, patch or delete may write, on
    /// one server.
    pub write_touches: Vec<String>,
    /// The key patterns a write's script may touch on a Redis Cluster:
    /// those of [`write_touches`](Self::write_touches) but the
    /// `cross_slot` indexes, a `stream_cross_slot` stream and, when either
    /// is declared, the TTL registry; then the record of what follows the
    /// write (see `cross_slot::pending`).
    pub cluster_write_touches: Vec<String>,
    /// Declared `#[redis(cluster)]`: every key in
    /// [`cluster_write_touches`](Self::cluster_write_touches) was checked at
    /// compile time to share the entity's Redis Cluster hash slot (see each
    /// key's [`in_entity_slot`](OwnedKeyManifest::in_entity_slot)).
    pub cluster: bool,
}

/// One key of an entity type in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OwnedKeyManifest {
    /// What the key is for.
    #[serde(flatten)]
    pub role: KeyRole,
    /// The key pattern source.
    pub pattern: String,
    /// The Redis type stored there.
    pub redis_type: &'static str,
    /// What Redis Cluster hashes for it: `the whole key` or its hash tag
    /// (`hash tag `{user_id}``), see [`redis_schema::slot_source`].
    pub slot: String,
    /// Whether it is always in the hash slot of the entity it belongs to
    /// (so a write touching both stays on one cluster node).
    pub in_entity_slot: bool,
}

/// One hash field in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldManifest {
    /// The hash field name.
    pub name: &'static str,
    /// How its value is encoded (a name from [`Manifest::encodings`]).
    pub encoding: &'static str,
    /// Whether it may be absent (`Option` in Rust: `None` is no field).
    pub optional: bool,
    /// Whether it fills a placeholder of the entity's key.
    pub in_key: bool,
}

/// One secondary index in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexManifest {
    /// The index name.
    pub name: &'static str,
    /// `set`, `sorted` or `unique`.
    pub kind: &'static str,
    /// Its key pattern.
    pub pattern: &'static str,
    /// Sorted: the field whose value is the score; unique: the field whose
    /// value maps to the id.
    pub field: Option<&'static str>,
    /// What a member is: the entity key's placeholder values joined by `:`.
    pub member: &'static str,
    /// Declared `cross_slot`: on a Redis Cluster it is written just after
    /// the entity's write, not in it (see `cross_slot::pending`); a unique one
    /// has its new values claimed just before (see `cross_slot::unique_claims`).
    pub cross_slot: bool,
}

/// The outbox stream in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamManifest {
    /// The stream key.
    pub key: &'static str,
    /// Approximate maximum length (`XADD MAXLEN ~`), if trimmed.
    pub max_len: Option<u64>,
    /// What an entry holds.
    pub entry: &'static str,
    /// Declared `stream_cross_slot`: on a Redis Cluster the entry is
    /// appended just after the write, from the record it leaves in the
    /// entity's slot, at least once.
    pub cross_slot: bool,
}

/// One field encoding in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EncodingManifest {
    /// The name fields refer to.
    pub name: &'static str,
    /// What is stored.
    pub meaning: &'static str,
}

impl EntityManifest {
    fn of(entity: &'static EntityDescriptor) -> Self {
        let keys = owned_keys(entity);
        // Owned keys' patterns parse (the keyspace check reads them the
        // same way); a key that did not would be reported as hashing whole.
        let slot_of = |key: &OwnedKey| {
            pattern_of(key)
                .map(|pattern| redis_schema::slot_source(&pattern))
                .unwrap_or(redis_schema::SlotSource::WholeKey)
        };
        let entity_slot = keys.first().map(slot_of);
        // What the write script touches: not the logs (their own
        // commands); on one server not the record of what follows a write
        // on a cluster; on a cluster not the `cross_slot` indexes, a
        // `stream_cross_slot` stream or the lease (the client's step after
        // the write, see `cross_slot::pending`), nor the TTL registry a
        // deferring write does not keep.
        let defers = entity.defers_on_cluster();
        let touched_on = |cluster: bool| {
            let touched = |role: &KeyRole| match role {
                KeyRole::Log(_) | KeyRole::PendingIndexLease | KeyRole::UniqueClaims(_) => false,
                KeyRole::PendingIndexMoves | KeyRole::UniqueFence => cluster,
                KeyRole::Index(name) => {
                    !cluster || !entity.index(name).is_some_and(|i| i.cross_slot)
                }
                KeyRole::Stream => !cluster || !entity.stream.is_some_and(|s| s.cross_slot),
                KeyRole::TtlRegistry | KeyRole::TtlRegistryFields => !cluster || !defers,
                KeyRole::Entity => true,
            };
            keys.iter()
                .filter(|k| touched(&k.role))
                .map(|k| k.pattern.clone())
                .collect::<Vec<_>>()
        };
        let write_touches = touched_on(false);
        let cluster_write_touches = touched_on(true);
        Self {
            name: entity.name,
            keys: keys
                .into_iter()
                .map(|k| {
                    let slot = slot_of(&k);
                    // A pending key's tag is the entity's hashed text,
                    // which a pattern hashing whole cannot show.
                    let pending = matches!(
                        k.role,
                        KeyRole::PendingIndexMoves
                            | KeyRole::PendingIndexLease
                            | KeyRole::UniqueFence
                    );
                    let in_entity_slot = k.role == KeyRole::Entity
                        || pending
                        || entity_slot
                            .as_ref()
                            .is_some_and(|e| e.shares_slot_with(&slot));
                    OwnedKeyManifest {
                        role: k.role,
                        pattern: k.pattern,
                        redis_type: k.redis_type,
                        slot: slot.to_string(),
                        in_entity_slot,
                    }
                })
                .collect(),
            ttl_ms: entity.ttl_ms,
            fields: entity
                .fields
                .iter()
                .map(|f| FieldManifest {
                    name: f.hash_name,
                    encoding: encoding_name(f.encoding),
                    optional: f.optional,
                    in_key: f.is_key,
                })
                .collect(),
            indexes: entity
                .indexes
                .iter()
                .map(|i| IndexManifest {
                    name: i.name,
                    kind: match i.kind {
                        IndexKind::Set => "set",
                        IndexKind::Sorted => "sorted",
                        IndexKind::Unique => "unique",
                    },
                    pattern: i.key_pattern,
                    field: i.score_field,
                    member: "entity id",
                    cross_slot: i.cross_slot,
                })
                .collect(),
            stream: entity.stream.map(|s| StreamManifest {
                key: s.key,
                max_len: s.maxlen.map(std::num::NonZeroU64::get),
                entry: "the entity's hash fields, written in the same step as its creation",
                cross_slot: s.cross_slot,
            }),
            write_touches,
            cluster_write_touches,
            cluster: entity.cluster,
        }
    }
}

fn render_markdown(manifest: &Manifest) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("# Keyspace\n");
    for entity in &manifest.entities {
        let _ = write!(out, "\n## {}\n\n", entity.name);
        if let Some(ms) = entity.ttl_ms {
            let ttl = redis_schema::format_ttl(std::time::Duration::from_millis(ms));
            let _ = writeln!(
                out,
                "Entities expire {ttl} ({ms} ms) after they are written.\n"
            );
        }
        out.push_str("| key pattern | Redis type | role |\n| --- | --- | --- |\n");
        for key in &entity.keys {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                key.pattern, key.redis_type, key.role
            );
        }
        out.push_str("\n| field | encoding | optional | in key |\n| --- | --- | --- | --- |\n");
        for field in &entity.fields {
            let yes = |b: bool| if b { "yes" } else { "no" };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                field.name,
                field.encoding,
                yes(field.optional),
                yes(field.in_key)
            );
        }
        let mut notes: Vec<String> = entity
            .indexes
            .iter()
            .map(|index| {
                let field = index
                    .field
                    .map(|f| format!(" on `{f}`"))
                    .unwrap_or_default();
                format!(
                    "Index `{}`: {} at `{}`{field}.",
                    index.name, index.kind, index.pattern
                )
            })
            .collect();
        if let Some(stream) = &entity.stream {
            let limit = stream
                .max_len
                .map(|n| format!(", trimmed to about {n} entries"))
                .unwrap_or_default();
            notes.push(format!("Stream `{}`{limit}: {}.", stream.key, stream.entry));
        }
        let listed = |keys: &[String]| {
            let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
            quoted.join(", ")
        };
        notes.push(format!(
            "A write touches {}.",
            listed(&entity.write_touches)
        ));
        if entity.cluster && entity.cluster_write_touches != entity.write_touches {
            notes.push(format!(
                "On a Redis Cluster a write's script touches {}.",
                listed(&entity.cluster_write_touches)
            ));
        }
        let elsewhere: Vec<String> = entity
            .keys
            .iter()
            .filter(|k| !k.in_entity_slot)
            .map(|k| format!("`{}`", k.pattern))
            .collect();
        let entity_slot = entity.keys.first().map_or("", |k| k.slot.as_str());
        notes.push(if entity.cluster {
            // Logs are written by their own commands and `cross_slot`
            // indexes after the write (said below): the derive checked
            // every other key.
            let logs: Vec<String> = entity
                .keys
                .iter()
                .filter(|k| matches!(k.role, KeyRole::Log(_)) && !k.in_entity_slot)
                .map(|k| format!("`{}`", k.pattern))
                .collect();
            let logs = if logs.is_empty() {
                String::new()
            } else {
                format!("; logs outside it: {}", logs.join(", "))
            };
            let deferred: Vec<String> = entity
                .indexes
                .iter()
                .filter(|i| i.cross_slot && i.kind != "unique")
                .map(|i| format!("`{}`", i.pattern))
                .collect();
            let mut deferred = if deferred.is_empty() {
                String::new()
            } else {
                format!(
                    " The `cross_slot` indexes {} are moved just after each write, from the record it leaves in the entity's slot; a client that died first leaves the record to `index::settle`.",
                    deferred.join(", ")
                )
            };
            for unique in entity
                .indexes
                .iter()
                .filter(|i| i.cross_slot && i.kind == "unique")
            {
                let claims = redis_schema::unique_claims_key(unique.pattern).unwrap_or_default();
                deferred.push_str(&format!(
                    " A new value of the `cross_slot` unique index `{}` is claimed in that hash's slot before the write (claims in `{claims}`, checked by the write against the entity's fence `__unique_fence:…` in its slot), and a value left is released just after, from the record.",
                    unique.pattern
                ));
            }
            if let Some(stream) = entity.stream.as_ref().filter(|s| s.cross_slot) {
                deferred.push_str(&format!(
                    " The stream `{}` (`stream_cross_slot`) gets each create's entry just after the write, from that record, at least once.",
                    stream.key
                ));
            }
            format!(
                "Redis Cluster (`cluster`, checked at compile time): every key a write's script touches there shares the entity's slot ({entity_slot}){logs}.{deferred}"
            )
        } else if elsewhere.is_empty() {
            format!("Redis Cluster: every key shares the entity's slot ({entity_slot}).")
        } else {
            format!(
                "Redis Cluster: the entity hashes {entity_slot}; not always in its slot: {}.",
                elsewhere.join(", ")
            )
        });
        let _ = writeln!(out, "\n{}", notes.join("\n\n"));
    }
    out.push_str("\n## Encodings\n\n| name | stored as |\n| --- | --- |\n");
    for encoding in &manifest.encodings {
        let _ = writeln!(out, "| {} | {} |", encoding.name, encoding.meaning);
    }
    out
}

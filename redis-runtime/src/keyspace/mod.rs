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

use redis_schema::{EntityDescriptor, FieldEncoding, KeyPattern, Overlap, OwnedRole, overlap};
use serde::Serialize;

mod manifest;

use manifest::{ENCODINGS, render_markdown};
pub use manifest::{
    EncodingManifest, EntityManifest, FieldManifest, IndexManifest, MANIFEST_FORMAT, Manifest,
    OwnedKeyManifest, StreamManifest,
};

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

/// What one key pattern of an entity type is for: the schema's
/// [`OwnedRole`], whose list of keys the derive checks as well.
pub type KeyRole = OwnedRole<'static>;

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
/// registry, stream, logs, then on a cluster the `cross_slot` protocol's
/// companions (see [`redis_schema::KeyLayout::owned_keys`], the one list
/// the derive checks too).
pub fn owned_keys(entity: &'static EntityDescriptor) -> Vec<OwnedKey> {
    entity
        .key_layout()
        .owned_keys()
        .into_iter()
        .map(|key| OwnedKey {
            entity: entity.name,
            role: key.role,
            pattern: key.pattern,
            redis_type: key.redis_type,
        })
        .collect()
}

/// The pattern of an owned key, parsed as the schema parses it (a
/// stream's key as the fixed key it is).
fn pattern_of(key: &OwnedKey) -> Result<KeyPattern, KeyspaceError> {
    let owned = redis_schema::OwnedKey {
        role: key.role,
        pattern: key.pattern.clone(),
        redis_type: key.redis_type,
    };
    owned.parse().map_err(|e| KeyspaceError::BadPattern {
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

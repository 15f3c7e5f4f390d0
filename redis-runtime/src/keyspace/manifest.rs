//! The keyspace manifest: every key an application's entity types own,
//! their fields, encodings and indexes, as JSON for tools and as markdown
//! for people (see [`Keyspace::manifest`](super::Keyspace::manifest)).

use redis_schema::{EntityDescriptor, FieldEncoding, IndexKind};
use serde::Serialize;

use super::{KeyRole, OwnedKey, owned_keys, pattern_of};

/// Bumped when the manifest's shape changes incompatibly.
pub const MANIFEST_FORMAT: u32 = 1;

/// How each field encoding stores a value, for readers in other languages.
pub(super) const ENCODINGS: &[(FieldEncoding, &str, &str)] = &[
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

/// The machine-readable keyspace description ([`Keyspace::manifest`](super::Keyspace::manifest)).
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
    pub(super) fn of(entity: &'static EntityDescriptor) -> Self {
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
                    field: i.value_field,
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

pub(super) fn render_markdown(manifest: &Manifest) -> String {
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

//! `#[redis(cluster)]` on layouts that pass: every key a write touches is
//! in the entity's hash slot, and the descriptor and the keyspace manifest
//! say so. The layouts it
//! refuses are the `cluster_*` cases under `tests/ui/`.

#![deny(warnings)]

use redis_runtime::keyspace::{KeyRole, owned_keys};
use redis_runtime::schema::{EntityDescriptor, KeyPattern, SlotSource, slot_source};
use redis_runtime::{Record, RedisEntity, keyspace};

/// Pinned to one slot by a constant tag: a TTL, every kind of index and a
/// stream, all in that slot; its TTL registry moves there too.
#[derive(RedisEntity)]
#[redis(cluster, key = "job:{{jobs}}:{id}", ttl = "1h")]
#[redis(stream = "jobs:{{jobs}}:stream", stream_maxlen = 1000)]
#[redis(sorted_index(key = "jobs:{{jobs}}:by_user:{user_id}", score = "created_at"))]
#[redis(index(key = "jobs:{{jobs}}:status:{status}"))]
#[redis(unique(key = "jobs:{{jobs}}:by_slug", field = "slug"))]
#[redis(log(name = "output", key = "job:{{jobs}}:{id}:output", ttl = "1d"))]
#[allow(dead_code)]
struct Job {
    id: String,
    user_id: String,
    status: String,
    slug: String,
    created_at: i64,
}

/// Tagged by a field's value, so each user's profiles are in their own
/// slot: no stream (one key for every user could not share all those
/// slots). A log is written by its own commands, so it may be anywhere.
#[derive(RedisEntity)]
#[redis(cluster, key = "profile:{{{user_id}}}:{id}", ttl = "30d")]
#[redis(log(name = "events", key = "profile_events:{id}"))]
#[allow(dead_code)]
struct Profile {
    user_id: String,
    id: String,
    bio: String,
}

/// Tagged by a field's value, with indexes: each user's runs, their index
/// entries and their TTL registry share the user's slot (one registry per
/// tag value).
#[derive(RedisEntity)]
#[redis(cluster, key = "run:{{{user_id}}}:{id}", ttl = "1h")]
#[redis(sorted_index(key = "runs:{{{user_id}}}:by_time", score = "created_at"))]
#[redis(index(key = "runs:{{{user_id}}}:status:{status}"))]
#[allow(dead_code)]
struct Run {
    user_id: String,
    id: String,
    status: String,
    created_at: i64,
}

/// No tag at all: a write touches the entity's hash and nothing else,
/// which is one slot whatever it is.
#[derive(RedisEntity)]
#[redis(cluster, key = "session:{id}", ttl = "7d")]
#[allow(dead_code)]
struct Session {
    id: String,
    user_id: String,
}

/// The same layout as `Job` without `cluster`.
#[derive(RedisEntity)]
#[redis(key = "task:{{tasks}}:{id}")]
#[redis(index(key = "tasks:{{tasks}}:status:{status}"))]
#[allow(dead_code)]
struct Task {
    id: String,
    status: String,
}

/// What Redis Cluster hashes for a key the descriptor names as a fixed key
/// (a registry or a stream: its braces are literal text).
fn fixed_slot(key: &str) -> SlotSource {
    let source = key.replace('{', "{{").replace('}', "}}");
    slot_source(&KeyPattern::parse(&source).expect("a fixed key parses"))
}

fn entity_slot(d: &EntityDescriptor) -> SlotSource {
    slot_source(&KeyPattern::parse(d.key_pattern).expect("the key pattern parses"))
}

#[test]
fn a_pinned_type_keeps_every_written_key_in_its_slot() {
    let d = Job::descriptor();
    assert!(d.cluster);
    let slot = entity_slot(d);
    assert!(slot.is_fixed());
    let registry = d
        .ttl_registry
        .expect("a type with indexes has a TTL registry");
    assert_eq!(registry, "__ttl:job:{jobs}:id");
    assert!(fixed_slot(registry).shares_slot_with(&slot));
    assert!(fixed_slot(&format!("{registry}:fields")).shares_slot_with(&slot));
    let stream = d.stream.expect("a stream").key;
    assert_eq!(stream, "jobs:{jobs}:stream");
    assert!(fixed_slot(stream).shares_slot_with(&slot));
    for index in d.indexes {
        let pattern = KeyPattern::parse(index.key_pattern).expect("index pattern");
        assert!(
            slot_source(&pattern).shares_slot_with(&slot),
            "{}",
            index.name
        );
    }
}

#[test]
fn a_type_tagged_by_a_field_keeps_one_registry_per_tag() {
    let d = Run::descriptor();
    assert!(d.cluster && d.ttl_registry_per_tag);
    assert_eq!(d.ttl_registry, Some("__ttl:run:user_id:id"));
    let registry = owned_keys(d)
        .into_iter()
        .find(|k| k.role == KeyRole::TtlRegistry)
        .expect("a registry");
    assert_eq!(registry.pattern, "__ttl:run:user_id:id:{{{user_id}}}");
    let pattern = KeyPattern::parse(&registry.pattern).expect("a pattern");
    assert!(slot_source(&pattern).shares_slot_with(&entity_slot(d)));
    // Pinned and untagged types keep one registry.
    assert!(!Job::descriptor().ttl_registry_per_tag);
    assert!(!Task::descriptor().ttl_registry_per_tag);
}

#[test]
fn the_manifest_shows_every_written_key_in_the_entity_slot() {
    let keyspace = keyspace!(Job, Profile, Run, Session, Task).expect("no two keys collide");
    let manifest = keyspace.manifest();
    let declared: Vec<(&str, bool)> = manifest
        .entities
        .iter()
        .map(|e| (e.name, e.cluster))
        .collect();
    assert_eq!(
        declared,
        [
            ("Job", true),
            ("Profile", true),
            ("Run", true),
            ("Session", true),
            ("Task", false)
        ]
    );
    for entity in manifest.entities.iter().filter(|e| e.cluster) {
        for key in &entity.keys {
            // Logs are appended to by their own commands.
            if !matches!(key.role, KeyRole::Log(_)) {
                assert!(key.in_entity_slot, "{}: {}", entity.name, key.pattern);
            }
        }
    }
    let profile_log = owned_keys(Profile::descriptor())
        .into_iter()
        .find(|k| matches!(k.role, KeyRole::Log(_)))
        .expect("a log");
    assert_eq!(profile_log.pattern, "profile_events:{id}");
    assert!(keyspace.to_markdown().contains(
        "Redis Cluster (`cluster`, checked at compile time): every key a write's script touches there shares \
         the entity's slot (hash tag `{user_id}`); logs outside it: `profile_events:{id}`."
    ));
}

#[test]
fn without_cluster_the_registry_keeps_its_name() {
    // Types already stored without `cluster` keep their registry where it
    // is, tag or no tag.
    assert!(!Task::descriptor().cluster);
    assert_eq!(Task::descriptor().ttl_registry, Some("__ttl:task:tasks:id"));
    assert_eq!(Profile::descriptor().ttl_registry, None);
    assert_eq!(Session::descriptor().ttl_registry, None);
}

/// `cross_slot` indexes may be in any slot: the write records in the
/// entity's slot that their entries are due to move, and the client moves
/// them; `stream_cross_slot` does the same for the stream. So a key
/// without a tag passes when every index is `cross_slot` and the stream,
/// if any, is `stream_cross_slot`, and a pinned type may mix both kinds.
mod cross_slot {
    use redis_runtime::{Record, RedisEntity};

    #[derive(RedisEntity)]
    #[redis(cluster, key = "job:{id}")]
    #[redis(index(key = "jobs:status:{status}", cross_slot))]
    #[redis(sorted_index(key = "jobs:user:{user_id}", score = "created_at", cross_slot))]
    #[allow(dead_code)]
    struct Job {
        id: String,
        status: String,
        user_id: String,
        created_at: i64,
    }

    /// Pinned: one index in the type's slot, one outside it.
    #[derive(RedisEntity)]
    #[redis(cluster, key = "board:{{boards}}:{id}")]
    #[redis(index(key = "boards:{{boards}}:owner:{owner}"))]
    #[redis(sorted_index(
        key = "boards:by_time",
        score = "created_at",
        name = "by_time",
        cross_slot
    ))]
    #[allow(dead_code)]
    struct Board {
        id: String,
        owner: String,
        created_at: i64,
    }

    /// The stream may be in another slot too: the create records the
    /// entry in the entity's slot and the client appends it just after.
    #[derive(RedisEntity)]
    #[redis(key = "job:{id}", cluster, stream = "jobs:stream", stream_cross_slot)]
    #[redis(index(key = "jobs:status:{status}", cross_slot))]
    #[allow(dead_code)]
    struct Queued {
        id: String,
        status: String,
    }

    /// Pinned, with its index in its slot and its stream outside it.
    #[derive(RedisEntity)]
    #[redis(cluster, key = "feed:{{feeds}}:{id}", stream = "feeds:stream")]
    #[redis(stream_maxlen = 100, stream_cross_slot)]
    #[redis(index(key = "feeds:{{feeds}}:owner:{owner}"))]
    #[allow(dead_code)]
    struct Feed {
        id: String,
        owner: String,
    }

    /// A unique index with a constant key may be in another slot too: a
    /// write claims a new value in the unique hash's slot first, then
    /// writes the entity in its own.
    #[derive(RedisEntity)]
    #[redis(cluster, key = "user:{id}")]
    #[redis(unique(key = "users:by_email", field = "email", cross_slot))]
    #[allow(dead_code)]
    struct User {
        id: String,
        email: String,
    }

    fn flags<T: Record>() -> Vec<(&'static str, bool)> {
        let indexes = T::descriptor().indexes.iter();
        indexes
            .map(|index| (index.name, index.cross_slot))
            .collect()
    }

    #[test]
    fn every_index_cross_slot_passes_without_a_tag() {
        let d = Job::descriptor();
        assert!(d.cluster);
        assert!(d.indexes[0].cross_slot);
        assert!(d.indexes[1].cross_slot);
        assert_eq!(flags::<Job>(), [("by_status", true), ("by_user_id", true)]);
    }

    #[test]
    fn a_stream_cross_slot_passes_without_a_tag() {
        let d = Queued::descriptor();
        assert!(d.cluster);
        let stream = d.stream.expect("a stream");
        assert_eq!(stream.key, "jobs:stream");
        assert!(stream.cross_slot);
        assert_eq!(flags::<Queued>(), [("by_status", true)]);
    }

    #[test]
    fn only_a_stream_marked_stream_cross_slot_is_cross_slot() {
        let feed = Feed::descriptor().stream.expect("a stream");
        assert!(feed.cross_slot);
        assert_eq!(feed.maxlen.map(|n| n.get()), Some(100));
        assert_eq!(flags::<Feed>(), [("by_owner", false)]);
        let pinned = super::Job::descriptor().stream.expect("a stream");
        assert!(!pinned.cross_slot);
    }

    #[test]
    fn only_the_marked_index_is_cross_slot() {
        assert_eq!(flags::<Board>(), [("by_owner", false), ("by_time", true)]);
        let run = flags::<super::Run>();
        assert!(run.iter().all(|&(_, cross_slot)| !cross_slot), "{run:?}");
    }

    #[test]
    fn a_unique_index_with_a_constant_key_may_be_cross_slot() {
        let d = User::descriptor();
        assert!(d.cluster);
        assert_eq!(d.indexes[0].key_pattern, "users:by_email");
        assert_eq!(flags::<User>(), [("by_email", true)]);
        let pinned = flags::<super::Job>();
        assert!(
            pinned.iter().all(|&(_, cross_slot)| !cross_slot),
            "{pinned:?}"
        );
    }
}

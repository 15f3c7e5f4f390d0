//! The main example's keyspace: it builds (no two of its keys can collide)
//! and its manifest, which services in other languages read, matches the
//! checked-in snapshot. After an intended change, re-bless with
//! `BLESS=1 cargo test --test keyspace` and review the diff.

#[allow(dead_code)]
#[path = "../examples/app/model.rs"]
mod model;

use std::path::PathBuf;

use model::{GitProvider, Job, Session, User};
use redis_runtime::keyspace;
use redis_runtime::keyspace::{KeyRole, Keyspace, KeyspaceError};

fn snapshot(name: &str, actual: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    redis_runtime::testing::assert_snapshot(&dir.join(name), actual);
}

fn app() -> Keyspace {
    keyspace!(User, Session, GitProvider, Job).expect("the example's keys never collide")
}

#[test]
fn the_example_manifest_matches_its_snapshot() {
    let keyspace = app();
    snapshot("app_keyspace.json", &keyspace.to_json());
    snapshot("app_keyspace.md", &keyspace.to_markdown());
}

#[test]
fn the_manifest_lists_every_key_a_job_touches() {
    let manifest = app().manifest();
    let job = manifest
        .entities
        .iter()
        .find(|e| e.name == "Job")
        .expect("Job");
    let patterns: Vec<&str> = job.keys.iter().map(|k| k.pattern.as_str()).collect();
    assert_eq!(
        patterns,
        [
            "job:{id}",
            "jobs:user:{user_id}",
            "jobs:status:{status}",
            "__ttl:job:id",
            "__ttl:job:id:fields",
            "jobs:stream",
            "job:{id}:output",
            "__pending_index:{{job:{id}}}",
            "__pending_index_lease:{{job:{id}}}",
        ]
    );
    assert!(
        !job.write_touches.contains(&"job:{id}:output".to_owned()),
        "the log is written by appends, not by entity writes"
    );
    // On a cluster the indexes and the stream follow the write.
    assert_eq!(
        job.cluster_write_touches,
        ["job:{id}", "__pending_index:{{job:{id}}}"]
    );
    let stream = job.stream.as_ref().expect("a stream");
    assert_eq!((stream.key, stream.max_len), ("jobs:stream", Some(10_000)));
}

mod clash {
    use redis_runtime::RedisEntity;

    #[derive(RedisEntity)]
    #[redis(key = "user:{id}")]
    pub(crate) struct User {
        pub(crate) id: String,
    }

    /// A second type whose unique index lives where a `User` could.
    #[derive(RedisEntity)]
    #[redis(key = "account:{id}")]
    #[redis(unique(key = "user:by_login", field = "login"))]
    pub(crate) struct Account {
        pub(crate) id: String,
        pub(crate) login: String,
    }
}

#[test]
fn keys_of_two_types_that_can_collide_are_refused_with_a_witness() {
    let err = keyspace!(clash::User, clash::Account).expect_err("user:{id} holds user:by_login");
    assert_eq!(err.code(), "KEYSPACE_OVERLAP");
    let KeyspaceError::Overlap {
        first,
        second,
        witness,
    } = &err
    else {
        panic!("an overlap: {err}");
    };
    assert_eq!((first.entity, first.role), ("User", KeyRole::Entity));
    assert_eq!(
        (second.entity, second.role),
        ("Account", KeyRole::Index("by_login"))
    );
    assert_eq!(witness, "user:by_login");
    let message = err.to_string();
    assert!(
        message.contains("`user:{id}`") && message.contains("`user:by_login`"),
        "{message}"
    );
}

/// A tenant's carts co-located by a `{user_id}` hash tag: the manifest says
/// which keys share the entity's Redis Cluster slot. The per-user index
/// does; the status index (no tag), the TTL registry (one key per type)
/// and the stream do not.
#[test]
fn the_manifest_says_which_keys_share_the_entity_slot() {
    use redis_runtime::{RedisEntity, RedisValue};

    #[derive(RedisValue, Debug, Clone, Copy, PartialEq)]
    enum CartState {
        Open,
        Paid,
    }

    #[derive(RedisEntity, Debug, Clone)]
    #[redis(key = "cart:{{{user_id}}}:{id}", stream = "carts:{{events}}")]
    #[redis(sorted_index(key = "carts:{{{user_id}}}:by_time", score = "at"))]
    #[redis(index(key = "carts:by_state:{state}"))]
    struct Cart {
        id: String,
        user_id: String,
        state: CartState,
        at: i64,
    }

    let manifest = keyspace!(Cart).expect("keys").manifest();
    let slots: Vec<(&str, &str, bool)> = manifest.entities[0]
        .keys
        .iter()
        .map(|k| (k.pattern.as_str(), k.slot.as_str(), k.in_entity_slot))
        .collect();
    assert_eq!(
        slots,
        [
            ("cart:{{{user_id}}}:{id}", "hash tag `{user_id}`", true),
            ("carts:{{{user_id}}}:by_time", "hash tag `{user_id}`", true),
            ("carts:by_state:{state}", "the whole key", false),
            ("__ttl:cart:user_id:id", "the whole key", false),
            ("__ttl:cart:user_id:id:fields", "the whole key", false),
            ("carts:{events}", "hash tag `events`", false),
        ]
    );
}

/// A type keeping the shared layout on a cluster with a `cross_slot`
/// index and a `stream_cross_slot` stream: the manifest lists the record
/// of pending moves and its lease, both in the entity's slot, and says the
/// index and the stream are written after the write, not by it. Its keys
/// still never collide with the example's.
#[test]
fn the_manifest_shows_cross_slot_indexes_and_their_pending_records() {
    use redis_runtime::RedisEntity;

    #[derive(RedisEntity, Debug, Clone)]
    #[redis(cluster, key = "build:{id}")]
    #[redis(stream = "builds:stream", stream_cross_slot)]
    #[redis(index(key = "builds:status:{status}", cross_slot))]
    struct Build {
        id: String,
        status: String,
    }

    let keyspace = keyspace!(User, Session, GitProvider, Job, Build).expect("no collision");
    let manifest = keyspace.manifest();
    let build = manifest
        .entities
        .iter()
        .find(|e| e.name == "Build")
        .expect("Build");
    let keys: Vec<(KeyRole, &str, bool)> = build
        .keys
        .iter()
        .map(|k| (k.role, k.pattern.as_str(), k.in_entity_slot))
        .collect();
    assert_eq!(
        keys,
        [
            (KeyRole::Entity, "build:{id}", true),
            (KeyRole::Index("by_status"), "builds:status:{status}", false),
            (KeyRole::TtlRegistry, "__ttl:build:id", false),
            (KeyRole::TtlRegistryFields, "__ttl:build:id:fields", false),
            (KeyRole::Stream, "builds:stream", false),
            (
                KeyRole::PendingIndexMoves,
                "__pending_index:{{build:{id}}}",
                true
            ),
            (
                KeyRole::PendingIndexLease,
                "__pending_index_lease:{{build:{id}}}",
                true
            ),
        ]
    );
    assert!(build.indexes[0].cross_slot);
    assert!(build.stream.as_ref().is_some_and(|s| s.cross_slot));
    // One server writes everything in the script; a cluster, the hash and
    // the record of what follows (no TTL registry: the type never expires).
    assert_eq!(
        build.write_touches,
        [
            "build:{id}",
            "builds:status:{status}",
            "__ttl:build:id",
            "__ttl:build:id:fields",
            "builds:stream"
        ]
    );
    assert_eq!(
        build.cluster_write_touches,
        ["build:{id}", "__pending_index:{{build:{id}}}"]
    );
    let markdown = keyspace.to_markdown();
    assert!(
        markdown.contains(
            "The `cross_slot` indexes `builds:status:{status}` are moved just after each write"
        ),
        "{markdown}"
    );
    assert!(
        markdown.contains("The stream `builds:stream` (`stream_cross_slot`) gets each create's entry just after the write"),
        "{markdown}"
    );
}

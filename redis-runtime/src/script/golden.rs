//! Golden tests: the generated scripts of three representative entity
//! types are checked in under `src/script/golden/` (as `.lua.snap`) and
//! compared exactly, so a reviewer sees every change to the generated Lua in
//! the diff.
//!
//! After an intended change, re-bless with
//! `BLESS=1 cargo test -p redis-runtime --lib script::golden`
//! and review the diff.

use std::num::NonZeroU64;
use std::path::PathBuf;

use redis_schema::{
    EntityDescriptor, FieldDescriptor, FieldEncoding, IndexDescriptor, IndexKind, PatternPart,
    StreamDescriptor,
};

use super::{assemble_fixed, write};

const fn field(hash_name: &'static str, is_key: bool) -> FieldDescriptor {
    FieldDescriptor {
        rust_name: hash_name,
        hash_name,
        optional: false,
        is_key,
        encoding: FieldEncoding::Text,
    }
}

const fn index(
    kind: IndexKind,
    name: &'static str,
    key_pattern: &'static str,
    key: &'static [PatternPart],
    value_field: Option<&'static str>,
) -> IndexDescriptor {
    IndexDescriptor {
        kind,
        name,
        key_pattern,
        key,
        value_field,
        cross_slot: false,
    }
}

use PatternPart::{Field, Literal};

/// A job's indexes: its user's jobs by creation time, jobs by status.
const JOB_BY_USER: IndexDescriptor = index(
    IndexKind::Sorted,
    "by_user_id",
    "jobs:user:{user_id}",
    &[Literal("jobs:user:"), Field(1)],
    Some("created_at"),
);
const JOB_BY_STATUS: IndexDescriptor = index(
    IndexKind::Set,
    "by_status",
    "jobs:status:{status}",
    &[Literal("jobs:status:"), Field(2)],
    None,
);

/// A job: sorted and set indexes, an outbox stream, no TTL.
pub(super) static JOB: EntityDescriptor = EntityDescriptor {
    name: "Job",
    key_pattern: "job:{id}",
    key: &[Literal("job:"), Field(0)],
    ttl_ms: None,
    fields: &[
        field("id", true),
        field("user_id", false),
        field("status", false),
        // Numeric: the client's score needs no check in the script.
        FieldDescriptor {
            encoding: FieldEncoding::Integer,
            ..field("created_at", false)
        },
    ],
    indexes: &[JOB_BY_USER, JOB_BY_STATUS],
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

/// A membership: a two-part key, a unique index, a TTL and a version
/// field, so the TTL registry, `key_of_member` and versioning come in.
static MEMBER: EntityDescriptor = EntityDescriptor {
    name: "Member",
    key_pattern: "member:{org}:{user}",
    key: &[Literal("member:"), Field(0), Literal(":"), Field(1)],
    ttl_ms: Some(86_400_000),
    fields: &[
        field("org", true),
        field("user", true),
        field("email", false),
        FieldDescriptor {
            encoding: FieldEncoding::Integer,
            ..field("version", false)
        },
    ],
    indexes: &[index(
        IndexKind::Unique,
        "by_email",
        "members:by_email",
        &[Literal("members:by_email")],
        Some("email"),
    )],
    stream: None,
    ttl_registry: Some("__ttl:member:org:user"),
    ttl_registry_per_tag: false,
    logs: &[],
    version: Some("version"),
    cluster: false,
};

/// A session: a TTL and nothing else.
static SESSION: EntityDescriptor = EntityDescriptor {
    name: "Session",
    key_pattern: "session:{id}",
    key: &[Literal("session:"), Field(0)],
    ttl_ms: Some(604_800_000),
    fields: &[field("id", true), field("user_id", false)],
    indexes: &[],
    stream: None,
    ttl_registry: None,
    ttl_registry_per_tag: false,
    logs: &[],
    version: None,
    cluster: false,
};

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/script/golden")
        .join(format!("{name}.lua.snap"));
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with BLESS=1 cargo test -p redis-runtime --lib script::golden",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "the generated {name} script differs from {}; if the change is intended, re-bless with \
         BLESS=1 cargo test -p redis-runtime --lib script::golden and review the diff.\n\
         --- generated ---\n{actual}",
        path.display()
    );
}

/// Checks the cluster write and create scripts of `descriptor` against
/// their golden files (`<name>.cluster.write`, `.create`) and returns them.
fn check_cluster_scripts(name: &str, descriptor: &'static EntityDescriptor) -> [String; 2] {
    let scripts = [false, true].map(|create| write::compile_deferring(descriptor, create));
    check(&format!("{name}.cluster.write"), &scripts[0]);
    check(&format!("{name}.cluster.create"), &scripts[1]);
    scripts
}

/// The write and create scripts of each single-server type.
#[test]
fn single_server_scripts() {
    for (name, descriptor) in [("job", &JOB), ("member", &MEMBER), ("session", &SESSION)] {
        check(&format!("{name}.write"), &write::compile(descriptor));
        check(
            &format!("{name}.create"),
            &write::compile_create(descriptor),
        );
    }
}

/// `JOB` as another service lays it out on a Redis Cluster: each job in
/// its own slot, both indexes global and declared `cross_slot`.
static SPREAD_JOB: EntityDescriptor = EntityDescriptor {
    indexes: &[
        IndexDescriptor {
            cross_slot: true,
            ..JOB_BY_USER
        },
        IndexDescriptor {
            cross_slot: true,
            ..JOB_BY_STATUS
        },
    ],
    // A stream is one key, in no entity's slot but its own: its entry is
    // recorded with the index moves.
    stream: Some(StreamDescriptor {
        cross_slot: true,
        key: "jobs:stream",
        maxlen: NonZeroU64::new(10_000),
    }),
    ttl_registry: Some("__ttl:job:id"),
    cluster: true,
    ..JOB
};

/// The cluster write of `SPREAD_JOB` records its index moves and its
/// stream entry in the pending key (`KEYS[2]`) and writes no index key, no
/// stream and no TTL registry.
#[test]
fn spread_job_cluster_write_script() {
    for script in check_cluster_scripts("spread_job", &SPREAD_JOB) {
        for absent in [
            "'SADD'",
            "'ZADD'",
            "'SREM'",
            "'ZREM'",
            "__ttl",
            "jobs:stream",
        ] {
            assert!(!script.contains(absent), "{absent} in a deferring script");
        }
        assert!(script.contains("local pending = KEYS[2]"));
    }
}

/// A user as other services lay it out: each in its own slot, the unique
/// email hash global and declared `cross_slot`, no TTL.
static SPREAD_USER: EntityDescriptor = EntityDescriptor {
    name: "User",
    key_pattern: "user:{id}",
    key: &[Literal("user:"), Field(0)],
    ttl_ms: None,
    fields: &[field("id", true), field("email", false)],
    indexes: &[IndexDescriptor {
        cross_slot: true,
        ..index(
            IndexKind::Unique,
            "by_email",
            "users:by_email",
            &[Literal("users:by_email")],
            Some("email"),
        )
    }],
    stream: None,
    ttl_registry: None,
    ttl_registry_per_tag: false,
    logs: &[],
    version: None,
    cluster: true,
};

/// The cluster write of `SPREAD_USER` never reads or writes the unique
/// hash: it refuses a new email without the claim token (`KEYS[4]`, the
/// fence), records the claims to come and the email it leaves in the
/// pending key, and takes the claim token as `ARGV[5]` (its lease token
/// as `ARGV[6]`).
#[test]
fn spread_user_cluster_write_script() {
    for script in check_cluster_scripts("spread_user", &SPREAD_USER) {
        assert!(
            !script.contains("users:by_email', n"),
            "no unique hash access"
        );
        assert!(!script.contains("'HGET', new_k"), "no holder check");
        assert!(
            script.contains("claim_first(KEYS[4], KEYS[2], ARGV[5],"),
            "the fence is read and the token checked before any write"
        );
        assert!(script.contains("local nset = tonumber(ARGV[7])"));
    }
}

#[test]
fn member_query_script() {
    check(
        "member.query",
        &assemble_fixed(&MEMBER, "query", include_str!("../scripts/query.lua")),
    );
}

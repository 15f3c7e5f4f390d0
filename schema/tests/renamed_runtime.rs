//! `#[redis(crate = "...")]`: generated code reaches the runtime through
//! the given path, for applications that rename the dependency.
//!
//! It lives in the schema crate because that is the one crate of the
//! workspace that does not depend on the runtime as `redis_runtime`: here
//! any generated `::redis_runtime` path would fail to compile.

use renamed_runtime::{Entity, KeyPart, Record};

#[derive(renamed_runtime::RedisEntity, Debug, Clone, PartialEq)]
#[redis(crate = "renamed_runtime", key = "note:{id}", ttl = "1h")]
#[redis(index(key = "notes:tag:{tag}"))]
struct Note {
    id: u64,
    tag: String,
    body: Option<String>,
}

#[derive(renamed_runtime::RedisValue, Debug, Clone, Copy, PartialEq)]
#[redis(crate = "renamed_runtime")]
enum Mood {
    Calm,
}

#[derive(renamed_runtime::RedisRecord, Debug, Clone, PartialEq)]
#[redis(crate = "renamed_runtime")]
struct Event {
    mood: Mood,
}

#[test]
fn derives_work_through_a_renamed_runtime_path() {
    assert_eq!(Note::key_for(&7u64).expect("key"), "note:7");
    assert_eq!(Note::descriptor().ttl_ms, Some(3_600_000));
    assert_eq!(Note::descriptor().indexes[0].name, "by_tag");
    assert_eq!(Event::descriptor().fields[0].hash_name, "mood");
    assert_eq!(Mood::Calm.key_part(), "calm");
    let note = Note {
        id: 7,
        tag: "work".into(),
        body: None,
    };
    assert_eq!(note.member().expect("member"), "7");
    let patch = NotePatch {
        body: Some(Some("hello".into())),
        ..Default::default()
    };
    assert!(patch.tag.is_none());
}

//! Hygiene: the derives must compile next to local types that shadow the
//! prelude (`Result`, `Option`, `Some`, `None`, `Ok`, `Err`, `String`,
//! `Vec`, `Box`, `Default`, ...) and the primitive types (`str`, `u8`,
//! `i64`, `u64`, `bool`), with nothing but `redis_runtime`
//! reachable, and without a single warning: not even `missing_docs` on the
//! public items they generate (the patch struct, its fields, the inherent
//! methods).

#![deny(warnings)]
#![deny(missing_docs)]

/// Every derive, used with all of its attributes, inside a module whose
/// scope shadows the names generated code could accidentally rely on.
pub mod shadowed {
    #[allow(dead_code)]
    struct Result;
    #[allow(dead_code)]
    struct Option;
    #[allow(dead_code)]
    struct Vec;
    #[allow(dead_code)]
    struct String;
    #[allow(dead_code)]
    struct Box;
    #[allow(dead_code)]
    struct Some;
    #[allow(dead_code)]
    struct None;
    #[allow(dead_code)]
    struct Ok;
    #[allow(dead_code)]
    struct Err;
    #[allow(dead_code)]
    struct Default;
    #[allow(dead_code)]
    struct Send;
    #[allow(dead_code)]
    struct Sync;
    #[allow(dead_code)]
    struct Sized;
    #[allow(dead_code)]
    struct Iterator;
    #[allow(dead_code)]
    struct IntoIterator;
    #[allow(dead_code)]
    struct From;
    #[allow(dead_code)]
    struct Into;
    #[allow(dead_code)]
    struct Clone;
    #[allow(dead_code)]
    struct Copy;
    #[allow(dead_code)]
    struct ToString;
    #[allow(dead_code)]
    struct Cow;
    #[allow(dead_code)]
    struct Duration;
    #[allow(dead_code)]
    struct Client;
    #[allow(dead_code)]
    struct Error;
    #[allow(dead_code)]
    struct Record;
    #[allow(dead_code)]
    struct Entity;
    #[allow(dead_code)]
    struct Patch;
    #[allow(dead_code)]
    struct FieldValue;
    #[allow(dead_code)]
    struct KeyPart;
    #[allow(dead_code, non_camel_case_types)]
    struct core;
    #[allow(dead_code, non_camel_case_types)]
    struct std;
    #[allow(dead_code, non_camel_case_types)]
    struct alloc;
    #[allow(dead_code, non_camel_case_types)]
    struct str;
    #[allow(dead_code, non_camel_case_types)]
    struct u8;
    #[allow(dead_code, non_camel_case_types)]
    struct i64;
    #[allow(dead_code, non_camel_case_types)]
    struct u64;
    #[allow(dead_code, non_camel_case_types)]
    struct bool;

    /// How far along a thing is.
    #[derive(redis_runtime::RedisValue, Debug, PartialEq, Eq)]
    #[redis(rename_all = "kebab-case")]
    pub enum Phase {
        /// Not started.
        NotStarted,
        /// Running.
        InProgress,
        /// Finished, stored as `"done"`; reads `"finished"` too.
        #[redis(rename = "done", alias = "finished")]
        Finished,
    }

    /// A record whose fields other clients spell differently.
    #[derive(redis_runtime::RedisRecord)]
    #[redis(rename_all = "camelCase")]
    pub struct Renamed {
        /// Was `full_name`, and before that `name` (preferred in that order).
        #[redis(alias = "full_name", alias = "name")]
        pub display_name: ::std::string::String,
        /// An empty value reads as `None`, although `""` is a `String`.
        #[redis(empty_is_none)]
        pub nickname: ::core::option::Option<::std::string::String>,
        /// An empty value is a decode error.
        #[redis(empty_is_some)]
        pub score: ::core::option::Option<::core::primitive::i64>,
        /// An empty value reads as `None` (the default for numbers).
        pub level: ::core::option::Option<::core::primitive::i64>,
        /// An empty value stays `Some("")` (the default for text).
        pub motto: ::core::option::Option<::std::string::String>,
    }

    /// An entity that uses every container and field attribute.
    #[derive(redis_runtime::RedisEntity)]
    #[redis(key = "thing:{tenant}:{id}", ttl = "1h 30m", stream = "things:stream")]
    #[redis(stream_maxlen = 100)]
    #[redis(index(key = "things:phase:{phase}"))]
    #[redis(sorted_index(key = "things:owner:{owner}", score = "created_at"))]
    #[redis(unique(key = "things:by_slug", field = "slug"))]
    pub struct Thing {
        /// Tenant, first key part.
        pub tenant: ::std::string::String,
        /// Id, second key part.
        pub id: ::core::primitive::u64,
        /// Owner, in the sorted index key.
        pub owner: ::std::string::String,
        /// Unique slug.
        pub slug: ::std::string::String,
        /// Set-indexed phase.
        pub phase: Phase,
        /// Score of the sorted index.
        #[redis(rename = "createdAt")]
        pub created_at: ::core::primitive::i64,
        /// Stored as JSON.
        #[redis(json)]
        pub labels: ::std::collections::BTreeMap<::std::string::String, ::std::string::String>,
        /// `None` is no hash field.
        pub note: ::core::option::Option<::std::string::String>,
        /// A list, stored as JSON, that may be absent.
        #[redis(json)]
        pub history: ::core::option::Option<::std::vec::Vec<u32>>,
        /// Not stored.
        #[redis(skip)]
        pub cached: ::std::vec::Vec<::core::primitive::u8>,
        /// Missing reads as `false`.
        #[redis(default)]
        pub flagged: ::core::primitive::bool,
        /// Raw bytes.
        pub blob: ::std::vec::Vec<::core::primitive::u8>,
    }

    /// An entity that expires at a timestamp it carries, with a renamed
    /// patch type.
    #[derive(redis_runtime::RedisEntity)]
    #[redis(key = "token:{id}", patch = "TokenChanges", rename_all = "camelCase")]
    pub struct Token {
        /// Key.
        pub id: ::std::string::String,
        /// When it expires.
        #[redis(expires_at)]
        pub valid_until: ::std::time::SystemTime,
        /// Optional, patchable.
        pub scope: ::core::option::Option<::std::string::String>,
    }

    /// A private entity: generated methods it never calls must not warn.
    #[derive(redis_runtime::RedisEntity)]
    #[redis(key = "private:{id}")]
    struct Private {
        id: ::std::string::String,
        value: ::core::option::Option<::core::primitive::i64>,
    }

    /// The key of a private entity (constructs it, so the struct itself is
    /// used; its unused generated methods must still not warn).
    pub fn private_key(id: &::core::primitive::str) -> ::std::string::String {
        let private = Private {
            id: id.into(),
            value: ::core::option::Option::None,
        };
        let _ = private.value;
        <Private as redis_runtime::Entity>::key(&private).expect("valid key")
    }

    /// A stream message.
    #[derive(redis_runtime::RedisRecord)]
    #[redis(rename_all = "SCREAMING_SNAKE_CASE")]
    pub struct Event {
        /// Which thing.
        pub thing_id: ::core::primitive::u64,
        /// Its phase.
        pub phase: Phase,
        /// Optional detail.
        pub detail: ::core::option::Option<::std::string::String>,
        /// JSON payload.
        #[redis(json)]
        pub payload: ::std::vec::Vec<::std::string::String>,
        /// Not stored.
        #[redis(skip)]
        pub local: ::core::primitive::u8,
    }
}

/// `#[derive(RedisValue)]` next to types that shadow the primitive type
/// names it uses (`str`, `u8`, `bool`), with no other shadowing around.
pub mod shadowed_primitives {
    #[allow(dead_code, non_camel_case_types)]
    struct str;
    #[allow(dead_code, non_camel_case_types)]
    struct u8;
    #[allow(dead_code, non_camel_case_types)]
    struct bool;

    /// A light.
    #[derive(redis_runtime::RedisValue, Debug, PartialEq, Eq)]
    pub enum Light {
        /// Red.
        Red,
        /// Green, stored as `"go"`.
        #[redis(rename = "go")]
        Green,
    }
}

use std::collections::BTreeMap;

use redis_runtime::{Entity, Record};
use shadowed::{Event, Phase, Renamed, Thing, ThingPatch, Token, TokenChanges};

/// Collects written fields, `None` for an absent one.
#[derive(Default)]
struct Sink(Vec<(&'static str, Option<Vec<u8>>)>);

impl redis_runtime::codec::FieldSink for Sink {
    fn put(&mut self, name: &'static str, value: &[u8]) {
        self.0.push((name, Some(value.to_vec())));
    }
    fn absent(&mut self, name: &'static str) {
        self.0.push((name, None));
    }
}

impl Sink {
    /// What `record` writes, as text.
    fn of(record: &impl Record) -> Self {
        let mut sink = Sink::default();
        record.write_fields(&mut sink).expect("write");
        sink
    }

    fn text(&self) -> Vec<(&'static str, Option<String>)> {
        self.0
            .iter()
            .map(|(name, value)| {
                let value = value
                    .as_ref()
                    .map(|v| String::from_utf8(v.clone()).expect("utf-8"));
                (*name, value)
            })
            .collect()
    }
}

fn thing() -> Thing {
    Thing {
        tenant: "acme".into(),
        id: 7,
        owner: "ada".into(),
        slug: "first-thing".into(),
        phase: Phase::InProgress,
        created_at: 1_700_000_000_000,
        labels: BTreeMap::from([("k".into(), "v".into())]),
        note: None,
        history: Some(vec![1, 2]),
        cached: vec![9],
        flagged: true,
        blob: b"raw".to_vec(),
    }
}

#[test]
fn entity_descriptor_names_every_stored_field() {
    let d = <Thing as Record>::descriptor();
    assert_eq!(d.name, "Thing");
    assert_eq!(d.key_pattern, "thing:{tenant}:{id}");
    assert_eq!(d.ttl_ms, Some(90 * 60 * 1000));
    let names: Vec<(&str, &str, bool, bool)> = d
        .fields
        .iter()
        .map(|f| (f.rust_name, f.hash_name, f.optional, f.is_key))
        .collect();
    assert_eq!(
        names,
        [
            ("tenant", "tenant", false, true),
            ("id", "id", false, true),
            ("owner", "owner", false, false),
            ("slug", "slug", false, false),
            ("phase", "phase", false, false),
            ("created_at", "createdAt", false, false),
            ("labels", "labels", false, false),
            ("note", "note", true, false),
            ("history", "history", true, false),
            ("flagged", "flagged", false, false),
            ("blob", "blob", false, false),
        ]
    );
    let indexes: Vec<(&str, &str, Option<&str>)> = d
        .indexes
        .iter()
        .map(|i| (i.name, i.key_pattern, i.value_field))
        .collect();
    assert_eq!(
        indexes,
        [
            ("by_phase", "things:phase:{phase}", None),
            ("by_owner", "things:owner:{owner}", Some("createdAt")),
            ("by_slug", "things:by_slug", Some("slug")),
        ]
    );
    let stream = d.stream.expect("stream");
    assert_eq!(
        (stream.key, stream.maxlen.map(::std::num::NonZeroU64::get)),
        ("things:stream", Some(100))
    );

    use redis_runtime::schema::PatternPart;
    assert_eq!(
        d.key,
        [
            PatternPart::Literal("thing:"),
            PatternPart::Field(0),
            PatternPart::Literal(":"),
            PatternPart::Field(1),
        ]
    );
    assert_eq!(
        d.indexes[0].key,
        [PatternPart::Literal("things:phase:"), PatternPart::Field(4)]
    );
    assert_eq!(d.ttl_registry, Some("__ttl:thing:tenant:id"));
}

#[test]
fn keys_are_built_and_checked() {
    assert_eq!(
        Thing::key_for("acme", &7u64).expect("valid"),
        "thing:acme:7"
    );
    let err = Thing::key_for("ac:me", &7u64).expect_err("a `:` is rejected");
    assert_eq!(err.code(), "INVALID_KEY");
    let t = thing();
    assert_eq!(t.key().expect("key"), "thing:acme:7");
    assert_eq!(t.member().expect("member"), "acme:7");
    assert_eq!(Token::key_for("t1").expect("valid"), "token:t1");
    assert_eq!(shadowed::private_key("p1"), "private:p1");

    let mut bad = thing();
    bad.owner = "a:b".into();
    let err = bad
        .check_index_values()
        .expect_err("index values are key-checked");
    assert_eq!(err.code(), "INVALID_KEY");
}

#[test]
fn entity_fields_round_trip_through_the_codec() {
    let t = thing();
    let sink = Sink::of(&t);
    assert_eq!(
        sink.text(),
        [
            ("tenant", Some("acme".into())),
            ("id", Some("7".into())),
            ("owner", Some("ada".into())),
            ("slug", Some("first-thing".into())),
            ("phase", Some("in-progress".into())),
            ("createdAt", Some("1700000000000".into())),
            ("labels", Some(r#"{"k":"v"}"#.into())),
            ("note", None),
            ("history", Some("[1,2]".into())),
            ("flagged", Some("true".into())),
            ("blob", Some("raw".into())),
        ]
    );
    let raw: Vec<(&[u8], &[u8])> = sink
        .0
        .iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name.as_bytes(), v)))
        .filter(|(name, _)| *name != b"flagged")
        .collect();
    let back = Thing::read_fields("thing:acme:7", &raw).expect("read");
    assert_eq!(back.key().expect("key"), "thing:acme:7");
    assert_eq!(back.phase, Phase::InProgress);
    assert_eq!(back.labels, t.labels);
    assert_eq!(back.history, Some(vec![1, 2]));
    assert_eq!(back.note, None);
    assert_eq!(back.blob, b"raw");
    assert!(back.cached.is_empty(), "skip reads as Default");
    assert!(!back.flagged, "default reads a missing field as Default");
}

#[test]
fn patch_types_exist_and_default_to_untouched() {
    use redis_runtime::Patch;

    let patch = ThingPatch::default();
    assert!(patch.owner.is_none() && patch.note.is_none() && patch.phase.is_none());
    let mut sink = Sink::default();
    patch.write_patch(&mut sink).expect("write");
    assert!(sink.0.is_empty(), "an empty patch writes nothing");

    let patch = ThingPatch {
        phase: Some(Phase::Finished),
        note: Some(None),
        ..ThingPatch::default()
    };
    let mut sink = Sink::default();
    patch.write_patch(&mut sink).expect("write");
    assert_eq!(
        sink.text(),
        [("phase", Some("done".into())), ("note", None)]
    );

    let changes = TokenChanges {
        scope: Some(Some("read".into())),
        ..TokenChanges::default()
    };
    let mut sink = Sink::default();
    changes.write_patch(&mut sink).expect("write");
    assert_eq!(sink.text(), [("scope", Some("read".into()))]);
}

#[test]
fn expires_at_is_reported_to_the_runtime() {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_800_000_000_000);
    let token = Token {
        id: "t1".into(),
        valid_until: at,
        scope: None,
    };
    assert_eq!(
        token.expires_at_ms().expect("expiry"),
        Some(1_800_000_000_000)
    );
    let d = <Token as Record>::descriptor();
    assert_eq!(d.ttl_ms, None);
    assert!(d.field("validUntil").is_some());
}

#[test]
fn record_descriptor_and_codec() {
    let d = <Event as Record>::descriptor();
    let names: Vec<&str> = d.fields.iter().map(|f| f.hash_name).collect();
    assert_eq!(names, ["THING_ID", "PHASE", "DETAIL", "PAYLOAD"]);
    assert_eq!(d.key_pattern, "");
    let event = Event {
        thing_id: 7,
        phase: Phase::NotStarted,
        detail: Some("x".into()),
        payload: vec!["a".into()],
        local: 3,
    };
    assert_eq!(
        Sink::of(&event).text(),
        [
            ("THING_ID", Some("7".into())),
            ("PHASE", Some("not-started".into())),
            ("DETAIL", Some("x".into())),
            ("PAYLOAD", Some(r#"["a"]"#.into())),
        ]
    );
}

#[test]
fn value_codec_and_key_part() {
    use redis_runtime::{FieldValue, KeyPart};
    use shadowed_primitives::Light;

    let mut out = Vec::new();
    Light::Green.encode_value(&mut out).expect("encode");
    assert_eq!(out, b"go");
    assert_eq!(Light::decode_value(b"red"), Ok(Light::Red));
    let err = Light::decode_value(b"Green").expect_err("only stored names decode");
    assert!(err.contains("go"), "{err}");
    assert_eq!(Light::Green.key_part(), "go");
    assert_eq!(Phase::InProgress.key_part(), "in-progress");
}

/// A unique lookup on a `String` field takes any `&str`-like value.
#[allow(dead_code)]
async fn unique_lookups_take_str(client: &redis_runtime::Client) -> redis_runtime::Result<()> {
    let _ = Thing::by_slug(client, "first-thing").await?;
    let _ = Thing::by_slug(client, &"first-thing".to_string()).await?;
    let slug: &str = "first-thing";
    let _ = Thing::by_slug(client, slug).await?;
    Ok(())
}

#[test]
fn reads_accept_aliases_case_and_empty_values() {
    use redis_runtime::FieldValue;

    let raw: Vec<(&[u8], &[u8])> = vec![
        (b"name", b"Oldest"),
        (b"full_name", b"Old"),
        (b"nickname", b""),
        (b"level", b""),
        (b"motto", b""),
    ];
    let r = Renamed::read_fields("k", &raw).expect("read");
    assert_eq!(r.display_name, "Old", "the first alias is preferred");
    assert_eq!(r.nickname, None, "empty_is_none");
    assert_eq!(r.score, None, "absent");
    assert_eq!(r.level, None, "an empty number is None");
    assert_eq!(r.motto, Some(String::new()), "an empty String is a value");

    let raw: Vec<(&[u8], &[u8])> = vec![(b"full_name", b"Old"), (b"displayName", b"New")];
    let r = Renamed::read_fields("k", &raw).expect("read");
    assert_eq!(r.display_name, "New", "the canonical name wins");
    let written: Vec<&str> = Sink::of(&r).0.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        written,
        ["displayName", "nickname", "score", "level", "motto"]
    );

    let raw: Vec<(&[u8], &[u8])> = vec![(b"displayName", b"x"), (b"score", b"")];
    let err = Renamed::read_fields("k", &raw).err();
    assert_eq!(
        err.map(|e| e.code()),
        Some("DECODE"),
        "empty_is_some is strict"
    );

    assert_eq!(Phase::decode_value(b"DONE"), Ok(Phase::Finished));
    assert_eq!(Phase::decode_value(b"Finished"), Ok(Phase::Finished));
    assert_eq!(Phase::decode_value(b"In-Progress"), Ok(Phase::InProgress));
    let mut out = Vec::new();
    Phase::Finished.encode_value(&mut out).expect("encode");
    assert_eq!(out, b"done", "writes stay canonical");
}

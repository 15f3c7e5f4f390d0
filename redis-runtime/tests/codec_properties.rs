//! Property tests of the field codec, through a `#[derive(RedisRecord)]`
//! struct holding every supported field type that needs no cargo feature.
//!
//! A record is encoded with `Record::write_fields` into a sink that collects
//! `(name, bytes)` pairs (and the names written as absent), then decoded
//! with `Record::read_fields` from those pairs, as a hash read would.
//!
//! Conventions checked here:
//! - floats are compared by value *and* by bits, so `-0.0` must come back as
//!   `-0.0` and infinities as themselves; NaN is refused on encode;
//! - `SystemTime` is stored at millisecond precision: whole-record round
//!   trips use millisecond-aligned times, and a separate property checks
//!   that any time comes back floored to its millisecond (pre-epoch times
//!   included);
//! - decoding never panics: any bytes give `Ok` or a `DECODE` error naming
//!   the key and the field.
//! - the extremes of the millisecond range (`i64::MIN` ms, about 292
//!   million years before the epoch) encode and floor correctly (two
//!   regression tests at the end pin inputs that once failed).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use redis_runtime::codec::{FieldSink, reply_pairs};
use redis_runtime::{Error, Record, RedisRecord, RedisValue};
use serde::{Deserialize, Serialize};

/// A unit enum stored by name.
#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq)]
enum Color {
    Red,
    DarkGreen,
    #[redis(rename = "blue")]
    Navy,
}

/// A nested serde struct, stored inside a `json` field.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Nested {
    name: String,
    counts: Vec<i64>,
    flags: BTreeMap<String, bool>,
    level: Option<u8>,
}

/// Every supported non-feature field type.
#[derive(RedisRecord, Debug, Clone, PartialEq)]
struct Everything {
    text: String,
    n_i8: i8,
    n_i16: i16,
    n_i32: i32,
    n_i64: i64,
    n_i128: i128,
    n_isize: isize,
    n_u8: u8,
    n_u16: u16,
    n_u32: u32,
    n_u64: u64,
    n_u128: u128,
    n_usize: usize,
    x_f32: f32,
    x_f64: f64,
    flag: bool,
    bytes: Vec<u8>,
    at: SystemTime,
    color: Color,
    note: Option<String>,
    count: Option<i64>,
    #[redis(json)]
    table: BTreeMap<String, Vec<i32>>,
    #[redis(json)]
    nested: Option<Nested>,
}

/// Every stored field, in declaration order.
const FIELDS: [&str; 23] = [
    "text", "n_i8", "n_i16", "n_i32", "n_i64", "n_i128", "n_isize", "n_u8", "n_u16", "n_u32",
    "n_u64", "n_u128", "n_usize", "x_f32", "x_f64", "flag", "bytes", "at", "color", "note",
    "count", "table", "nested",
];

/// The `Option` fields: no hash field when `None`.
const OPTIONAL: [&str; 3] = ["note", "count", "nested"];

const KEY: &str = "everything:1";

/// Collects a write: every field in write order, with its bytes, or with
/// `None` when it is written absent.
#[derive(Debug, Default)]
struct Collected(Vec<(&'static str, Option<Vec<u8>>)>);

impl FieldSink for Collected {
    fn put(&mut self, name: &'static str, value: &[u8]) {
        self.0.push((name, Some(value.to_vec())));
    }
    fn absent(&mut self, name: &'static str) {
        self.0.push((name, None));
    }
}

impl Collected {
    /// The present fields as `read_fields` takes them.
    fn raw(&self) -> Vec<(&[u8], &[u8])> {
        let present = self.0.iter().filter_map(|(name, value)| {
            let value = value.as_deref()?;
            Some((name.as_bytes(), value))
        });
        present.collect()
    }

    /// The bytes of the first present field called `name`.
    fn get(&self, name: &str) -> Option<&[u8]> {
        let mut named = self.0.iter().filter(|(n, _)| *n == name);
        named.find_map(|(_, value)| value.as_deref())
    }

    /// Every name written, present or absent.
    fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|(name, _)| *name).collect()
    }

    /// The names written absent.
    fn absent_names(&self) -> Vec<&'static str> {
        let absent = self.0.iter().filter(|(_, value)| value.is_none());
        absent.map(|(name, _)| *name).collect()
    }

    /// Replaces the bytes of every present field called `name`.
    fn replace(&mut self, name: &str, bytes: &[u8]) {
        for (n, value) in &mut self.0 {
            if let Some(value) = value.as_mut().filter(|_| *n == name) {
                *value = bytes.to_vec();
            }
        }
    }
}

fn encode(record: &Everything) -> redis_runtime::Result<Collected> {
    let mut sink = Collected::default();
    record.write_fields(&mut sink)?;
    Ok(sink)
}

fn decode(pairs: &[(&[u8], &[u8])]) -> redis_runtime::Result<Everything> {
    Everything::read_fields(KEY, pairs)
}

/// Asserts `back == original`, floats also by bits (`-0.0` stays `-0.0`).
fn assert_same(back: &Everything, original: &Everything) {
    assert_eq!(back, original);
    assert_eq!(back.x_f32.to_bits(), original.x_f32.to_bits(), "f32 bits");
    assert_eq!(back.x_f64.to_bits(), original.x_f64.to_bits(), "f64 bits");
}

/// The field a `DECODE` error names, or a panic describing what came back.
fn decode_error_field(err: &Error) -> &str {
    match err {
        Error::Decode { key, field, .. } => {
            assert_eq!(key, KEY, "a DECODE error names the key");
            assert_eq!(err.code(), "DECODE");
            field
        }
        other => panic!("expected a DECODE error, got {other:?}"),
    }
}

fn sample() -> Everything {
    Everything {
        text: "hello".into(),
        n_i8: -8,
        n_i16: -16,
        n_i32: -32,
        n_i64: -64,
        n_i128: -128,
        n_isize: -1,
        n_u8: 8,
        n_u16: 16,
        n_u32: 32,
        n_u64: 64,
        n_u128: 128,
        n_usize: 1,
        x_f32: 1.5,
        x_f64: -2.25,
        flag: true,
        bytes: vec![0, 1, 255],
        at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        color: Color::DarkGreen,
        note: Some("n".into()),
        count: Some(3),
        table: BTreeMap::from([("a".into(), vec![1, -2])]),
        nested: Some(Nested {
            name: "x".into(),
            counts: vec![i64::MIN, i64::MAX],
            flags: BTreeMap::from([("on".into(), true)]),
            level: None,
        }),
    }
}

// ----- strategies -----

/// Integers with their bounds and zero over-represented.
fn int<T>(min: T, max: T, zero: T) -> impl Strategy<Value = T>
where
    T: Arbitrary + Clone + std::fmt::Debug + 'static,
{
    prop_oneof![
        1 => Just(min),
        1 => Just(max),
        1 => Just(zero),
        6 => any::<T>(),
    ]
}

/// Defines `$name`, a strategy for any non-NaN `$float`: every bit
/// pattern (from `$bits`), plus the interesting values, those of both
/// widths and the `$extra` ones.
macro_rules! finite_or_infinite {
    ($name:ident, $float:ident, $bits:ty, [$($extra:expr),* $(,)?]) => {
        fn $name() -> impl Strategy<Value = $float> {
            let special = vec![
                0.0,
                -0.0,
                $float::INFINITY,
                $float::NEG_INFINITY,
                $float::MIN,
                $float::MAX,
                $float::MIN_POSITIVE,
                $float::from_bits(1),
                0.1,
                $($extra),*
            ];
            prop_oneof![
                4 => any::<$bits>().prop_map($float::from_bits),
                1 => prop::sample::select(special),
            ]
            .prop_filter("NaN is refused by design", |x| !x.is_nan())
        }
    };
}

finite_or_infinite!(
    finite_or_infinite_f64,
    f64,
    u64,
    [f64::EPSILON, -f64::from_bits(1), 1e300]
);
finite_or_infinite!(finite_or_infinite_f32, f32, u32, []);

/// A tuple of [`int`] strategies over the whole range of each type named.
macro_rules! full_range {
    ($($int:ty),*) => {
        ($(int(<$int>::MIN, <$int>::MAX, 0),)*)
    };
}

/// Any NaN bit pattern (quiet or signalling, either sign).
fn nan_f64() -> impl Strategy<Value = f64> {
    (any::<bool>(), 1u64..(1 << 52)).prop_map(|(negative, mantissa)| {
        f64::from_bits(((negative as u64) << 63) | (0x7ff << 52) | mantissa)
    })
}

fn nan_f32() -> impl Strategy<Value = f32> {
    (any::<bool>(), 1u32..(1 << 23)).prop_map(|(negative, mantissa)| {
        f32::from_bits(((negative as u32) << 31) | (0xff << 23) | mantissa)
    })
}

/// Unicode text, with NUL, emoji, combining marks, RTL and separators
/// mixed in among arbitrary scalar values.
fn unicode_string() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '\0',
        '\u{1}',
        '\n',
        '\r',
        '\t',
        ' ',
        '"',
        '\\',
        ':',
        '{',
        '}',
        '*',
        '\u{7f}',
        '\u{ad}',
        '\u{200b}',
        '\u{200d}',
        '\u{202e}',
        '\u{2028}',
        '\u{feff}',
        '\u{fffd}',
        '\u{ffff}',
        '\u{10ffff}',
        '\u{301}',
        '\u{308}',
        '\u{20dd}',
        'é',
        'ß',
        'ﬁ',
        'İ',
        '中',
        '😀',
        '👩',
        '🏽',
        '🇫',
        '🇷',
    ]);
    prop::collection::vec(
        prop_oneof![2 => any::<char>(), 2 => special, 1 => prop::char::range('a', 'z')],
        0..48,
    )
    .prop_map(String::from_iter)
}

/// A `SystemTime` `ms` milliseconds plus `sub_ms_nanos` after the epoch.
fn time_at(ms: i64, sub_ms_nanos: u32) -> SystemTime {
    let whole = if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    };
    whole + Duration::from_nanos(u64::from(sub_ms_nanos))
}

/// The earliest millisecond the codec can encode.
const MIN_ENCODABLE_MS: i64 = i64::MIN;

/// Millisecond-aligned times over the whole encodable millisecond range.
fn millisecond_time() -> impl Strategy<Value = SystemTime> {
    int(MIN_ENCODABLE_MS, i64::MAX, 0).prop_map(|ms| time_at(ms, 0))
}

fn color() -> impl Strategy<Value = Color> {
    prop::sample::select(vec![Color::Red, Color::DarkGreen, Color::Navy])
}

fn nested() -> impl Strategy<Value = Nested> {
    (
        unicode_string(),
        prop::collection::vec(any::<i64>(), 0..6),
        prop::collection::btree_map(unicode_string(), any::<bool>(), 0..4),
        any::<Option<u8>>(),
    )
        .prop_map(|(name, counts, flags, level)| Nested {
            name,
            counts,
            flags,
            level,
        })
}

/// `None`, `Some("")` and other strings, each often.
fn optional_string() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(String::new())),
        unicode_string().prop_map(Some),
    ]
}

fn everything() -> impl Strategy<Value = Everything> {
    let signed = full_range!(i8, i16, i32, i64, i128, isize);
    let unsigned = full_range!(u8, u16, u32, u64, u128, usize);
    let others = (
        finite_or_infinite_f32(),
        finite_or_infinite_f64(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..32),
        millisecond_time(),
        color(),
    );
    let optional = (
        optional_string(),
        prop_oneof![Just(None), int(i64::MIN, i64::MAX, 0).prop_map(Some)],
        prop::collection::btree_map(
            unicode_string(),
            prop::collection::vec(any::<i32>(), 0..4),
            0..4,
        ),
        prop::option::of(nested()),
    );
    (unicode_string(), signed, unsigned, others, optional).prop_map(
        |(
            text,
            (n_i8, n_i16, n_i32, n_i64, n_i128, n_isize),
            (n_u8, n_u16, n_u32, n_u64, n_u128, n_usize),
            (x_f32, x_f64, flag, bytes, at, color),
            (note, count, table, nested),
        )| Everything {
            text,
            n_i8,
            n_i16,
            n_i32,
            n_i64,
            n_i128,
            n_isize,
            n_u8,
            n_u16,
            n_u32,
            n_u64,
            n_u128,
            n_usize,
            x_f32,
            x_f64,
            flag,
            bytes,
            at,
            color,
            note,
            count,
            table,
            nested,
        },
    )
}

/// Bytes a hostile or corrupted hash could hold: random bytes, and text
/// that is almost valid for one of the codecs.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let near_valid = prop::sample::select(vec![
        "",
        "-",
        "+",
        "+1",
        "-0",
        "00",
        " 1",
        "1 ",
        "1_000",
        "0x10",
        "1e3",
        "1.0",
        ".5",
        "5.",
        "inf",
        "-inf",
        "+inf",
        "infinity",
        "NaN",
        "nan",
        "-nan",
        "true",
        "false",
        "TRUE",
        "1",
        "0",
        "2",
        "yes",
        "null",
        "{}",
        "[]",
        "[1,",
        "{\"a\":[1]}",
        "{\"a\":\"b\"}",
        "\"x\"",
        "red",
        "dark_green",
        "blue",
        "navy",
        "Red",
        "340282366920938463463374607431768211456",
        "-170141183460469231731687303715884105729",
        "18446744073709551616",
        "-9223372036854775809",
        "9223372036854775808",
        "-9223372036854775808",
        "9223372036854775807",
        "1e39",
        "1e309",
        "-1e309",
    ]);
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..40),
        3 => near_valid.prop_map(|s| s.as_bytes().to_vec()),
        2 => "-?[0-9]{1,45}(\\.[0-9]{0,5})?(e-?[0-9]{1,4})?".prop_map(String::into_bytes),
        1 => unicode_string().prop_map(String::into_bytes),
        1 => nested().prop_map(|n| serde_json::to_vec(&n).expect("serializes")),
    ]
}

/// Field names that are not ours.
fn unknown_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..12),
        "[a-z_]{1,10}".prop_map(String::into_bytes),
        prop::sample::select(FIELDS.to_vec()).prop_map(|f| format!("{f}_").into_bytes()),
        prop::sample::select(FIELDS.to_vec()).prop_map(|f| f.to_uppercase().into_bytes()),
    ]
    .prop_filter("must not be a real field", |name| {
        !FIELDS.iter().any(|f| f.as_bytes() == name.as_slice())
    })
}

/// Arbitrary, arbitrarily nested replies.
fn reply() -> impl Strategy<Value = redis::Value> {
    use redis::{PushKind, Value, VerbatimFormat};
    let server_error = match redis::parse_redis_value(b"-ERR boom\r\n") {
        Ok(value @ Value::ServerError(_)) => value,
        _ => Value::Nil,
    };
    let leaf = prop_oneof![
        Just(Value::Nil),
        Just(Value::Okay),
        Just(server_error),
        any::<i64>().prop_map(Value::Int),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Value::BulkString),
        prop::sample::select(FIELDS.to_vec()).prop_map(|f| Value::BulkString(f.into())),
        ".{0,12}".prop_map(Value::SimpleString),
        any::<f64>().prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
        ".{0,12}".prop_map(|text| Value::VerbatimString {
            format: VerbatimFormat::Text,
            text,
        }),
        Just(Value::BigNumber(Default::default())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Set),
            prop::collection::vec((inner.clone(), inner.clone()), 0..5).prop_map(Value::Map),
            (
                inner.clone(),
                prop::collection::vec((inner.clone(), inner.clone()), 0..3)
            )
                .prop_map(|(data, attributes)| Value::Attribute {
                    data: Box::new(data),
                    attributes,
                }),
            prop::collection::vec(inner, 0..4).prop_map(|data| Value::Push {
                kind: PushKind::Message,
                data,
            }),
        ]
    })
}

// ----- properties -----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any record round-trips; every field is written exactly once, either
    /// present or absent, and only `Option` fields are ever absent.
    #[test]
    fn every_type_round_trips(record in everything()) {
        let written = encode(&record).expect("encodes");
        let mut seen = written.names();
        seen.sort_unstable();
        let mut all = FIELDS.to_vec();
        all.sort_unstable();
        prop_assert_eq!(seen, all);
        for name in &written.absent_names() {
            prop_assert!(OPTIONAL.contains(name), "{} written absent", name);
        }
        let back = decode(&written.raw()).expect("decodes");
        assert_same(&back, &record);
    }

    /// `None` is no field; `Some("")` is a present, empty field; both come
    /// back as they were.
    #[test]
    fn none_and_empty_string_stay_distinct(record in everything()) {
        let mut none = record.clone();
        none.note = None;
        let mut empty = record;
        empty.note = Some(String::new());

        let written = encode(&none).expect("encodes");
        prop_assert!(written.absent_names().contains(&"note"));
        prop_assert_eq!(written.get("note"), None);
        prop_assert_eq!(decode(&written.raw()).expect("decodes").note, None);

        let written = encode(&empty).expect("encodes");
        prop_assert!(!written.absent_names().contains(&"note"));
        prop_assert_eq!(written.get("note"), Some(&b""[..]));
        prop_assert_eq!(decode(&written.raw()).expect("decodes").note, Some(String::new()));
    }

    /// Arbitrary unicode (NUL, emoji, combining marks, ...) round-trips
    /// byte for byte, in plain, optional and JSON fields.
    #[test]
    fn unicode_strings_round_trip(text in unicode_string(), record in everything()) {
        let mut record = record;
        record.text = text.clone();
        record.note = Some(text.clone());
        record.table = BTreeMap::from([(text.clone(), vec![1])]);
        if let Some(nested) = &mut record.nested {
            nested.name = text.clone();
        }
        let written = encode(&record).expect("encodes");
        prop_assert_eq!(written.get("text"), Some(text.as_bytes()));
        let back = decode(&written.raw()).expect("decodes");
        prop_assert_eq!(&back.text, &text);
        assert_same(&back, &record);
    }

    /// NaN, whatever its bits, is refused on encode with `ENCODE` naming
    /// the field, in either float field.
    #[test]
    fn nan_is_refused_on_encode(
        record in everything(),
        nan32 in nan_f32(),
        nan64 in nan_f64(),
        which in any::<bool>(),
    ) {
        let mut record = record;
        let expected = if which {
            record.x_f32 = nan32;
            "x_f32"
        } else {
            record.x_f64 = nan64;
            "x_f64"
        };
        let err = encode(&record).expect_err("NaN must be refused");
        prop_assert_eq!(err.code(), "ENCODE");
        match &err {
            Error::Encode { field, .. } => prop_assert_eq!(field, expected),
            other => prop_assert!(false, "expected ENCODE, got {:?}", other),
        }
    }

    /// Any time comes back floored to its millisecond (so never later than
    /// it was), before and after the epoch.
    #[test]
    fn system_time_floors_to_the_millisecond(
        ms in int(MIN_ENCODABLE_MS, i64::MAX, 0),
        sub_ms_nanos in prop_oneof![Just(0u32), Just(1), Just(999_999), 0u32..1_000_000],
    ) {
        let mut record = sample();
        record.at = time_at(ms, sub_ms_nanos);
        let written = encode(&record).expect("encodes");
        let stored = ms.to_string();
        prop_assert_eq!(written.get("at"), Some(stored.as_bytes()));
        let back = decode(&written.raw()).expect("decodes");
        prop_assert_eq!(back.at, time_at(ms, 0));
        prop_assert!(back.at <= record.at);
    }

    /// Any bytes in any one field: `Ok`, or `DECODE` naming that field;
    /// never a panic, never another error.
    #[test]
    fn hostile_bytes_in_one_field_never_panic(
        record in everything(),
        field in prop::sample::select(FIELDS.to_vec()),
        bytes in hostile_bytes(),
    ) {
        let written = encode(&record).expect("encodes");
        let mut pairs: Vec<(&[u8], &[u8])> = written
            .raw()
            .into_iter()
            .filter(|(name, _)| *name != field.as_bytes())
            .collect();
        pairs.push((field.as_bytes(), &bytes));
        if let Err(err) = decode(&pairs) {
            prop_assert_eq!(decode_error_field(&err), field);
        }
    }

    /// Any bytes in every field at once: `Ok`, or `DECODE` naming one of
    /// the fields.
    #[test]
    fn hostile_bytes_everywhere_never_panic(
        values in prop::collection::vec(hostile_bytes(), FIELDS.len()),
        present in prop::collection::vec(any::<bool>(), FIELDS.len()),
    ) {
        let pairs: Vec<(&[u8], &[u8])> = FIELDS
            .iter()
            .zip(&values)
            .zip(&present)
            .filter(|(_, present)| **present)
            .map(|((name, value), _)| (name.as_bytes(), value.as_slice()))
            .collect();
        if let Err(err) = decode(&pairs) {
            let field = decode_error_field(&err).to_string();
            prop_assert!(FIELDS.contains(&field.as_str()), "names {}", field);
        }
    }

    /// Fields the struct does not know, anywhere among the pairs, are
    /// ignored.
    #[test]
    fn unknown_fields_are_ignored(
        record in everything(),
        extra in prop::collection::vec((unknown_name(), hostile_bytes(), any::<prop::sample::Index>()), 1..6),
    ) {
        let written = encode(&record).expect("encodes");
        let mut pairs = written.raw();
        for (name, value, at) in &extra {
            let at = at.index(pairs.len() + 1);
            pairs.insert(at, (name.as_slice(), value.as_slice()));
        }
        let back = decode(&pairs).expect("unknown fields are ignored");
        assert_same(&back, &record);
    }

    /// A missing required field is `DECODE` naming it; a missing optional
    /// field reads as `None`.
    #[test]
    fn a_missing_field_is_reported_by_name(
        record in everything(),
        field in prop::sample::select(FIELDS.to_vec()),
    ) {
        let written = encode(&record).expect("encodes");
        let pairs: Vec<(&[u8], &[u8])> = written
            .raw()
            .into_iter()
            .filter(|(name, _)| *name != field.as_bytes())
            .collect();
        match decode(&pairs) {
            Ok(back) => {
                prop_assert!(OPTIONAL.contains(&field), "required `{}` was not missed", field);
                let mut expected = record;
                match field {
                    "note" => expected.note = None,
                    "count" => expected.count = None,
                    _ => expected.nested = None,
                }
                assert_same(&back, &expected);
            }
            Err(err) => {
                prop_assert!(!OPTIONAL.contains(&field), "optional `{}` was required", field);
                prop_assert_eq!(decode_error_field(&err), field);
            }
        }
    }

    /// `reply_pairs` turns any reply into pairs or a `DECODE` error, never
    /// a panic; pairs only come from arrays (of even length), maps or nil.
    #[test]
    fn reply_pairs_never_panics(reply in reply()) {
        match reply_pairs(KEY, &reply) {
            Ok(pairs) => match &reply {
                redis::Value::Array(items) => prop_assert_eq!(pairs.len() * 2, items.len()),
                redis::Value::Map(entries) => prop_assert_eq!(pairs.len(), entries.len()),
                redis::Value::Nil => prop_assert!(pairs.is_empty()),
                other => prop_assert!(false, "pairs from {:?}", other),
            },
            Err(err) => prop_assert_eq!(decode_error_field(&err), "*"),
        }
    }

    /// Pairs from any reply decode to a record or a `DECODE` error.
    #[test]
    fn any_reply_decodes_or_errs(reply in reply()) {
        if let Ok(pairs) = reply_pairs(KEY, &reply)
            && let Err(err) = decode(&pairs)
        {
            decode_error_field(&err);
        }
    }

    /// Arbitrary bytes parsed as RESP, then split into pairs: no panic.
    #[test]
    fn reply_pairs_of_parsed_resp_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(reply) = redis::parse_redis_value(&bytes)
            && let Err(err) = reply_pairs(KEY, &reply)
        {
            decode_error_field(&err);
        }
    }
}

/// Every integer type's bounds (and zero) round-trip exactly.
#[test]
fn integer_bounds_round_trip() {
    let mut record = sample();
    for (min, zero) in [(true, false), (false, false), (false, true)] {
        macro_rules! set {
            ($($field:ident: $ty:ty),*) => {$(
                record.$field = if zero { 0 } else if min { <$ty>::MIN } else { <$ty>::MAX };
            )*};
        }
        set!(
            n_i8: i8, n_i16: i16, n_i32: i32, n_i64: i64, n_i128: i128, n_isize: isize,
            n_u8: u8, n_u16: u16, n_u32: u32, n_u64: u64, n_u128: u128, n_usize: usize
        );
        record.count = Some(if min { i64::MIN } else { i64::MAX });
        let written = encode(&record).expect("encodes");
        let back = decode(&written.raw()).expect("decodes");
        assert_same(&back, &record);
    }
    let mut record = sample();
    record.n_i64 = i64::MIN;
    record.n_u64 = u64::MAX;
    record.n_i128 = i128::MIN;
    record.n_u128 = u128::MAX;
    let written = encode(&record).expect("encodes");
    assert_eq!(written.get("n_i64"), Some(&b"-9223372036854775808"[..]));
    assert_eq!(written.get("n_u64"), Some(&b"18446744073709551615"[..]));
    assert_eq!(
        written.get("n_i128"),
        Some(&b"-170141183460469231731687303715884105728"[..])
    );
    assert_eq!(
        written.get("n_u128"),
        Some(&b"340282366920938463463374607431768211455"[..])
    );
}

/// Values just past each bound are `DECODE` errors naming the field.
#[test]
fn integers_past_their_bounds_are_refused() {
    let written = encode(&sample()).expect("encodes");
    for (field, text) in [
        ("n_i8", "128"),
        ("n_u8", "-1"),
        ("n_u8", "256"),
        ("n_i64", "9223372036854775808"),
        ("n_i64", "-9223372036854775809"),
        ("n_u64", "18446744073709551616"),
        ("n_i128", "170141183460469231731687303715884105728"),
        ("n_u128", "340282366920938463463374607431768211456"),
    ] {
        let mut pairs: Vec<(&[u8], &[u8])> = written
            .raw()
            .into_iter()
            .filter(|(name, _)| *name != field.as_bytes())
            .collect();
        pairs.push((field.as_bytes(), text.as_bytes()));
        let err = decode(&pairs).expect_err(text);
        assert_eq!(decode_error_field(&err), field, "{text}");
    }
}

/// The special float values keep their exact bits.
#[test]
fn special_floats_round_trip_by_bits() {
    for (x32, x64) in [
        (0.0f32, 0.0f64),
        (-0.0, -0.0),
        (f32::INFINITY, f64::INFINITY),
        (f32::NEG_INFINITY, f64::NEG_INFINITY),
        (f32::MIN_POSITIVE, f64::MIN_POSITIVE),
        (f32::from_bits(1), f64::from_bits(1)),
        (f32::MAX, f64::MAX),
    ] {
        let mut record = sample();
        record.x_f32 = x32;
        record.x_f64 = x64;
        let written = encode(&record).expect("encodes");
        let back = decode(&written.raw()).expect("decodes");
        assert_same(&back, &record);
    }
}

/// Regression: `-9223372036854775808` decodes to a `SystemTime`, and that
/// time must encode back (its magnitude does not fit an `i64`).
#[test]
fn system_time_at_i64_min_millis_encodes() {
    let stored = i64::MIN.to_string();
    let mut written = encode(&sample()).expect("encodes");
    written.replace("at", stored.as_bytes());
    let record = decode(&written.raw()).expect("i64::MIN ms decodes");
    assert_eq!(record.at, time_at(i64::MIN, 0));
    let written = encode(&record).expect("what decodes must encode");
    assert_eq!(written.get("at"), Some(stored.as_bytes()));
}

/// Regression: a time strictly between `i64::MIN` ms and `i64::MIN + 1` ms
/// once overflowed while rounding; it must floor to `i64::MIN` ms.
#[test]
fn system_time_just_above_i64_min_millis_floors() {
    let mut record = sample();
    record.at = time_at(i64::MIN, 1);
    let written = encode(&record).expect("encodes");
    assert_eq!(written.get("at"), Some(i64::MIN.to_string().as_bytes()));
}

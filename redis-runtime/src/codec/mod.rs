//! How Rust values become hash fields and back.
//!
//! Every field is stored as one hash value (or one stream-entry value). The
//! encodings are exact and stable; changing one is a data migration:
//!
//! | Rust type | stored as |
//! | --- | --- |
//! | `String` | its UTF-8 bytes, unchanged |
//! | `i8`..`i128`, `u8`..`u128`, `isize`, `usize` | decimal ASCII (`-42`) |
//! | `f32`, `f64` | shortest decimal that round-trips, never in exponent form (`0.1`, `-2.5`, `1` followed by 300 zeros for `1e300`), or `inf` / `-inf`; **NaN is refused** on write and on read, since it never equals itself and breaks score ranges |
//! | `bool` | `true` / `false` (reads also accept `1`/`0`, `yes`/`no`, `on`/`off`, in any case) |
//! | `Vec<u8>` | the raw bytes |
//! | `std::time::SystemTime` | integer milliseconds since the Unix epoch (sub-millisecond precision is dropped) |
//! | `chrono::DateTime<Utc>` (feature `chrono`) | integer milliseconds since the epoch |
//! | `time::OffsetDateTime` (feature `time`) | integer milliseconds since the epoch, read back as UTC |
//! | `uuid::Uuid` (feature `uuid`) | lowercase hyphenated text |
//! | unit enums with `#[derive(RedisValue)]` | the variant name in snake_case (or its `rename`); reads ignore ASCII case and also accept each `#[redis(alias = "...")]` |
//! | `#[redis(json)]` fields | compact JSON (serde_json) |
//! | `Option<T>` | `T`'s encoding when `Some`; **no field at all** when `None` |
//!
//! An empty string is a value (`Some(String::new())` stores an empty field),
//! distinct from `None` (no field).
//!
//! # Reading what other clients wrote
//!
//! Writes are always in the canonical form above; reads are tolerant, so
//! keys shared with other clients (ioredis, go-redis, scripts) decode:
//!
//! - **An empty value of an `Option` field** (and of a `#[redis(default)]`
//!   field) reads as `None` (the default) when the empty string is not a
//!   value of the type: numbers, `bool`, timestamps, UUIDs, enums, JSON.
//!   ioredis' `hset(key, obj)` stores `null` as `""`. Where `""` *is* a value
//!   (`String`, `Vec<u8>`, a custom type that decodes it) it stays
//!   `Some("")`. Per field, `#[redis(empty_is_none)]` makes `""` read as
//!   `None` for those types too, and `#[redis(empty_is_some)]` decodes `""`
//!   as a value for every type (so a number's `""` is a `DECODE` error, the
//!   strict behaviour).
//! - **Booleans** accept `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` in
//!   any ASCII case.
//! - **Enums** match their stored names ignoring ASCII case, plus the
//!   spellings listed with `#[redis(alias = "...")]` on a variant.
//! - **Renamed fields**: `#[redis(alias = "oldName")]` on a field reads the
//!   old hash field when the canonical one is absent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Context, Error, Result};

pub use redis_schema::{EntityDescriptor, FieldDescriptor, FieldEncoding};

mod key_part;

pub use self::key_part::{KeyBuilder, KeyPart};

/// A type that can be stored in one hash field.
///
/// Implemented for the types in the module table. A type that does not
/// implement it can still be stored with `#[redis(json)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored as a Redis hash field",
    label = "unsupported field type",
    note = "supported: String, integers, floats, bool, Vec<u8>, SystemTime, unit enums with #[derive(RedisValue)], Option of those",
    note = "for maps, vectors and nested structs add `#[redis(json)]` to the field (needs serde)",
    note = "chrono::DateTime<Utc>, time::OffsetDateTime and uuid::Uuid need the matching feature of redis-runtime: `chrono`, `time` or `uuid` (in Cargo.toml: `features = [\"chrono\"]`)"
)]
pub trait FieldValue: Sized {
    /// How this type is stored, for descriptors.
    const ENCODING: FieldEncoding;

    /// Appends the stored form to `out`. Errors say why (e.g. NaN).
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<(), String>;

    /// Parses the stored form. Errors say why, never with the whole input.
    fn decode_value(raw: &[u8]) -> Result<Self, String>;
}

fn utf8(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|e| format!("not valid UTF-8 (at byte {})", e.valid_up_to()))
}

/// Shows a short, escaped preview of bad input for error messages.
fn preview(raw: &[u8]) -> String {
    const LIMIT: usize = 32;
    let text = String::from_utf8_lossy(&raw[..raw.len().min(LIMIT)]);
    if raw.len() > LIMIT {
        format!("{text:?}…")
    } else {
        format!("{text:?}")
    }
}

impl FieldValue for String {
    const ENCODING: FieldEncoding = FieldEncoding::Text;
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(self.as_bytes());
        Ok(())
    }
    fn decode_value(raw: &[u8]) -> Result<Self, String> {
        utf8(raw).map(str::to_owned)
    }
}

macro_rules! integer_field {
    ($($ty:ty),*) => {$(
        impl FieldValue for $ty {
            const ENCODING: FieldEncoding = FieldEncoding::Integer;
            fn encode_value(&self, out: &mut Vec<u8>) -> Result<(), String> {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
                Ok(())
            }
            fn decode_value(raw: &[u8]) -> Result<Self, String> {
                utf8(raw)?.parse::<$ty>().map_err(|e| {
                    format!("expected a {} integer, found {}: {e}", stringify!($ty), preview(raw))
                })
            }
        }
    )*};
}
integer_field!(
    i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize
);

macro_rules! float_field {
    ($($ty:ty),*) => {$(
        impl FieldValue for $ty {
            const ENCODING: FieldEncoding = FieldEncoding::Float;
            fn encode_value(&self, out: &mut Vec<u8>) -> Result<(), String> {
                if self.is_nan() {
                    return Err("NaN cannot be stored: it never equals itself and breaks range queries".into());
                }
                if self.is_infinite() {
                    out.extend_from_slice(if *self > 0.0 { b"inf" } else { b"-inf" });
                } else {
                    out.extend_from_slice(self.to_string().as_bytes());
                }
                Ok(())
            }
            fn decode_value(raw: &[u8]) -> Result<Self, String> {
                let value = utf8(raw)?.parse::<$ty>().map_err(|e| {
                    format!("expected a number, found {}: {e}", preview(raw))
                })?;
                if value.is_nan() {
                    return Err("NaN is not accepted (see the codec's NaN policy)".into());
                }
                Ok(value)
            }
        }
    )*};
}
float_field!(f32, f64);

impl FieldValue for bool {
    const ENCODING: FieldEncoding = FieldEncoding::Bool;
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
        Ok(())
    }
    /// Accepts the spellings other clients write: `true`/`false`, `1`/`0`,
    /// `yes`/`no`, `on`/`off`, in any ASCII case.
    fn decode_value(raw: &[u8]) -> Result<Self, String> {
        const TRUE: [&[u8]; 4] = [b"true", b"1", b"yes", b"on"];
        const FALSE: [&[u8]; 4] = [b"false", b"0", b"no", b"off"];
        if TRUE.iter().any(|t| raw.eq_ignore_ascii_case(t)) {
            Ok(true)
        } else if FALSE.iter().any(|f| raw.eq_ignore_ascii_case(f)) {
            Ok(false)
        } else {
            Err(format!(
                "expected true or false (or 1/0, yes/no, on/off), found {}",
                preview(raw)
            ))
        }
    }
}

impl FieldValue for Vec<u8> {
    const ENCODING: FieldEncoding = FieldEncoding::Bytes;
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(self);
        Ok(())
    }
    fn decode_value(raw: &[u8]) -> Result<Self, String> {
        Ok(raw.to_vec())
    }
}

/// Milliseconds since the epoch of a `SystemTime` (negative before 1970).
pub fn system_time_to_millis(time: SystemTime) -> Result<i64, String> {
    let out_of_range = || "timestamp is out of the i64 millisecond range".to_string();
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).map_err(|_| out_of_range()),
        Err(before) => {
            // Round towards negative infinity so that decode(encode(t)) <= t.
            // Work in i128: the magnitude of i64::MIN ms does not fit an i64.
            let d = before.duration();
            let partial = u128::from(d.subsec_nanos() % 1_000_000 != 0);
            let magnitude = i128::try_from(d.as_millis() + partial).map_err(|_| out_of_range())?;
            i64::try_from(-magnitude).map_err(|_| out_of_range())
        }
    }
}

/// The `SystemTime` at `ms` milliseconds since the epoch.
pub fn millis_to_system_time(ms: i64) -> Result<SystemTime, String> {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    let time = if ms >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    time.ok_or_else(|| format!("{ms} ms since the epoch is not a representable time"))
}

impl FieldValue for SystemTime {
    const ENCODING: FieldEncoding = FieldEncoding::TimestampMillis;
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<(), String> {
        system_time_to_millis(*self)?.encode_value(out)
    }
    fn decode_value(raw: &[u8]) -> Result<Self, String> {
        millis_to_system_time(i64::decode_value(raw)?)
    }
}

#[cfg(feature = "chrono")]
impl FieldValue for chrono::DateTime<chrono::Utc> {
    const ENCODING: FieldEncoding = FieldEncoding::TimestampMillis;
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<(), String> {
        self.timestamp_millis().encode_value(out)
    }
    fn decode_value(raw: &[u8]) -> Result<Self, String> {
        let ms = i64::decode_value(raw)?;
        chrono::DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| format!("{ms} ms since the epoch is out of chrono's range"))
    }
}

#[cfg(feature = "time")]
impl FieldValue for time::OffsetDateTime {
    const ENCODING: FieldEncoding = FieldEncoding::TimestampMillis;
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<(), String> {
        let ms = self.unix_timestamp_nanos().div_euclid(1_000_000);
        i64::try_from(ms)
            .map_err(|_| "timestamp is out of the i64 millisecond range".to_string())?
            .encode_value(out)
    }
    fn decode_value(raw: &[u8]) -> Result<Self, String> {
        let ms = i64::decode_value(raw)?;
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .map_err(|e| format!("{ms} ms since the epoch is out of range: {e}"))
    }
}

#[cfg(feature = "uuid")]
impl FieldValue for uuid::Uuid {
    const ENCODING: FieldEncoding = FieldEncoding::Text;
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<(), String> {
        let mut buf = uuid::Uuid::encode_buffer();
        out.extend_from_slice(self.hyphenated().encode_lower(&mut buf).as_bytes());
        Ok(())
    }
    fn decode_value(raw: &[u8]) -> Result<Self, String> {
        uuid::Uuid::try_parse_ascii(raw)
            .map_err(|e| format!("expected a UUID, found {}: {e}", preview(raw)))
    }
}

/// A field that can score a sorted-set index: numbers and timestamps.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot score a sorted index",
    label = "not a number or timestamp",
    note = "a sorted index's `score` field must be an integer, a float or a timestamp (SystemTime, chrono, time)"
)]
pub trait ScoreValue: FieldValue {}

macro_rules! score_value {
    ($($ty:ty),*) => {$( impl ScoreValue for $ty {} )*};
}
score_value!(
    i8, i16, i32, i64, isize, u8, u16, u32, u64, usize, f32, f64, SystemTime
);
#[cfg(feature = "chrono")]
impl ScoreValue for chrono::DateTime<chrono::Utc> {}
#[cfg(feature = "time")]
impl ScoreValue for time::OffsetDateTime {}

/// A field that can set an entity's absolute expiry (`#[redis(expires_at)]`):
/// integer epoch milliseconds or a timestamp type; `Option` of one means
/// "no expiry" when `None`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an `expires_at` field",
    label = "not a timestamp",
    note = "use i64 epoch milliseconds, SystemTime, chrono::DateTime<Utc> or time::OffsetDateTime (or an Option of one)"
)]
pub trait ExpiryValue {
    /// The expiry as epoch milliseconds, or `None` for no expiry.
    fn expiry_ms(&self) -> Result<Option<i64>, String>;
}

impl ExpiryValue for i64 {
    fn expiry_ms(&self) -> Result<Option<i64>, String> {
        Ok(Some(*self))
    }
}

impl ExpiryValue for SystemTime {
    fn expiry_ms(&self) -> Result<Option<i64>, String> {
        system_time_to_millis(*self).map(Some)
    }
}

#[cfg(feature = "chrono")]
impl ExpiryValue for chrono::DateTime<chrono::Utc> {
    fn expiry_ms(&self) -> Result<Option<i64>, String> {
        Ok(Some(self.timestamp_millis()))
    }
}

#[cfg(feature = "time")]
impl ExpiryValue for time::OffsetDateTime {
    fn expiry_ms(&self) -> Result<Option<i64>, String> {
        let ms = self.unix_timestamp_nanos().div_euclid(1_000_000);
        i64::try_from(ms)
            .map(Some)
            .map_err(|_| "timestamp is out of the i64 millisecond range".to_string())
    }
}

impl<T: ExpiryValue> ExpiryValue for Option<T> {
    fn expiry_ms(&self) -> Result<Option<i64>, String> {
        match self {
            Some(value) => value.expiry_ms(),
            None => Ok(None),
        }
    }
}

/// Converts an `expires_at` field for the write script.
pub fn expiry_of<T: ExpiryValue + ?Sized>(field: &'static str, value: &T) -> Result<Option<i64>> {
    value.expiry_ms().map_err(|reason| Error::Encode {
        context: Context::default(),
        field: field.to_string(),
        reason,
    })
}

/// A stored record's fields, as read from a hash or a stream entry:
/// `(name, value)` pairs borrowed from the reply.
pub type RawFields<'a> = [(&'a [u8], &'a [u8])];

/// Collects a record's fields for a write.
pub trait FieldSink {
    /// Adds one present field.
    fn put(&mut self, name: &'static str, value: &[u8]);
    /// Notes a field that is absent (`None`) and must not linger in the hash.
    fn absent(&mut self, name: &'static str);
}

/// A struct stored as a flat set of named fields: a hash, or a stream entry.
///
/// Implemented by `#[derive(RedisEntity)]` and `#[derive(RedisRecord)]`;
/// hand-written implementations are possible but rarely needed.
pub trait Record: Sized + Send + Sync + 'static {
    /// Static description: type name, fields, encodings.
    fn descriptor() -> &'static EntityDescriptor;

    /// Writes every field: present ones with [`FieldSink::put`], `None`
    /// ones with [`FieldSink::absent`].
    fn write_fields(&self, sink: &mut dyn FieldSink) -> Result<()>;

    /// Rebuilds the struct from stored fields. `key` names the hash (or
    /// stream entry) in errors. Unknown extra fields are ignored.
    fn read_fields(key: &str, fields: &RawFields<'_>) -> Result<Self>;
}

/// One field type's codec as plain function pointers, for generated code.
///
/// The derives capture one per stored field, in a constant spanned on the
/// field's type (built by [`field_codec`] or [`json_codec`]). That constant
/// is the only place the type's trait bounds are required, so a type that
/// cannot be stored is reported once, on the field; every encode and decode
/// site then goes through the codec and needs no bound of its own.
#[doc(hidden)]
pub struct FieldCodec<T> {
    encoding: FieldEncoding,
    encode: fn(&T, &mut Vec<u8>) -> Result<(), String>,
    decode: fn(&[u8]) -> Result<T, String>,
}

/// The codec of a [`FieldValue`] type.
#[doc(hidden)]
pub const fn field_codec<T: FieldValue>() -> FieldCodec<T> {
    FieldCodec {
        encoding: T::ENCODING,
        encode: T::encode_value,
        decode: T::decode_value,
    }
}

/// The codec of a `#[redis(json)]` field: compact JSON (serde_json).
#[doc(hidden)]
pub const fn json_codec<T: serde::Serialize + serde::de::DeserializeOwned>() -> FieldCodec<T> {
    fn encode<T: serde::Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        serde_json::to_writer(out, value).map_err(|e| format!("JSON encoding failed: {e}"))
    }
    fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, String> {
        // serde_json's message names line and column, never the input.
        serde_json::from_slice(raw).map_err(|e| format!("bad JSON: {e}"))
    }
    FieldCodec {
        encoding: FieldEncoding::Json,
        encode: encode::<T>,
        decode: decode::<T>,
    }
}

impl<T> FieldCodec<T> {
    /// How the field is stored, for descriptors.
    pub const fn encoding(&self) -> FieldEncoding {
        self.encoding
    }

    /// Encodes `value` into `scratch` (cleared first); errors are `ENCODE`
    /// naming `field`.
    pub fn encode(&self, field: &'static str, value: &T, scratch: &mut Vec<u8>) -> Result<()> {
        scratch.clear();
        (self.encode)(value, scratch).map_err(|reason| Error::Encode {
            context: Context::default(),
            field: field.to_string(),
            reason,
        })
    }

    /// Encodes `value` into a new buffer (e.g. a unique-index lookup value).
    pub fn encode_to_vec(&self, field: &'static str, value: &T) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode(field, value, &mut out)?;
        Ok(out)
    }

    /// Decodes a required field; a missing one is a `DECODE` error.
    pub fn decode_required(&self, key: &str, field: &str, raw: Option<&[u8]>) -> Result<T> {
        let raw = raw.ok_or_else(|| missing_field(key, field))?;
        (self.decode)(raw).map_err(|reason| decode_error(key, field, reason))
    }

    /// Decodes an optional field; missing means `None`, and so does an
    /// empty value that is not a value of `T` (`""` for a number, a bool,
    /// a timestamp, an enum, JSON: how ioredis stores `null`). Where `""`
    /// decodes (`String`, `Vec<u8>`), it is `Some` of it.
    pub fn decode_optional(&self, key: &str, field: &str, raw: Option<&[u8]>) -> Result<Option<T>> {
        match raw {
            Some([]) => Ok((self.decode)(&[]).ok()),
            _ => self.decode_optional_strict(key, field, raw),
        }
    }

    /// Decodes an optional field; missing means `None`, and an empty value
    /// is decoded like any other (`#[redis(empty_is_some)]`): `Some("")` for
    /// text, a `DECODE` error for a number.
    pub fn decode_optional_strict(
        &self,
        key: &str,
        field: &str,
        raw: Option<&[u8]>,
    ) -> Result<Option<T>> {
        raw.map(|raw| (self.decode)(raw).map_err(|reason| decode_error(key, field, reason)))
            .transpose()
    }

    /// Decodes an optional field; missing and empty both mean `None`
    /// (`#[redis(empty_is_none)]`, e.g. an `Option<String>` that other
    /// clients write as `""` for null).
    pub fn decode_optional_empty_none(
        &self,
        key: &str,
        field: &str,
        raw: Option<&[u8]>,
    ) -> Result<Option<T>> {
        match raw {
            Some([]) => Ok(None),
            _ => self.decode_optional_strict(key, field, raw),
        }
    }

    /// Decodes a `#[redis(default)]` field; missing means `Default::default()`,
    /// and so does an empty value that is not a value of `T` (as in
    /// [`decode_optional`](Self::decode_optional)).
    pub fn decode_or_default(&self, key: &str, field: &str, raw: Option<&[u8]>) -> Result<T>
    where
        T: Default,
    {
        Ok(self.decode_optional(key, field, raw)?.unwrap_or_default())
    }
}

impl FieldCodec<String> {
    /// Encodes a text lookup value (a unique index on a `String` field
    /// takes `&str`): the same bytes as encoding the `String`.
    pub fn encode_str_to_vec(&self, field: &'static str, value: &str) -> Result<Vec<u8>> {
        // Through the codec, so the stored form has one definition.
        self.encode_to_vec(field, &value.to_owned())
    }
}

/// Encodes one required field into a scratch buffer.
pub fn encode_field<T: FieldValue>(
    field: &'static str,
    value: &T,
    scratch: &mut Vec<u8>,
) -> Result<()> {
    field_codec::<T>().encode(field, value, scratch)
}

/// Encodes one `#[redis(json)]` field into a scratch buffer.
pub fn encode_json_field<T: serde::Serialize + ?Sized>(
    field: &'static str,
    value: &T,
    scratch: &mut Vec<u8>,
) -> Result<()> {
    scratch.clear();
    serde_json::to_writer(&mut *scratch, value).map_err(|e| Error::Encode {
        context: Context::default(),
        field: field.to_string(),
        reason: format!("JSON encoding failed: {e}"),
    })
}

fn decode_error(key: &str, field: &str, reason: String) -> Error {
    Error::Decode {
        context: Context::default(),
        key: key.to_string(),
        field: field.to_string(),
        reason,
    }
}

/// Decodes a required field; a missing one is a `DECODE` error.
pub fn decode_required<T: FieldValue>(key: &str, field: &str, raw: Option<&[u8]>) -> Result<T> {
    field_codec::<T>().decode_required(key, field, raw)
}

/// Decodes an optional field; missing means `None`.
pub fn decode_optional<T: FieldValue>(
    key: &str,
    field: &str,
    raw: Option<&[u8]>,
) -> Result<Option<T>> {
    field_codec::<T>().decode_optional(key, field, raw)
}

/// Decodes a field with `#[redis(default)]`; missing means `Default::default()`.
pub fn decode_or_default<T: FieldValue + Default>(
    key: &str,
    field: &str,
    raw: Option<&[u8]>,
) -> Result<T> {
    Ok(decode_optional(key, field, raw)?.unwrap_or_default())
}

/// Decodes a `#[redis(json)]` field.
pub fn decode_json<T: serde::de::DeserializeOwned>(
    key: &str,
    field: &str,
    raw: Option<&[u8]>,
) -> Result<Option<T>> {
    raw.map(|raw| {
        serde_json::from_slice(raw).map_err(|e| decode_error(key, field, format!("bad JSON: {e}")))
    })
    .transpose()
}

/// The error text for an unknown enum variant, for `#[derive(RedisValue)]`.
pub fn unknown_variant(raw: &[u8], expected: &str) -> String {
    format!("expected one of {expected}, found {}", preview(raw))
}

/// The missing-required-field error, for generated code.
pub fn missing_field(key: &str, field: &str) -> Error {
    decode_error(key, field, "required field is missing".into())
}

/// Splits a reply holding field/value pairs (`HGETALL`, a stream entry)
/// into borrowed pairs. Any other shape is a `DECODE` error naming `key`.
pub fn reply_pairs<'a>(key: &str, reply: &'a redis::Value) -> Result<Vec<(&'a [u8], &'a [u8])>> {
    fn bytes(v: &redis::Value) -> Option<&[u8]> {
        match v {
            redis::Value::BulkString(b) => Some(b),
            redis::Value::SimpleString(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
    let shape_error =
        |what: &str| decode_error(key, "*", format!("expected field/value pairs, {what}"));
    match reply {
        redis::Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(shape_error("found an odd number of items"));
            }
            items
                .chunks_exact(2)
                .map(|pair| match (bytes(&pair[0]), bytes(&pair[1])) {
                    (Some(name), Some(value)) => Ok((name, value)),
                    _ => Err(shape_error("found a non-string item")),
                })
                .collect()
        }
        redis::Value::Map(entries) => entries
            .iter()
            .map(|(name, value)| match (bytes(name), bytes(value)) {
                (Some(name), Some(value)) => Ok((name, value)),
                _ => Err(shape_error("found a non-string item")),
            })
            .collect(),
        redis::Value::Nil => Ok(Vec::new()),
        other => Err(shape_error(&format!("found {}", value_kind(other)))),
    }
}

/// A short name for a reply's shape, for errors.
pub(crate) fn value_kind(value: &redis::Value) -> &'static str {
    match value {
        redis::Value::Nil => "nil",
        redis::Value::Int(_) => "an integer",
        redis::Value::BulkString(_) => "a string",
        redis::Value::Array(_) => "an array",
        redis::Value::SimpleString(_) => "a status",
        redis::Value::Okay => "OK",
        redis::Value::Map(_) => "a map",
        redis::Value::Attribute { .. } => "an attribute",
        redis::Value::Set(_) => "a set",
        redis::Value::Double(_) => "a double",
        redis::Value::Boolean(_) => "a boolean",
        redis::Value::VerbatimString { .. } => "a verbatim string",
        redis::Value::BigNumber(_) => "a big number",
        redis::Value::Push { .. } => "a push",
        redis::Value::ServerError(_) => "a server error",
        _ => "an unknown reply",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode<T: FieldValue>(v: T) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode_value(&mut out).expect("encodes");
        out
    }

    #[test]
    fn documented_encodings_are_exact() {
        assert_eq!(encode(String::from("héllo")), "héllo".as_bytes());
        assert_eq!(encode(-42i64), b"-42");
        assert_eq!(encode(u64::MAX), b"18446744073709551615");
        assert_eq!(encode(0.1f64), b"0.1");
        assert_eq!(encode(f64::INFINITY), b"inf");
        assert_eq!(encode(f64::NEG_INFINITY), b"-inf");
        assert_eq!(encode(true), b"true");
        assert_eq!(encode(vec![0u8, 255]), vec![0u8, 255]);
        assert_eq!(
            encode(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            b"1700000000123"
        );
    }

    #[test]
    fn nan_is_refused_both_ways() {
        assert!(f64::NAN.encode_value(&mut Vec::new()).is_err());
        assert!(f64::decode_value(b"NaN").is_err());
        assert!(f32::decode_value(b"nan").is_err());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(i64::decode_value(b"12x").is_err());
        assert!(u8::decode_value(b"256").is_err());
        assert!(String::decode_value(&[0xff, 0xfe]).is_err());
        assert!(bool::decode_value(b"yess").is_err());
        assert!(bool::decode_value(b"").is_err());
        assert!(bool::decode_value(b"2").is_err());
        // Far-future millis must not panic whatever the platform's range.
        let _ = SystemTime::decode_value(i64::MAX.to_string().as_bytes());
        let _ = SystemTime::decode_value(i64::MIN.to_string().as_bytes());
    }

    #[test]
    fn booleans_accept_the_common_spellings_and_write_true_false() {
        for raw in [
            "true", "TRUE", "True", "1", "yes", "YES", "Yes", "on", "ON", "On",
        ] {
            assert_eq!(bool::decode_value(raw.as_bytes()), Ok(true), "{raw}");
        }
        for raw in [
            "false", "FALSE", "False", "0", "no", "NO", "No", "off", "OFF", "Off",
        ] {
            assert_eq!(bool::decode_value(raw.as_bytes()), Ok(false), "{raw}");
        }
        assert_eq!(encode(true), b"true");
        assert_eq!(encode(false), b"false");
        let err = bool::decode_value(b"maybe").expect_err("not a boolean");
        assert!(err.contains("yes/no") && err.contains("\"maybe\""), "{err}");
    }

    #[test]
    fn empty_optional_values_read_as_none_unless_empty_is_a_value() {
        /// What `raw` reads as in an `Option<T>` field with codec `codec`.
        fn read<T>(codec: FieldCodec<T>, raw: Option<&[u8]>) -> Option<T> {
            codec.decode_optional("k", "f", raw).expect("decodes")
        }
        let empty: Option<&[u8]> = Some(b"");
        // Not a value of the type: `None` (ioredis stores `null` as "").
        assert_eq!(read(field_codec::<i64>(), empty), None);
        assert_eq!(read(field_codec::<bool>(), empty), None);
        assert_eq!(read(field_codec::<f64>(), empty), None);
        assert_eq!(read(field_codec::<SystemTime>(), empty), None);
        assert_eq!(read(json_codec::<Vec<u32>>(), empty), None);
        // A value of the type: kept.
        assert_eq!(read(field_codec::<String>(), empty), Some(String::new()));
        assert_eq!(read(field_codec::<Vec<u8>>(), empty), Some(Vec::new()));
        // Present values and missing fields are unchanged.
        assert_eq!(read(field_codec::<i64>(), Some(b"7")), Some(7));
        assert_eq!(read(field_codec::<i64>(), None), None);
        let err = field_codec::<i64>()
            .decode_optional("k", "f", Some(b"x"))
            .expect_err("non-empty garbage is still an error");
        assert_eq!(err.code(), "DECODE");
        // `default` fields follow the same rule.
        assert_eq!(
            field_codec::<u32>()
                .decode_or_default("k", "f", empty)
                .expect("decodes"),
            0
        );
    }

    #[test]
    fn empty_is_none_and_empty_is_some_override_the_rule() {
        let some_empty: Option<&[u8]> = Some(b"");
        assert_eq!(
            field_codec::<String>()
                .decode_optional_empty_none("k", "f", some_empty)
                .expect("decodes"),
            None
        );
        assert_eq!(
            field_codec::<String>()
                .decode_optional_empty_none("k", "f", Some(b"a"))
                .expect("decodes"),
            Some("a".into())
        );
        assert_eq!(
            field_codec::<String>()
                .decode_optional_strict("k", "f", some_empty)
                .expect("decodes"),
            Some(String::new())
        );
        let err = field_codec::<i64>()
            .decode_optional_strict("k", "f", some_empty)
            .expect_err("strict: an empty number is an error");
        assert_eq!(err.code(), "DECODE");
    }

    #[test]
    fn text_lookups_encode_like_the_string() {
        let codec = field_codec::<String>();
        assert_eq!(
            codec.encode_str_to_vec("email", "a@b").expect("encodes"),
            codec
                .encode_to_vec("email", &"a@b".to_string())
                .expect("encodes")
        );
    }

    #[test]
    fn pre_epoch_times_round_down_to_the_millisecond() {
        let t = UNIX_EPOCH - Duration::from_micros(1500);
        assert_eq!(system_time_to_millis(t), Ok(-2));
        assert_eq!(
            millis_to_system_time(-2),
            Ok(UNIX_EPOCH - Duration::from_millis(2))
        );
    }

    #[test]
    fn key_builder_rejects_hostile_values() {
        let ok = KeyBuilder::new("user:{id}")
            .literal("user:")
            .part("id", "42")
            .map(KeyBuilder::finish);
        assert_eq!(ok.expect("valid"), "user:42");
        for hostile in ["", "1:admin", "*", "a b", "x{y}", "new\nline"] {
            let err = KeyBuilder::new("user:{id}")
                .literal("user:")
                .part("id", hostile)
                .expect_err("hostile value must be rejected");
            assert_eq!(err.code(), "INVALID_KEY");
            assert_eq!(err.context().map(|c| &*c.key_pattern), Some("user:{id}"));
        }
    }

    #[test]
    fn reply_pairs_rejects_malformed_shapes() {
        use redis::Value;
        let ok = Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::BulkString(b"1".to_vec()),
        ]);
        assert_eq!(
            reply_pairs("k", &ok).expect("pairs"),
            vec![(&b"a"[..], &b"1"[..])]
        );
        let odd = Value::Array(vec![Value::BulkString(b"a".to_vec())]);
        assert_eq!(reply_pairs("k", &odd).expect_err("odd").code(), "DECODE");
        let nested = Value::Array(vec![Value::Int(1), Value::Nil]);
        assert_eq!(
            reply_pairs("k", &nested).expect_err("ints").code(),
            "DECODE"
        );
        assert_eq!(
            reply_pairs("k", &Value::Int(3)).expect_err("int").code(),
            "DECODE"
        );
    }
}

//! The pending record's fields, read back: one definition of their
//! kinds. Their names are the schema's `PENDING_*` constants, which the
//! write script's generator (`script::write`) emits from as well; an
//! index key is the field itself, with its index's position as the value.

use redis_schema::{PENDING_STREAM_ENTRY, PENDING_UNIQUE_VALUE, PENDING_WRITES};

/// One field of a pending record.
pub(super) enum RecordField<'a> {
    /// The count of writes recorded ([`PENDING_WRITES`]).
    Writes(&'a [u8]),
    /// A `cross_slot` unique value the entity left, to release: the unique
    /// hash's key and the value.
    UniqueValue { unique: String, value: String },
    /// A stream entry to append.
    StreamEntry(RecordedEntry),
    /// An index key that may still hold the entity, with its index's
    /// 1-based position.
    IndexKey { key: String, position: usize },
    /// A field this library does not write.
    Foreign,
}

impl<'a> RecordField<'a> {
    /// Reads `field` and its `value`; an error names what is malformed in
    /// a field of a known kind.
    pub(super) fn read(field: &'a [u8], value: &'a [u8]) -> Result<Self, String> {
        if field == PENDING_WRITES.as_bytes() {
            return Ok(RecordField::Writes(value));
        }
        if let Some((unique, value)) = released_value(field, value) {
            return Ok(RecordField::UniqueValue { unique, value });
        }
        if let Some(entry) = RecordedEntry::read(field, value) {
            return entry.map(RecordField::StreamEntry);
        }
        let key = std::str::from_utf8(field).ok();
        let position = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        Ok(match (key, position) {
            (Some(key), Some(position)) => RecordField::IndexKey {
                key: key.to_owned(),
                position,
            },
            _ => RecordField::Foreign,
        })
    }
}

/// A `cross_slot` unique value the entity left, recorded under `field`
/// ([`PENDING_UNIQUE_VALUE`], the index's number, a space, the value)
/// with the unique hash's key as `value`; `None` for another field.
fn released_value(field: &[u8], value: &[u8]) -> Option<(String, String)> {
    let rest = field.strip_prefix(PENDING_UNIQUE_VALUE.as_bytes())?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let held = std::str::from_utf8(&rest[space + 1..]).ok()?;
    let unique = std::str::from_utf8(value).ok()?;
    Some((unique.to_string(), held.to_string()))
}

/// A stream entry a write recorded (see `script::write`'s outbox): the
/// record's field, the write count in it, and the entry's field/value
/// pairs.
pub(super) struct RecordedEntry {
    pub(super) field: String,
    pub(super) write: u64,
    pub(super) pairs: Vec<Vec<u8>>,
}

impl RecordedEntry {
    /// The entry recorded under `field`, or `None` when `field` is not a
    /// stream entry's; an error names what is malformed.
    fn read(field: &[u8], value: &[u8]) -> Option<std::result::Result<RecordedEntry, String>> {
        let write = field.strip_prefix(PENDING_STREAM_ENTRY.as_bytes())?;
        let field = String::from_utf8_lossy(field).into_owned();
        let write = std::str::from_utf8(write).ok().and_then(|n| n.parse().ok());
        let Some(write) = write else {
            return Some(Err(format!(
                "the stream entry field {field:?} has no write count"
            )));
        };
        Some(match length_prefixed(value) {
            Some(pairs) => Ok(RecordedEntry {
                field,
                write,
                pairs,
            }),
            None => Err(format!(
                "the stream entry {field:?} is not a list of length-prefixed fields and values"
            )),
        })
    }
}

/// The byte strings of `2:id2:j7`-style text: each its length, `:`, and
/// its bytes; `None` if it is not exactly that, or the strings do not
/// pair up as fields and values.
fn length_prefixed(mut text: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !text.is_empty() {
        let colon = text.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&text[..colon]).ok()?.parse().ok()?;
        let rest = &text[colon + 1..];
        out.push(rest.get(..len)?.to_vec());
        text = &rest[len..];
    }
    (out.len() % 2 == 0 && !out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_stream_entries_read_back_byte_for_byte() {
        let pairs = |text: &[u8]| length_prefixed(text);
        assert_eq!(
            pairs(b"2:id2:j76:status0:"),
            Some(vec![
                b"id".to_vec(),
                b"j7".to_vec(),
                b"status".to_vec(),
                Vec::new()
            ])
        );
        // A value may hold the separator, digits and any byte.
        assert_eq!(
            pairs(b"4:note5:1:2:\xff"),
            Some(vec![b"note".to_vec(), b"1:2:\xff".to_vec()])
        );
        for bad in [
            &b""[..],
            b"2:id",
            b"2:id9:short",
            b"x:id2:j7",
            b"2:id2:j7junk",
        ] {
            assert_eq!(pairs(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let entry = RecordedEntry::read(b"stream 12", b"2:id2:j7")
            .expect("a stream entry field")
            .expect("well formed");
        assert_eq!((entry.field.as_str(), entry.write), ("stream 12", 12));
        assert!(
            RecordedEntry::read(b"jobs:status:open", b"1").is_none(),
            "an index key"
        );
        let err = RecordedEntry::read(b"stream x", b"2:id2:j7").expect("a stream entry field");
        assert!(err.is_err());
    }

    #[test]
    fn every_field_kind_reads_back() {
        let kind = |field: &[u8], value: &[u8]| match RecordField::read(field, value) {
            Ok(RecordField::Writes(count)) => format!("writes {}", String::from_utf8_lossy(count)),
            Ok(RecordField::UniqueValue { unique, value }) => format!("unique {unique} {value}"),
            Ok(RecordField::StreamEntry(entry)) => format!("entry {}", entry.write),
            Ok(RecordField::IndexKey { key, position }) => format!("index {key} {position}"),
            Ok(RecordField::Foreign) => "foreign".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(kind(b"", b"3"), "writes 3");
        assert_eq!(
            kind(b"unique 1 ada@example.com", b"users:by_email"),
            "unique users:by_email ada@example.com"
        );
        assert_eq!(kind(b"stream 4", b"2:id2:j7"), "entry 4");
        assert_eq!(kind(b"jobs:status:open", b"2"), "index jobs:status:open 2");
        assert_eq!(kind(b"jobs:status:open", b"x"), "foreign");
        assert!(kind(b"stream 4", b"junk").starts_with("error: "));
    }
}

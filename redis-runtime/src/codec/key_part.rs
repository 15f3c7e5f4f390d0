//! Values in keys: what may fill a key pattern's placeholder
//! ([`KeyPart`]) and the builder generated code renders keys with
//! ([`KeyBuilder`]), which rejects, never escapes, an unsafe value.

use std::borrow::Cow;

use crate::error::{Context, Error, Result};

/// A value that can fill a `{placeholder}` of a key pattern.
///
/// Its text must pass `redis_schema::validate_key_value` (no `:`, `*`, `?`,
/// `[`, `]`, `{`, `}`, `\`, whitespace or control characters, not empty, at
/// most 512 bytes); values that do not are **rejected** with `INVALID_KEY`,
/// never escaped, so a key always reads back as exactly what was written.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot fill a key placeholder",
    label = "not usable in a key",
    note = "key placeholders take String or &str, integers (i8..i128, u8..u128, isize, usize), uuid::Uuid (feature `uuid`) and unit enums with #[derive(RedisValue)]",
    note = "floats, Options and `json` fields cannot be part of a key: their text is not a stable identifier"
)]
pub trait KeyPart {
    /// The text placed into the key.
    fn key_part(&self) -> Cow<'_, str>;
}

impl KeyPart for str {
    fn key_part(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl KeyPart for String {
    fn key_part(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn key_part(&self) -> Cow<'_, str> {
        (**self).key_part()
    }
}

macro_rules! integer_key_part {
    ($($ty:ty),*) => {$(
        impl KeyPart for $ty {
            fn key_part(&self) -> Cow<'_, str> {
                Cow::Owned(itoa::Buffer::new().format(*self).to_owned())
            }
        }
    )*};
}
integer_key_part!(
    i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize
);

#[cfg(feature = "uuid")]
impl KeyPart for uuid::Uuid {
    fn key_part(&self) -> Cow<'_, str> {
        Cow::Owned(self.hyphenated().to_string())
    }
}

/// Builds a concrete key from a pattern's literal and value parts; the
/// derive emits one call per segment, so no pattern is parsed at run time.
#[derive(Debug)]
pub struct KeyBuilder {
    key: String,
    pattern: &'static str,
}

impl KeyBuilder {
    /// Starts a key for `pattern` (used in errors).
    pub fn new(pattern: &'static str) -> Self {
        Self {
            key: String::with_capacity(pattern.len() + 16),
            pattern,
        }
    }

    /// Appends literal text from the pattern.
    pub fn literal(mut self, text: &str) -> Self {
        self.key.push_str(text);
        self
    }

    /// Appends a validated value for placeholder `field`.
    pub fn part(mut self, field: &'static str, value: &(impl KeyPart + ?Sized)) -> Result<Self> {
        let text = value.key_part();
        redis_schema::validate_key_value(&text).map_err(|e| Error::InvalidKey {
            context: Context::new("", self.pattern),
            field: field.to_string(),
            reason: e.to_string(),
        })?;
        self.key.push_str(&text);
        Ok(self)
    }

    /// The finished key.
    pub fn finish(self) -> String {
        self.key
    }
}

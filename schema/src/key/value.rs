//! What a value placed into a key pattern may be: the rules of
//! [`validate_key_value`], which keep every rendered key a key of its
//! pattern, and [`KeyValueError`], which names the rule a value broke.

/// The longest value, in bytes, that may be placed into a key pattern.
///
/// Identifiers are short; anything longer is far more likely to be a bug or an
/// attack than a real id, and long keys cost memory on every index entry.
pub const MAX_KEY_VALUE_LEN: usize = 512;

/// Characters a key value may never contain.
///
/// `:` is the segment separator, `*` `?` `[` `]` `\` are `SCAN MATCH` glob
/// syntax, and `{` `}` delimit Redis Cluster hash tags. Any of them inside a
/// value could make the key mean something its pattern does not.
pub const RESERVED_CHARS: &[char] = &[':', '*', '?', '[', ']', '{', '}', '\\'];

/// Invisible characters a key value (or a pattern's literal text) may never
/// contain: zero-width and invisible formatting characters, and every
/// bidirectional control character (Unicode's `Bidi_Control` property).
///
/// None of them is whitespace or a control character to Rust, yet each makes
/// two different keys look identical in logs, `redis-cli` and dashboards
/// (`user:42` and `user:4\u{200B}2`), or reorders how a key is displayed
/// (Trojan Source). Rejected, like every other unsafe value, never stripped.
pub const INVISIBLE_CHARS: &[(char, &str)] = &[
    ('\u{00AD}', "soft hyphen"),
    ('\u{061C}', "Arabic letter mark"),
    ('\u{180E}', "Mongolian vowel separator"),
    ('\u{200B}', "zero width space"),
    ('\u{200C}', "zero width non-joiner"),
    ('\u{200D}', "zero width joiner"),
    ('\u{200E}', "left-to-right mark"),
    ('\u{200F}', "right-to-left mark"),
    ('\u{202A}', "left-to-right embedding"),
    ('\u{202B}', "right-to-left embedding"),
    ('\u{202C}', "pop directional formatting"),
    ('\u{202D}', "left-to-right override"),
    ('\u{202E}', "right-to-left override"),
    ('\u{2060}', "word joiner"),
    ('\u{2061}', "function application"),
    ('\u{2062}', "invisible times"),
    ('\u{2063}', "invisible separator"),
    ('\u{2064}', "invisible plus"),
    ('\u{2066}', "left-to-right isolate"),
    ('\u{2067}', "right-to-left isolate"),
    ('\u{2068}', "first strong isolate"),
    ('\u{2069}', "pop directional isolate"),
    ('\u{FEFF}', "zero width no-break space (byte order mark)"),
];

/// The name of `ch` if it is one of [`INVISIBLE_CHARS`].
pub fn invisible_char_name(ch: char) -> Option<&'static str> {
    INVISIBLE_CHARS
        .iter()
        .find(|(c, _)| *c == ch)
        .map(|(_, name)| *name)
}

/// Whether `ch` may appear in a key value: the character rules of
/// [`validate_key_value`] (not a reserved, whitespace, control or invisible
/// character).
pub fn is_key_value_char(ch: char) -> bool {
    char_problem(ch).is_none()
}

/// Why a single character may not appear in a key value, if it may not.
pub(super) fn char_problem(ch: char) -> Option<fn(char, usize) -> KeyValueError> {
    if RESERVED_CHARS.contains(&ch) {
        Some(|ch, index| KeyValueError::ForbiddenChar { ch, index })
    } else if ch.is_whitespace() {
        Some(|ch, index| KeyValueError::Whitespace { ch, index })
    } else if ch.is_control() {
        Some(|ch, index| KeyValueError::Control { ch, index })
    } else if invisible_char_name(ch).is_some() {
        Some(|ch, index| KeyValueError::InvisibleChar { ch, index })
    } else {
        None
    }
}

/// Checks that a value may be placed into a key pattern.
///
/// The policy is to reject, never to escape: escaping would make keys depend
/// on an escaping scheme every other client of the database must know. A value
/// is rejected if it is empty, longer than [`MAX_KEY_VALUE_LEN`] bytes, or
/// contains any of [`RESERVED_CHARS`], whitespace, a control character or
/// one of [`INVISIBLE_CHARS`] (zero-width and bidirectional control
/// characters, which would make different keys look the same).
///
/// # Errors
///
/// A [`KeyValueError`] naming the rule broken and, for a bad character, the
/// character and its index in chars. The value itself is never included, as it
/// may be huge or hostile.
///
/// ```
/// use redis_schema::{validate_key_value, KeyValueError};
///
/// assert!(validate_key_value("user-42").is_ok());
/// assert!(validate_key_value("ünïcödé").is_ok());
/// assert_eq!(
///     validate_key_value("a:b"),
///     Err(KeyValueError::ForbiddenChar { ch: ':', index: 1 })
/// );
/// assert_eq!(validate_key_value(""), Err(KeyValueError::Empty));
/// assert_eq!(
///     validate_key_value("4\u{200B}2"),
///     Err(KeyValueError::InvisibleChar { ch: '\u{200B}', index: 1 })
/// );
/// ```
pub fn validate_key_value(value: &str) -> Result<(), KeyValueError> {
    if value.is_empty() {
        return Err(KeyValueError::Empty);
    }
    // Length first: it is O(1) and rejects oversized input before scanning it.
    if value.len() > MAX_KEY_VALUE_LEN {
        return Err(KeyValueError::TooLong {
            len: value.len(),
            max: MAX_KEY_VALUE_LEN,
        });
    }
    for (index, ch) in value.chars().enumerate() {
        if let Some(error) = char_problem(ch) {
            return Err(error(ch, index));
        }
    }
    Ok(())
}

/// A value that cannot be placed into a key, or a wrong number of values.
///
/// Messages name the rule and at most the offending character (escaped with
/// `{:?}`), never the value: it may be huge, hostile or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyValueError {
    /// The value is the empty string.
    #[error("key value is empty; an empty value would produce a key with a missing segment")]
    Empty,
    /// The value is longer than [`MAX_KEY_VALUE_LEN`] bytes.
    #[error("key value is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        /// Length of the value in bytes.
        len: usize,
        /// The limit, [`MAX_KEY_VALUE_LEN`].
        max: usize,
    },
    /// The value contains one of [`RESERVED_CHARS`].
    #[error(
        "key value contains {ch:?} at char {index}; `:` `*` `?` `[` `]` `{{` `}}` `\\` are not allowed in key values because they would change the key's structure"
    )]
    ForbiddenChar {
        /// The reserved character.
        ch: char,
        /// Its index, counted in chars.
        index: usize,
    },
    /// The value contains whitespace.
    #[error(
        "key value contains whitespace {ch:?} at char {index}; keys must not contain whitespace"
    )]
    Whitespace {
        /// The whitespace character.
        ch: char,
        /// Its index, counted in chars.
        index: usize,
    },
    /// The value contains a (non-whitespace) control character.
    #[error(
        "key value contains control character {ch:?} at char {index}; keys must not contain control characters"
    )]
    Control {
        /// The control character.
        ch: char,
        /// Its index, counted in chars.
        index: usize,
    },
    /// The value contains one of [`INVISIBLE_CHARS`]: a zero-width,
    /// invisible formatting or bidirectional control character.
    #[error(
        "key value contains invisible character U+{:04X} ({}) at char {index}; zero-width, invisible and bidirectional control characters are not allowed in key values because they make different keys look identical",
        u32::from(*.ch),
        invisible_char_name(*.ch).unwrap_or("invisible")
    )]
    InvisibleChar {
        /// The invisible character.
        ch: char,
        /// Its index, counted in chars.
        index: usize,
    },
    /// [`KeyPattern::render`](super::KeyPattern::render) got a different number of values than the
    /// pattern has placeholders.
    #[error("key pattern has {expected} placeholder(s) but {got} value(s) were given")]
    WrongCount {
        /// Placeholders in the pattern.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A value given to [`KeyPattern::render`](super::KeyPattern::render) broke one of the other rules.
    #[error("invalid value for placeholder `{{{name}}}`: {source}")]
    Placeholder {
        /// The placeholder the value was for.
        name: String,
        /// The rule it broke.
        source: Box<KeyValueError>,
    },
}

impl KeyValueError {
    /// The rule that was broken, looking through [`KeyValueError::Placeholder`].
    pub fn rule(&self) -> &KeyValueError {
        let mut error = self;
        while let KeyValueError::Placeholder { source, .. } = error {
            error = source;
        }
        error
    }
}

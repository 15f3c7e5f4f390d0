//! The cursor itself: a position in an index as opaque, URL-safe text
//! that reads back exactly.

use std::fmt;
use std::str::FromStr;

/// A position in an index: the last entry a cursor page returned, for the
/// next page to continue after.
///
/// It is opaque to users and travels as URL-safe text ([`Display`](fmt::Display) writes
/// it, [`FromStr`] reads it back exactly), so it can go into a link or an
/// API response. The text is made of `A-Z a-z 0-9 - . _ ~` only: the score
/// in Rust's shortest exact form (so any `f64`, including negative ones and
/// integers above 2^53, comes back bit for bit), then the id with every
/// byte outside `A-Z a-z 0-9 - . _` written as `~` and two hex digits.
///
/// ```
/// use redis_runtime::index::Cursor;
///
/// let cursor = Cursor::sorted(1_700_000_000_123.0, "job:42 é");
/// let text = cursor.to_string();
/// assert_eq!(text, "z1700000000123_job~3A42~20~C3~A9");
/// assert_eq!(text.parse::<Cursor>()?, cursor);
/// assert_eq!(Cursor::set("a_b").to_string(), "s_a_b");
/// # Ok::<(), redis_runtime::index::ParseCursorError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    /// The entry's score; `None` for a set index.
    pub(super) score: Option<f64>,
    pub(super) id: String,
}

impl Cursor {
    /// The position of entry `id` at `score` in a sorted index.
    pub fn sorted(score: f64, id: impl Into<String>) -> Self {
        Self {
            score: Some(score),
            id: id.into(),
        }
    }

    /// The position of member `id` in a set index.
    pub fn set(id: impl Into<String>) -> Self {
        Self {
            score: None,
            id: id.into(),
        }
    }

    /// The id of the entry the cursor is at.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The score of the entry the cursor is at; `None` for a set index.
    pub fn score(&self) -> Option<f64> {
        self.score
    }
}

/// The score as text that Rust and Redis (`strtod`) both read back as the
/// same `f64`: the shorter of the plain and the exponent form, both of which
/// Rust prints with the fewest digits that round-trip.
pub(super) fn score_text(score: f64) -> String {
    if score == f64::INFINITY {
        return "+inf".into();
    }
    if score == f64::NEG_INFINITY {
        return "-inf".into();
    }
    let plain = score.to_string();
    let exponent = format!("{score:e}");
    if exponent.len() < plain.len() {
        exponent
    } else {
        plain
    }
}

/// Bytes an id keeps as they are in a cursor; `~` escapes the others.
fn plain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Kind, score, `_`, id: the score's text never holds a `_`, so the
        // first one ends it.
        match self.score {
            // `+` is not URL-safe; Rust reads `inf` back as well.
            Some(score) if score == f64::INFINITY => f.write_str("zinf_")?,
            Some(score) => write!(f, "z{}_", score_text(score))?,
            None => f.write_str("s_")?,
        }
        for &b in self.id.as_bytes() {
            if plain_byte(b) {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "~{b:02X}")?;
            }
        }
        Ok(())
    }
}

/// Why a text is not a [`Cursor`]: cursors come back from users, so a
/// malformed one is an input error, not a failure of the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid cursor: {reason}")]
pub struct ParseCursorError {
    reason: &'static str,
}

fn malformed(reason: &'static str) -> ParseCursorError {
    ParseCursorError { reason }
}

impl FromStr for Cursor {
    type Err = ParseCursorError;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let (head, id) = text
            .split_once('_')
            .ok_or_else(|| malformed("no `_` after the score"))?;
        let score = match head.strip_prefix('z') {
            Some(score) => {
                let score: f64 = score.parse().map_err(|_| malformed("bad score"))?;
                if score.is_nan() {
                    return Err(malformed("the score is NaN"));
                }
                Some(score)
            }
            None if head == "s" => None,
            None => return Err(malformed("unknown kind")),
        };
        let mut bytes = Vec::with_capacity(id.len());
        let mut rest = id.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'~' {
                let (hex, after) = tail
                    .split_at_checked(2)
                    .ok_or_else(|| malformed("cut-off escape"))?;
                let digit = |d: u8| char::from(d).to_digit(16);
                match (digit(hex[0]), digit(hex[1])) {
                    // Two hex digits make at most 255.
                    (Some(high), Some(low)) => bytes.push((high * 16 + low) as u8),
                    _ => return Err(malformed("bad escape")),
                }
                rest = after;
            } else if plain_byte(b) {
                bytes.push(b);
                rest = tail;
            } else {
                return Err(malformed("a character that is not URL-safe"));
            }
        }
        let id = String::from_utf8(bytes).map_err(|_| malformed("the id is not UTF-8"))?;
        Ok(Self { score, id })
    }
}

//! Why a key pattern does not parse ([`PatternError`]).

/// A key pattern that cannot be parsed.
///
/// Every variant carries `at`, the byte offset in the pattern source of the
/// problem (for placeholder problems, of the placeholder's opening `{`). The
/// [`Display`](std::fmt::Display) text is written to be shown as a compile error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is the empty string.
    #[error("empty key pattern; write a key such as `user:{{id}}`")]
    Empty {
        /// Always 0.
        at: usize,
    },
    /// A `{` opens a placeholder that is never closed.
    #[error(
        "unclosed `{{` at byte {at} of key pattern; placeholders look like `{{id}}`, write `{{{{` for a literal brace"
    )]
    UnclosedBrace {
        /// Byte offset of the unclosed `{`.
        at: usize,
    },
    /// A `}` that closes nothing and is not doubled.
    #[error("unmatched `}}` at byte {at} of key pattern; write `}}}}` for a literal brace")]
    StrayClosingBrace {
        /// Byte offset of the `}`.
        at: usize,
    },
    /// `{}` with no name inside.
    #[error(
        "empty placeholder `{{}}` at byte {at} of key pattern; name the field it stands for, like `{{id}}`, or write `{{{{}}}}` for literal braces"
    )]
    EmptyPlaceholder {
        /// Byte offset of the `{`.
        at: usize,
    },
    /// A placeholder whose name is not an identifier, such as `{user id}` or `{1x}`.
    #[error(
        "`{{{}}}` at byte {at} of key pattern is not a valid placeholder; a placeholder names a field, like `{{user_id}}` (ASCII letters, digits and `_`, not starting with a digit)",
        .name.escape_debug()
    )]
    InvalidPlaceholder {
        /// Byte offset of the `{`.
        at: usize,
        /// The text between the braces.
        name: String,
    },
    /// The same placeholder appears twice.
    #[error(
        "placeholder `{{{name}}}` at byte {at} appears twice in key pattern; each field may appear in a key once"
    )]
    DuplicatePlaceholder {
        /// Byte offset of the second occurrence's `{`.
        at: usize,
        /// The repeated name.
        name: String,
    },
    /// Two placeholders with no literal text between them, such as `{a}{b}`.
    #[error(
        "placeholder `{{{name}}}` at byte {at} directly follows another placeholder; put a separator such as `:` between them so keys can be split back into their parts"
    )]
    AdjacentPlaceholders {
        /// Byte offset of the second placeholder's `{`.
        at: usize,
        /// The second placeholder's name.
        name: String,
    },
    /// A segment with nothing in it: the pattern starts or ends with `:`, or
    /// has `::` in literal text, such as `job:{id}:` or `a::{id}`.
    #[error(
        "empty segment at byte {at} of key pattern: a key must not start or end with `:` or contain `::`; remove the extra `:`, e.g. write `job:{{id}}` rather than `job:{{id}}:`"
    )]
    EmptySegment {
        /// Byte offset of the `:` that starts or ends the pattern, or of the
        /// first `:` of a `::`.
        at: usize,
    },
    /// A `SCAN MATCH` glob character ([`GLOB_CHARS`](super::GLOB_CHARS)) in literal text, such as
    /// `user*:{id}`.
    #[error(
        "key pattern contains the glob character `{ch}` at byte {at}; `*` `?` `[` `]` `\\` are not allowed in keys because they break `SCAN MATCH` globs; use a letter, digit, `_`, `-` or `.` instead, and `{{id}}` for a value"
    )]
    GlobChar {
        /// Byte offset of the character.
        at: usize,
        /// The glob character.
        ch: char,
    },
    /// Whitespace, a control character or one of [`INVISIBLE_CHARS`](super::INVISIBLE_CHARS) in
    /// literal text.
    #[error(
        "key pattern contains {ch:?} at byte {at}; keys must not contain whitespace, control or invisible characters"
    )]
    InvalidLiteralChar {
        /// Byte offset of the character.
        at: usize,
        /// The offending character.
        ch: char,
    },
}

impl PatternError {
    /// Byte offset in the pattern source where the problem is.
    pub fn at(&self) -> usize {
        match self {
            PatternError::Empty { at }
            | PatternError::UnclosedBrace { at }
            | PatternError::StrayClosingBrace { at }
            | PatternError::EmptyPlaceholder { at }
            | PatternError::InvalidPlaceholder { at, .. }
            | PatternError::DuplicatePlaceholder { at, .. }
            | PatternError::AdjacentPlaceholders { at, .. }
            | PatternError::EmptySegment { at }
            | PatternError::GlobChar { at, .. }
            | PatternError::InvalidLiteralChar { at, .. } => *at,
        }
    }

    /// The error as a message suitable for a compile error; the same text as
    /// [`Display`](std::fmt::Display).
    ///
    /// ```
    /// use redis_schema::KeyPattern;
    ///
    /// let err = KeyPattern::parse("user:{id").unwrap_err();
    /// assert_eq!(
    ///     err.message(),
    ///     "unclosed `{` at byte 5 of key pattern; placeholders look like `{id}`, \
    ///      write `{{` for a literal brace"
    /// );
    /// ```
    pub fn message(&self) -> String {
        self.to_string()
    }
}

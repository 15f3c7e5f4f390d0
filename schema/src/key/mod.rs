//! Key patterns: the grammar that turns `user:{id}` into concrete Redis keys
//! and back.
//!
//! A pattern is literal text with named placeholders:
//!
//! * `{name}` is a placeholder; `name` is an ASCII Rust identifier
//!   (`[A-Za-z_][A-Za-z0-9_]*`), normally the field it is filled from.
//! * `{{` and `}}` are a literal `{` and `}`, as in [`format!`]. This keeps
//!   Redis Cluster hash tags expressible: `user:{{{id}}}` renders `user:{42}`.
//! * Literal text may contain anything except whitespace, control
//!   characters and the glob characters `*` `?` `[` `]` `\` ([`GLOB_CHARS`]).
//! * `:` separates segments, and no segment may be empty: a pattern neither
//!   starts nor ends with `:` and has no `::`.
//!
//! Values put into a pattern are never escaped, only checked
//! ([`validate_key_value`]): a value that could change the shape of the key
//! (a `:`, a glob metacharacter, a brace, whitespace, ...) is rejected. This is
//! what makes the "no key injection" guarantee (ARCHITECTURE.md) hold: every
//! key rendered from a pattern can only be a key of that pattern.
//!
//! ```
//! use redis_schema::KeyPattern;
//!
//! let pattern = KeyPattern::parse("job:{id}:output")?;
//! assert_eq!(pattern.render(&["42"])?, "job:42:output");
//! assert_eq!(pattern.parse_key("job:42:output"), Some(vec!["42".to_owned()]));
//! assert_eq!(pattern.scan_glob(), "job:*:output");
//! assert!(pattern.render(&["42:admin"]).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod pattern_error;
mod value;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use self::pattern_error::PatternError;
use self::value::char_problem;
pub use self::value::{
    INVISIBLE_CHARS, KeyValueError, MAX_KEY_VALUE_LEN, RESERVED_CHARS, invisible_char_name,
    is_key_value_char, validate_key_value,
};

/// The `SCAN MATCH` glob metacharacters, which may not appear anywhere in a
/// key: not in values (they are among [`RESERVED_CHARS`]) and not in a
/// pattern's literal text either, where they would make the pattern read like
/// a glob and its `SCAN MATCH` glob need escaping.
pub const GLOB_CHARS: &[char] = &['*', '?', '[', ']', '\\'];

/// One piece of a parsed [`KeyPattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySegment {
    /// Fixed text, already unescaped: a `{{` in the source is a single `{` here.
    Literal(String),
    /// A named slot filled with a value at render time.
    Placeholder(String),
}

/// A parsed, validated key pattern such as `user:{id}`.
///
/// Parsing guarantees that consecutive literal text is merged into one
/// [`KeySegment::Literal`], that two placeholders are never adjacent, and that
/// every placeholder name is unique.
///
/// ```
/// use redis_schema::{KeyPattern, KeySegment};
///
/// let pattern = KeyPattern::parse("user:{{{id}}}")?;
/// assert_eq!(
///     pattern.segments(),
///     &[
///         KeySegment::Literal("user:{".into()),
///         KeySegment::Placeholder("id".into()),
///         KeySegment::Literal("}".into()),
///     ]
/// );
/// assert_eq!(pattern.render(&["42"])?, "user:{42}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPattern {
    source: String,
    segments: Vec<KeySegment>,
}

/// `text` as pattern source that renders exactly `text`: its braces
/// doubled, so that they are literal (a fixed key, a literal part).
///
/// ```
/// use redis_schema::{KeyPattern, escape_braces};
///
/// let stream = KeyPattern::parse(&escape_braces("jobs:{jobs}:stream"))?;
/// assert_eq!(stream.render(&[])?, "jobs:{jobs}:stream");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn escape_braces(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

impl KeyPattern {
    /// Parses and validates a key pattern.
    ///
    /// A pattern without placeholders (a singleton key such as `config`) is
    /// accepted; whether that makes sense is the caller's decision.
    ///
    /// # Errors
    ///
    /// Returns a [`PatternError`] naming the byte offset of the first problem:
    /// an empty pattern, an unclosed `{`, a stray `}`, an empty or non-identifier
    /// placeholder, a repeated placeholder, two adjacent placeholders, an empty
    /// segment (a leading or trailing `:`, or `::`), or a glob character,
    /// whitespace or a control character in literal text.
    ///
    /// ```
    /// use redis_schema::{KeyPattern, PatternError};
    ///
    /// assert!(KeyPattern::parse("session:{id}").is_ok());
    /// assert_eq!(
    ///     KeyPattern::parse("session:{id"),
    ///     Err(PatternError::UnclosedBrace { at: 8 })
    /// );
    /// assert_eq!(
    ///     KeyPattern::parse("session:{id}:"),
    ///     Err(PatternError::EmptySegment { at: 12 })
    /// );
    /// assert_eq!(
    ///     KeyPattern::parse("session*:{id}"),
    ///     Err(PatternError::GlobChar { at: 7, ch: '*' })
    /// );
    /// ```
    pub fn parse(source: &str) -> Result<KeyPattern, PatternError> {
        if source.is_empty() {
            return Err(PatternError::Empty { at: 0 });
        }

        let mut segments: Vec<KeySegment> = Vec::new();
        let mut literal = String::new();
        let mut pos = 0;

        while let Some(ch) = source.get(pos..).and_then(|rest| rest.chars().next()) {
            let at = pos;
            pos += ch.len_utf8();
            let rest = source.get(pos..).unwrap_or_default();
            match ch {
                '{' if rest.starts_with('{') => {
                    literal.push('{');
                    pos += 1;
                }
                '{' => {
                    let Some(len) = rest.find('}') else {
                        return Err(PatternError::UnclosedBrace { at });
                    };
                    let name = rest.get(..len).unwrap_or_default();
                    // `{id:{x}` most likely lost its first `}`: blame the brace
                    // that is still open rather than the odd-looking "name".
                    if name.contains('{') {
                        return Err(PatternError::UnclosedBrace { at });
                    }
                    if name.is_empty() {
                        return Err(PatternError::EmptyPlaceholder { at });
                    }
                    if !is_identifier(name) {
                        return Err(PatternError::InvalidPlaceholder {
                            at,
                            name: name.to_owned(),
                        });
                    }
                    // Without literal text in between, `{a}{b}` could not be
                    // split back into `a` and `b`.
                    if literal.is_empty()
                        && matches!(segments.last(), Some(KeySegment::Placeholder(_)))
                    {
                        return Err(PatternError::AdjacentPlaceholders {
                            at,
                            name: name.to_owned(),
                        });
                    }
                    if segments
                        .iter()
                        .any(|s| matches!(s, KeySegment::Placeholder(p) if p == name))
                    {
                        return Err(PatternError::DuplicatePlaceholder {
                            at,
                            name: name.to_owned(),
                        });
                    }
                    if !literal.is_empty() {
                        segments.push(KeySegment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(KeySegment::Placeholder(name.to_owned()));
                    pos += len + 1;
                }
                '}' if rest.starts_with('}') => {
                    literal.push('}');
                    pos += 1;
                }
                '}' => return Err(PatternError::StrayClosingBrace { at }),
                // A `:` outside a placeholder is literal, so `::`, a leading `:`
                // or a trailing `:` would give every key an empty segment.
                ':' if at == 0 || rest.is_empty() || rest.starts_with(':') => {
                    return Err(PatternError::EmptySegment { at });
                }
                c if GLOB_CHARS.contains(&c) => {
                    return Err(PatternError::GlobChar { at, ch: c });
                }
                c if c.is_whitespace() || c.is_control() || invisible_char_name(c).is_some() => {
                    return Err(PatternError::InvalidLiteralChar { at, ch: c });
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            segments.push(KeySegment::Literal(literal));
        }

        Ok(KeyPattern {
            source: source.to_owned(),
            segments,
        })
    }

    /// The pattern exactly as written, with doubled braces still doubled.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed segments, in order.
    pub fn segments(&self) -> &[KeySegment] {
        &self.segments
    }

    /// Placeholder names in order of appearance.
    ///
    /// ```
    /// use redis_schema::KeyPattern;
    ///
    /// let pattern = KeyPattern::parse("member:{org}:{user}")?;
    /// assert_eq!(pattern.placeholders().collect::<Vec<_>>(), ["org", "user"]);
    /// # Ok::<(), redis_schema::PatternError>(())
    /// ```
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|segment| match segment {
            KeySegment::Placeholder(name) => Some(name.as_str()),
            KeySegment::Literal(_) => None,
        })
    }

    /// How many values [`render`](Self::render) expects.
    pub fn placeholder_count(&self) -> usize {
        self.placeholders().count()
    }

    /// The literal text before the first placeholder (unescaped), or the whole
    /// key for a pattern without placeholders.
    ///
    /// ```
    /// use redis_schema::KeyPattern;
    ///
    /// assert_eq!(KeyPattern::parse("user:{id}")?.literal_prefix(), "user:");
    /// assert_eq!(KeyPattern::parse("{id}:user")?.literal_prefix(), "");
    /// # Ok::<(), redis_schema::PatternError>(())
    /// ```
    pub fn literal_prefix(&self) -> &str {
        match self.segments.first() {
            Some(KeySegment::Literal(text)) => text,
            _ => "",
        }
    }

    /// A `SCAN MATCH` glob for keys of this pattern: each placeholder becomes
    /// `*` and literal text is copied as is. Literal text never holds a glob
    /// metacharacter ([`parse`](Self::parse) rejects [`GLOB_CHARS`]), so nothing
    /// needs escaping; braces are not glob syntax.
    ///
    /// A glob `*` also matches `:`, so `user:*` matches `user:1:sessions` too;
    /// filter scan results with [`parse_key`](Self::parse_key).
    ///
    /// ```
    /// use redis_schema::KeyPattern;
    ///
    /// assert_eq!(KeyPattern::parse("job:{id}:output")?.scan_glob(), "job:*:output");
    /// // A Redis Cluster hash tag: the braces are literal, in the key and the glob.
    /// assert_eq!(KeyPattern::parse("user:{{{id}}}:cart")?.scan_glob(), "user:{*}:cart");
    /// # Ok::<(), redis_schema::PatternError>(())
    /// ```
    pub fn scan_glob(&self) -> String {
        let mut glob = String::with_capacity(self.source.len());
        for segment in &self.segments {
            match segment {
                KeySegment::Literal(text) => glob.push_str(text),
                KeySegment::Placeholder(_) => glob.push('*'),
            }
        }
        glob
    }

    /// Renders a concrete key from one value per placeholder, in order.
    ///
    /// # Errors
    ///
    /// [`KeyValueError::WrongCount`] if the number of values differs from the
    /// number of placeholders, or [`KeyValueError::Placeholder`] wrapping the
    /// [`validate_key_value`] failure of the first invalid value.
    ///
    /// ```
    /// use redis_schema::{KeyPattern, KeyValueError};
    ///
    /// let pattern = KeyPattern::parse("member:{org}:{user}")?;
    /// assert_eq!(pattern.render(&["acme", "7"])?, "member:acme:7");
    ///
    /// let err = pattern.render(&["acme", "*"]).unwrap_err();
    /// assert_eq!(err.rule(), &KeyValueError::ForbiddenChar { ch: '*', index: 0 });
    /// assert_eq!(
    ///     pattern.render(&["acme"]),
    ///     Err(KeyValueError::WrongCount { expected: 2, got: 1 })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn render(&self, values: &[&str]) -> Result<String, KeyValueError> {
        let expected = self.placeholder_count();
        if values.len() != expected {
            return Err(KeyValueError::WrongCount {
                expected,
                got: values.len(),
            });
        }

        let mut key = String::with_capacity(
            self.source.len() + values.iter().map(|v| v.len()).sum::<usize>(),
        );
        let mut values = values.iter();
        for segment in &self.segments {
            match segment {
                KeySegment::Literal(text) => key.push_str(text),
                KeySegment::Placeholder(name) => {
                    // The count was checked above, so this never runs dry; if it
                    // somehow did, report it rather than panic.
                    let Some(value) = values.next() else {
                        return Err(KeyValueError::WrongCount {
                            expected,
                            got: expected.saturating_sub(1),
                        });
                    };
                    validate_key_value(value).map_err(|source| KeyValueError::Placeholder {
                        name: name.clone(),
                        source: Box::new(source),
                    })?;
                    key.push_str(value);
                }
            }
        }
        Ok(key)
    }

    /// Splits a concrete key back into its placeholder values: the inverse of
    /// [`render`](Self::render).
    ///
    /// Returns `None` if the key is not a key of this pattern (including when a
    /// value would break [`validate_key_value`]), and also if the key could be
    /// split in more than one way. The latter only happens for patterns where
    /// [`is_unambiguous`](Self::is_unambiguous) is `false`; a wrong answer
    /// would be worse than none.
    ///
    /// ```
    /// use redis_schema::KeyPattern;
    ///
    /// let pattern = KeyPattern::parse("member:{org}:{user}")?;
    /// assert_eq!(
    ///     pattern.parse_key("member:acme:7"),
    ///     Some(vec!["acme".to_owned(), "7".to_owned()])
    /// );
    /// assert_eq!(pattern.parse_key("member:acme:7:extra"), None);
    /// assert_eq!(pattern.parse_key("user:7"), None);
    /// # Ok::<(), redis_schema::PatternError>(())
    /// ```
    pub fn parse_key(&self, key: &str) -> Option<Vec<String>> {
        // Reshape the segments as: a leading literal, then for each placeholder
        // the literal that follows it ("" after a trailing placeholder). Parsing
        // merged literals and forbade adjacent placeholders, so this is exact.
        let mut lead = "";
        let mut after: Vec<&str> = Vec::new();
        for segment in &self.segments {
            match segment {
                KeySegment::Literal(text) => match after.last_mut() {
                    Some(slot) => *slot = text,
                    None => lead = text,
                },
                KeySegment::Placeholder(_) => after.push(""),
            }
        }

        if !key.starts_with(lead) {
            return None;
        }
        if after.is_empty() {
            return (key.len() == lead.len()).then(Vec::new);
        }

        // A small dynamic programme over byte positions. After each stage we
        // know every position the key can be matched up to, how many distinct
        // ways lead there (capped at 2, all that matters is "one" or "many"),
        // and where the value that led there started. Values can only hold
        // non-reserved characters and at most MAX_KEY_VALUE_LEN bytes, so each
        // position has a bounded number of candidate value ends and hostile keys
        // cannot make this expensive. It is iterative so that patterns with very
        // many placeholders cannot exhaust the stack.
        #[derive(Clone, Copy)]
        struct Step {
            ways: u8,
            value_start: usize,
        }

        let mut frontier: BTreeMap<usize, u8> = BTreeMap::new();
        frontier.insert(lead.len(), 1);
        let mut stages: Vec<BTreeMap<usize, Step>> = Vec::with_capacity(after.len());

        for (index, literal) in after.iter().enumerate() {
            let last = index + 1 == after.len();
            let mut next: BTreeMap<usize, Step> = BTreeMap::new();
            for (&start, &ways) in &frontier {
                let Some(rest) = key.get(start..) else {
                    continue;
                };
                for (offset, ch) in rest.char_indices() {
                    let len = offset + ch.len_utf8();
                    if char_problem(ch).is_some() || len > MAX_KEY_VALUE_LEN {
                        break;
                    }
                    let end = start + len;
                    if !key.get(end..).is_some_and(|tail| tail.starts_with(literal)) {
                        continue;
                    }
                    let reached = end + literal.len();
                    if last && reached != key.len() {
                        continue;
                    }
                    let step = next.entry(reached).or_insert(Step {
                        ways: 0,
                        value_start: start,
                    });
                    step.ways = step.ways.saturating_add(ways).min(2);
                }
            }
            if next.is_empty() {
                return None;
            }
            frontier = next.iter().map(|(&pos, step)| (pos, step.ways)).collect();
            stages.push(next);
        }

        // The last stage only admits the end of the key; exactly one way there
        // means each step on the path back had exactly one predecessor, the one
        // recorded in `value_start`.
        if stages.last()?.get(&key.len())?.ways != 1 {
            return None;
        }
        let mut values = vec![String::new(); after.len()];
        let mut pos = key.len();
        for (index, literal) in after.iter().enumerate().rev() {
            let step = stages.get(index)?.get(&pos)?;
            let end = pos.checked_sub(literal.len())?;
            *values.get_mut(index)? = key.get(step.value_start..end)?.to_owned();
            pos = step.value_start;
        }
        Some(values)
    }

    /// Whether every key of this pattern splits back into values in exactly one
    /// way, so [`parse_key`](Self::parse_key) never returns `None` for a key
    /// that [`render`](Self::render) produced.
    ///
    /// That holds when every literal between two placeholders contains a
    /// character values cannot contain, such as `:`. `{first}-{last}` is
    /// ambiguous: `a-b-c` could be `a` + `b-c` or `a-b` + `c`.
    ///
    /// ```
    /// use redis_schema::KeyPattern;
    ///
    /// assert!(KeyPattern::parse("member:{org}:{user}")?.is_unambiguous());
    /// assert!(!KeyPattern::parse("name:{first}-{last}")?.is_unambiguous());
    /// # Ok::<(), redis_schema::PatternError>(())
    /// ```
    pub fn is_unambiguous(&self) -> bool {
        self.segments.windows(3).all(|window| match window {
            [
                KeySegment::Placeholder(_),
                KeySegment::Literal(text),
                KeySegment::Placeholder(_),
            ] => text.contains(RESERVED_CHARS),
            _ => true,
        })
    }
}

impl fmt::Display for KeyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for KeyPattern {
    type Err = PatternError;

    fn from_str(source: &str) -> Result<Self, Self::Err> {
        KeyPattern::parse(source)
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: deliberately ASCII so a placeholder maps onto a
/// plain Rust field name.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// A failing unwrap is a failing test.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pattern(source: &str) -> KeyPattern {
        match KeyPattern::parse(source) {
            Ok(pattern) => pattern,
            Err(err) => panic!("{source:?} should parse: {err}"),
        }
    }

    fn lit(text: &str) -> KeySegment {
        KeySegment::Literal(text.to_owned())
    }

    fn ph(name: &str) -> KeySegment {
        KeySegment::Placeholder(name.to_owned())
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn parses_simple_pattern() {
        let p = pattern("user:{id}");
        assert_eq!(p.source(), "user:{id}");
        assert_eq!(p.segments(), &[lit("user:"), ph("id")]);
        assert_eq!(p.placeholders().collect::<Vec<_>>(), ["id"]);
        assert_eq!(p.placeholder_count(), 1);
        assert_eq!(p.literal_prefix(), "user:");
        assert_eq!(p.to_string(), "user:{id}");
    }

    #[test]
    fn parses_multiple_placeholders_in_order() {
        let p = pattern("jobs:{user_id}:status:{status}");
        assert_eq!(
            p.segments(),
            &[lit("jobs:"), ph("user_id"), lit(":status:"), ph("status")]
        );
        assert_eq!(p.placeholders().collect::<Vec<_>>(), ["user_id", "status"]);
    }

    #[test]
    fn leading_and_only_placeholder() {
        let p = pattern("{id}");
        assert_eq!(p.segments(), &[ph("id")]);
        assert_eq!(p.literal_prefix(), "");
        assert_eq!(p.scan_glob(), "*");
        assert_eq!(p.render(&["x"]), Ok("x".to_owned()));
        assert_eq!(p.parse_key("x"), Some(strings(&["x"])));
    }

    #[test]
    fn singleton_key_without_placeholder() {
        let p = pattern("config");
        assert_eq!(p.segments(), &[lit("config")]);
        assert_eq!(p.placeholder_count(), 0);
        assert_eq!(p.literal_prefix(), "config");
        assert_eq!(p.render(&[]), Ok("config".to_owned()));
        assert_eq!(p.parse_key("config"), Some(vec![]));
        assert_eq!(p.parse_key("config2"), None);
        assert_eq!(p.parse_key("conf"), None);
    }

    #[test]
    fn doubled_braces_are_literal() {
        let p = pattern("a{{b}}c");
        assert_eq!(p.segments(), &[lit("a{b}c")]);
        assert_eq!(p.render(&[]), Ok("a{b}c".to_owned()));

        let p = pattern("{{{{");
        assert_eq!(p.segments(), &[lit("{{")]);
    }

    #[test]
    fn hash_tag_pattern() {
        let p = pattern("user:{{{id}}}");
        assert_eq!(p.segments(), &[lit("user:{"), ph("id"), lit("}")]);
        assert_eq!(p.literal_prefix(), "user:{");
        assert_eq!(p.render(&["42"]), Ok("user:{42}".to_owned()));
        assert_eq!(p.parse_key("user:{42}"), Some(strings(&["42"])));
        assert_eq!(p.scan_glob(), "user:{*}");

        let p = pattern("{{{id}}}:profile");
        assert_eq!(p.render(&["7"]), Ok("{7}:profile".to_owned()));
        assert_eq!(p.parse_key("{7}:profile"), Some(strings(&["7"])));
    }

    #[test]
    fn literal_may_hold_unicode_and_punctuation() {
        let p = pattern("ключ.v-2@:{id}");
        assert_eq!(p.literal_prefix(), "ключ.v-2@:");
        assert_eq!(p.scan_glob(), "ключ.v-2@:*");
        assert_eq!(p.render(&["1"]), Ok("ключ.v-2@:1".to_owned()));
        assert_eq!(p.parse_key("ключ.v-2@:1"), Some(strings(&["1"])));
    }

    #[test]
    fn scan_glob_copies_literals_and_stars_placeholders() {
        assert_eq!(pattern("job:{id}:output").scan_glob(), "job:*:output");
        assert_eq!(pattern("{{{t}}}:{id}:g").scan_glob(), "{*}:*:g");
    }

    #[test]
    fn error_glob_char_in_literal() {
        for (source, at, ch) in [
            ("user*:{id}", 4, '*'),
            ("user:{id}?", 9, '?'),
            ("a[b]:{id}", 1, '['),
            ("ab]:{id}", 2, ']'),
            (r"a\b:{id}", 1, '\\'),
            ("ключ*", 8, '*'),
            ("*", 0, '*'),
        ] {
            assert_eq!(
                KeyPattern::parse(source),
                Err(PatternError::GlobChar { at, ch }),
                "{source}"
            );
        }
        let err = KeyPattern::parse("user*:{id}").unwrap_err();
        assert_eq!(err.at(), 4);
        assert_eq!(
            err.message(),
            "key pattern contains the glob character `*` at byte 4; `*` `?` `[` `]` `\\` are not allowed in keys because they break `SCAN MATCH` globs; use a letter, digit, `_`, `-` or `.` instead, and `{id}` for a value"
        );
        // Inside a placeholder it is a bad name, as before.
        assert!(matches!(
            KeyPattern::parse("user:{i*d}"),
            Err(PatternError::InvalidPlaceholder { at: 5, .. })
        ));
    }

    #[test]
    fn error_empty_segment() {
        for (source, at) in [
            ("m32:{id}:", 8),
            (":a:{id}", 0),
            ("a::{id}", 1),
            ("{id}::x", 4),
            ("a:{id}:::b", 6),
            (":", 0),
            ("::", 0),
            ("config:", 6),
            ("{{::}}", 2),
        ] {
            assert_eq!(
                KeyPattern::parse(source),
                Err(PatternError::EmptySegment { at }),
                "{source}"
            );
        }
        let err = KeyPattern::parse("m32:{id}:").unwrap_err();
        assert_eq!(err.at(), 8);
        assert_eq!(
            err.message(),
            "empty segment at byte 8 of key pattern: a key must not start or end with `:` or contain `::`; remove the extra `:`, e.g. write `job:{id}` rather than `job:{id}:`"
        );
    }

    #[test]
    fn colons_next_to_braces_and_placeholders_are_fine() {
        // Literal braces make the segment non-empty; a placeholder never is.
        for source in [
            "{{:}}",
            "{{}}:{id}",
            "user:{{{id}}}",
            "{{{id}}}:profile",
            "{a}:{b}",
            "{id}",
            "a:{{:b",
        ] {
            assert!(KeyPattern::parse(source).is_ok(), "{source}");
        }
    }

    #[test]
    fn error_empty() {
        let err = KeyPattern::parse("").unwrap_err();
        assert_eq!(err, PatternError::Empty { at: 0 });
        assert_eq!(err.at(), 0);
        assert!(err.message().contains("empty key pattern"));
    }

    #[test]
    fn error_unclosed() {
        // In "a:{id:{x}" the first brace never closed; the `}` belongs to
        // the second one.
        for (pattern, at) in [("user:{id", 5), ("{", 0), ("a:{id:{x}", 2)] {
            assert_eq!(
                KeyPattern::parse(pattern),
                Err(PatternError::UnclosedBrace { at }),
                "{pattern}"
            );
        }
        let message = PatternError::UnclosedBrace { at: 5 }.message();
        assert_eq!(
            message,
            "unclosed `{` at byte 5 of key pattern; placeholders look like `{id}`, write `{{` for a literal brace"
        );
    }

    #[test]
    fn error_stray_closing_brace() {
        for (pattern, at) in [("user:}", 5), ("a:{id}}", 6), ("}}}", 2)] {
            assert_eq!(
                KeyPattern::parse(pattern),
                Err(PatternError::StrayClosingBrace { at }),
                "{pattern}"
            );
        }
        let message = PatternError::StrayClosingBrace { at: 5 }.message();
        assert!(
            message.contains("write `}}` for a literal brace"),
            "{message}"
        );
    }

    #[test]
    fn error_empty_placeholder() {
        let err = KeyPattern::parse("user:{}").unwrap_err();
        assert_eq!(err, PatternError::EmptyPlaceholder { at: 5 });
        assert!(err.message().contains("`{}`"), "{err}");
    }

    #[test]
    fn error_invalid_placeholder() {
        for (source, name) in [
            ("user:{user id}", "user id"),
            ("user:{1x}", "1x"),
            ("user:{ id }", " id "),
            ("user:{a-b}", "a-b"),
            ("user:{r#type}", "r#type"),
            ("user:{é}", "é"),
            ("user:{a:b}", "a:b"),
        ] {
            assert_eq!(
                KeyPattern::parse(source),
                Err(PatternError::InvalidPlaceholder {
                    at: 5,
                    name: name.to_owned()
                }),
                "{source}"
            );
        }
        let err = KeyPattern::parse("x:{a\nb}").unwrap_err();
        assert!(err.message().contains(r"`{a\nb}`"), "{err}");
    }

    #[test]
    fn valid_placeholder_names() {
        for name in ["_", "_id", "a1", "UserId", "user_id_2"] {
            let source = format!("x:{{{name}}}");
            assert_eq!(pattern(&source).placeholders().collect::<Vec<_>>(), [name]);
        }
    }

    #[test]
    fn error_duplicate_placeholder() {
        let err = KeyPattern::parse("x:{id}:{id}").unwrap_err();
        assert_eq!(
            err,
            PatternError::DuplicatePlaceholder {
                at: 7,
                name: "id".to_owned()
            }
        );
        assert!(err.message().contains("`{id}`"), "{err}");
    }

    #[test]
    fn error_adjacent_placeholders() {
        let err = KeyPattern::parse("x:{a}{b}").unwrap_err();
        assert_eq!(
            err,
            PatternError::AdjacentPlaceholders {
                at: 5,
                name: "b".to_owned()
            }
        );
        assert!(err.message().contains("separator"), "{err}");
        // A doubled brace between them is literal text, so this is fine.
        let p = pattern("{a}{{{b}");
        assert_eq!(p.segments(), &[ph("a"), lit("{"), ph("b")]);
    }

    #[test]
    fn error_whitespace_or_control_in_literal() {
        assert_eq!(
            KeyPattern::parse("user {id}"),
            Err(PatternError::InvalidLiteralChar { at: 4, ch: ' ' })
        );
        assert_eq!(
            KeyPattern::parse("é\u{7}"),
            Err(PatternError::InvalidLiteralChar { at: 2, ch: '\u{7}' })
        );
        let err = KeyPattern::parse("a\tb").unwrap_err();
        assert!(err.message().contains(r"'\t'"), "{err}");
    }

    #[test]
    fn render_validates_values() {
        let p = pattern("member:{org}:{user}");
        assert_eq!(p.render(&["acme", "7"]), Ok("member:acme:7".to_owned()));
        assert_eq!(
            p.render(&["acme"]),
            Err(KeyValueError::WrongCount {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            p.render(&["a", "b", "c"]),
            Err(KeyValueError::WrongCount {
                expected: 2,
                got: 3
            })
        );
        let err = p.render(&["acme", "7:admin"]).unwrap_err();
        assert_eq!(
            err,
            KeyValueError::Placeholder {
                name: "user".to_owned(),
                source: Box::new(KeyValueError::ForbiddenChar { ch: ':', index: 1 })
            }
        );
        assert_eq!(
            err.rule(),
            &KeyValueError::ForbiddenChar { ch: ':', index: 1 }
        );
        assert!(
            err.to_string()
                .starts_with("invalid value for placeholder `{user}`: ")
        );
        assert!(!err.to_string().contains("7:admin"));
        assert_eq!(
            p.render(&["", "7"]).unwrap_err().rule(),
            &KeyValueError::Empty
        );
    }

    #[test]
    fn validate_accepts_ordinary_values() {
        for value in [
            "1",
            "user-42",
            "a.b_c",
            "ünïcödé",
            "🦀",
            "550e8400-e29b-41d4",
        ] {
            assert_eq!(validate_key_value(value), Ok(()), "{value}");
        }
        assert_eq!(validate_key_value(&"x".repeat(MAX_KEY_VALUE_LEN)), Ok(()));
    }

    #[test]
    fn validate_rejects_each_rule() {
        assert_eq!(validate_key_value(""), Err(KeyValueError::Empty));
        assert_eq!(
            validate_key_value(&"x".repeat(MAX_KEY_VALUE_LEN + 1)),
            Err(KeyValueError::TooLong {
                len: MAX_KEY_VALUE_LEN + 1,
                max: MAX_KEY_VALUE_LEN
            })
        );
        for &ch in RESERVED_CHARS {
            assert_eq!(
                validate_key_value(&format!("éa{ch}")),
                Err(KeyValueError::ForbiddenChar { ch, index: 2 }),
                "{ch:?}"
            );
        }
        for ch in [' ', '\t', '\n', '\r', '\u{a0}', '\u{2003}'] {
            assert_eq!(
                validate_key_value(&format!("a{ch}")),
                Err(KeyValueError::Whitespace { ch, index: 1 }),
                "{ch:?}"
            );
        }
        for ch in ['\0', '\u{7}', '\u{1b}', '\u{7f}', '\u{9f}'] {
            assert_eq!(
                validate_key_value(&format!("a{ch}")),
                Err(KeyValueError::Control { ch, index: 1 }),
                "{ch:?}"
            );
        }
    }

    #[test]
    fn validate_rejects_invisible_and_bidi_characters() {
        let required = [
            '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{202A}', '\u{202B}',
            '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ];
        for ch in required {
            assert!(invisible_char_name(ch).is_some(), "{ch:?} is listed");
            // Not caught by the older rules: this rule is what rejects them.
            assert!(!ch.is_whitespace() && !ch.is_control(), "{ch:?}");
        }
        for &(ch, name) in INVISIBLE_CHARS {
            for (value, index) in [
                (format!("{ch}"), 0),
                (format!("user4{ch}2"), 5),
                (format!("é{ch}"), 1),
            ] {
                assert_eq!(
                    validate_key_value(&value),
                    Err(KeyValueError::InvisibleChar { ch, index }),
                    "{ch:?}"
                );
            }
            let message = validate_key_value(&format!("a{ch}"))
                .unwrap_err()
                .to_string();
            let code = format!("U+{:04X}", u32::from(ch));
            assert!(
                message.contains(&code) && message.contains(name),
                "{message}"
            );
            assert!(!is_key_value_char(ch));
            // The same rule in pattern literal text.
            assert_eq!(
                KeyPattern::parse(&format!("us{ch}er:{{id}}")),
                Err(PatternError::InvalidLiteralChar { at: 2, ch })
            );
            // And in rendered keys.
            let err = pattern("user:{id}")
                .render(&[&format!("4{ch}2")])
                .unwrap_err();
            assert_eq!(err.rule(), &KeyValueError::InvisibleChar { ch, index: 1 });
        }
        assert_eq!(
            validate_key_value("4\u{202E}2").unwrap_err().to_string(),
            "key value contains invisible character U+202E (right-to-left override) at char 1; zero-width, invisible and bidirectional control characters are not allowed in key values because they make different keys look identical"
        );
        // Visible non-ASCII stays allowed, including joined-looking scripts.
        for value in [
            "ünïcödé",
            "日本語",
            "مرحبا",
            "עברית",
            "emoji🎉",
            "a\u{0301}",
        ] {
            assert_eq!(validate_key_value(value), Ok(()), "{value}");
        }
    }

    #[test]
    fn value_errors_never_echo_the_value() {
        let hostile = format!("secret-token-{}\u{1b}[2J", "A".repeat(40));
        let message = validate_key_value(&hostile).unwrap_err().to_string();
        assert!(!message.contains("secret-token"), "{message}");
        assert!(message.contains(r"'\u{1b}'"), "{message}");

        let huge = "B".repeat(10_000);
        let message = validate_key_value(&huge).unwrap_err().to_string();
        assert!(!message.contains("BBB"), "{message}");
        assert_eq!(
            message,
            "key value is 10000 bytes long; the limit is 512 bytes"
        );
    }

    #[test]
    fn parse_key_round_trips_and_rejects() {
        let p = pattern("jobs:{user_id}:status:{status}");
        let key = p.render(&["u1", "queued"]).unwrap_or_default();
        assert_eq!(p.parse_key(&key), Some(strings(&["u1", "queued"])));

        assert_eq!(p.parse_key("jobs:u1:status:"), None, "empty value");
        assert_eq!(p.parse_key("jobs::status:queued"), None, "empty value");
        assert_eq!(p.parse_key("jobs:u1:status:a:b"), None, "colon in value");
        assert_eq!(p.parse_key("jobs:u 1:status:a"), None, "space in value");
        assert_eq!(p.parse_key("job:u1:status:a"), None, "wrong prefix");
        assert_eq!(p.parse_key("jobs:u1:state:a"), None, "wrong middle");
        assert_eq!(p.parse_key(""), None);

        let long = format!("jobs:{}:status:a", "x".repeat(MAX_KEY_VALUE_LEN + 1));
        assert_eq!(p.parse_key(&long), None, "too long");
    }

    #[test]
    fn parse_key_with_trailing_literal() {
        let p = pattern("job:{id}:output");
        assert_eq!(p.parse_key("job:42:output"), Some(strings(&["42"])));
        assert_eq!(p.parse_key("job:42:output:x"), None);
        assert_eq!(p.parse_key("job::output"), None);
        assert_eq!(p.parse_key("job:output"), None);

        // The trailing literal may also occur inside a value.
        let p = pattern("x:{id}out");
        assert_eq!(p.parse_key("x:outout"), Some(strings(&["out"])));
    }

    #[test]
    fn parse_key_unambiguous_separator_with_letters() {
        // The separator holds letters values may contain, but its `:` pins it.
        let p = pattern("{a}x:{b}");
        assert!(p.is_unambiguous());
        assert_eq!(p.parse_key("xxx:y"), Some(strings(&["xx", "y"])));
    }

    #[test]
    fn parse_key_refuses_ambiguous_keys() {
        let p = pattern("name:{first}-{last}");
        assert!(!p.is_unambiguous());
        assert_eq!(p.parse_key("name:a-b"), Some(strings(&["a", "b"])));
        // `a-b` + `c` or `a` + `b-c`: refuse rather than guess.
        assert_eq!(p.parse_key("name:a-b-c"), None);
        // Empty values are not allowed, so this split is still unique...
        assert_eq!(p.parse_key("name:-a-b"), Some(strings(&["-a", "b"])));
        // ...but this one is `a` + `-b` or `a-` + `b`.
        assert_eq!(p.parse_key("name:a--b"), None);
    }

    #[test]
    fn is_unambiguous_cases() {
        assert!(pattern("config").is_unambiguous());
        assert!(pattern("user:{id}").is_unambiguous());
        assert!(pattern("{id}-suffix").is_unambiguous());
        assert!(pattern("{a}{{{b}").is_unambiguous());
        assert!(!pattern("{a}.{b}").is_unambiguous());
    }

    #[test]
    fn parse_key_handles_many_placeholders_without_recursion() {
        let names: Vec<String> = (0..2_000).map(|i| format!("p{i}")).collect();
        let source = names
            .iter()
            .map(|n| format!("{{{n}}}"))
            .collect::<Vec<_>>()
            .join(":");
        let p = pattern(&source);
        let values: Vec<&str> = names.iter().map(String::as_str).collect();
        let key = p.render(&values).unwrap_or_default();
        assert_eq!(p.parse_key(&key), Some(strings(&values)));
    }

    #[test]
    fn from_str_matches_parse() {
        assert_eq!(
            "user:{id}".parse::<KeyPattern>(),
            KeyPattern::parse("user:{id}")
        );
        assert!("".parse::<KeyPattern>().is_err());
    }
}

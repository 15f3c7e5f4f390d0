//! Property tests for the key-pattern grammar, key values and TTL literals.

use proptest::prelude::*;
use redis_schema::key::{GLOB_CHARS, MAX_KEY_VALUE_LEN, RESERVED_CHARS};
use redis_schema::{KeyPattern, KeyValueError, parse_ttl, validate_key_value};

/// Whether a value may contain `ch` (mirrors the documented rules, written out
/// independently of the implementation).
fn allowed_in_value(ch: char) -> bool {
    !RESERVED_CHARS.contains(&ch) && !ch.is_whitespace() && !ch.is_control()
}

fn forbidden_char() -> impl Strategy<Value = char> {
    prop_oneof![
        proptest::sample::select(RESERVED_CHARS),
        any::<char>().prop_filter("whitespace or control", |c| c.is_whitespace()
            || c.is_control()),
    ]
}

/// A valid key value: mostly short ASCII ids, sometimes arbitrary Unicode.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.@-]{1,24}",
        proptest::collection::vec(
            any::<char>().prop_filter("allowed", |c| allowed_in_value(*c)),
            1..16
        )
        .prop_map(|chars| chars.into_iter().collect()),
    ]
}

/// Literal text for a pattern (unescaped): anything but whitespace, control
/// and glob characters, and no `::` (an empty segment). Where the literal
/// starts or ends the pattern, [`pattern_source`] also drops a `:` there.
fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z:{}.-]{0,6}",
        proptest::collection::vec(
            any::<char>().prop_filter("allowed in literal text", |c| !c.is_whitespace()
                && !c.is_control()
                && !GLOB_CHARS.contains(c)),
            0..6
        )
        .prop_map(|chars| chars.into_iter().collect()),
    ]
    .prop_map(|text| collapse_colons(&text))
}

/// `a::b` → `a:b`: literal text may not hold an empty segment.
fn collapse_colons(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if !(ch == ':' && out.ends_with(':')) {
            out.push(ch);
        }
    }
    out
}

/// A separator that pins the boundary between two placeholders: it holds a
/// character values cannot contain and literal text can (`:`, `{`, `}`).
fn separator() -> impl Strategy<Value = String> {
    (
        literal(),
        proptest::sample::select(&[':', '{', '}'][..]),
        literal(),
    )
        .prop_map(|(before, ch, after)| collapse_colons(&format!("{before}{ch}{after}")))
}

fn escape(literal: &str) -> String {
    literal.replace('{', "{{").replace('}', "}}")
}

/// Builds a pattern source from a prefix, separators (one fewer than
/// placeholders) and a suffix, naming placeholders `p0`, `p1`, ...
fn pattern_source(prefix: &str, separators: &[String], suffix: &str) -> String {
    let mut source = escape(prefix.strip_prefix(':').unwrap_or(prefix));
    source.push_str("{p0}");
    for (index, separator) in separators.iter().enumerate() {
        source.push_str(&escape(separator));
        source.push_str(&format!("{{p{}}}", index + 1));
    }
    source.push_str(&escape(suffix.strip_suffix(':').unwrap_or(suffix)));
    source
}

proptest! {
    #[test]
    fn render_then_parse_key_round_trips(
        prefix in literal(),
        suffix in literal(),
        parts in proptest::collection::vec((separator(), value()), 0..5),
        first in value(),
    ) {
        let separators: Vec<String> = parts.iter().map(|(s, _)| s.clone()).collect();
        let mut values = vec![first];
        values.extend(parts.into_iter().map(|(_, v)| v));
        let source = pattern_source(&prefix, &separators, &suffix);

        let pattern = KeyPattern::parse(&source).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(pattern.is_unambiguous());
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let key = pattern.render(&refs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(key.starts_with(pattern.literal_prefix()));
        prop_assert_eq!(pattern.parse_key(&key), Some(values));
    }

    #[test]
    fn parse_key_never_returns_a_wrong_split(
        prefix in literal(),
        suffix in literal(),
        // Separators here may be ambiguous, e.g. `-`.
        parts in proptest::collection::vec(("[a-z.-]{1,3}", "[a-z.-]{1,4}"), 0..4),
        first in "[a-z.-]{1,4}",
    ) {
        let separators: Vec<String> = parts.iter().map(|(s, _)| s.clone()).collect();
        let mut values = vec![first];
        values.extend(parts.into_iter().map(|(_, v)| v));
        let source = pattern_source(&prefix, &separators, &suffix);

        let pattern = KeyPattern::parse(&source).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let key = pattern.render(&refs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match pattern.parse_key(&key) {
            Some(split) => prop_assert_eq!(split, values),
            None => prop_assert!(!pattern.is_unambiguous()),
        }
    }

    #[test]
    fn valid_values_are_accepted(value in value()) {
        prop_assume!(value.len() <= MAX_KEY_VALUE_LEN);
        prop_assert_eq!(validate_key_value(&value), Ok(()));
    }

    #[test]
    fn forbidden_chars_are_rejected(
        before in any::<String>(),
        bad in forbidden_char(),
        after in any::<String>(),
    ) {
        let value = format!("{before}{bad}{after}");
        let err = validate_key_value(&value);
        prop_assert!(err.is_err());
        if let Err(err) = err {
            // The value is never echoed: messages stay short however long it is.
            prop_assert!(err.to_string().len() < 300, "{}", err);
            if value.len() <= MAX_KEY_VALUE_LEN {
                let first_bad = value.chars().position(|c| !allowed_in_value(c));
                let reported = match err {
                    KeyValueError::ForbiddenChar { index, .. }
                    | KeyValueError::Whitespace { index, .. }
                    | KeyValueError::Control { index, .. } => Some(index),
                    _ => None,
                };
                prop_assert_eq!(reported, first_bad);
            }
        }
    }

    #[test]
    fn pattern_parse_never_panics(source in any::<String>()) {
        let _ = KeyPattern::parse(&source);
    }

    #[test]
    fn brace_heavy_patterns_parse_consistently(source in "[{}a-z0-9_:*. ]{0,24}", key in "[{}a-z0-9_:* ]{0,24}") {
        if let Ok(pattern) = KeyPattern::parse(&source) {
            prop_assert_eq!(pattern.source(), source.as_str());
            let names: Vec<&str> = pattern.placeholders().collect();
            let mut unique = names.clone();
            unique.sort_unstable();
            unique.dedup();
            prop_assert_eq!(unique.len(), names.len());

            let values = vec!["v"; names.len()];
            let rendered = pattern.render(&values).map_err(|e| TestCaseError::fail(e.to_string()))?;
            // Every key of an accepted pattern has non-empty `:` segments and
            // no glob characters.
            prop_assert!(rendered.split(':').all(|segment| !segment.is_empty()), "{}", rendered);
            prop_assert!(!rendered.contains(GLOB_CHARS), "{}", rendered);
            if pattern.is_unambiguous() {
                prop_assert_eq!(
                    pattern.parse_key(&rendered),
                    Some(values.iter().map(|v| (*v).to_owned()).collect())
                );
            }
            let _ = pattern.parse_key(&key);
            let _ = pattern.scan_glob();
        }
    }

    #[test]
    fn parse_ttl_never_panics(literal in any::<String>()) {
        let _ = parse_ttl(&literal);
    }

    #[test]
    fn accepted_ttls_are_usable(literal in "[0-9]{1,22}(\\.[0-9]{1,4})?(ns|us|ms|s|m|h|d|w|y| )( [0-9]{1,4}(ms|s|m))?") {
        if let Ok(ttl) = parse_ttl(&literal) {
            prop_assert!(!ttl.is_zero());
            prop_assert_eq!(ttl.subsec_nanos() % 1_000_000, 0);
            prop_assert!(ttl.as_millis() <= i64::MAX as u128);
        }
    }
}

//! Property tests for the key-pattern grammar, key values and TTL literals.

mod common;

use common::collapse_colons;

use proptest::prelude::*;
use redis_schema::key::{GLOB_CHARS, INVISIBLE_CHARS, MAX_KEY_VALUE_LEN, RESERVED_CHARS};
use redis_schema::{KeyPattern, KeyValueError, parse_ttl, validate_key_value};

/// Whether a value may contain `ch` (mirrors the documented rules, written out
/// independently of the implementation).
fn allowed_in_value(ch: char) -> bool {
    !RESERVED_CHARS.contains(&ch)
        && !ch.is_whitespace()
        && !ch.is_control()
        && !INVISIBLE_CHARS.iter().any(|(c, _)| *c == ch)
}

/// The invisible characters the issue names, written out independently.
const NAMED_INVISIBLE: &[char] = &[
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{202A}', '\u{202B}', '\u{202C}',
    '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
];

fn invisible_char() -> impl Strategy<Value = char> {
    prop_oneof![
        proptest::sample::select(NAMED_INVISIBLE),
        proptest::sample::select(INVISIBLE_CHARS).prop_map(|(c, _)| c),
    ]
}

fn forbidden_char() -> impl Strategy<Value = char> {
    prop_oneof![
        proptest::sample::select(RESERVED_CHARS),
        invisible_char(),
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

/// Literal text for a pattern (unescaped): anything but whitespace, control,
/// invisible and glob characters, and no `::` (an empty segment). Where the literal
/// starts or ends the pattern, [`pattern_source`] also drops a `:` there.
fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z:{}.-]{0,6}",
        proptest::collection::vec(
            any::<char>().prop_filter("allowed in literal text", |c| !c.is_whitespace()
                && !c.is_control()
                && !INVISIBLE_CHARS.iter().any(|(i, _)| i == c)
                && !GLOB_CHARS.contains(c)),
            0..6
        )
        .prop_map(|chars| chars.into_iter().collect()),
    ]
    .prop_map(|text| collapse_colons(&text))
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
                    | KeyValueError::Control { index, .. }
                    | KeyValueError::InvisibleChar { index, .. } => Some(index),
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
    fn an_invisible_char_anywhere_is_rejected_by_name(
        before in value(),
        bad in invisible_char(),
        after in value(),
    ) {
        let value = format!("{before}{bad}{after}");
        prop_assume!(value.len() <= MAX_KEY_VALUE_LEN);
        let index = before.chars().count();
        prop_assert_eq!(
            validate_key_value(&value),
            Err(KeyValueError::InvisibleChar { ch: bad, index })
        );
        let shown = format!("U+{:04X}", u32::from(bad));
        let message = validate_key_value(&value).err().map(|e| e.to_string()).unwrap_or_default();
        prop_assert!(message.contains(&shown), "{}", message);
        // The visible text on either side is fine on its own.
        prop_assert_eq!(validate_key_value(&format!("{before}{after}")), Ok(()));
    }

    #[test]
    fn ttl_terms_largest_first_in_any_case_sum_up(
        terms in proptest::sample::subsequence(vec![("d", 86_400_000u64), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)], 1..=5),
        numbers in proptest::collection::vec(1u64..100_000, 5),
        upper in proptest::collection::vec(any::<bool>(), 5),
        spaced in any::<bool>(),
    ) {
        let mut literal = String::new();
        let mut expected = 0;
        for (i, (unit, ms)) in terms.iter().enumerate() {
            if spaced && i > 0 {
                literal.push(' ');
            }
            let unit = if upper[i] { unit.to_uppercase() } else { (*unit).to_owned() };
            literal.push_str(&format!("{}{unit}", numbers[i]));
            expected += numbers[i] * ms;
        }
        prop_assert_eq!(parse_ttl(&literal), Ok(std::time::Duration::from_millis(expected)), "{}", literal);
        // Out of order, or repeated, it is refused.
        if terms.len() > 1 {
            let reversed: Vec<String> = literal.split(' ').rev().map(str::to_owned).collect();
            if spaced {
                prop_assert!(parse_ttl(&reversed.join(" ")).is_err(), "{:?}", reversed);
            }
        }
    }

    #[test]
    fn ttls_outside_the_grammar_are_refused(
        n in 1u64..1000,
        unit in "(w|wk|week|weeks|mo|month|months|y|yr|year|years|us|ns|sec|min|hr|hours|days|day)",
    ) {
        let other_unit = format!("{n}{unit}");
        let fraction = format!("{n}.5s");
        prop_assert!(parse_ttl(&other_unit).is_err(), "{}", other_unit);
        prop_assert!(parse_ttl(&fraction).is_err(), "{}", fraction);
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

//! Property tests for `redis_schema::overlap`: its verdicts against a
//! brute-force search, and its witnesses against `KeyPattern::render`.

mod common;

use common::collapse_colons;

use proptest::prelude::*;
use redis_schema::key::{MAX_KEY_VALUE_LEN, RESERVED_CHARS};
use redis_schema::{KeyPattern, KeySegment, overlap, validate_key_value};

/// Literal text over a small alphabet, so that patterns often collide; now
/// and then with `-` (a value character) and braces (which values lack).
fn literal() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[ab:]{0,3}", 1 => "[ab:{}-]{0,3}"]
}

/// A pattern source with 0..=2 placeholders (`{p0}`, `{p1}`) between
/// literals, tidied so that most of them parse: no `::`, no `:` at either
/// end, some text between two placeholders.
fn pattern() -> impl Strategy<Value = KeyPattern> {
    (proptest::collection::vec(literal(), 1..=3), any::<bool>()).prop_filter_map(
        "only patterns that parse",
        |(literals, fixed_fallback)| {
            let last = literals.len() - 1;
            let mut source = String::new();
            for (index, text) in literals.iter().enumerate() {
                let mut text = collapse_colons(text);
                if index == 0 {
                    text = text.trim_start_matches(':').to_owned();
                }
                if index == last {
                    text = text.trim_end_matches(':').to_owned();
                }
                if text.is_empty() && index != 0 && index != last {
                    text.push('a');
                }
                source.push_str(&text.replace('{', "{{").replace('}', "}}"));
                if index != last {
                    source.push_str(&format!("{{p{index}}}"));
                }
            }
            if source.is_empty() && fixed_fallback {
                source.push('a');
            }
            KeyPattern::parse(&source).ok()
        },
    )
}

/// Small valid values for the brute force: every string over `a b x -` of
/// one or two characters, and over `a b` of three.
fn small_values() -> Vec<String> {
    let two = ["a", "b", "x", "-"];
    let mut values: Vec<String> = two.iter().map(|v| (*v).to_owned()).collect();
    for first in two {
        for second in two {
            values.push(format!("{first}{second}"));
        }
    }
    for first in ["a", "b"] {
        for second in ["a", "b"] {
            for third in ["a", "b"] {
                values.push(format!("{first}{second}{third}"));
            }
        }
    }
    values
}

/// Every assignment of `values` to `count` placeholders.
fn assignments(values: &[String], count: usize) -> Vec<Vec<&str>> {
    let mut all: Vec<Vec<&str>> = vec![Vec::new()];
    for _ in 0..count {
        all = all
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |value| {
                    let mut next = prefix.clone();
                    next.push(value.as_str());
                    next
                })
            })
            .collect();
    }
    all
}

/// Whether `key` is a key of the pattern with these segments, for any values
/// at all: written independently of the implementation, straight from the
/// documented value rules.
fn matches(segments: &[KeySegment], key: &str) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return key.is_empty();
    };
    match first {
        KeySegment::Literal(text) => key
            .strip_prefix(text.as_str())
            .is_some_and(|tail| matches(rest, tail)),
        KeySegment::Placeholder(_) => {
            for (offset, ch) in key.char_indices() {
                if RESERVED_CHARS.contains(&ch) || ch.is_whitespace() || ch.is_control() {
                    return false;
                }
                let end = offset + ch.len_utf8();
                if end > MAX_KEY_VALUE_LEN {
                    return false;
                }
                if matches(rest, &key[end..]) {
                    return true;
                }
            }
            false
        }
    }
}

/// The shortest key found by rendering `from` with small values that is also a
/// key of `to`, if any.
fn shortest_collision(from: &KeyPattern, to: &KeyPattern, values: &[String]) -> Option<String> {
    assignments(values, from.placeholder_count())
        .into_iter()
        .filter_map(|assignment| from.render(&assignment).ok())
        .filter(|key| matches(to.segments(), key))
        .min_by_key(String::len)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn verdicts_agree_with_brute_force_and_witnesses_are_real(
        left in pattern(),
        right in pattern(),
    ) {
        let values = small_values();
        let found = overlap(&left, &right);
        let collision = [
            shortest_collision(&left, &right, &values),
            shortest_collision(&right, &left, &values),
        ]
        .into_iter()
        .flatten()
        .min_by_key(String::len);

        match (&found, &collision) {
            (None, Some(key)) => prop_assert!(
                false,
                "{} and {} were called disjoint, but both produce {:?}",
                left,
                right,
                key
            ),
            (Some(found), _) => {
                for (_, value) in found.left.iter().chain(&found.right) {
                    prop_assert_eq!(validate_key_value(value), Ok(()));
                }
                let names: Vec<&str> = found.left.iter().map(|(n, _)| n.as_str()).collect();
                prop_assert_eq!(names, left.placeholders().collect::<Vec<_>>());
                let names: Vec<&str> = found.right.iter().map(|(n, _)| n.as_str()).collect();
                prop_assert_eq!(names, right.placeholders().collect::<Vec<_>>());
                prop_assert_eq!(left.render(&found.left_values()), Ok(found.key.clone()));
                prop_assert_eq!(right.render(&found.right_values()), Ok(found.key.clone()));
                // The witness is a shortest shared key.
                if let Some(key) = &collision {
                    prop_assert!(found.key.len() <= key.len(), "{:?} vs {:?}", found.key, key);
                }
            }
            (None, None) => {}
        }

        // The verdict does not depend on the order of the arguments.
        prop_assert_eq!(found.is_some(), overlap(&right, &left).is_some());
    }

    #[test]
    fn a_pattern_overlaps_each_of_its_keys(left in pattern(), pick in any::<proptest::sample::Index>()) {
        let values = small_values();
        let all = assignments(&values, left.placeholder_count());
        let assignment = pick.get(&all);
        let key = left.render(assignment).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let fixed = KeyPattern::parse(&key.replace('{', "{{").replace('}', "}}"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let found = overlap(&left, &fixed);
        prop_assert_eq!(found.map(|f| f.key), Some(key));
        prop_assert!(overlap(&left, &left).is_some());
    }
}

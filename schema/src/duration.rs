//! Duration literals for TTLs, such as `ttl = "7d"`.
//!
//! # Grammar
//!
//! A TTL is one or more terms, each a whole number followed by a unit, with
//! optional spaces between terms:
//!
//! | unit | meaning |
//! | --- | --- |
//! | `ms` | milliseconds |
//! | `s` | seconds |
//! | `m` | minutes |
//! | `h` | hours |
//! | `d` | days (24 h) |
//!
//! Units are case-insensitive (`7d` = `7D`, `500ms` = `500MS`). Terms go
//! from the largest unit to the smallest, each unit at most once: `1h 30m`,
//! `1d12h`, `2m 500ms`. Nothing else is accepted: no fractions (`1.5h`; write
//! `90m`), no weeks, months or years (`2w`; write `14d`), no spelled-out
//! units (`7 days`). On top of that a TTL must be usable with
//! `PEXPIRE`/`SET PX`: non-zero and at most `i64::MAX` milliseconds (Redis
//! takes a signed 64-bit integer).
//!
//! ```
//! use std::time::Duration;
//! use redis_schema::duration::{format_ttl, parse_ttl};
//!
//! assert_eq!(parse_ttl("7d")?, Duration::from_secs(7 * 24 * 60 * 60));
//! assert_eq!(parse_ttl("7D")?, Duration::from_secs(7 * 24 * 60 * 60));
//! assert_eq!(parse_ttl("1h 30m")?, Duration::from_secs(90 * 60));
//! assert_eq!(format_ttl(Duration::from_secs(90 * 60)), "1h 30m");
//! assert!(parse_ttl("0s").is_err());
//! assert!(parse_ttl("2w").is_err());
//! # Ok::<(), redis_schema::DurationError>(())
//! ```

use std::time::Duration;

/// The hint shown with every unparsable duration: exactly the grammar.
pub const DURATION_HINT: &str = r#"expected whole numbers with the units ms, s, m, h or d (any case), largest first, like "30s", "24h", "7d", "500ms" or "1h 30m""#;

/// The largest TTL Redis accepts, in milliseconds.
pub const MAX_TTL_MILLIS: u64 = i64::MAX as u64;

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a TTL literal; see the [grammar](self#grammar).
///
/// # Errors
///
/// [`DurationError::Invalid`] if it does not follow the grammar (the reason
/// names the position or the term at fault), [`DurationError::Zero`] for a
/// zero duration (Redis would delete the key at once, which is never what a
/// TTL on a declaration means), and [`DurationError::TooLarge`] above
/// [`MAX_TTL_MILLIS`].
///
/// ```
/// use redis_schema::duration::parse_ttl;
/// use redis_schema::DurationError;
///
/// assert_eq!(parse_ttl("500ms")?.as_millis(), 500);
/// assert_eq!(parse_ttl("1H30M")?.as_secs(), 5400);
/// assert!(matches!(parse_ttl("1.5s"), Err(DurationError::Invalid { .. })));
/// assert!(parse_ttl("soon").unwrap_err().to_string().contains(r#""30s""#));
/// # Ok::<(), DurationError>(())
/// ```
pub fn parse_ttl(literal: &str) -> Result<Duration, DurationError> {
    parse_ttl_millis(literal).map(Duration::from_millis)
}

/// The grammar, to milliseconds (zero allowed here).
fn parse_millis(literal: &str) -> Result<u64, DurationError> {
    let invalid = |reason: String| DurationError::Invalid { reason };
    let too_large = || DurationError::TooLarge {
        duration: literal.to_owned(),
    };
    let bytes = literal.as_bytes();
    if literal.trim().is_empty() {
        return Err(invalid("the literal is empty".to_owned()));
    }
    let mut at = 0;
    let mut total: u64 = 0;
    // Index in UNITS of the last unit used: the next must be smaller.
    let mut last_unit: Option<usize> = None;
    while at < bytes.len() {
        if at > 0 {
            while bytes.get(at) == Some(&b' ') {
                at += 1;
            }
            if at == bytes.len() {
                break;
            }
        }
        let number_start = at;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == number_start {
            return Err(invalid(format!("expected a whole number at {at}")));
        }
        let number = &literal[number_start..at];
        if matches!(bytes.get(at), Some(b'.' | b',')) {
            return Err(invalid(format!(
                "`{}` has a fraction; use a smaller unit instead (e.g. `90m`, not `1.5h`)",
                literal[number_start..].split(' ').next().unwrap_or(number)
            )));
        }
        let unit_start = at;
        while bytes.get(at).is_some_and(u8::is_ascii_alphabetic) {
            at += 1;
        }
        let unit = literal[unit_start..at].to_ascii_lowercase();
        if unit.is_empty() {
            return Err(invalid(format!("`{number}` needs a unit at {unit_start}")));
        }
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(invalid(format!(
                "unknown unit `{}` in `{number}{}`",
                &literal[unit_start..at],
                &literal[unit_start..at]
            )));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(invalid(format!(
                "`{number}{}` comes after a unit as small or smaller; write each unit once, largest first (like `1h 30m`)",
                &literal[unit_start..at]
            )));
        }
        last_unit = Some(index);
        let value: u64 = number.parse().map_err(|_| too_large())?;
        let term = value.checked_mul(UNITS[index].1).ok_or_else(too_large)?;
        total = total.checked_add(term).ok_or_else(too_large)?;
        if bytes
            .get(at)
            .is_some_and(|b| *b != b' ' && !b.is_ascii_digit())
        {
            return Err(invalid(format!(
                "unexpected `{}` at {at}",
                literal[at..].chars().next().unwrap_or(' ')
            )));
        }
    }
    if total > MAX_TTL_MILLIS {
        return Err(DurationError::TooLarge {
            duration: format_ttl(Duration::from_millis(total)),
        });
    }
    Ok(total)
}

/// Parses a TTL literal straight to milliseconds, the unit Redis and
/// [`EntityDescriptor::ttl_ms`](crate::EntityDescriptor::ttl_ms) use.
///
/// # Errors
///
/// The same as [`parse_ttl`].
///
/// ```
/// use redis_schema::duration::parse_ttl_millis;
///
/// assert_eq!(parse_ttl_millis("1m")?, 60_000);
/// # Ok::<(), redis_schema::DurationError>(())
/// ```
pub fn parse_ttl_millis(literal: &str) -> Result<u64, DurationError> {
    match parse_millis(literal)? {
        0 => Err(DurationError::Zero),
        millis => Ok(millis),
    }
}

/// Formats a duration as the TTL literal [`parse_ttl`] reads back:
/// whole units, largest first (`7d`, `1h 30m`, `500ms`; `0ms` for zero).
/// Anything finer than a millisecond is dropped.
///
/// ```
/// use std::time::Duration;
/// use redis_schema::{format_ttl, parse_ttl};
///
/// assert_eq!(format_ttl(Duration::from_millis(500)), "500ms");
/// assert_eq!(format_ttl(Duration::from_secs(7 * 86_400)), "7d");
/// assert_eq!(format_ttl(Duration::from_secs(5_400)), "1h 30m");
/// let ttl = Duration::from_millis(90_061_001);
/// assert_eq!(parse_ttl(&format_ttl(ttl))?, ttl);
/// # Ok::<(), redis_schema::DurationError>(())
/// ```
pub fn format_ttl(duration: Duration) -> String {
    const UNITS: [(u128, &str); 5] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
        (1, "ms"),
    ];
    let mut left = duration.as_millis();
    let mut terms = Vec::new();
    for (size, unit) in UNITS {
        if left >= size {
            terms.push(format!("{}{unit}", left / size));
            left %= size;
        }
    }
    if terms.is_empty() {
        "0ms".to_owned()
    } else {
        terms.join(" ")
    }
}

/// A TTL literal that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The literal does not follow the [grammar](self#grammar).
    #[error("invalid duration: {reason}; {hint}", hint = DURATION_HINT)]
    Invalid {
        /// What is wrong, and where.
        reason: String,
    },
    /// The duration is zero.
    #[error("a TTL of zero would expire the key immediately; {hint}", hint = DURATION_HINT)]
    Zero,
    /// The duration exceeds `i64::MAX` milliseconds.
    #[error(
        "a TTL of `{duration}` is larger than Redis accepts (i64::MAX milliseconds, about 292 million years)"
    )]
    TooLarge {
        /// The duration, formatted (the literal itself if it overflows).
        duration: String,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_units_and_combinations() {
        for (literal, millis) in [
            ("30s", 30_000),
            ("5m", 300_000),
            ("24h", 86_400_000),
            ("7d", 604_800_000),
            ("500ms", 500),
            ("1h 30m", 5_400_000),
            ("1h30m", 5_400_000),
            ("1h  30m", 5_400_000),
            ("1d 2h 3m 4s 5ms", 93_784_005),
            ("1ms", 1),
            ("90m", 5_400_000),
            ("007s", 7_000),
        ] {
            assert_eq!(
                parse_ttl(literal),
                Ok(Duration::from_millis(millis)),
                "{literal}"
            );
            assert_eq!(parse_ttl_millis(literal), Ok(millis), "{literal}");
        }
    }

    #[test]
    fn units_are_case_insensitive() {
        for (lower, upper) in [
            ("7d", "7D"),
            ("24h", "24H"),
            ("5m", "5M"),
            ("30s", "30S"),
            ("500ms", "500MS"),
            ("500ms", "500Ms"),
            ("1h 30m", "1H 30M"),
        ] {
            assert_eq!(parse_ttl(upper), parse_ttl(lower), "{upper}");
            assert!(parse_ttl(upper).is_ok(), "{upper}");
        }
        // `M` is minutes, like `m`: there are no months.
        assert_eq!(parse_ttl("1M"), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn rejects_what_the_grammar_does_not_name() {
        for (literal, reason) in [
            ("", "empty"),
            ("   ", "empty"),
            ("soon", "expected a whole number at 0"),
            ("a week", "expected a whole number at 0"),
            ("m5", "expected a whole number at 0"),
            ("-5s", "expected a whole number at 0"),
            (" 5s", "expected a whole number at 0"),
            ("30", "`30` needs a unit at 2"),
            ("30 s", "`30` needs a unit at 2"),
            ("1.5s", "`1.5s` has a fraction"),
            ("1,5h", "`1,5h` has a fraction"),
            ("1h 1.5m", "`1.5m` has a fraction"),
            ("2w", "unknown unit `w` in `2w`"),
            ("1y", "unknown unit `y`"),
            ("3months", "unknown unit `months`"),
            ("7days", "unknown unit `days`"),
            ("7 days", "`7` needs a unit at 1"),
            ("1500us", "unknown unit `us`"),
            ("1ns", "unknown unit `ns`"),
            ("5 parsecs", "`5` needs a unit at 1"),
            ("30m 1h", "`1h` comes after a unit as small or smaller"),
            ("1h 1h", "`1h` comes after a unit as small or smaller"),
            ("5ms 1s", "`1s` comes after"),
            ("1h-30m", "unexpected `-` at 2"),
            ("1h,", "unexpected `,` at 2"),
        ] {
            let err = parse_ttl(literal).unwrap_err();
            assert!(
                matches!(err, DurationError::Invalid { .. }),
                "{literal}: {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(reason), "{literal}: {message}");
            assert!(
                message.ends_with(
                    r#"expected whole numbers with the units ms, s, m, h or d (any case), largest first, like "30s", "24h", "7d", "500ms" or "1h 30m""#
                ),
                "{message}"
            );
        }
    }

    #[test]
    fn the_hint_names_exactly_the_accepted_units() {
        for (unit, _) in UNITS {
            assert!(DURATION_HINT.contains(&format!(" {unit}")), "{unit}");
            assert!(parse_ttl(&format!("1{unit}")).is_ok(), "{unit}");
        }
        for absent in ["week", "month", "year", "us", "ns", "days"] {
            assert!(!DURATION_HINT.contains(absent), "{absent}");
        }
    }

    #[test]
    fn rejects_zero() {
        assert_eq!(parse_ttl("0s"), Err(DurationError::Zero));
        assert_eq!(parse_ttl("0h 0m"), Err(DurationError::Zero));
        assert_eq!(parse_ttl_millis("0ms"), Err(DurationError::Zero));
        assert!(DurationError::Zero.to_string().contains("expire"));
    }

    #[test]
    fn rejects_too_large() {
        // i64::MAX ms is about 292 million years.
        let max_secs = MAX_TTL_MILLIS / 1000;
        assert_eq!(
            parse_ttl_millis(&format!("{max_secs}s")),
            Ok(max_secs * 1000)
        );
        assert_eq!(
            parse_ttl_millis(&format!("{MAX_TTL_MILLIS}ms")),
            Ok(MAX_TTL_MILLIS)
        );
        let err = parse_ttl(&format!("{}s", max_secs + 1)).unwrap_err();
        assert!(matches!(err, DurationError::TooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("i64::MAX"), "{err}");
        // Overflowing u64 on the way: still TooLarge, never a panic.
        for literal in [
            "99999999999999999999999s",
            "18446744073709551615d",
            "200000000000000d 200000000000000h",
        ] {
            assert!(
                matches!(parse_ttl(literal), Err(DurationError::TooLarge { .. })),
                "{literal}"
            );
        }
    }

    #[test]
    fn formats_as_literals_the_parser_reads_back() {
        assert_eq!(format_ttl(Duration::from_secs(30)), "30s");
        assert_eq!(format_ttl(Duration::from_secs(5 * 60)), "5m");
        assert_eq!(format_ttl(Duration::from_secs(24 * 3600)), "1d");
        assert_eq!(format_ttl(Duration::from_millis(1_500)), "1s 500ms");
        assert_eq!(format_ttl(Duration::ZERO), "0ms");
        for ms in [1, 999, 1_000, 61_001, 3_600_000, 90_061_001, 7 * 86_400_000] {
            let ttl = Duration::from_millis(ms);
            assert_eq!(parse_ttl(&format_ttl(ttl)), Ok(ttl), "{ms} ms");
        }
    }
}

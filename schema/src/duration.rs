//! Duration literals for TTLs, such as `ttl = "7d"`.
//!
//! Parsing is delegated to [`humantime`], so the usual spellings work: `30s`,
//! `5m`, `24h`, `7d`, `500ms`, `1h 30m`. On top of that a TTL must be usable
//! with `PEXPIRE`/`SET PX`: non-zero, a whole number of milliseconds, and no
//! more than `i64::MAX` milliseconds (Redis takes a signed 64-bit integer).
//!
//! ```
//! use std::time::Duration;
//! use redis_schema::duration::{format_ttl, parse_ttl};
//!
//! assert_eq!(parse_ttl("7d")?, Duration::from_secs(7 * 24 * 60 * 60));
//! assert_eq!(parse_ttl("1h 30m")?, Duration::from_secs(90 * 60));
//! assert_eq!(format_ttl(Duration::from_secs(90 * 60)), "1h 30m");
//! assert!(parse_ttl("0s").is_err());
//! # Ok::<(), redis_schema::DurationError>(())
//! ```

use std::time::Duration;

/// The hint shown with every unparsable duration.
pub const DURATION_HINT: &str = r#"expected a duration like "30s", "5m", "24h", "7d" or "500ms""#;

/// The largest TTL Redis accepts, in milliseconds.
pub const MAX_TTL_MILLIS: u64 = i64::MAX as u64;

/// Parses a TTL literal.
///
/// # Errors
///
/// [`DurationError::Invalid`] if humantime cannot parse it,
/// [`DurationError::Zero`] for a zero duration (Redis would delete the key at
/// once, which is never what a TTL on a declaration means),
/// [`DurationError::SubMillisecond`] if it is not a whole number of
/// milliseconds, and [`DurationError::TooLarge`] above [`MAX_TTL_MILLIS`].
///
/// ```
/// use redis_schema::duration::parse_ttl;
/// use redis_schema::DurationError;
///
/// assert_eq!(parse_ttl("500ms")?.as_millis(), 500);
/// assert!(matches!(parse_ttl("1500us"), Err(DurationError::SubMillisecond { .. })));
/// assert!(parse_ttl("soon").unwrap_err().to_string().contains(r#""30s""#));
/// # Ok::<(), DurationError>(())
/// ```
pub fn parse_ttl(literal: &str) -> Result<Duration, DurationError> {
    let duration = humantime::parse_duration(literal).map_err(|err| DurationError::Invalid {
        reason: err.to_string(),
    })?;
    if duration.is_zero() {
        return Err(DurationError::Zero);
    }
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(DurationError::SubMillisecond {
            duration: format_ttl(duration),
        });
    }
    if duration.as_millis() > u128::from(MAX_TTL_MILLIS) {
        return Err(DurationError::TooLarge {
            duration: format_ttl(duration),
        });
    }
    Ok(duration)
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
    let duration = parse_ttl(literal)?;
    // parse_ttl bounded it by MAX_TTL_MILLIS, so this conversion cannot fail;
    // still, map rather than unwrap.
    u64::try_from(duration.as_millis()).map_err(|_| DurationError::TooLarge {
        duration: format_ttl(duration),
    })
}

/// Formats a duration the way humantime writes it (`7days`, `1h 30m`,
/// `500ms`), for documentation and messages.
///
/// ```
/// use std::time::Duration;
/// use redis_schema::duration::format_ttl;
///
/// assert_eq!(format_ttl(Duration::from_millis(500)), "500ms");
/// assert_eq!(format_ttl(Duration::from_secs(7 * 86_400)), "7days");
/// ```
pub fn format_ttl(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// A TTL literal that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// humantime could not parse the literal.
    #[error("invalid duration: {reason}; {hint}", hint = DURATION_HINT)]
    Invalid {
        /// humantime's explanation.
        reason: String,
    },
    /// The duration is zero.
    #[error("a TTL of zero would expire the key immediately; {hint}", hint = DURATION_HINT)]
    Zero,
    /// The duration has a part smaller than a millisecond.
    #[error(
        "TTLs are whole milliseconds, but `{duration}` has a sub-millisecond part; round it to whole milliseconds, e.g. `1500ms`"
    )]
    SubMillisecond {
        /// The parsed duration, formatted.
        duration: String,
    },
    /// The duration exceeds `i64::MAX` milliseconds.
    #[error(
        "a TTL of `{duration}` is larger than Redis accepts (i64::MAX milliseconds, about 292 million years)"
    )]
    TooLarge {
        /// The parsed duration, formatted.
        duration: String,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn accepts_common_spellings() {
        for (literal, millis) in [
            ("30s", 30_000),
            ("5m", 300_000),
            ("24h", 86_400_000),
            ("7d", 604_800_000),
            ("500ms", 500),
            ("1h 30m", 5_400_000),
            ("1ms", 1),
            ("1.5s", 1_500),
            ("2000us", 2),
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
    fn rejects_unparsable_with_hint() {
        for literal in ["", "soon", "30", "5 parsecs", "-5s", "1.s", "m5"] {
            let err = parse_ttl(literal).unwrap_err();
            assert!(
                matches!(err, DurationError::Invalid { .. }),
                "{literal}: {err:?}"
            );
            let message = err.to_string();
            assert!(
                message
                    .ends_with(r#"expected a duration like "30s", "5m", "24h", "7d" or "500ms""#),
                "{message}"
            );
        }
    }

    #[test]
    fn rejects_zero() {
        assert_eq!(parse_ttl("0s"), Err(DurationError::Zero));
        assert_eq!(parse_ttl("0ms 0s"), Err(DurationError::Zero));
        assert!(DurationError::Zero.to_string().contains("expire"));
    }

    #[test]
    fn rejects_sub_millisecond() {
        let err = parse_ttl("1500us").unwrap_err();
        assert_eq!(
            err,
            DurationError::SubMillisecond {
                duration: "1ms 500us".to_owned()
            }
        );
        assert!(
            err.to_string().contains("TTLs are whole milliseconds"),
            "{err}"
        );
        assert!(matches!(
            parse_ttl("1ns"),
            Err(DurationError::SubMillisecond { .. })
        ));
        assert!(matches!(
            parse_ttl("1s 1ns"),
            Err(DurationError::SubMillisecond { .. })
        ));
    }

    #[test]
    fn rejects_too_large() {
        // i64::MAX ms is about 292 million years.
        let max_secs = MAX_TTL_MILLIS / 1000;
        assert_eq!(
            parse_ttl_millis(&format!("{max_secs}s")),
            Ok(max_secs * 1000)
        );
        let err = parse_ttl(&format!("{}s", max_secs + 1)).unwrap_err();
        assert!(matches!(err, DurationError::TooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("i64::MAX"), "{err}");
        // Beyond what humantime itself can represent: its overflow error.
        assert!(matches!(
            parse_ttl("99999999999999999999999s"),
            Err(DurationError::Invalid { .. })
        ));
    }

    #[test]
    fn formats_like_humantime() {
        assert_eq!(format_ttl(Duration::from_secs(30)), "30s");
        assert_eq!(format_ttl(Duration::from_secs(5 * 60)), "5m");
        assert_eq!(format_ttl(Duration::from_secs(24 * 3600)), "1day");
        assert_eq!(format_ttl(Duration::from_millis(1_500)), "1s 500ms");
    }
}

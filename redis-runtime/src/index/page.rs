//! What a page of an index asks for: which end comes first, where it
//! starts and how long it is, and the range of scores it covers.

use redis_schema::IndexDescriptor;

use crate::error::{Context, Error, Result};

/// Which end of a sorted index comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Highest score first: newest first for timestamps.
    #[default]
    Descending,
    /// Lowest score first: oldest first for timestamps.
    Ascending,
}

/// A page of a sorted index: skip `offset` entries, return at most `limit`.
///
/// ```
/// use redis_runtime::index::{Order, Page};
///
/// let page = Page::newest_first(20).skip(40);
/// assert_eq!((page.offset, page.limit, page.order), (40, 20, Order::Descending));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Entries to skip.
    pub offset: u64,
    /// Most entries to return.
    pub limit: u64,
    /// Which end comes first.
    pub order: Order,
}

impl Page {
    /// The first `limit` entries, highest score (newest) first.
    pub fn newest_first(limit: u64) -> Self {
        Self {
            offset: 0,
            limit,
            order: Order::Descending,
        }
    }

    /// The first `limit` entries, lowest score (oldest) first.
    pub fn oldest_first(limit: u64) -> Self {
        Self {
            offset: 0,
            limit,
            order: Order::Ascending,
        }
    }

    /// The same page size, starting `offset` entries in.
    pub fn skip(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }
}

/// A range of scores, inclusive unless built with `after`/`before`. A NaN
/// bound orders nothing: queries with such a range fail with `ENCODE`.
///
/// ```
/// use redis_runtime::index::ScoreRange;
///
/// let since = ScoreRange::at_least(1_700_000_000_000.0);
/// let window = ScoreRange::between(10.0, 20.0);
/// # let _ = (since, window);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRange {
    /// The lower bound as `ZRANGE … BYSCORE` takes it (`-inf`, `5`, `(5`).
    pub(super) min: String,
    /// The upper bound, likewise.
    pub(super) max: String,
}

impl ScoreRange {
    /// Every score.
    pub fn all() -> Self {
        Self {
            min: "-inf".into(),
            max: "+inf".into(),
        }
    }

    /// Scores `>= min` (e.g. jobs since a timestamp).
    pub fn at_least(min: f64) -> Self {
        Self {
            min: bound(min),
            max: "+inf".into(),
        }
    }

    /// Scores `> min`.
    pub fn after(min: f64) -> Self {
        Self {
            min: format!("({}", bound(min)),
            max: "+inf".into(),
        }
    }

    /// Scores `<= max`.
    pub fn at_most(max: f64) -> Self {
        Self {
            min: "-inf".into(),
            max: bound(max),
        }
    }

    /// Scores `< max`.
    pub fn before(max: f64) -> Self {
        Self {
            min: "-inf".into(),
            max: format!("({}", bound(max)),
        }
    }

    /// Scores in `min..=max`.
    pub fn between(min: f64, max: f64) -> Self {
        Self {
            min: bound(min),
            max: bound(max),
        }
    }
}

impl ScoreRange {
    /// Whether `score` is in the range, as `ZRANGE … BYSCORE` decides it.
    pub(super) fn contains(&self, score: f64) -> bool {
        edge(&self.min).is_some_and(|(min, open)| if open { score > min } else { score >= min })
            && edge(&self.max)
                .is_some_and(|(max, open)| if open { score < max } else { score <= max })
    }

    /// The whole index, which a rank range reads without score lookups.
    pub(super) fn is_all(&self) -> bool {
        self.min == "-inf" && self.max == "+inf"
    }
}

/// What a NaN bound is kept as until a query refuses it.
const NAN_BOUND: &str = "nan";

/// A range with a NaN bound orders nothing: refused with an `ENCODE` error
/// naming the score field, rather than guessed at.
pub(super) fn check_range(
    range: &ScoreRange,
    index: &IndexDescriptor,
    ctx: &Context,
) -> Result<()> {
    if range.min.trim_start_matches('(') == NAN_BOUND
        || range.max.trim_start_matches('(') == NAN_BOUND
    {
        return Err(Error::Encode {
            context: ctx.clone(),
            field: index.value_field.unwrap_or("score").to_string(),
            reason: "a score range bound is NaN".into(),
        });
    }
    Ok(())
}

/// A bound as sent to Redis (`5`, `(5`, `-inf`) as a number and whether
/// it is exclusive.
fn edge(bound: &str) -> Option<(f64, bool)> {
    match bound.strip_prefix('(') {
        Some(rest) => rest.parse().ok().map(|v| (v, true)),
        None => bound.parse().ok().map(|v| (v, false)),
    }
}

fn bound(value: f64) -> String {
    if value.is_nan() {
        // Refused by `check_range` before any query is sent.
        return NAN_BOUND.into();
    }
    if value == f64::INFINITY {
        "+inf".into()
    } else if value == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        value.to_string()
    }
}

//! Cursor pagination: pages that continue after the last entry returned,
//! stable while other clients insert and delete.
//!
//! An offset [`Page`](super::Page) counts entries, so an insert or delete
//! ahead of the offset shifts every later page: an entry is shown twice or
//! never. A [`Cursor`] names a *position* instead, the last entry returned,
//! and the next page holds the entries strictly after it in the index's
//! order. An entry that stays in the index for the whole walk is therefore
//! returned exactly once, whatever is inserted or deleted meanwhile, and no
//! entry is returned twice.
//!
//! **Sorted indexes** order entries by (score, id), as `ZRANGE` does (equal
//! scores by id bytes). A page is read like an offset page (see `fetch`):
//! one plain `ZRANGE … BYSCORE [REV] LIMIT 0 n WITHSCORES` from the cursor's
//! score inclusive, then the hashes in one pipeline. The entries at the
//! cursor's own score that are at or before its id lead that reply and are
//! skipped; `n` leaves room for the usual one (the cursor's own entry) and
//! one more, which tells whether anything follows the page. When more ties
//! than that lead the reply, the page's ids are read instead by
//! `scripts/cursor.lua`, which skips any number of ties in one atomic step
//! (a third round trip, taken by every page that starts inside a run of
//! more than one equal score). When a hash is dead, has moved to another
//! index key or changed its score since its id was read, the page is read
//! again, ids and hashes, by the same script in one atomic step, which also
//! sweeps expired entities and drops dead entries.
//!
//! Looping in the script rather than over plain `ZRANGE`s is what keeps the
//! guarantee: a loop that skips ties by offset across round trips would skip
//! an unseen entry whenever a tie before it was deleted in between.
//!
//! **Set indexes** have no order of their own, and `SSCAN` may return a
//! member twice and cannot resume after a given member. So a set index is
//! paged in id (byte) order: the cursor is the last id returned, and a page
//! is the next `limit` ids after it, chosen by `scripts/cursor.lua` from
//! `SMEMBERS` on the server, which returns only the page. That costs O(N)
//! server time per page for N members (about one comparison per member),
//! so walking a whole set is O(N²/limit): fine for thousands of members;
//! for larger listings prefer a sorted index. The hashes then come by one
//! pipeline, with the same atomic fallback.

use std::ops::Deref;

use redis_schema::{IndexDescriptor, IndexKind};

use super::fetch::{self, Row};
use super::{Listing, Order, context, decode_rows, position};
use crate::client::Client;
use crate::codec::reply_pairs;
use crate::entity::Entity;
use crate::error::{Context, Error, Result};
use crate::script;

mod token;

use token::score_text;

mod entries;

use entries::{Entry, script_entries, zrange_entries};
pub use token::{Cursor, ParseCursorError};

/// The largest page a cursor query reads: the script passes limits to
/// `ZRANGE` as Lua numbers, which print as plain digits only up to here.
const MAX_LIMIT: u64 = 999_999_999;

/// A cursor page: at most `limit` entries after `after` (from the start
/// when `None`), in `order`.
///
/// For a sorted index `order` is by score, ties by id; for a set index it
/// is by id (`Ascending` is `a` to `z`). A `limit` of 0 reads nothing.
///
/// ```
/// use redis_runtime::index::{Cursor, CursorPage, Order};
///
/// let first = CursorPage::newest_first(20);
/// assert_eq!((first.limit, first.order), (20, Order::Descending));
/// assert!(first.after.is_none());
/// let next = first.after(Cursor::sorted(1_700_000_000_000.0, "job-17"));
/// assert_eq!(next.after.map(|c| c.id().to_owned()).as_deref(), Some("job-17"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CursorPage {
    /// The position to continue after; `None` starts at the first entry.
    pub after: Option<Cursor>,
    /// Most entries to return (at most 999,999,999).
    pub limit: u64,
    /// Which end comes first.
    pub order: Order,
}

impl CursorPage {
    /// The first page of `limit` entries in `order`.
    pub fn new(limit: u64, order: Order) -> Self {
        Self {
            after: None,
            limit,
            order,
        }
    }

    /// The first `limit` entries, highest score (newest) first.
    pub fn newest_first(limit: u64) -> Self {
        Self::new(limit, Order::Descending)
    }

    /// The first `limit` entries, lowest score (oldest) first.
    pub fn oldest_first(limit: u64) -> Self {
        Self::new(limit, Order::Ascending)
    }

    /// The first `limit` members of a set index, by id.
    pub fn by_id(limit: u64) -> Self {
        Self::new(limit, Order::Ascending)
    }

    /// The same page size and order, continuing after `cursor` (or from
    /// the start with `None`).
    pub fn after(mut self, cursor: impl Into<Option<Cursor>>) -> Self {
        self.after = cursor.into();
        self
    }
}

/// A page of entities read with a [`CursorPage`], and where the next page
/// starts.
///
/// It derefs to the [`Listing`], so it can be iterated, indexed and
/// counted; entities that did not decode are reported in
/// [`Listing::skipped`] and still count as seen (the cursor moves past
/// them).
///
/// ```no_run
/// # use redis_runtime::index::{CursorListing, CursorPage};
/// # async fn walk(read: impl AsyncFn(&CursorPage) -> redis_runtime::Result<CursorListing<u32>>) -> redis_runtime::Result<()> {
/// let mut page = Some(CursorPage::newest_first(100));
/// while let Some(p) = page {
///     let got = read(&p).await?;
///     println!("{} entities", got.len());
///     page = got.next_page(&p);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CursorListing<E> {
    /// The entities, in the page's order.
    pub listing: Listing<E>,
    /// The position of the page's last entry, to continue after; `None`
    /// when the index held nothing after it. Something inserted after that
    /// read is found by no later page of this walk; a `Some` may lead to an
    /// empty page if the entries after it were removed meanwhile.
    pub next: Option<Cursor>,
}

impl<E> CursorListing<E> {
    /// The page after this one, `None` at the end: `page` with its cursor
    /// moved to [`next`](Self::next).
    pub fn next_page(&self, page: &CursorPage) -> Option<CursorPage> {
        self.next.clone().map(|c| page.clone().after(c))
    }

    /// The entities, dropping the cursor.
    pub fn into_listing(self) -> Listing<E> {
        self.listing
    }
}

impl<E> Deref for CursorListing<E> {
    type Target = Listing<E>;
    fn deref(&self) -> &Listing<E> {
        &self.listing
    }
}

/// A page of ids read with a [`CursorPage`], and where the next page starts
/// (as in [`CursorListing`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CursorIds {
    /// The ids, in the page's order.
    pub ids: Vec<String>,
    /// The position of the last id, to continue after; `None` at the end.
    pub next: Option<Cursor>,
}

impl CursorIds {
    /// The page after this one, `None` at the end.
    pub fn next_page(&self, page: &CursorPage) -> Option<CursorPage> {
        self.next.clone().map(|c| page.clone().after(c))
    }
}

/// Entities of a cursor page of a sorted or set index: the entries
/// strictly after `page.after` in `page.order`, then their hashes by one
/// pipeline (see the module docs for the exact steps and their costs).
/// Never returns expired entities; entities that do not decode are passed
/// over and reported in the listing.
///
/// # Errors
///
/// `ENCODE` when the cursor does not fit the index (a set cursor on a
/// sorted index or the reverse, a NaN score); the usual query errors.
pub async fn page_after<E: Entity>(
    client: &Client,
    index: &'static IndexDescriptor,
    index_key: Result<String>,
    page: &CursorPage,
) -> Result<CursorListing<E>> {
    let ctx = context::<E>(index, "page_after");
    let index_key = index_key.map_err(|e| e.with_context(ctx.clone()))?;
    let sorted = check_cursor(index, page, &ctx)?;
    script::check_cluster(client, E::descriptor())?;
    if page.limit == 0 {
        return Ok(CursorListing {
            listing: Listing::new(Vec::new(), Vec::new()),
            next: page.after.clone(),
        });
    }
    if super::across_slots(client, index) {
        let (kept, next) = across_slots::<E>(client, &ctx, index, &index_key, page).await?;
        let rows: Vec<Row> = kept.into_iter().map(|(_, row)| row).collect();
        return Ok(CursorListing {
            listing: decode_rows(&rows),
            next,
        });
    }
    let limit = page.limit.min(MAX_LIMIT);
    // The plain read, when the ties it skips leave a full page; else the
    // script's atomic read of the ids, which skips any number of ties.
    let plain = if sorted {
        let request = zrange_after(&index_key, page);
        let reply: redis::Value = client.read(ctx.clone(), &request).await?;
        let entries = zrange_entries(&index_key, reply).map_err(|e| e.with_context(ctx.clone()))?;
        select(
            entries,
            page.after.as_ref(),
            requested(page),
            limit,
            page.order,
        )
    } else {
        None
    };
    let (entries, more) = match plain {
        Some(read) => read,
        None => {
            let (key, reply) =
                run::<E>(client, (index, "page_after"), &index_key, page, false).await?;
            let (entries, more, _) = script_entries(&key, reply, sorted, false)
                .map_err(|e| e.with_context(ctx.clone()))?;
            (entries, more)
        }
    };
    // `fetch` checks each hash is live and still renders this index key;
    // `unmoved` that its score is the one its id was read at.
    let ids = entries.iter().map(|e| e.member.clone()).collect();
    let descriptor = E::descriptor();
    let rows = fetch::live_rows(
        client,
        ctx.clone(),
        descriptor,
        index,
        &index_key,
        None,
        ids,
    )
    .await?
    .filter(|rows| unmoved(index, &entries, rows));
    if let Some(rows) = rows {
        return Ok(CursorListing {
            listing: decode_rows(&rows),
            next: next_cursor(&entries, more),
        });
    }
    let (key, reply) = run::<E>(client, (index, "page_after"), &index_key, page, true).await?;
    let (entries, more, rows) =
        script_entries(&key, reply, sorted, true).map_err(|e| e.with_context(ctx.clone()))?;
    let rows: Vec<Row> = entries
        .iter()
        .zip(rows)
        .map(|(entry, fields)| Row {
            key: descriptor
                .key_of_member(&entry.member)
                .unwrap_or_else(|| entry.member.clone()),
            fields,
        })
        .collect();
    Ok(CursorListing {
        listing: decode_rows(&rows),
        next: next_cursor(&entries, more),
    })
}

/// Ids of a cursor page of a sorted or set index, live ones only; one
/// round trip (`scripts/cursor.lua`). For a set index that is O(N) server
/// time for N members (see the module docs).
///
/// # Errors
///
/// As [`page_after`].
pub async fn ids_after<E: Entity>(
    client: &Client,
    index: &'static IndexDescriptor,
    index_key: Result<String>,
    page: &CursorPage,
) -> Result<CursorIds> {
    let ctx = context::<E>(index, "ids_after");
    let index_key = index_key.map_err(|e| e.with_context(ctx.clone()))?;
    let sorted = check_cursor(index, page, &ctx)?;
    if page.limit == 0 {
        return Ok(CursorIds {
            ids: Vec::new(),
            next: page.after.clone(),
        });
    }
    if super::across_slots(client, index) {
        let (kept, next) = across_slots::<E>(client, &ctx, index, &index_key, page).await?;
        return Ok(CursorIds {
            ids: kept.into_iter().map(|(entry, _)| entry.member).collect(),
            next,
        });
    }
    let (key, reply) = run::<E>(client, (index, "ids_after"), &index_key, page, false).await?;
    let (entries, more, _) =
        script_entries(&key, reply, sorted, false).map_err(|e| e.with_context(ctx))?;
    Ok(CursorIds {
        next: next_cursor(&entries, more),
        ids: entries.into_iter().map(|e| e.member).collect(),
    })
}

/// Entries read per window by [`across_slots`].
const WINDOW: u64 = 200;

/// A cursor page of a `cross_slot` index on a cluster, whose entities are
/// in other slots than its key: windows of the entries after the cursor,
/// read by the cursor script from the index key alone ([`Reads::IndexOnly`],
/// the same atomic skip of ties), then each window's entities (one
/// pipeline per slot), keeping those that render the index key, at the
/// score their entry has, until the page is full or the index ends.
/// Returns the entries kept with their rows, and the cursor after the
/// last one kept (`None` at the end). Entries passed over between two
/// pages are read again by the next one and passed over again.
async fn across_slots<E: Entity>(
    client: &Client,
    ctx: &Context,
    index: &'static IndexDescriptor,
    index_key: &str,
    page: &CursorPage,
) -> Result<(Vec<(Entry, Row)>, Option<Cursor>)> {
    position::<E>(index)?;
    let sorted = index.kind == IndexKind::Sorted;
    let limit = usize::try_from(page.limit.min(MAX_LIMIT)).unwrap_or(usize::MAX);
    let scripts = script::for_client(client, E::descriptor(), ctx)?;
    let mut window = CursorPage {
        limit: WINDOW.max(page.limit.min(MAX_LIMIT)),
        ..page.clone()
    };
    let mut kept: Vec<(Entry, Row)> = Vec::new();
    loop {
        let call = invocation(scripts, index_key, sorted, &window, Reads::IndexOnly);
        let reply = client.read(ctx.clone(), &call).await?;
        let (entries, more, _) = script_entries(index_key, reply, sorted, false)
            .map_err(|e| e.with_context(ctx.clone()))?;
        let ids = entries.iter().map(|e| e.member.clone()).collect();
        let rows = fetch::matching_rows(client, ctx, E::descriptor(), index, index_key, None, ids);
        let mut rows = rows.await?.into_iter().peekable();
        for (n, entry) in entries.iter().enumerate() {
            // `matching_rows` keeps the order of the ids it is given.
            let Some((_, row)) = rows.next_if(|(member, _)| *member == entry.member) else {
                continue;
            };
            if !unmoved(
                index,
                std::slice::from_ref(entry),
                std::slice::from_ref(&row),
            ) {
                continue;
            }
            kept.push((entry.clone(), row));
            if kept.len() == limit {
                let follows = more || n + 1 < entries.len();
                return Ok((kept, follows.then(|| entry.cursor())));
            }
        }
        match entries.last() {
            Some(last) if more => window.after = Some(last.cursor()),
            _ => return Ok((kept, None)),
        }
    }
}

/// Whether `index` is sorted (else a set), after checking the page's cursor
/// fits it.
fn check_cursor(index: &IndexDescriptor, page: &CursorPage, ctx: &Context) -> Result<bool> {
    let refuse = |reason: &str| Error::Encode {
        context: ctx.clone(),
        field: "cursor".into(),
        reason: reason.into(),
    };
    let sorted = match index.kind {
        IndexKind::Sorted => true,
        IndexKind::Set => false,
        IndexKind::Unique => {
            return Err(Error::Config(format!(
                "index {} is a unique index: it has no pages",
                index.name
            )));
        }
    };
    match page.after.as_ref().map(|c| c.score) {
        Some(Some(score)) if score.is_nan() => Err(refuse("the cursor's score is NaN")),
        Some(Some(_)) if !sorted => Err(refuse("a sorted-index cursor given to a set index")),
        Some(None) if sorted => Err(refuse("a set-index cursor given to a sorted index")),
        _ => Ok(sorted),
    }
}

/// How many entries the plain `ZRANGE` asks for: the page, one to tell
/// whether more follow, and the cursor's own entry, which leads the reply
/// when it is still there.
fn requested(page: &CursorPage) -> u64 {
    page.limit.min(MAX_LIMIT) + 1 + u64::from(page.after.is_some())
}

/// The plain read of a sorted cursor page: from the cursor's score
/// inclusive (the ties at or before its id are skipped by [`select`]).
fn zrange_after(index_key: &str, page: &CursorPage) -> redis::Cmd {
    let from = page.after.as_ref().and_then(|c| c.score).map(score_text);
    let mut cmd = redis::cmd("ZRANGE");
    cmd.arg(index_key);
    match page.order {
        Order::Descending => cmd
            .arg(from.as_deref().unwrap_or("+inf"))
            .arg("-inf")
            .arg("BYSCORE")
            .arg("REV"),
        Order::Ascending => cmd
            .arg(from.as_deref().unwrap_or("-inf"))
            .arg("+inf")
            .arg("BYSCORE"),
    };
    cmd.arg("LIMIT")
        .arg(0)
        .arg(requested(page))
        .arg("WITHSCORES");
    cmd
}

/// Whether entry (`score`, `member`) comes strictly after `cursor` in
/// `order`, given it is not before the cursor's score (the range starts
/// there): a higher (lower) score, or the same score and a later id.
fn past(cursor: &Cursor, member: &str, score: f64, order: Order) -> bool {
    if Some(score) != cursor.score {
        return true;
    }
    match order {
        Order::Ascending => member > cursor.id.as_str(),
        Order::Descending => member < cursor.id.as_str(),
    }
}

/// The page within a plain `ZRANGE` reply of `requested` entries: the
/// entries after the cursor, at most `limit`, and whether more follow.
/// `None` when the ties skipped left too few to tell: the caller then reads
/// the page with the script, which skips any number.
fn select(
    entries: Vec<Entry>,
    cursor: Option<&Cursor>,
    requested: u64,
    limit: u64,
    order: Order,
) -> Option<(Vec<Entry>, bool)> {
    let full = entries.len() as u64 >= requested;
    let mut rest: Vec<Entry> = match cursor {
        Some(cursor) => entries
            .into_iter()
            .skip_while(|e| !past(cursor, &e.member, e.score.unwrap_or(f64::NAN), order))
            .collect(),
        None => entries,
    };
    let more = rest.len() as u64 > limit;
    if full && !more {
        return None;
    }
    rest.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Some((rest, more))
}

/// Whether every row still has the score its entry was read at: an entity
/// whose score changed between the `ZRANGE` and the pipeline has moved, and
/// a page holding it could repeat or skip entries around the cursor. Set
/// entries have no score; their index key is checked by `fetch`.
fn unmoved(index: &IndexDescriptor, entries: &[Entry], rows: &[Row]) -> bool {
    let Some(field) = index.value_field else {
        return true;
    };
    entries.iter().zip(rows).all(|(entry, row)| {
        let Some(expected) = entry.score else {
            return true;
        };
        let Ok(pairs) = reply_pairs(&row.key, &row.fields) else {
            return false;
        };
        let stored = pairs
            .iter()
            .find(|(name, _)| *name == field.as_bytes())
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
            .and_then(|text| text.parse::<f64>().ok());
        stored == Some(expected)
    })
}

fn next_cursor(entries: &[Entry], more: bool) -> Option<Cursor> {
    entries.last().filter(|_| more).map(Entry::cursor)
}

/// What the cursor script reads beside the index key (its `with_fields`
/// argument).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reads {
    /// Live ids only: dead entries are dropped as they are met.
    Ids,
    /// Live ids and each entity's hash.
    Hashes,
    /// The index's entries as they are, reading no entity: a `cross_slot`
    /// index on a cluster, whose entities are in other slots.
    IndexOnly,
}

impl Reads {
    fn flag(self) -> &'static str {
        match self {
            Reads::Ids => "0",
            Reads::Hashes => "1",
            Reads::IndexOnly => "2",
        }
    }
}

/// The script call of a cursor page (see `scripts/cursor.lua`).
fn invocation(
    scripts: &'static script::EntityScripts,
    index_key: &str,
    sorted: bool,
    page: &CursorPage,
    reads: Reads,
) -> redis::ScriptInvocation<'static> {
    let flag = |on: bool| if on { "1" } else { "0" };
    let mut invocation = scripts.call(&scripts.cursor, index_key);
    invocation
        .key(index_key)
        .arg(if sorted { "z" } else { "s" })
        .arg(reads.flag())
        .arg(flag(page.order == Order::Descending))
        .arg(page.limit.min(MAX_LIMIT))
        .arg(flag(page.after.is_some()))
        .arg(page.after.as_ref().map_or("", |c| c.id.as_str()));
    if sorted {
        let score = page.after.as_ref().and_then(|c| c.score).map(score_text);
        invocation.arg(score.unwrap_or_default());
    }
    invocation
}

/// Runs the cursor script for `E`'s `index`.
async fn run<E: Entity>(
    client: &Client,
    (index, verb): (&'static IndexDescriptor, &str),
    index_key: &str,
    page: &CursorPage,
    with_fields: bool,
) -> Result<(String, redis::Value)> {
    let ctx = context::<E>(index, verb);
    position::<E>(index)?;
    let sorted = index.kind == IndexKind::Sorted;
    let scripts = script::for_client(client, E::descriptor(), &ctx)?;
    let reads = if with_fields {
        Reads::Hashes
    } else {
        Reads::Ids
    };
    let invocation = invocation(scripts, index_key, sorted, page, reads);
    let reply = client.read(ctx, &invocation).await?;
    Ok((index_key.to_string(), reply))
}

/// Command-exact tests: the cursor's text form, and the precise commands a
/// cursor page sends, checked against `redis_test::MockRedisConnection`.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::Record;
    use redis::Value;
    use redis_test::{MockCmd, MockRedisConnection};

    /// A post indexed by author (sorted by `at`) and by tag (a set).
    #[derive(crate::RedisEntity, Debug, Clone, PartialEq)]
    #[redis(key = "post:{id}")]
    #[redis(sorted_index(key = "posts:author:{author}", score = "at"))]
    #[redis(index(key = "posts:tag:{tag}"))]
    pub(crate) struct Post {
        id: String,
        author: String,
        tag: String,
        at: i64,
    }

    /// `Post`'s sorted and set index.
    pub(crate) fn post_indexes() -> (&'static IndexDescriptor, &'static IndexDescriptor) {
        let indexes = Post::descriptor().indexes;
        (&indexes[0], &indexes[1])
    }

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn entries(pairs: &[(&str, f64)]) -> Vec<Entry> {
        pairs
            .iter()
            .map(|(m, s)| Entry {
                member: (*m).to_string(),
                score: Some(*s),
            })
            .collect()
    }

    #[test]
    fn cursors_round_trip_any_id_and_any_score() {
        let ids = [
            "",
            "a",
            "job-17",
            "a_b~c%d",
            "u1:42",
            "é 漢字 🦀",
            "slash/plus+eq=amp&hash#",
            "\u{0}\u{7f}",
        ];
        let scores = [
            0.0,
            -0.0,
            1.5,
            -1.5,
            0.1,
            1_700_000_000_123.0,
            // 2^53 + 1 as stored text reads as 2^53: the score Redis keeps.
            "9007199254740993".parse::<f64>().expect("f64"),
            i64::MAX as f64,
            i64::MIN as f64,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for id in ids {
            let set = Cursor::set(id);
            assert_eq!(set.to_string().parse::<Cursor>(), Ok(set.clone()), "{id:?}");
            for score in scores {
                let cursor = Cursor::sorted(score, id);
                let text = cursor.to_string();
                let back: Cursor = text.parse().expect(&text);
                assert_eq!(back.id(), id);
                let got = back.score().expect("a score");
                assert_eq!(got.to_bits(), score.to_bits(), "{score:?} via {text}");
                assert!(
                    text.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)),
                    "URL-safe: {text}"
                );
            }
        }
    }

    #[test]
    fn cursor_text_is_short_and_readable() {
        assert_eq!(Cursor::sorted(1.5, "job-1").to_string(), "z1.5_job-1");
        assert_eq!(Cursor::sorted(-2.0, "a").to_string(), "z-2_a");
        assert_eq!(Cursor::sorted(1e300, "a").to_string(), "z1e300_a");
        assert_eq!(Cursor::sorted(f64::INFINITY, "a").to_string(), "zinf_a");
        assert_eq!(
            Cursor::sorted(f64::NEG_INFINITY, "a").to_string(),
            "z-inf_a"
        );
        assert_eq!(Cursor::set("u1:42").to_string(), "s_u1~3A42");
    }

    #[test]
    fn malformed_cursors_are_refused() {
        for text in [
            "",
            "x",
            "z1.5",
            "q1_a",
            "z_a",
            "znan_a",
            "zNaN_a",
            "z1.5_a~4",
            "z1.5_a~zz",
            "z1.5_a~+F",
            "z1.5_a b",
            "z1.5_a%20b",
            "s_~FF",
            "s1_a",
        ] {
            assert!(text.parse::<Cursor>().is_err(), "{text:?}");
        }
        let err = "z1.5".parse::<Cursor>().expect_err("no id");
        assert_eq!(
            err.to_string(),
            "not a valid cursor: no `_` after the score"
        );
    }

    #[test]
    fn a_cursor_must_fit_its_index() {
        let (sorted, set) = post_indexes();
        let ctx = Context::default();
        let set_cursor = CursorPage::by_id(5).after(Cursor::set("a"));
        let sorted_cursor = CursorPage::newest_first(5).after(Cursor::sorted(1.0, "a"));
        let nan = CursorPage::newest_first(5).after(Cursor::sorted(f64::NAN, "a"));
        assert_eq!(check_cursor(sorted, &sorted_cursor, &ctx).ok(), Some(true));
        assert_eq!(check_cursor(set, &set_cursor, &ctx).ok(), Some(false));
        for (index, page) in [(sorted, &set_cursor), (set, &sorted_cursor), (sorted, &nan)] {
            let err = check_cursor(index, page, &ctx).expect_err("refused");
            assert_eq!(err.code(), "ENCODE");
        }
    }

    /// Sends `cmd` to a connection that expects exactly `expected` and
    /// answers `reply`.
    async fn exchange(cmd: &redis::Cmd, expected: redis::Cmd, reply: Value) -> Value {
        let mut conn = MockRedisConnection::new(vec![MockCmd::new(expected, Ok(reply))]);
        let got: Value = cmd.query_async(&mut conn).await.expect("sent");
        assert!(conn.is_empty(), "exactly one command");
        got
    }

    /// Invokes `Post`'s cursor script for `page` of `index_key` on a
    /// connection that expects exactly one `EVALSHA` with `args` and
    /// answers `reply`.
    async fn cursor_script(
        index_key: &str,
        sorted: bool,
        page: &CursorPage,
        reads: Reads,
        args: &[&str],
        reply: Value,
    ) -> Value {
        let scripts = script::for_entity(Post::descriptor());
        let mut expected = redis::cmd("EVALSHA");
        expected.arg(scripts.cursor.get_hash()).arg(1).arg(args);
        let mut conn = MockRedisConnection::new(vec![MockCmd::new(expected, Ok(reply))]);
        let invocation = invocation(scripts, index_key, sorted, page, reads);
        let got: Value = invocation.invoke_async(&mut conn).await.expect("sent");
        assert!(conn.is_empty(), "exactly one command");
        got
    }

    #[tokio::test]
    async fn a_first_page_reads_one_more_entry_than_it_returns() {
        let page = CursorPage::oldest_first(2);
        let mut expected = redis::cmd("ZRANGE");
        expected.arg(&[
            "posts:author:ann",
            "-inf",
            "+inf",
            "BYSCORE",
            "LIMIT",
            "0",
            "3",
            "WITHSCORES",
        ]);
        let reply = Value::Array(["a", "1", "b", "2", "c", "2"].map(bulk).to_vec());
        let cmd = zrange_after("posts:author:ann", &page);
        let got = exchange(&cmd, expected, reply).await;
        let got = zrange_entries("posts:author:ann", got).expect("entries");
        let (page_entries, more) =
            select(got, None, requested(&page), 2, page.order).expect("a page");
        assert_eq!(page_entries, entries(&[("a", 1.0), ("b", 2.0)]));
        assert!(more, "c follows");
        assert_eq!(
            next_cursor(&page_entries, more),
            Some(Cursor::sorted(2.0, "b"))
        );
    }

    #[tokio::test]
    async fn a_next_page_starts_at_the_cursor_score_and_skips_its_ties() {
        // Newest first after (1.5, "m"): entries at 1.5 with ids at or
        // after "m" (REV orders ties by descending id) lead and are skipped.
        let page = CursorPage::newest_first(2).after(Cursor::sorted(1.5, "m"));
        let mut expected = redis::cmd("ZRANGE");
        expected.arg(&[
            "posts:author:ann",
            "1.5",
            "-inf",
            "BYSCORE",
            "REV",
            "LIMIT",
            "0",
            "4",
            "WITHSCORES",
        ]);
        let reply = Value::Array(
            ["m", "1.5", "k", "1.5", "z", "1", "y", "0.5"]
                .map(bulk)
                .to_vec(),
        );
        let cmd = zrange_after("posts:author:ann", &page);
        let got = exchange(&cmd, expected, reply).await;
        let got = zrange_entries("posts:author:ann", got).expect("entries");
        let (page_entries, more) =
            select(got, page.after.as_ref(), requested(&page), 2, page.order).expect("a page");
        assert_eq!(page_entries, entries(&[("k", 1.5), ("z", 1.0)]));
        assert!(more);
        // The cursor's own entry deleted meanwhile: nothing to skip.
        let gone = entries(&[("k", 1.5), ("z", 1.0), ("y", 0.5)]);
        let (page_entries, more) =
            select(gone, page.after.as_ref(), requested(&page), 2, page.order).expect("a page");
        assert_eq!(page_entries, entries(&[("k", 1.5), ("z", 1.0)]));
        assert!(more);
        // The end of the index: a short reply.
        let end = entries(&[("m", 1.5), ("z", 1.0)]);
        let (page_entries, more) =
            select(end, page.after.as_ref(), requested(&page), 2, page.order).expect("a page");
        assert_eq!(page_entries, entries(&[("z", 1.0)]));
        assert!(!more);
        assert_eq!(next_cursor(&page_entries, more), None);
    }

    #[tokio::test]
    async fn many_ties_fall_back_to_one_atomic_script_call() {
        let page = CursorPage::oldest_first(2).after(Cursor::sorted(7.0, "c"));
        // Four ties at or before "c" fill the whole reply.
        let tied = entries(&[("a", 7.0), ("b", 7.0), ("c", 7.0), ("c0", 7.0)]);
        assert_eq!(
            select(tied, page.after.as_ref(), requested(&page), 2, page.order),
            None
        );
        let args = ["posts:author:ann", "z", "1", "0", "2", "1", "c", "7"];
        let reply = Value::Array(vec![
            Value::Int(1),
            bulk("c0"),
            bulk("7"),
            Value::Array(
                ["id", "c0", "author", "ann", "tag", "t", "at", "7"]
                    .map(bulk)
                    .to_vec(),
            ),
            bulk("d"),
            bulk("8"),
            Value::Array(
                ["id", "d", "author", "ann", "tag", "t", "at", "8"]
                    .map(bulk)
                    .to_vec(),
            ),
        ]);
        let reply =
            cursor_script("posts:author:ann", true, &page, Reads::Hashes, &args, reply).await;
        let (got, more, hashes) =
            script_entries("posts:author:ann", reply, true, true).expect("entries");
        assert_eq!(got, entries(&[("c0", 7.0), ("d", 8.0)]));
        assert!(more);
        assert_eq!(hashes.len(), 2);
        assert_eq!(next_cursor(&got, more), Some(Cursor::sorted(8.0, "d")));
    }

    #[tokio::test]
    async fn a_set_page_asks_the_script_for_ids_after_the_cursor() {
        let page = CursorPage::by_id(10).after(Cursor::set("u:7"));
        let args = ["posts:tag:rust", "s", "0", "0", "10", "1", "u:7"];
        let reply = Value::Array(vec![Value::Int(0), bulk("u:8"), bulk("v")]);
        let reply = cursor_script("posts:tag:rust", false, &page, Reads::Ids, &args, reply).await;
        let (got, more, _) = script_entries("posts:tag:rust", reply, false, false).expect("ids");
        let ids: Vec<&str> = got.iter().map(|e| e.member.as_str()).collect();
        assert_eq!(ids, ["u:8", "v"]);
        assert!(!more);
        assert_eq!(next_cursor(&got, more), None, "the end");
    }

    #[test]
    fn big_integer_scores_are_sent_as_the_double_redis_keeps() {
        let score = "9007199254740993".parse::<f64>().expect("f64");
        let page = CursorPage::oldest_first(1).after(Cursor::sorted(score, "a"));
        let cmd = zrange_after("k", &page);
        let args: Vec<String> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(args[2], "9007199254740992");
        assert_eq!(score_text(-0.25), "-0.25");
        assert_eq!(score_text(f64::INFINITY), "+inf");
    }

    #[test]
    fn resp3_scores_and_malformed_replies() {
        let resp3 = Value::Array(vec![
            Value::Array(vec![bulk("a"), Value::Double(1.5)]),
            Value::Array(vec![bulk("b"), Value::Double(-2.0)]),
        ]);
        assert_eq!(
            zrange_entries("k", resp3).expect("entries"),
            entries(&[("a", 1.5), ("b", -2.0)])
        );
        assert!(zrange_entries("k", Value::Array(vec![bulk("a")])).is_err());
        assert!(zrange_entries("k", Value::Int(1)).is_err());
        assert!(script_entries("k", Value::Array(vec![]), false, false).is_err());
        let cut = Value::Array(vec![Value::Int(0), bulk("a")]);
        assert!(script_entries("k", cut, true, false).is_err());
    }

    #[test]
    fn a_row_whose_score_changed_has_moved() {
        let (sorted, set) = post_indexes();
        let row = |at: &str| Row {
            key: "post:a".into(),
            fields: Value::Array(["id", "a", "author", "ann", "at", at].map(bulk).to_vec()),
        };
        let read = entries(&[("a", 5.0)]);
        assert!(unmoved(sorted, &read, &[row("5")]));
        assert!(!unmoved(sorted, &read, &[row("6")]));
        assert!(unmoved(set, &read, &[row("6")]), "sets have no score");
    }
}

//! Filtered listings: a page of a sorted index (its order and score range)
//! restricted to the entities that are also in given set index keys, e.g.
//! a user's running jobs newest first. Evaluated in Redis by one script
//! call (`filter` in `scripts/query.lua`), then read like any listing
//! (`fetch`): the ids first, the hashes in one pipeline, each checked
//! against every index key the query named.
//!
//! **Cost.** When the smallest set key is smaller than the sorted index
//! key, the script reads that set and looks up each member's score
//! (O(set size), plus a sort); otherwise it walks the sorted index in order
//! in chunks of 200, checking set membership, until the page is full
//! (O(entries up to the page), more when the filter matches rarely). A
//! count reads all candidates.
//!
//! **On a Redis Cluster, with a `cross_slot` index** among them, the keys
//! and the entities are in different slots, so no script can intersect
//! them: the client walks the sorted index in windows of 200 and reads
//! each entity (one pipeline per slot), keeping those whose current values
//! render every key the query names ([`walk_across_slots`]). A page reads
//! every entity up to its last match, a count every entity in the range.

use std::ops::ControlFlow;

use redis_schema::IndexDescriptor;

use super::{Listing, Page, ScoreRange, context, decode_rows, fetch, position, range_args};
use crate::client::Client;
use crate::codec::value_kind;
use crate::entity::Entity;
use crate::error::Context;
use crate::error::{Error, Result};
use crate::script;

/// A set index key a filtered listing's entities must be in: the index and
/// the key its wanted value selects (built by generated code).
pub type SetFilter = (&'static IndexDescriptor, Result<String>);

/// The script call of a filtered query: KEYS are the sorted index key,
/// then the set keys.
async fn call<E: Entity>(
    client: &Client,
    sorted: &'static IndexDescriptor,
    keys: &[String],
    verb: &str,
    args: Vec<Vec<u8>>,
) -> Result<redis::Value> {
    let ctx = context::<E>(sorted, verb);
    let position = position::<E>(sorted)?;
    let scripts = script::for_client(client, E::descriptor(), &ctx)?;
    let invocation = invocation(scripts, position, keys, verb, args);
    client.read(ctx, &invocation).await
}

/// The query script call of a filtered query: the sorted index key, then
/// the set keys; the verb, the sorted index's position, the range and page.
fn invocation(
    scripts: &'static script::EntityScripts,
    position: usize,
    keys: &[String],
    verb: &str,
    args: Vec<Vec<u8>>,
) -> redis::ScriptInvocation<'static> {
    let mut invocation = scripts.call(&scripts.query, &keys[0]);
    for key in keys {
        invocation.key(key);
    }
    invocation.arg(verb).arg(position).arg(args);
    invocation
}

/// The sorted index key, then each set key; the first key error wins.
fn all_keys(
    sorted_key: Result<String>,
    sets: Vec<SetFilter>,
) -> Result<(Vec<String>, Vec<&'static IndexDescriptor>)> {
    let mut keys = vec![sorted_key?];
    let mut indexes = Vec::with_capacity(sets.len());
    for (index, key) in sets {
        keys.push(key?);
        indexes.push(index);
    }
    Ok((keys, indexes))
}

/// Whether a filtered read of `sorted` and `sets` takes the `cross_slot`
/// path: one of them is in other slots than its entities on a cluster.
fn across_slots(client: &Client, sorted: &IndexDescriptor, sets: &[&IndexDescriptor]) -> bool {
    std::iter::once(sorted)
        .chain(sets.iter().copied())
        .any(|index| super::across_slots(client, index))
}

/// Entries of the sorted index read per window by [`walk_across_slots`].
const WINDOW: u64 = 200;

/// Walks the sorted index key (`listed[0]`) within `range` in `order`, a
/// window at a time, reads each entity and hands `visit` those whose
/// current values render every key of `listed` (its score in `range`), in
/// index order, until `visit` breaks or the index ends. The `cross_slot`
/// path of filtered reads (see the module docs).
async fn walk_across_slots<E: Entity>(
    client: &Client,
    ctx: &Context,
    listed: &[(&IndexDescriptor, &str)],
    range: &ScoreRange,
    order: super::Order,
    mut visit: impl FnMut(fetch::Row) -> ControlFlow<()>,
) -> Result<()> {
    let reading = (client, ctx, E::descriptor());
    let mut windows = fetch::Windows::new(reading, listed, range, order, 0);
    while let Some(rows) = windows.next(WINDOW).await? {
        for (_, row) in rows {
            if visit(row).is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The `(index, key)` pairs a filtered read names: the sorted index, then
/// each set.
fn listed<'k>(
    sorted: &'static IndexDescriptor,
    keys: &'k [String],
    sets: &[&'static IndexDescriptor],
) -> Vec<(&'static IndexDescriptor, &'k str)> {
    std::iter::once(sorted)
        .chain(sets.iter().copied())
        .zip(keys.iter().map(String::as_str))
        .collect()
}

/// A page of the sorted index `sorted` at `sorted_key`, within `range`,
/// holding only entities that are also members of every key in `sets`.
/// Entities that do not decode are passed over and reported in the
/// [`Listing`]. Two round trips; a third when an entry was dead or moved.
pub async fn filtered_page<E: Entity>(
    client: &Client,
    sorted: &'static IndexDescriptor,
    sorted_key: Result<String>,
    sets: Vec<SetFilter>,
    range: &ScoreRange,
    page: Page,
) -> Result<Listing<E>> {
    let ctx = context::<E>(sorted, "filter");
    super::check_range(range, sorted, &ctx)?;
    if page.limit == 0 {
        return Ok(Listing::new(Vec::new(), Vec::new()));
    }
    let (keys, set_indexes) =
        all_keys(sorted_key, sets).map_err(|e| e.with_context(ctx.clone()))?;
    let listed = listed(sorted, &keys, &set_indexes);
    if across_slots(client, sorted, &set_indexes) {
        let (mut skip, mut rows) = (page.offset, Vec::new());
        walk_across_slots::<E>(client, &ctx, &listed, range, page.order, |row| {
            if skip > 0 {
                skip -= 1;
            } else {
                rows.push(row);
            }
            if rows.len() as u64 >= page.limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await?;
        return Ok(decode_rows(&rows));
    }
    let reply = call::<E>(client, sorted, &keys, "filter", range_args(range, page)).await?;
    let ids = super::decode_ids(&keys[0], &reply)?;
    let descriptor = E::descriptor();
    match fetch::live_rows_in(client, ctx, descriptor, &listed, Some(range), ids).await? {
        Some(rows) => Ok(decode_rows(&rows)),
        None => {
            let reply = call::<E>(client, sorted, &keys, "fpage", range_args(range, page)).await?;
            let rows = fetch::script_rows(descriptor, &keys[0], reply)?;
            Ok(decode_rows(&rows))
        }
    }
}

/// How many entities of the sorted index `sorted` at `sorted_key`, within
/// `range`, are also members of every key in `sets`; one round trip.
pub async fn filtered_count<E: Entity>(
    client: &Client,
    sorted: &'static IndexDescriptor,
    sorted_key: Result<String>,
    sets: Vec<SetFilter>,
    range: &ScoreRange,
) -> Result<u64> {
    let ctx = context::<E>(sorted, "filter_count");
    super::check_range(range, sorted, &ctx)?;
    let (keys, set_indexes) =
        all_keys(sorted_key, sets).map_err(|e| e.with_context(ctx.clone()))?;
    if across_slots(client, sorted, &set_indexes) {
        let listed = listed(sorted, &keys, &set_indexes);
        let mut count = 0;
        walk_across_slots::<E>(
            client,
            &ctx,
            &listed,
            range,
            super::Order::Ascending,
            |_| {
                count += 1;
                ControlFlow::Continue(())
            },
        )
        .await?;
        return Ok(count);
    }
    let all = Page::oldest_first(1);
    match call::<E>(client, sorted, &keys, "fcount", range_args(range, all)).await? {
        redis::Value::Int(n) => Ok(n.max(0).unsigned_abs()),
        other => Err(Error::Decode {
            context: ctx,
            key: keys[0].clone(),
            field: "*".into(),
            reason: format!("expected a count, found {}", value_kind(&other)),
        }),
    }
}

/// Command-exact: the bytes a filtered page sends, checked against
/// `redis_test::MockRedisConnection` (no server involved).
#[cfg(test)]
mod command_exact {
    use redis::Value;
    use redis_test::{MockCmd, MockRedisConnection};

    use super::*;
    use crate::{Order, Record};

    #[derive(crate::RedisEntity, Debug, Clone, PartialEq)]
    #[redis(key = "task:{id}")]
    #[redis(sorted_index(key = "tasks:owner:{owner}", score = "at"))]
    #[redis(index(key = "tasks:state:{state}"))]
    struct Task {
        id: String,
        owner: String,
        state: String,
        at: i64,
    }

    #[tokio::test]
    async fn a_filtered_page_names_every_key_and_the_sorted_index() {
        let descriptor = Task::descriptor();
        let keys = vec![
            "tasks:owner:ann".to_string(),
            "tasks:state:open".to_string(),
        ];
        let page = Page {
            offset: 20,
            limit: 10,
            order: Order::Descending,
        };
        let args = range_args(&ScoreRange::at_least(5.0), page);
        let mut expected = redis::cmd("EVALSHA");
        expected
            .arg(script::for_entity(descriptor).query.get_hash())
            .arg(2)
            .arg(&keys)
            .arg(&["filter", "1", "1", "5", "+inf", "20", "10"]);
        let mut conn = MockRedisConnection::new(vec![MockCmd::new(
            expected,
            Ok(Value::Array(vec![Value::BulkString(b"t1".to_vec())])),
        )]);
        let call = invocation(script::for_entity(descriptor), 1, &keys, "filter", args);
        let ids: Vec<String> = call.invoke_async(&mut conn).await.expect("sent");
        assert_eq!(ids, ["t1"]);
        assert!(conn.is_empty(), "exactly one command");
    }
}

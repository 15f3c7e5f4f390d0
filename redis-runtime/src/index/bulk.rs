//! Bulk operations by index: deleting every entity an index key lists.
//!
//! **Batches.** [`delete_all`] deletes in batches of [`BATCH`] entities,
//! each batch one call of `scripts/bulk_delete.lua` and so one atomic step:
//! no reader sees an entity of a batch half-deleted, and each entity goes
//! with all its index entries, unique entries and TTL-registry entries,
//! exactly as [`entity::delete`](crate::entity::delete) removes them. The
//! script does that by calling the type's own write script in its delete
//! mode once per entity: the write script's source is wrapped as a Lua
//! function (`write_one`) ahead of the batch loop, so there is one copy of
//! the delete logic and a change to it reaches bulk deletes too.
//!
//! **Why batches.** One script for the whole index would block the server
//! for as long as it runs; a pipeline of single deletes would not be atomic
//! per batch and would cost a reply per entity. A batch of 100 keeps each
//! step short while amortising the round trip.
//!
//! The whole operation is *not* atomic: other clients see the index shrink
//! batch by batch, and an entity added to the index key while it runs is
//! deleted too if a later batch meets it (the loop ends when a batch finds
//! the key empty or short). Counting first is one call of the generated
//! `by_<index>_count`.
//!
//! **On a Redis Cluster**, for a type with `cross_slot` indexes or a
//! `stream_cross_slot` stream, the entities of one index key are in many
//! slots, out of one script's reach: they are deleted one by one instead
//! ([`delete_each`]), each delete atomic in its entity's slot with its
//! entries moved just after, as [`entity::delete`](crate::entity::delete)
//! does; each only while the entity still renders the index key it was
//! listed under.

use redis_schema::{EntityDescriptor, IndexDescriptor, IndexKind, PatternPart};

use super::{context, fetch, position};
use crate::client::Client;
use crate::codec::{reply_pairs, value_kind};
use crate::entity::{self, Entity};
use crate::error::{Context, Error, Result};
use crate::script;

/// Entities deleted per script call.
pub const BATCH: u64 = 100;

/// The script call of one batch: the index key, the index's position in
/// the layout and the batch size.
fn invocation(
    scripts: &'static script::EntityScripts,
    index_key: &str,
    position: usize,
    batch: u64,
) -> redis::ScriptInvocation<'static> {
    let mut invocation = scripts.call(&scripts.bulk_delete, index_key);
    invocation.key(index_key).arg(position).arg(batch);
    invocation
}

/// Deletes every entity set or sorted index key `index_key` lists, in
/// batches of [`BATCH`], each batch atomic (see the module docs); returns
/// how many entities were deleted. Entries naming no live entity that
/// belongs to the key (expired, deleted, stale) are dropped and not
/// counted. Not atomic as a whole: see the module docs.
///
/// # Errors
///
/// `CONFIG` for a unique index; the usual query errors. A batch that fails
/// (e.g. `WRONGTYPE` at the index key) stops the loop; earlier batches stay
/// deleted.
pub async fn delete_all<E: Entity>(
    client: &Client,
    index: &'static IndexDescriptor,
    index_key: Result<String>,
) -> Result<u64> {
    let ctx = context::<E>(index, "delete_all");
    let index_key = index_key.map_err(|e| e.with_context(ctx.clone()))?;
    if index.kind == IndexKind::Unique {
        return Err(Error::Config(format!(
            "index {} is a unique index: delete its one entity instead",
            index.name
        )));
    }
    // A batch deletes each entity with all its index entries in one
    // script: on a cluster, the entries of a deferring type are out of its
    // reach, whichever index the batch reads.
    if client.config().is_cluster() && E::descriptor().defers_on_cluster() {
        return delete_each::<E>(client, &ctx, index, &index_key).await;
    }
    let position = position::<E>(index)?;
    let mut removed = 0;
    loop {
        let scripts = script::for_client(client, E::descriptor(), &ctx)?;
        let request = invocation(scripts, &index_key, position, BATCH);
        let reply: redis::Value = client.write(ctx.clone(), &request).await?;
        let (deleted, seen) = counts(reply).ok_or_else(|| Error::Decode {
            context: ctx.clone(),
            key: index_key.clone(),
            field: "*".into(),
            reason: "expected {removed, seen} from the bulk delete script".into(),
        })?;
        removed += deleted;
        if seen < BATCH {
            return Ok(removed);
        }
    }
}

/// [`delete_all`] on a cluster for a type whose writes defer (see the
/// module docs): walks the index key with `SSCAN`/`ZSCAN` (an entry there
/// throughout is met at least once, whatever is removed meanwhile), reads
/// each window's entities, and deletes those that render `index_key`, all
/// of a window at once, each only if the values it was matched on are
/// still stored.
async fn delete_each<E: Entity>(
    client: &Client,
    ctx: &Context,
    index: &IndexDescriptor,
    index_key: &str,
) -> Result<u64> {
    let descriptor = E::descriptor();
    let sorted = index.kind == IndexKind::Sorted;
    let mut cursor = "0".to_string();
    let mut removed = 0;
    loop {
        let mut scan = redis::cmd(if sorted { "ZSCAN" } else { "SSCAN" });
        scan.arg(index_key).arg(&cursor).arg("COUNT").arg(BATCH);
        let (next, items): (String, Vec<String>) = client.read(ctx.clone(), &scan).await?;
        // A sorted set's scan answers member, score, member, score, ...
        let members: Vec<String> = if sorted {
            items.into_iter().step_by(2).collect()
        } else {
            items
        };
        let rows = fetch::matching_rows(client, ctx, descriptor, index, index_key, None, members);
        let deletes = rows.await?.into_iter().map(|(member, row)| async move {
            let matched = index_values(descriptor, index, &row)?;
            entity::delete_if_stored::<E>(client, &row.key, &member, &matched).await
        });
        for deleted in futures_util::future::join_all(deletes).await {
            removed += u64::from(deleted?);
        }
        if next == "0" {
            return Ok(removed);
        }
        cursor = next;
    }
}

/// The stored values of the fields `index`'s key is rendered from, in
/// `row`: what a delete of the entity checks before it deletes it.
fn index_values(
    descriptor: &EntityDescriptor,
    index: &IndexDescriptor,
    row: &fetch::Row,
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let pairs = reply_pairs(&row.key, &row.fields)?;
    let mut values = Vec::new();
    for part in index.key {
        if let PatternPart::Field(n) = part {
            let name = descriptor.hash_name(*n);
            let stored = pairs.iter().find(|(field, _)| *field == name.as_bytes());
            if let Some((_, value)) = stored {
                values.push((name, value.to_vec()));
            }
        }
    }
    Ok(values)
}

/// The script's `{removed, seen}`.
fn counts(reply: redis::Value) -> Option<(u64, u64)> {
    let redis::Value::Array(items) = reply else {
        tracing::debug!(
            target: crate::TRACE_TARGET,
            "bulk delete replied with {}",
            value_kind(&reply)
        );
        return None;
    };
    match items.as_slice() {
        [redis::Value::Int(removed), redis::Value::Int(seen)] => Some((
            (*removed).max(0).unsigned_abs(),
            (*seen).max(0).unsigned_abs(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod command_exact {
    use super::*;
    use crate::codec::Record;
    use redis::Value;
    use redis_test::{MockCmd, MockRedisConnection};

    use crate::index::cursor::tests::{Post, post_indexes};

    #[test]
    fn the_write_script_is_wrapped_whole_ahead_of_the_batch_loop() {
        let source = script::bulk_delete_source(Post::descriptor());
        let write = script::write::compile(Post::descriptor());
        let wrapped = format!("local function write_one(KEYS, ARGV)\n{write}end\n");
        let at = source.find(&wrapped).expect("the write script, wrapped");
        let body = source.find("local index_key = KEYS[1]").expect("the body");
        assert!(at < body, "write_one is defined before the loop calls it");
        assert!(source.contains("local function forget_expired(registry, m)"));
    }

    #[tokio::test]
    async fn a_batch_sends_the_index_key_its_position_and_the_batch_size() {
        let (_, by_tag) = post_indexes();
        let position = position::<Post>(by_tag).expect("position");
        assert_eq!(position, 2);
        let mut expected = redis::cmd("EVALSHA");
        expected
            .arg(
                script::for_entity(Post::descriptor())
                    .bulk_delete
                    .get_hash(),
            )
            .arg(1)
            .arg(&["posts:tag:rust", "2", "100"]);
        let reply = Value::Array(vec![Value::Int(100), Value::Int(100)]);
        let mut conn = MockRedisConnection::new(vec![MockCmd::new(expected, Ok(reply))]);
        let reply: Value = invocation(
            script::for_entity(Post::descriptor()),
            "posts:tag:rust",
            position,
            BATCH,
        )
        .invoke_async(&mut conn)
        .await
        .expect("sent");
        assert_eq!(counts(reply), Some((100, 100)));
        assert!(conn.is_empty(), "exactly one command");
    }

    #[test]
    fn malformed_replies_are_refused() {
        assert_eq!(counts(Value::Int(3)), None);
        assert_eq!(counts(Value::Array(vec![Value::Int(1)])), None);
        assert_eq!(
            counts(Value::Array(vec![Value::Int(-1), Value::Int(0)])),
            Some((0, 0))
        );
    }
}

//! The pending record of an entity (see the [module](super) for the
//! protocol): the lease, the rounds of moves that apply the record, the
//! stream entries and unique values it carries, and `settle`, which
//! applies the records of clients that died first.

use redis_schema::{EntityDescriptor, IndexKind, PENDING_WRITES};

use super::record::{RecordField, RecordedEntry};
use super::rounds::Retry;
use super::{token, unique_claims};
use crate::TRACE_TARGET;
use crate::client::Client;
use crate::codec::{reply_pairs, value_kind};
use crate::entity::model::Entity;
use crate::error::{Context, Error, Result};
use crate::script::protocol::LEASED_TAG;
use crate::script::{self, EntityScripts, LEASE};

/// How a release ends a round: the release script's third argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    /// Remove the record and the lease if no write came since the lease was
    /// taken;
    /// else keep both, for the next round.
    Round,
    /// As `Round`, but let the lease go if a write came: no round
    /// follows, and the next write's client takes over.
    LastRound,
    /// The moves failed: keep the record, let the lease go.
    LetGo,
}

impl Release {
    /// The argument the script compares.
    const fn code(self) -> &'static str {
        match self {
            Release::Round => "0",
            Release::LastRound => "1",
            Release::LetGo => "2",
        }
    }
}

/// What a release script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Released {
    /// The record and the lease are gone.
    Done,
    /// A write came since the lease was taken: the record stays.
    WriteCame,
    /// The lease had expired and another client took it over.
    LeaseLost,
}

impl Released {
    /// The script's reply: 1, 0 or -1.
    fn from_reply(reply: i64) -> Self {
        match reply {
            1 => Released::Done,
            0 => Released::WriteCame,
            _ => Released::LeaseLost,
        }
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The moves are applied and the record removed.
    Done,
    /// Nothing was pending.
    Nothing,
    /// Another client holds the lease; it applies every counted write.
    Busy,
    /// Writes kept coming, or the lease was lost: the record stays.
    Left,
}

/// Applies the pending index moves of the entity at `key` (`member` in
/// its indexes), if any, taking the lease first. See the module docs.
pub(crate) async fn apply<E: Entity>(
    client: &Client,
    scripts: &EntityScripts,
    key: &str,
    member: &str,
) -> Result<Applied> {
    let mut appended = Vec::new();
    rounds::<E>(
        client,
        scripts,
        key,
        member,
        &token::fresh(),
        None,
        &mut appended,
    )
    .await
}

/// The lease a write script took on the moves it recorded (see
/// `script::write`): its token, and the lease script's reply it gave (the
/// record and hash it read).
pub(crate) struct Lease {
    token: String,
    reply: redis::Value,
}

/// Splits a write script's reply into the write's own reply and the lease
/// it took, if it wrapped its reply in one (`{ LEASED_TAG, reply, token,
/// lease reply }`).
pub(crate) fn split_lease(reply: redis::Value) -> (redis::Value, Option<Lease>) {
    let tagged = |parts: &[redis::Value]| {
        parts.len() == 4
            && matches!(&parts[0], redis::Value::BulkString(tag) if tag.as_slice() == LEASED_TAG.as_bytes())
    };
    let mut parts = match reply {
        redis::Value::Array(parts) if tagged(&parts) => parts,
        other => return (other, None),
    };
    let leased = parts.pop().unwrap_or(redis::Value::Nil);
    let token = match parts.pop() {
        Some(redis::Value::BulkString(token)) => String::from_utf8_lossy(&token).into_owned(),
        _ => String::new(),
    };
    let reply = parts.pop().unwrap_or(redis::Value::Nil);
    (
        reply,
        Some(Lease {
            token,
            reply: leased,
        }),
    )
}

/// Applies the moves a write took the lease on (see [`Lease`]), then goes on like
/// [`apply`] while writes come. Adds to `appended` the id of each stream
/// entry it appended, after the record field that held it (which a write
/// that recorded an entry returned in place of its id).
pub(crate) async fn apply_leased<E: Entity>(
    client: &Client,
    scripts: &EntityScripts,
    key: &str,
    member: &str,
    lease: Lease,
    appended: &mut Vec<(String, String)>,
) -> Result<Applied> {
    let Lease { token, reply } = lease;
    rounds::<E>(client, scripts, key, member, &token, Some(reply), appended).await
}

/// The rounds of taking the lease (the first lease reply given, when a
/// write took it), moves, stream entries and release, under `token`.
pub(super) async fn rounds<E: Entity>(
    client: &Client,
    scripts: &EntityScripts,
    key: &str,
    member: &str,
    token: &str,
    mut first: Option<redis::Value>,
    appended: &mut Vec<(String, String)>,
) -> Result<Applied> {
    let descriptor = E::descriptor();
    let ctx = Context::new(
        format!("{}.apply_pending", descriptor.name),
        descriptor.key_pattern,
    );
    let (pending, lease) = pending_keys(key, &ctx)?;
    for round in Retry::Record.rounds() {
        let reply = match first.take() {
            Some(leased) => leased,
            None => {
                let mut take = scripts.call(&scripts.pending_lease, key);
                take.key(&pending)
                    .key(&lease)
                    .key(key)
                    .arg(token)
                    .arg(u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX));
                client.write_idempotent(ctx.clone(), &take).await?
            }
        };
        let Some(record) = read_lease(&ctx, key, reply)? else {
            return Ok(Applied::Nothing);
        };
        let LeaseReply::Held {
            writes,
            listed,
            released,
            entries,
            hash,
        } = record
        else {
            return Ok(Applied::Busy);
        };
        #[cfg(feature = "testing")]
        crate::testing::pass_gate(crate::testing::GateStep::Moving, member).await;
        let release = |how: Release, appended: &[&str]| {
            let mut release = scripts.call(&scripts.pending_release, key);
            release
                .key(&pending)
                .key(&lease)
                .arg(token)
                .arg(&writes)
                .arg(how.code())
                .arg(appended);
            release
        };
        let moved = match moves(descriptor, member, &listed, &hash, key) {
            Ok(moves) => send_moves(client, &ctx, &moves).await,
            Err(e) => Err(e),
        };
        let moved = match moved {
            Ok(()) if scripts.fences => {
                unique_claims::reconcile::<E>(client, &ctx, member, &released, &hash, key).await
            }
            other => other,
        };
        let ids = match moved {
            Ok(()) => append_entries(client, &ctx, descriptor, &entries).await,
            Err(e) => Err(e),
        };
        let ids = match ids {
            Ok(ids) => ids,
            Err(error) => {
                // The record stays; the lease goes, so that the next write
                // of the entity does not wait for it to lapse.
                let _ = client
                    .write::<i64>(ctx.clone(), &release(Release::LetGo, &[]))
                    .await;
                return Err(error);
            }
        };
        let fields: Vec<&str> = entries.iter().map(|e| e.field.as_str()).collect();
        appended.extend(fields.iter().map(|f| f.to_string()).zip(ids));
        let how = if round.is_last() {
            Release::LastRound
        } else {
            Release::Round
        };
        let released: i64 = client.write(ctx.clone(), &release(how, &fields)).await?;
        match Released::from_reply(released) {
            Released::Done => return Ok(Applied::Done),
            Released::WriteCame => continue,
            Released::LeaseLost => {
                tracing::warn!(
                    target: TRACE_TARGET,
                    entity = descriptor.name,
                    key,
                    "the lease on pending index moves expired before they were applied; \
                     the next holder applies them"
                );
                return Ok(Applied::Left);
            }
        }
    }
    Ok(Applied::Left)
}

/// The pending index key and its lease for `key`.
fn pending_keys(key: &str, ctx: &Context) -> Result<(String, String)> {
    redis_schema::pending_index_key(key)
        .zip(redis_schema::pending_index_lease_key(key))
        .ok_or_else(|| {
            Error::Config(format!(
                "{}: the key {key:?} has no hash tag and holds a brace, so no key can share \
                 its slot to record its cross_slot index moves",
                ctx.operation
            ))
        })
}

/// What taking the lease came to.
enum LeaseReply {
    /// Another client holds the lease.
    Taken,
    /// The lease is ours: the write count read, the listed index keys with
    /// their index's 1-based position, the `cross_slot` unique values the
    /// entity left (the unique hash and the value), the recorded stream
    /// entries, the entity's hash (empty if gone).
    Held {
        writes: Vec<u8>,
        listed: Vec<(String, usize)>,
        released: Vec<(String, String)>,
        entries: Vec<RecordedEntry>,
        hash: redis::Value,
    },
}

/// Reads the lease script's reply; `None` when nothing was pending.
fn read_lease(ctx: &Context, key: &str, reply: redis::Value) -> Result<Option<LeaseReply>> {
    let shape = |reason: String| Error::Decode {
        context: ctx.clone(),
        key: key.to_string(),
        field: "*".into(),
        reason,
    };
    let redis::Value::Array(mut parts) = reply else {
        return Err(shape(format!(
            "expected a lease reply, found {}",
            value_kind(&reply)
        )));
    };
    match parts.first() {
        Some(redis::Value::Int(0)) => return Ok(None),
        Some(redis::Value::Int(-1)) => return Ok(Some(LeaseReply::Taken)),
        Some(redis::Value::Int(1)) if parts.len() == 3 => {}
        _ => return Err(shape("unexpected lease reply".into())),
    }
    let hash = parts.pop().unwrap_or(redis::Value::Nil);
    let record = parts.pop().unwrap_or(redis::Value::Nil);
    let mut writes = Vec::new();
    let mut listed = Vec::new();
    let mut released = Vec::new();
    let mut entries = Vec::new();
    for (field, value) in reply_pairs(key, &record)? {
        match RecordField::read(field, value).map_err(shape)? {
            RecordField::Writes(count) => writes = count.to_vec(),
            RecordField::UniqueValue { unique, value } => released.push((unique, value)),
            RecordField::StreamEntry(entry) => entries.push(entry),
            RecordField::IndexKey { key, position } => listed.push((key, position)),
            // Not written by us: left for the record's removal.
            RecordField::Foreign => tracing::warn!(
                target: TRACE_TARGET,
                key,
                "a pending index record holds a field that names no index key"
            ),
        }
    }
    // Appended in the order they were written.
    entries.sort_by_key(|entry| entry.write);
    Ok(Some(LeaseReply::Held {
        writes,
        listed,
        released,
        entries,
        hash,
    }))
}

/// One index command of the moves, and the key it is routed by.
struct Move {
    key: String,
    cmd: redis::Cmd,
}

/// The moves that bring `member`'s `cross_slot` index entries in line
/// with its hash: an add at each key the hash renders now, a removal at
/// each listed key it does not.
fn moves(
    descriptor: &EntityDescriptor,
    member: &str,
    listed: &[(String, usize)],
    hash: &redis::Value,
    key: &str,
) -> Result<Vec<Move>> {
    let pairs = reply_pairs(key, hash)?;
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(field, _)| *field == name.as_bytes())
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    };
    let mut out = Vec::new();
    let mut current = Vec::new();
    for (position, index) in descriptor.indexes.iter().enumerate() {
        if !index.cross_slot || pairs.is_empty() {
            continue;
        }
        let Some(index_key) = descriptor.render(index.key, value) else {
            continue;
        };
        let cmd = match (index.kind, index.value_field) {
            (IndexKind::Set, _) => {
                let mut cmd = redis::cmd("SADD");
                cmd.arg(&index_key).arg(member);
                cmd
            }
            (IndexKind::Sorted, Some(field)) => {
                let Some(score) = value(field).and_then(|s| s.parse::<f64>().ok()) else {
                    continue;
                };
                let mut cmd = redis::cmd("ZADD");
                cmd.arg(&index_key).arg(score).arg(member);
                cmd
            }
            // The derive refuses `cross_slot` on other kinds.
            _ => continue,
        };
        current.push((position + 1, index_key.clone()));
        out.push(Move {
            key: index_key,
            cmd,
        });
    }
    for (index_key, position) in listed {
        if current.iter().any(|(p, k)| p == position && k == index_key) {
            continue;
        }
        let command = match descriptor.indexes.get(position.wrapping_sub(1)) {
            Some(index) if index.kind == IndexKind::Set => "SREM",
            Some(index) if index.kind == IndexKind::Sorted => "ZREM",
            _ => continue,
        };
        let mut cmd = redis::cmd(command);
        cmd.arg(index_key).arg(member);
        out.push(Move {
            key: index_key.clone(),
            cmd,
        });
    }
    Ok(out)
}

/// Sends the moves, one pipeline per slot, all slots at once. Every move
/// is idempotent, so a pipeline is sent again after a dropped connection.
async fn send_moves(client: &Client, ctx: &Context, moves: &[Move]) -> Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    client
        .per_slot_of(
            moves,
            |m| m.key.as_str(),
            |group| async move {
                let mut pipe = redis::pipe();
                for m in group {
                    pipe.add_command(m.cmd.clone());
                }
                // One reply per move, as `per_slot_of` expects.
                client
                    .write_idempotent::<Vec<redis::Value>>(ctx.clone(), &pipe)
                    .await
            },
        )
        .await?;
    Ok(())
}

/// Appends the recorded stream `entries`, in order, with one pipeline on
/// the stream's slot, and returns their ids. Not idempotent: when the reply
/// is lost the record keeps them, and they are appended again (the entry
/// reaches the stream at least once).
async fn append_entries(
    client: &Client,
    ctx: &Context,
    descriptor: &EntityDescriptor,
    entries: &[RecordedEntry],
) -> Result<Vec<String>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let Some(stream) = descriptor.stream else {
        return Err(Error::Config(format!(
            "{}: the pending record holds stream entries, but {} declares no stream",
            ctx.operation, descriptor.name
        )));
    };
    let mut pipe = redis::pipe();
    for entry in entries {
        let add = pipe.cmd("XADD").arg(stream.key);
        if let Some(maxlen) = stream.maxlen {
            add.arg("MAXLEN").arg("~").arg(maxlen.get());
        }
        add.arg("*").arg(&entry.pairs);
    }
    client.write(ctx.clone(), &pipe).await
}

/// How many records [`settle`] found and what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SettleReport {
    /// Records whose moves were applied and removed.
    pub applied: u64,
    /// Records another client was applying (their lease held), left to it.
    pub busy: u64,
    /// Records still there after their rounds: written to faster than they
    /// could be applied, or their lease lost. Run `settle` again.
    pub left: u64,
}

/// Applies every pending `cross_slot` index record of `E` a client left
/// behind (it died between its write and the moves, or the moves failed),
/// found with `SCAN` on every primary. Nothing to do on one server, where
/// every index is written with its entity; run it after a crash or from a
/// periodic task, e.g. beside [`sweep`](crate::index::sweep). `verify` reports
/// the records it finds.
///
/// ```no_run
/// # #[derive(redis_runtime::RedisEntity)]
/// # #[redis(key = "job:{id}", cluster)]
/// # #[redis(index(key = "jobs:status:{status}", cross_slot))]
/// # struct Job { id: String, status: String }
/// # async fn run(client: &redis_runtime::Client) -> redis_runtime::Result<()> {
/// let report = redis_runtime::index::settle::<Job>(client).await?;
/// println!("{} applied, {} still pending", report.applied, report.busy + report.left);
/// # Ok(())
/// # }
/// ```
pub async fn settle<E: Entity>(client: &Client) -> Result<SettleReport> {
    let descriptor = E::descriptor();
    let mut report = SettleReport::default();
    let ctx = Context::new(
        format!("{}.settle", descriptor.name),
        descriptor.key_pattern,
    );
    let records = records(client, descriptor, &ctx).await?;
    if records.is_empty() {
        return Ok(report);
    }
    let scripts = script::for_client(client, descriptor, &ctx)?;
    for (key, member) in records {
        match apply::<E>(client, scripts, &key, &member).await? {
            Applied::Done => report.applied += 1,
            Applied::Busy => report.busy += 1,
            Applied::Left => report.left += 1,
            Applied::Nothing => {}
        }
    }
    Ok(report)
}

/// How many pending records of `descriptor`'s type exist now (see
/// [`settle`]); `verify` and the admin command's `verify` report it.
pub(crate) async fn count(
    client: &Client,
    descriptor: &EntityDescriptor,
    ctx: &Context,
) -> Result<u64> {
    Ok(records(client, descriptor, ctx).await?.len() as u64)
}

/// The entity key and member of every pending record of `descriptor`'s
/// type, found with `SCAN` on every primary; none when it defers nothing
/// or the server is not a cluster. Records are few (each lives from a
/// write to its moves), so they are collected.
async fn records(
    client: &Client,
    descriptor: &EntityDescriptor,
    ctx: &Context,
) -> Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    if !client.config().is_cluster() || !descriptor.defers_on_cluster() {
        return Ok(found);
    }
    let glob = format!("{}*", redis_schema::PENDING_INDEX_PREFIX);
    let mut cursor = 0;
    loop {
        let (next, keys) =
            crate::scan::keys_step(client, ctx, cursor, &glob, 500, Some("hash")).await?;
        for pending in keys {
            let Some(key) = redis_schema::entity_of_pending_index_key(&pending) else {
                continue;
            };
            // Another type's records fail to read back as a member of it.
            if let Some(member) = descriptor.member_of_key(key) {
                found.push((key.to_string(), member));
            }
        }
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

/// Re-checks one entry of a `cross_slot` index that `rebuild` found stale:
/// lists `index_key` in the entity's pending record and applies it, so the
/// entry goes unless the entity renders that key now (a concurrent write
/// is never undone). Returns 1 when the entry is gone afterwards, else 0.
pub(crate) async fn recheck<E: Entity>(
    client: &Client,
    ctx: &Context,
    scripts: &EntityScripts,
    index_key: &str,
    position: usize,
    member: &str,
) -> Result<i64> {
    let descriptor = E::descriptor();
    let kind = descriptor
        .indexes
        .get(position.wrapping_sub(1))
        .map(|i| i.kind);
    let Some(key) = descriptor.key_of_member(member) else {
        // A member that names no entity cannot belong anywhere.
        let command = if kind == Some(IndexKind::Sorted) {
            "ZREM"
        } else {
            "SREM"
        };
        let mut remove = redis::cmd(command);
        remove.arg(index_key).arg(member);
        return client.write(ctx.clone(), &remove).await;
    };
    let (pending, _) = pending_keys(&key, ctx)?;
    let mut note = redis::pipe();
    note.atomic()
        .cmd("HSET")
        .arg(&pending)
        .arg(index_key)
        .arg(position)
        .ignore()
        .cmd("HINCRBY")
        .arg(&pending)
        .arg(PENDING_WRITES)
        .arg(1)
        .ignore();
    let () = client.write(ctx.clone(), &note).await?;
    apply::<E>(client, scripts, &key, member).await?;
    let present = if kind == Some(IndexKind::Sorted) {
        let mut score = redis::cmd("ZSCORE");
        score.arg(index_key).arg(member);
        client
            .read::<Option<f64>>(ctx.clone(), &score)
            .await?
            .is_some()
    } else {
        let mut member_of = redis::cmd("SISMEMBER");
        member_of.arg(index_key).arg(member);
        client.read::<bool>(ctx.clone(), &member_of).await?
    };
    Ok(i64::from(!present))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn a_leased_write_reply_is_split_and_a_plain_one_kept() {
        let leased = Value::Array(vec![
            Value::Int(1),
            Value::Array(vec![]),
            Value::Array(vec![]),
        ]);
        let wrapped = Value::Array(vec![
            bulk(LEASED_TAG),
            Value::Array(vec![Value::Int(2), bulk("7")]),
            bulk("1700000000.5.3"),
            leased.clone(),
        ]);
        let (reply, lease) = split_lease(wrapped);
        assert_eq!(reply, Value::Array(vec![Value::Int(2), bulk("7")]));
        let lease = lease.expect("a lease");
        assert_eq!(lease.token, "1700000000.5.3");
        assert_eq!(lease.reply, leased);

        // A write's own `{code, detail}` reply, even one of four parts
        // that does not start with the tag, is not a lease.
        for plain in [
            Value::Int(1),
            bulk("1-0"),
            Value::Array(vec![Value::Int(-2), bulk("by_email")]),
            Value::Array(vec![bulk("x"), Value::Int(1), bulk("t"), Value::Nil]),
        ] {
            let (reply, lease) = split_lease(plain.clone());
            assert_eq!(reply, plain);
            assert!(lease.is_none());
        }
    }
}

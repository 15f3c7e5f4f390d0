//! Stored entities: the operations `#[derive(RedisEntity)]` exposes, each
//! one atomic server-side step and one round trip.
//!
//! The derive generates thin inherent methods (`User::get`, `user.create`,
//! …) that build keys and call the generic functions here, so the behaviour
//! is ordinary Rust, written and tested once. Every write goes through one
//! Lua script, generated for the entity type from its descriptor (see
//! `script::write`), that updates the hash, its TTL, all index entries and
//! the stream outbox together, and checks everything before it writes
//! anything.

mod invocation;
pub(crate) mod model;

use std::time::Duration;

use redis_schema::EntityDescriptor;

use crate::client::Client;
use crate::codec::{FieldSink, Record, reply_pairs};
use crate::cross_slot::{Retry, pending, unique_claims};
use crate::error::{Context, Error, Result};
use crate::script::{self, EntityScripts};
use crate::transport::Effect;

use self::invocation::*;
pub use self::model::{
    Conditional, Entity, EntityKey, Patch, Ttl, TtlChange, WriteOutcome, decode_hash,
};
pub use redis_schema::IndexKind;

fn context<E: Entity>(verb: &'static str) -> Context {
    let descriptor = E::descriptor();
    Context::new(
        format!("{}.{}", descriptor.name, verb),
        descriptor.key_pattern,
    )
}

async fn write<E: Entity>(
    client: &Client,
    mode: Mode,
    key: String,
    member: String,
    fields: Fields,
    ttl: (TtlAction, i64),
) -> Result<WriteOutcome> {
    let ctx = context::<E>(mode.verb());
    let scripts = script::for_client(client, E::descriptor(), &ctx)?;
    let (reply, lease) = send_write::<E>(client, &ctx, (scripts, &key, &member), |token| {
        write_invocation(scripts, mode, &key, &member, &fields, ttl, token)
    })
    .await?;
    let mut outcome = write_outcome(write_reply(reply, &ctx)?, ctx, key.clone());
    let appended = apply_deferred::<E>(client, scripts, &key, &member, lease).await;
    if let Ok(done) = &mut outcome
        && let Some(field) = &done.stream_id
        && field.starts_with(redis_schema::PENDING_STREAM_ENTRY)
    {
        // The script recorded its stream entry and named the record field
        // in place of the id, which is known once this client appends it
        // (`None` when another client does, or later).
        let id = appended.into_iter().find(|(appended, _)| appended == field);
        done.stream_id = id.map(|(_, id)| id);
    }
    outcome
}

/// Sends a write script call (`invocation`, given the claim token), and
/// when the script asks for values of `cross_slot` unique indexes to be
/// claimed first (only on a cluster, see `cross_slot::unique_claims`), claims
/// them and sends it again with the token it gave, for as long as the
/// token goes stale before the write runs (up to
/// [`Retry::Write`]). Returns the write's reply and the lease it
/// took on its pending moves.
async fn send_write<E: Entity>(
    client: &Client,
    ctx: &Context,
    (scripts, key, member): (&EntityScripts, &str, &str),
    invocation: impl Fn(&str) -> redis::ScriptInvocation<'static>,
) -> Result<(redis::Value, Option<pending::Lease>)> {
    let mut token = String::new();
    let mut last = None;
    for _ in Retry::Write.rounds() {
        let (reply, lease) =
            pending::split_lease(client.write(ctx.clone(), &invocation(&token)).await?);
        let Some(wanted) = unique_claims::Wanted::of(&reply) else {
            let written = || {
                matches!(
                    write_reply(reply.clone(), ctx),
                    Ok((WriteCode::Created | WriteCode::Overwritten, _))
                )
            };
            if last.is_some() && !written() {
                // Refused after claiming (the entity changed meanwhile):
                // the claims recorded beside it are released.
                release_claims::<E>(client, scripts, key, member).await;
            }
            return Ok((reply, lease));
        };
        if let Err(error) = unique_claims::claim::<E>(client, ctx, member, &wanted).await {
            release_claims::<E>(client, scripts, key, member).await;
            return Err(error);
        }
        #[cfg(feature = "testing")]
        crate::testing::pass_gate(crate::testing::GateStep::Claimed, member).await;
        token = wanted.token.clone();
        last = Some(wanted);
    }
    // Each round, another writer took a claimed value back before the
    // write ran: the values are contended.
    release_claims::<E>(client, scripts, key, member).await;
    Err(Error::UniqueViolation {
        context: ctx.clone(),
        index: last.map(|w| w.index_names::<E>()).unwrap_or_default(),
    })
}

/// After a write that claimed `cross_slot` unique values and then did not
/// run, applies the entity's pending record, which releases the values it
/// does not hold (see `cross_slot::unique_claims`). A failure is logged: the
/// record waits for `index::settle`.
async fn release_claims<E: Entity>(
    client: &Client,
    scripts: &EntityScripts,
    key: &str,
    member: &str,
) {
    if let Err(error) = pending::apply::<E>(client, scripts, key, member).await {
        tracing::warn!(
            target: crate::TRACE_TARGET,
            entity = E::descriptor().name,
            key,
            code = error.code(),
            "the unique values a refused write claimed are left for index::settle: {error}"
        );
    }
}

/// After a write, on a cluster, applies the `cross_slot` index moves and
/// the `stream_cross_slot` entry it recorded and took the lease on (see
/// `cross_slot::pending`), returning the ids of the stream entries appended
/// after their record fields; nothing when it recorded none, or another
/// client holds the lease. The write itself is done and durable, and so
/// is the record, so a failure here does not fail it: it is logged, and
/// the record waits for the next write of the entity or for
/// `index::settle`.
async fn apply_deferred<E: Entity>(
    client: &Client,
    scripts: &EntityScripts,
    key: &str,
    member: &str,
    lease: Option<pending::Lease>,
) -> Vec<(String, String)> {
    let mut appended = Vec::new();
    let Some(lease) = lease else {
        return appended;
    };
    let applied = pending::apply_leased::<E>(client, scripts, key, member, lease, &mut appended);
    if let Err(error) = applied.await {
        tracing::warn!(
            target: crate::TRACE_TARGET,
            entity = E::descriptor().name,
            key,
            code = error.code(),
            "the write is stored; its cross_slot index moves and stream entry are left for \
             index::settle: {error}"
        );
    }
    appended
}

/// The key, the index-value check and the fields of a write, in that
/// order of precedence, each error with the context of `E`'s `verb`.
fn prepare<E: Entity>(
    verb: &'static str,
    key: Result<EntityKey>,
    index_values: Result<()>,
    write: impl FnOnce(&mut Fields) -> Result<()>,
) -> Result<(EntityKey, Fields)> {
    let ctx = || context::<E>(verb);
    let key = key.map_err(|e| e.with_context(ctx()))?;
    index_values.map_err(|e| e.with_context(ctx()))?;
    let mut fields = Fields::default();
    write(&mut fields).map_err(|e| e.with_context(ctx()))?;
    Ok((key, fields))
}

/// The key, member and fields of a whole-entity write (`create`, `save`,
/// `update`). Save and update replace only the declared fields, leaving
/// fields the type does not declare to whoever wrote them, so the declared
/// fields that are `None` are sent for removal; a create writes a new hash,
/// which has none to remove.
fn collect<E: Entity>(entity: &E, mode: Mode) -> Result<(String, String, Fields)> {
    let (EntityKey { key, member }, mut fields) = prepare::<E>(
        mode.verb(),
        entity.entity_key(),
        entity.check_index_values(),
        |sink| entity.write_fields(sink),
    )?;
    if mode == Mode::Create {
        fields.removed.clear();
    }
    Ok((key, member, fields))
}

/// Creates the entity; fails with `ALREADY_EXISTS` (writing nothing) when
/// its key exists. Applies the TTL, adds index entries and, for entities
/// with a stream, enqueues the entry, all in one step.
pub async fn create<E: Entity>(client: &Client, entity: &E) -> Result<WriteOutcome> {
    let (key, member, fields) = collect(entity, Mode::Create)?;
    let ttl = ttl_for_new(entity).map_err(|e| e.with_context(context::<E>("create")))?;
    write::<E>(client, Mode::Create, key, member, fields, ttl).await
}

/// Creates the entity or replaces the stored one (upsert), restarting its
/// TTL: every field the type declares is written, and those that are
/// `None` now are removed. Fields the type does not declare (stored by
/// another service sharing the hash) are left as they are.
pub async fn save<E: Entity>(client: &Client, entity: &E) -> Result<WriteOutcome> {
    let (key, member, fields) = collect(entity, Mode::Save)?;
    let ttl = ttl_for_new(entity).map_err(|e| e.with_context(context::<E>("save")))?;
    write::<E>(client, Mode::Save, key, member, fields, ttl).await
}

/// The TTL a write of an existing entity applies: `change`, unless the
/// value's `expires_at` field (`expires_at`, read by the caller) names the
/// moment; a field that does not encode fails in `ctx`.
fn ttl_of<E: Entity>(
    change: TtlChange,
    expires_at: Result<Option<i64>>,
    ctx: &Context,
) -> Result<(TtlAction, i64)> {
    let at = expires_at.map_err(|e| e.with_context(ctx.clone()))?;
    Ok(ttl_for_change::<E>(change, at))
}

/// Replaces an existing entity's declared fields: every field the type
/// declares is written, and those that are `None` now are removed. Fields
/// the type does not declare (stored by another service sharing the hash)
/// are left as they are. Keeps the remaining TTL unless `ttl` refreshes
/// it. Fails with `NOT_FOUND` when it does not exist.
pub async fn update<E: Entity>(client: &Client, entity: &E, ttl: TtlChange) -> Result<()> {
    let (key, member, fields) = collect(entity, Mode::Update)?;
    let ttl = ttl_of::<E>(ttl, entity.expires_at_ms(), &context::<E>("update"))?;
    write::<E>(client, Mode::Update, key, member, fields, ttl)
        .await
        .map(drop)
}

/// Waits before the next attempt of an optimistic read-modify-write
/// (the generated `modify`) that lost to another writer: `attempt` (from
/// 1) writers already won since the first read. A random delay up to a
/// cap that doubles each attempt (2 ms, 4 ms, … 128 ms at most), so
/// writers that collided do not all read again at once and collide again.
#[doc(hidden)]
pub async fn after_conflict(attempt: u32) {
    tokio::time::sleep(conflict_backoff(attempt, fastrand::f64())).await;
}

/// The delay [`after_conflict`] waits: `unit` (in `[0, 1)`) of the cap
/// for `attempt`.
fn conflict_backoff(attempt: u32, unit: f64) -> Duration {
    const FIRST: Duration = Duration::from_millis(2);
    const MAX: Duration = Duration::from_millis(128);
    let cap = FIRST
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX);
    cap.mul_f64(unit.clamp(0.0, 1.0))
}

/// Applies a partial update to an existing entity; `NOT_FOUND` when absent.
///
/// `key` comes from the generated `patch` method, which builds it from the
/// key fields.
pub async fn patch<P: Patch>(
    client: &Client,
    key: Result<EntityKey>,
    patch: &P,
    ttl: TtlChange,
) -> Result<()> {
    let (EntityKey { key, member }, fields) =
        prepare::<P::Entity>("patch", key, patch.check_index_values(), |sink| {
            patch.write_patch(sink)
        })?;
    let ttl = ttl_of::<P::Entity>(ttl, patch.expires_at_ms(), &context::<P::Entity>("patch"))?;
    let descriptor = P::Entity::descriptor();
    // A versioned type's every write stores a new version: not this path.
    if ttl.0 == TtlAction::Keep
        && descriptor.version.is_none()
        && !touches_index(descriptor, &fields)
    {
        let ctx = context::<P::Entity>("patch");
        let invocation = patch_fields_invocation(&key, &fields);
        let reply: redis::Value = client.write(ctx.clone(), &invocation).await?;
        return write_outcome(write_reply(reply, &ctx)?, ctx, key).map(drop);
    }
    write::<P::Entity>(client, Mode::Patch, key, member, fields, ttl)
        .await
        .map(drop)
}

/// Whether a write of `fields` changes a value some index (or unique hash,
/// or the TTL registry's record of index values) is built from.
fn touches_index(descriptor: &EntityDescriptor, fields: &Fields) -> bool {
    let names = fields.set.iter().map(|(name, _)| name);
    names
        .chain(&fields.removed)
        .any(|name| descriptor.is_indexed_field(name))
}

/// Applies `patch` only if the stored entity holds every value `expected`
/// names (a field set to `Some(v)` must be stored as `v`, an optional field
/// set to `Some(None)` must be absent; fields left `None` are not checked),
/// all in one atomic step: e.g. move a job from `queued` to `running` only
/// if it is still `queued`. `NOT_FOUND` when the entity does not exist.
pub async fn patch_if<P: Patch>(
    client: &Client,
    key: Result<EntityKey>,
    expected: &P,
    patch: &P,
    ttl: TtlChange,
) -> Result<Conditional<P::Entity>> {
    let (EntityKey { key, member }, fields) =
        prepare::<P::Entity>("patch_if", key, patch.check_index_values(), |sink| {
            patch.write_patch(sink)
        })?;
    let ctx = context::<P::Entity>("patch_if");
    let mut conditions = Fields::default();
    expected
        .write_patch(&mut conditions)
        .map_err(|e| e.with_context(ctx.clone()))?;
    let ttl = ttl_of::<P::Entity>(ttl, patch.expires_at_ms(), &ctx)?;
    let write = Write::new(Mode::Patch, &key, &member, &fields, ttl);
    match conditional::<P::Entity>(client, &ctx, write, &conditions).await? {
        None => Ok(Conditional::Applied),
        Some(hash) => match decode_hash::<P::Entity>(&key, &hash)? {
            Some(current) => Ok(Conditional::Failed { current }),
            None => Err(Error::NotFound { context: ctx, key }),
        },
    }
}

/// Runs `write` only if the stored entity holds `conditions`; `None` when
/// it was applied, else the stored hash (`HGETALL` reply) it was checked
/// against.
async fn conditional<E: Entity>(
    client: &Client,
    ctx: &Context,
    write: Write<'_>,
    conditions: &Fields,
) -> Result<Option<redis::Value>> {
    let scripts = script::for_client(client, E::descriptor(), ctx)?;
    let (reply, lease) =
        send_write::<E>(client, ctx, (scripts, write.key, write.member), |token| {
            conditional_invocation(scripts, &write, conditions, token)
        })
        .await?;
    apply_deferred::<E>(client, scripts, write.key, write.member, lease).await;
    match write_reply(reply, ctx)? {
        (WriteCode::ConditionFailed, hash) => Ok(Some(hash)),
        reply => write_outcome(reply, ctx.clone(), write.key.to_string()).map(|_| None),
    }
}

/// The `CONFLICT` error of a version check that failed against `hash`.
fn conflict(ctx: Context, key: &str, field: &str, hash: &redis::Value) -> Error {
    let current = reply_pairs(key, hash)
        .ok()
        .and_then(|pairs| {
            pairs
                .iter()
                .find(|(name, _)| *name == field.as_bytes())
                .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        })
        .unwrap_or_else(|| "none".to_string());
    Error::Conflict {
        context: ctx,
        key: key.to_string(),
        current,
    }
}

/// Replaces the stored entity like [`update`] (keeping the TTL), only if
/// its version field `field` is stored as `expected`; the script stores
/// the next version. `CONFLICT` otherwise, `NOT_FOUND` when absent. Called
/// by the generated `update_if_<version field>`.
pub async fn update_if_version<E: Entity>(
    client: &Client,
    entity: &E,
    field: &'static str,
    expected: String,
) -> Result<()> {
    let ctx = context::<E>("update_if_version");
    let (key, member, fields) = collect(entity, Mode::Update)?;
    let ttl = ttl_of::<E>(TtlChange::Keep, entity.expires_at_ms(), &ctx)?;
    let write = Write::new(Mode::Update, &key, &member, &fields, ttl);
    version_checked::<E>(client, ctx, write, field, &expected).await
}

/// Applies `patch` like [`patch`] (keeping the TTL), only if the version
/// field `field` is stored as `expected`; the script stores the next
/// version. `CONFLICT` otherwise, `NOT_FOUND` when absent. Called by the
/// generated `patch_if_<version field>`.
pub async fn patch_if_version<P: Patch>(
    client: &Client,
    key: Result<EntityKey>,
    field: &'static str,
    expected: String,
    patch: &P,
) -> Result<()> {
    let (EntityKey { key, member }, fields) = prepare::<P::Entity>(
        "patch_if_version",
        key,
        patch.check_index_values(),
        |sink| patch.write_patch(sink),
    )?;
    let ctx = context::<P::Entity>("patch_if_version");
    let ttl = ttl_of::<P::Entity>(TtlChange::Keep, patch.expires_at_ms(), &ctx)?;
    let write = Write::new(Mode::Patch, &key, &member, &fields, ttl);
    version_checked::<P::Entity>(client, ctx, write, field, &expected).await
}

/// Runs `write` only if the version field `field` is stored as
/// `expected`; `CONFLICT` with the stored version otherwise.
async fn version_checked<E: Entity>(
    client: &Client,
    ctx: Context,
    write: Write<'_>,
    field: &'static str,
    expected: &str,
) -> Result<()> {
    let key = write.key;
    let mut conditions = Fields::default();
    conditions.put(field, expected.as_bytes());
    match conditional::<E>(client, &ctx, write, &conditions).await? {
        None => Ok(()),
        Some(hash) => Err(conflict(ctx, key, field, &hash)),
    }
}

/// Adds `by` (which may be negative) to the integer field `field` of an
/// existing entity and returns the new value, in one atomic step in which
/// index entries built from the field move too. A missing field counts as
/// 0. `bounds` are the field type's limits: a result outside them, or
/// beyond ±2^53 (the exact integers of a Lua number), is refused with
/// `ENCODE` and nothing is written. `NOT_FOUND` when the entity does not
/// exist.
pub async fn increment<E: Entity>(
    client: &Client,
    key: Result<EntityKey>,
    field: &'static str,
    by: i64,
    bounds: (i128, i128),
) -> Result<i64> {
    let ctx = context::<E>("increment");
    let EntityKey { key, member } = key.map_err(|e| e.with_context(ctx.clone()))?;
    let scripts = script::for_client(client, E::descriptor(), &ctx)?;
    let (reply, lease) = send_write::<E>(client, &ctx, (scripts, &key, &member), |token| {
        increment_invocation(scripts, &key, &member, field, by, bounds, token)
    })
    .await?;
    apply_deferred::<E>(client, scripts, &key, &member, lease).await;
    match write_reply(reply, &ctx)? {
        (WriteCode::Overwritten, counted) => detail_text(&counted)
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| Error::Command {
                context: ctx,
                message: format!("unexpected counter value {counted:?}"),
            }),
        (WriteCode::OutOfRange, current) => Err(Error::Encode {
            context: ctx,
            field: field.to_string(),
            reason: format!(
                "{} + {by} is outside {}..={} (the field's type, and at most 2^53 in magnitude)",
                detail_text(&current).unwrap_or_default(),
                bounds.0,
                bounds.1
            ),
        }),
        reply => write_outcome(reply, ctx, key).map(|_| 0),
    }
}

/// Deletes the entity at `key` only while each of `expected` (field name,
/// stored value) is stored as given; returns whether it was deleted (not
/// when it is gone or a value changed). A batch delete by index on a
/// cluster checks so that the entity still renders the index key it was
/// listed under.
pub(crate) async fn delete_if_stored<E: Entity>(
    client: &Client,
    key: &str,
    member: &str,
    expected: &[(&'static str, Vec<u8>)],
) -> Result<bool> {
    let ctx = context::<E>("delete_all");
    let mut conditions = Fields::default();
    for (name, value) in expected {
        conditions.put(name, value);
    }
    let nothing = Fields::default();
    let write = Write::new(Mode::Delete, key, member, &nothing, (TtlAction::None, 0));
    match conditional::<E>(client, &ctx, write, &conditions).await {
        Ok(None) => Ok(true),
        Ok(Some(_)) | Err(Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes the entity and all its index entries; returns whether it existed.
pub async fn delete<E: Entity>(client: &Client, key: Result<EntityKey>) -> Result<bool> {
    let EntityKey { key, member } = key.map_err(|e| e.with_context(context::<E>("delete")))?;
    write_if_exists::<E>(client, Mode::Delete, key, member).await
}

/// A field-less write (delete, reindex) that reports whether the entity
/// existed instead of failing with `NOT_FOUND`.
async fn write_if_exists<E: Entity>(
    client: &Client,
    mode: Mode,
    key: String,
    member: String,
) -> Result<bool> {
    match write::<E>(
        client,
        mode,
        key,
        member,
        Fields::default(),
        (TtlAction::None, 0),
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads the entity at `key`; `None` when absent (or expired).
pub async fn get<E: Entity>(client: &Client, key: Result<String>) -> Result<Option<E>> {
    let ctx = context::<E>("get");
    let key = key.map_err(|e| e.with_context(ctx.clone()))?;
    let key = &key;
    let deadline = client.config().operation_timeout;
    client
        .run_retrying(ctx, deadline, Effect::Read, |mut conn| async move {
            let reply: redis::Value = redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut conn)
                .await?;
            decode_hash::<E>(key, &reply)
        })
        .await
}

/// Reads many entities in one pipeline; the result keeps the order of
/// `keys`, with `None` for the missing ones.
pub async fn get_many<E: Entity>(
    client: &Client,
    keys: Vec<Result<String>>,
) -> Result<Vec<Option<E>>> {
    let ctx = context::<E>("get_many");
    let keys = keys
        .into_iter()
        .collect::<Result<Vec<String>>>()
        .map_err(|e| e.with_context(ctx.clone()))?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let deadline = client.config().operation_timeout;
    // One pipeline per hash slot on a cluster, where one may not span slots.
    let keys = &keys;
    let read_group = |group| {
        let ctx = ctx.clone();
        async move {
            let group: &Vec<&str> = &group;
            client
                .run_retrying(ctx, deadline, Effect::Read, |mut conn| async move {
                    let mut pipe = redis::pipe();
                    for key in group {
                        pipe.cmd("HGETALL").arg(*key);
                    }
                    let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
                    if replies.len() != group.len() {
                        return Err(Error::Command {
                            context: Context::default(),
                            message: format!(
                                "expected {} replies, got {}",
                                group.len(),
                                replies.len()
                            ),
                        });
                    }
                    group
                        .iter()
                        .zip(&replies)
                        .map(|(key, reply)| decode_hash::<E>(key, reply))
                        .collect()
                })
                .await
        }
    };
    client
        .per_slot(keys, read_group)
        .await
        .map_err(|e| e.with_context(ctx.clone()))
}

/// Whether the entity at `key` exists.
pub async fn exists<E: Entity>(client: &Client, key: Result<String>) -> Result<bool> {
    let key = key.map_err(|e| e.with_context(context::<E>("exists")))?;
    let mut cmd = redis::cmd("EXISTS");
    cmd.arg(&key);
    client.read(context::<E>("exists"), &cmd).await
}

/// The entity's remaining lifetime.
pub async fn ttl<E: Entity>(client: &Client, key: Result<String>) -> Result<Ttl> {
    let key = key.map_err(|e| e.with_context(context::<E>("ttl")))?;
    let mut cmd = redis::cmd("PTTL");
    cmd.arg(&key);
    let ms: i64 = client.read(context::<E>("ttl"), &cmd).await?;
    Ok(match ms {
        -2 => Ttl::Missing,
        -1 => Ttl::Persistent,
        ms => Ttl::ExpiresIn(Duration::from_millis(ms.max(0).unsigned_abs())),
    })
}

/// Sets the entity to expire after `ttl` (extending or shortening it), or
/// makes it persistent with `None`; keeps the TTL registry in step.
/// Returns whether the entity exists. `Duration::ZERO` expires it now: the
/// same as [`delete`]. Below a millisecond, Redis's unit, it rounds up to
/// one.
pub async fn expire<E: Entity>(
    client: &Client,
    key: Result<EntityKey>,
    ttl: Option<Duration>,
) -> Result<bool> {
    if ttl == Some(Duration::ZERO) {
        return delete::<E>(client, key).await;
    }
    let verb = if ttl.is_some() { "expire" } else { "persist" };
    let EntityKey { key, member } = key.map_err(|e| e.with_context(context::<E>(verb)))?;
    let descriptor = E::descriptor();
    if client.config().is_cluster() && descriptor.defers_on_cluster() {
        return Err(Error::Config(format!(
            "{}.{verb}: {} has cross_slot indexes or a stream_cross_slot stream, and on a Redis \
             Cluster such an entity cannot expire: expiry runs no script, so its entries in other \
             slots would outlive it, and its writes keep no TTL registry; delete it instead",
            descriptor.name, descriptor.name
        )));
    }
    let ms = ttl.map_or(0, |ttl| {
        i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
    });
    let ctx = context::<E>(verb);
    let scripts = script::for_client(client, E::descriptor(), &ctx)?;
    let mut invocation = scripts.call(&scripts.expire, &key);
    invocation.key(&key).arg(ms).arg(&member);
    let existed: i64 = client.write(ctx, &invocation).await?;
    Ok(existed == 1)
}

/// Re-adds the index entries of the stored entity at `key` (used by
/// `index::rebuild`); `Ok(false)` if it no longer exists.
pub(crate) async fn reindex<E: Entity>(
    client: &Client,
    key: String,
    member: String,
) -> Result<bool> {
    write_if_exists::<E>(client, Mode::Reindex, key, member).await
}

/// Command-exact tests: the precise bytes each operation sends, checked
/// against `redis_test::MockRedisConnection` (no server involved).
#[cfg(test)]
mod command_exact {
    use super::*;
    use crate::script::protocol::Switch;
    use redis::Value;
    use redis_test::{MockCmd, MockRedisConnection};

    #[derive(crate::RedisEntity, Debug, Clone, PartialEq)]
    #[redis(key = "user:{id}", ttl = "7d")]
    struct User {
        id: String,
        name: String,
        age: Option<u32>,
    }

    fn ada() -> User {
        User {
            id: "u1".into(),
            name: "Ada".into(),
            age: None,
        }
    }

    /// The write script call of `User` (the create script's for mode `c`)
    /// with one key and these arguments (numbers travel as their decimal
    /// text, as redis-rs sends them).
    fn evalsha(args: &[&str]) -> redis::Cmd {
        let scripts = script::for_entity(User::descriptor());
        let script = if args.get(1) == Some(&"c") {
            &scripts.create
        } else {
            &scripts.write
        };
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(1).arg(args);
        cmd
    }

    /// A connection that expects exactly `expected` and answers `code`, as
    /// the write script answers a write without a detail.
    fn expecting(expected: redis::Cmd, code: i64) -> MockRedisConnection {
        MockRedisConnection::new(vec![MockCmd::new(expected, Ok(Value::Int(code)))])
    }

    /// The exact create of `ada()`: key, mode, TTL action and 7 days in
    /// ms, member, two fields (the `None` age is not sent), nothing removed.
    fn create_ada() -> redis::Cmd {
        write_ada("c", ("s", "604800000"), &["0"])
    }

    /// A write of `ada()`'s two present fields in `mode` with `ttl`, then
    /// `removed` (the count and names of fields to remove).
    fn write_ada(mode: &str, ttl: (&str, &str), removed: &[&str]) -> redis::Cmd {
        let mut args = vec!["user:u1", mode, ttl.0, ttl.1, "u1"];
        args.extend(["2", "id", "u1", "name", "Ada"]);
        args.extend(removed);
        evalsha(&args)
    }

    async fn send(
        mode: Mode,
        key: &str,
        fields: &Fields,
        ttl: (TtlAction, i64),
        conn: &mut MockRedisConnection,
    ) -> Result<WriteOutcome> {
        let invocation = write_invocation(
            script::for_entity(User::descriptor()),
            mode,
            key,
            "u1",
            fields,
            ttl,
            "",
        );
        let ctx = context::<User>(mode.verb());
        let reply = write_reply(invocation.invoke_async(conn).await?, &ctx)?;
        write_outcome(reply, ctx, key.to_string())
    }

    #[test]
    fn write_replies_are_read_in_every_shape_the_script_answers() {
        let ctx = context::<User>("create");
        let read =
            |value| write_reply(value, &ctx).map(|(code, detail)| (code, detail_text(&detail)));
        assert_eq!(
            read(Value::Int(2)).expect("code"),
            (WriteCode::Overwritten, None)
        );
        assert_eq!(
            read(Value::BulkString(b"1700000000000-0".to_vec())).expect("entry"),
            (WriteCode::Created, Some("1700000000000-0".to_string()))
        );
        assert_eq!(
            read(Value::Array(vec![
                Value::Int(-2),
                Value::BulkString(b"by_email".to_vec())
            ]))
            .expect("table"),
            (WriteCode::UniqueViolation, Some("by_email".to_string()))
        );
        for odd in [
            Value::Nil,
            Value::Array(vec![Value::Nil, Value::Nil]),
            Value::Array(vec![]),
        ] {
            let err = read(odd).expect_err("not a write reply");
            assert!(
                err.to_string().contains("unexpected write script reply"),
                "{err}"
            );
        }
        let created = write_outcome(
            write_reply(Value::BulkString(b"1-0".to_vec()), &ctx).expect("entry"),
            ctx.clone(),
            "user:u1".into(),
        )
        .expect("written");
        assert_eq!(
            created,
            WriteOutcome {
                existed: false,
                stream_id: Some("1-0".into())
            }
        );
    }

    #[tokio::test]
    async fn create_sends_one_evalsha_with_fields_and_ttl() {
        let user = ada();
        let (key, member, fields) = collect(&user, Mode::Create).expect("collect");
        assert_eq!((key.as_str(), member.as_str()), ("user:u1", "u1"));
        let ttl = ttl_for_new(&user).expect("ttl");
        let mut conn = expecting(create_ada(), 1);
        let outcome = send(Mode::Create, &key, &fields, ttl, &mut conn)
            .await
            .expect("create");
        assert_eq!(
            outcome,
            WriteOutcome {
                existed: false,
                stream_id: None
            }
        );
        assert!(conn.is_empty(), "exactly one command");
    }

    #[tokio::test]
    async fn create_of_an_existing_key_maps_to_already_exists() {
        let user = ada();
        let (key, _, fields) = collect(&user, Mode::Create).expect("collect");
        let ttl = ttl_for_new(&user).expect("ttl");
        let mut conn = expecting(create_ada(), 0);
        let err = send(Mode::Create, &key, &fields, ttl, &mut conn)
            .await
            .expect_err("exists");
        assert_eq!(err.code(), "ALREADY_EXISTS");
    }

    #[tokio::test]
    async fn update_keeps_the_ttl_and_sends_present_fields_only() {
        let mut user = ada();
        user.age = Some(36);
        let (key, _, fields) = collect(&user, Mode::Update).expect("collect");
        let ttl = ttl_for_change::<User>(TtlChange::Keep, None);
        assert_eq!(ttl, (TtlAction::Keep, 0));
        let expected = evalsha(&[
            "user:u1", "u", "k", "0", "u1", "3", "id", "u1", "name", "Ada", "age", "36", "0",
        ]);
        let mut conn = expecting(expected, 2);
        let outcome = send(Mode::Update, &key, &fields, ttl, &mut conn)
            .await
            .expect("update");
        assert!(outcome.existed);
        assert!(conn.is_empty());
    }

    #[tokio::test]
    async fn update_and_save_send_none_fields_for_removal() {
        // Only declared fields are replaced, so the `None` age is named for
        // HDEL (a create writes a new hash and names none).
        let user = ada();
        for (mode, ttl) in [
            (Mode::Update, (TtlAction::Keep, 0)),
            (Mode::Save, (TtlAction::Relative, 604_800_000)),
        ] {
            let (key, _, fields) = collect(&user, mode).expect("collect");
            let ttl_ms = ttl.1.to_string();
            let expected = write_ada(mode.code(), (ttl.0.code(), &ttl_ms), &["1", "age"]);
            let mut conn = expecting(expected, 2);
            let outcome = send(mode, &key, &fields, ttl, &mut conn)
                .await
                .expect("write");
            assert!(outcome.existed);
            assert!(conn.is_empty(), "exactly one command");
        }
    }

    #[tokio::test]
    async fn refresh_restarts_the_declared_ttl() {
        assert_eq!(
            ttl_for_change::<User>(TtlChange::Refresh, None),
            (TtlAction::Relative, 604_800_000)
        );
        assert_eq!(
            ttl_for_change::<User>(TtlChange::Keep, Some(42)),
            (TtlAction::Absolute, 42),
            "an expires_at field wins"
        );
    }

    #[test]
    fn conflicts_back_off_randomly_under_a_cap_that_doubles() {
        let ms = |attempt, unit| conflict_backoff(attempt, unit).as_secs_f64() * 1000.0;
        assert_eq!(ms(1, 0.0), 0.0);
        assert_eq!(ms(1, 0.5), 1.0);
        assert_eq!(ms(2, 0.5), 2.0);
        assert_eq!(ms(3, 0.5), 4.0);
        // Capped at 128 ms, whatever the attempt.
        assert_eq!(ms(8, 1.0), 128.0);
        assert_eq!(ms(u32::MAX, 1.0), 128.0);
        assert_eq!(ms(0, 1.0), 2.0, "attempt 0 waits like the first");
    }

    /// The fields of a patch that sets `name` and removes `age`.
    fn rename_and_clear_age() -> Fields {
        let patch = UserPatch {
            name: Some("Ada L.".into()),
            age: Some(None),
        };
        let mut fields = Fields::default();
        patch.write_patch(&mut fields).expect("patch fields");
        fields
    }

    #[tokio::test]
    async fn patch_sends_set_and_removed_fields() {
        let fields = rename_and_clear_age();
        let expected = evalsha(&[
            "user:u1", "p", "k", "0", "u1", "1", "name", "Ada L.", "1", "age",
        ]);
        let mut conn = expecting(expected, -1);
        let err = send(
            Mode::Patch,
            "user:u1",
            &fields,
            (TtlAction::Keep, 0),
            &mut conn,
        )
        .await
        .expect_err("missing");
        assert_eq!(err.code(), "NOT_FOUND");
    }

    #[tokio::test]
    async fn a_patch_of_unindexed_fields_sends_the_shared_patch_script() {
        // `User` has no index, so no patch touches one: the small
        // type-independent script, with the same set/remove lists.
        let fields = rename_and_clear_age();
        assert!(!touches_index(User::descriptor(), &fields));
        let mut expected = redis::cmd("EVALSHA");
        expected
            .arg(script::PATCH_FIELDS.get_hash())
            .arg(1)
            .arg(&["user:u1", "1", "name", "Ada L.", "age"]);
        let mut conn = MockRedisConnection::new(vec![MockCmd::new(expected, Ok(Value::Int(-1)))]);
        let reply: Value = patch_fields_invocation("user:u1", &fields)
            .invoke_async(&mut conn)
            .await
            .expect("sent");
        let err = write_outcome(
            write_reply(reply, &context::<User>("patch")).expect("a code"),
            context::<User>("patch"),
            "user:u1".into(),
        )
        .expect_err("missing");
        assert_eq!(err.code(), "NOT_FOUND");
        assert!(conn.is_empty(), "exactly one command");
    }

    #[tokio::test]
    async fn an_increment_sends_the_field_the_amount_and_the_bounds() {
        // `age` is in no index and `User` has no version: the shared script.
        let mut expected = redis::cmd("EVALSHA");
        expected
            .arg(script::INCREMENT_FIELD.get_hash())
            .arg(1)
            .arg(&["user:u1", "age", "5", "0", "4294967295"]);
        let mut conn = MockRedisConnection::new(vec![MockCmd::new(
            expected,
            Ok(Value::Array(vec![
                Value::Int(2),
                Value::BulkString(b"41".to_vec()),
            ])),
        )]);
        let bounds = (0, i128::from(u32::MAX));
        let invocation = increment_invocation(
            script::for_entity(User::descriptor()),
            "user:u1",
            "u1",
            "age",
            5,
            bounds,
            "",
        );
        let reply: (i64, Value) = invocation.invoke_async(&mut conn).await.expect("sent");
        assert_eq!(detail_text(&reply.1).as_deref(), Some("41"));
        assert!(conn.is_empty(), "exactly one command");
    }

    #[tokio::test]
    async fn a_conditional_patch_appends_expected_values_and_absent_fields() {
        let patch = UserPatch {
            name: Some("Ada L.".into()),
            age: None,
        };
        let expected_values = UserPatch {
            name: Some("Ada".into()),
            age: Some(None),
        };
        let mut fields = Fields::default();
        patch.write_patch(&mut fields).expect("patch");
        let mut conditions = Fields::default();
        expected_values
            .write_patch(&mut conditions)
            .expect("conditions");
        // The patch (one field set, none removed), then one expected value
        // and one field expected absent.
        let expected = evalsha(&[
            "user:u1", "p", "k", "0", "u1", "1", "name", "Ada L.", "0", "1", "name", "Ada", "age",
        ]);
        let current = Value::Array(
            ["id", "u1", "name", "Grace"]
                .iter()
                .map(|s| Value::BulkString(s.as_bytes().to_vec()))
                .collect(),
        );
        let mut conn = MockRedisConnection::new(vec![MockCmd::new(
            expected,
            Ok(Value::Array(vec![Value::Int(-3), current])),
        )]);
        let write = Write::new(Mode::Patch, "user:u1", "u1", &fields, (TtlAction::Keep, 0));
        let invocation = conditional_invocation(
            script::for_entity(User::descriptor()),
            &write,
            &conditions,
            "",
        );
        let (code, hash): (i64, Value) = invocation.invoke_async(&mut conn).await.expect("sent");
        assert_eq!(code, -3);
        let current = decode_hash::<User>("user:u1", &hash).expect("decode");
        assert_eq!(current.map(|u| u.name).as_deref(), Some("Grace"));
        assert!(conn.is_empty(), "exactly one command");
    }
}

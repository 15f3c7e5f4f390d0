//! `cross_slot` unique indexes (see the [module](super) for the
//! protocol): claiming a value in the unique hash's slot, taking it from
//! an entity that does not hold it behind that entity's fence, releasing
//! values an entity left, and lookups that check the holder.

use std::sync::LazyLock;
use std::time::Duration;

use redis_schema::{EntityDescriptor, IndexDescriptor, IndexKind};

use super::rounds::Retry;
use super::token;
use crate::TRACE_TARGET;
use crate::client::Client;
use crate::codec::reply_pairs;
use crate::entity::model::{Entity, decode_hash};
use crate::error::{Context, Error, Result};
use crate::script::protocol::WriteCode;
use crate::transport::Request;

/// How long a unique fence lasts after it was last raised: far longer
/// than any write takes between reading it and writing.
pub(crate) const FENCE_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

pub(super) static CLAIM: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../scripts/unique_claim.lua")));

pub(super) static FENCE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../scripts/unique_fence.lua")));

/// The hash field a unique index keeps unique (the descriptor's
/// `value_field`, which a unique index always has): a descriptor without
/// one is refused rather than read as the empty field name.
fn unique_field(index: &IndexDescriptor) -> Result<&'static str> {
    index.value_field.ok_or_else(|| {
        Error::Config(format!(
            "unique index {} names no field; its descriptor is malformed",
            index.name
        ))
    })
}

/// What a write script asked to be claimed before it writes (its
/// [`WriteCode::ClaimFirst`] reply): the token to send with the write once they are, and each
/// unique hash with the value.
#[derive(Debug)]
pub(crate) struct Wanted {
    pub(crate) token: String,
    values: Vec<(String, String)>,
}

impl Wanted {
    /// The claims a write script's reply asks for; `None` for any other
    /// reply.
    pub(crate) fn of(reply: &redis::Value) -> Option<Wanted> {
        let redis::Value::Array(parts) = reply else {
            return None;
        };
        let [redis::Value::Int(code), redis::Value::Array(detail)] = parts.as_slice() else {
            return None;
        };
        if WriteCode::from_value(*code) != Some(WriteCode::ClaimFirst) {
            return None;
        }
        let mut texts = detail.iter().map(|part| match part {
            redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            _ => String::new(),
        });
        let token = texts.next()?;
        let texts: Vec<String> = texts.collect();
        let values = texts
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        Some(Wanted { token, values })
    }

    /// The names of the indexes whose values these are, for an error.
    pub(crate) fn index_names<E: Entity>(&self) -> String {
        let descriptor = E::descriptor();
        let names: Vec<&str> = self
            .values
            .iter()
            .filter_map(|(unique, _)| index_at(descriptor, unique).map(|index| index.name))
            .collect();
        names.join(", ")
    }
}

/// What a call of the claim script does: its second argument (see
/// `scripts/unique_claim.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimOp {
    /// Take the value for a member unless another holds it; a fresh token.
    Claim,
    /// The same, but a value the member holds keeps its token (a repair).
    Ensure,
    /// Only read the holder and its token.
    Read,
    /// Compare-and-set the holder and token, to a new holder or to none.
    Take,
}

impl ClaimOp {
    const fn code(self) -> &'static str {
        match self {
            ClaimOp::Claim => "claim",
            ClaimOp::Ensure => "ensure",
            ClaimOp::Read => "read",
            ClaimOp::Take => "take",
        }
    }
}

/// The state of one value in a unique hash.
enum Held {
    /// Mapped to `member`, whose claim wrote `token` ('' if written
    /// without a claim).
    By { member: String, token: String },
    /// Not mapped.
    Free,
}

/// What taking a value from its holder came to.
enum Taken {
    Done,
    /// The holder holds the value: it stays.
    Holds,
    /// The value was claimed or taken since it was read: read it again.
    Changed,
}

/// The `cross_slot` unique index whose hash is at `unique` (its key has
/// no placeholders, so it renders without values).
fn index_at(
    descriptor: &'static EntityDescriptor,
    unique: &str,
) -> Option<&'static IndexDescriptor> {
    descriptor.indexes.iter().find(|index| {
        index.kind == IndexKind::Unique
            && index.cross_slot
            && descriptor.render(index.key, |_| None).as_deref() == Some(unique)
    })
}

fn claims_key(ctx: &Context, unique: &str) -> Result<String> {
    redis_schema::unique_claims_key(unique).ok_or_else(|| {
        Error::Config(format!(
            "{}: the unique hash {unique:?} has no hash tag and holds a brace, so no claims hash \
             can share its slot",
            ctx.operation
        ))
    })
}

/// Claims for `member` every value `wanted` names, taking over values
/// whose holder does not hold them. `UNIQUE_VIOLATION` when another
/// entity holds one; the values claimed before it were recorded in the
/// entity's pending record by the refused call, and the caller applies
/// that record to release them.
pub(crate) async fn claim<E: Entity>(
    client: &Client,
    ctx: &Context,
    member: &str,
    wanted: &Wanted,
) -> Result<()> {
    let descriptor = E::descriptor();
    for (unique, value) in &wanted.values {
        let Some(index) = index_at(descriptor, unique) else {
            return Err(Error::Command {
                context: ctx.clone(),
                message: format!(
                    "the write script asked for a claim in {unique:?}, which is no cross_slot \
                     unique index of {}",
                    descriptor.name
                ),
            });
        };
        let value = UniqueValue::at(ctx, descriptor, index, unique, value)?;
        value.claim(client, ctx, member).await?;
    }
    Ok(())
}

/// The holder and token of a claim script reply; `None` when done or free.
fn held_by(ctx: &Context, reply: redis::Value) -> Result<Option<(String, String)>> {
    Ok(match held(ctx, reply)? {
        Held::By { member, token } => Some((member, token)),
        Held::Free => None,
    })
}

/// Reads a claim script reply: `{ 1 }` done (`Free`), `{ 0, holder, token }`.
fn held(ctx: &Context, reply: redis::Value) -> Result<Held> {
    let text = |value: &redis::Value| match value {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    };
    if let redis::Value::Array(parts) = &reply {
        match parts.as_slice() {
            [redis::Value::Int(1)] => return Ok(Held::Free),
            [redis::Value::Int(0), holder, token] => {
                if let (Some(holder), Some(token)) = (text(holder), text(token)) {
                    if holder.is_empty() {
                        return Ok(Held::Free);
                    }
                    return Ok(Held::By {
                        member: holder,
                        token,
                    });
                }
            }
            _ => {}
        }
    }
    Err(Error::Command {
        context: ctx.clone(),
        message: format!("unexpected unique claim reply {reply:?}"),
    })
}

/// One value of one `cross_slot` unique hash, to claim, take or release.
struct UniqueValue<'a> {
    descriptor: &'a EntityDescriptor,
    index: &'a IndexDescriptor,
    unique: &'a str,
    claims: String,
    value: &'a str,
}

impl<'a> UniqueValue<'a> {
    fn at(
        ctx: &Context,
        descriptor: &'a EntityDescriptor,
        index: &'a IndexDescriptor,
        unique: &'a str,
        value: &'a str,
    ) -> Result<Self> {
        Ok(UniqueValue {
            descriptor,
            index,
            unique,
            claims: claims_key(ctx, unique)?,
            value,
        })
    }

    /// A call of the claim script on this value doing `op`; the caller
    /// adds the op's own arguments.
    fn call(&self, op: ClaimOp) -> redis::ScriptInvocation<'static> {
        let mut call = CLAIM.prepare_invoke();
        call.key(self.unique)
            .key(&self.claims)
            .arg(self.value)
            .arg(op.code());
        call
    }

    /// Claims the value for `member`, taking it over from a holder that
    /// does not hold it; `UNIQUE_VIOLATION` when one does.
    async fn claim(&self, client: &Client, ctx: &Context, member: &str) -> Result<()> {
        for _ in Retry::Value.rounds() {
            let mut call = self.call(ClaimOp::Claim);
            call.arg(member).arg(token::fresh());
            let request = Request::idempotent_write(&call);
            let Some((holder, token)) = held_by(ctx, client.send(ctx.clone(), request).await?)?
            else {
                return Ok(());
            };
            match self.take(client, ctx, &holder, &token, member).await? {
                Taken::Done => return Ok(()),
                Taken::Holds => break,
                Taken::Changed => continue,
            }
        }
        Err(Error::UniqueViolation {
            context: ctx.clone(),
            index: self.index.name.to_string(),
        })
    }

    /// Releases the value from `member`, unless the entity holds it again
    /// or another entity holds it now.
    async fn release(&self, client: &Client, ctx: &Context, member: &str) -> Result<()> {
        for _ in Retry::Value.rounds() {
            let read = self.call(ClaimOp::Read);
            let request = Request::read(&read);
            let Some((holder, token)) = held_by(ctx, client.send(ctx.clone(), request).await?)?
            else {
                return Ok(());
            };
            if holder != member {
                return Ok(());
            }
            match self.take(client, ctx, &holder, &token, "").await? {
                Taken::Done | Taken::Holds => return Ok(()),
                Taken::Changed => continue,
            }
        }
        // Claimed again and again meanwhile: by this entity (which then
        // holds it, or will release it again) or taken over by another.
        Ok(())
    }

    /// Takes the value from `holder` (whose claim wrote `token`) for
    /// `new_member`, or removes it when `new_member` is empty: raises the
    /// holder's fence unless it holds the value, then swaps the holder if
    /// nothing claimed the value since it was read.
    async fn take(
        &self,
        client: &Client,
        ctx: &Context,
        holder: &str,
        token: &str,
        new_member: &str,
    ) -> Result<Taken> {
        // A holder that names no entity of the type holds nothing.
        if let Some(holder_key) = self.descriptor.key_of_member(holder) {
            let Some(fence) = redis_schema::unique_fence_key(&holder_key) else {
                return Ok(Taken::Holds);
            };
            let field = unique_field(self.index)?;
            let mut raise = FENCE.prepare_invoke();
            raise
                .key(&holder_key)
                .key(fence)
                .arg(field)
                .arg(self.value)
                .arg(u64::try_from(FENCE_LIFETIME.as_millis()).unwrap_or(u64::MAX));
            let raised: i64 = client.write_idempotent(ctx.clone(), &raise).await?;
            if raised == 0 {
                return Ok(Taken::Holds);
            }
        }
        let new_token = if new_member.is_empty() {
            String::new()
        } else {
            token::fresh()
        };
        let mut take = self.call(ClaimOp::Take);
        take.arg(holder).arg(token).arg(new_member).arg(new_token);
        let reply: redis::Value = client.write_idempotent(ctx.clone(), &take).await?;
        match reply {
            redis::Value::Array(parts) if matches!(parts.as_slice(), [redis::Value::Int(1)]) => {
                Ok(Taken::Done)
            }
            _ => Ok(Taken::Changed),
        }
    }
}

/// After a write of the entity `member` (its hash now `hash`), releases
/// the `cross_slot` unique values it recorded as left (`released`: the
/// unique hash and the value), unless it holds them again. A record that
/// releases nothing comes from a reindex (`rebuild` repairing a missing
/// entry): then the values the entity holds are mapped where no entity
/// holds them in the hash. A write that left a value claimed the one it
/// holds now, so that step is skipped for it.
pub(crate) async fn reconcile<E: Entity>(
    client: &Client,
    ctx: &Context,
    member: &str,
    released: &[(String, String)],
    hash: &redis::Value,
    key: &str,
) -> Result<()> {
    let descriptor = E::descriptor();
    for (unique, value) in released {
        let Some(index) = index_at(descriptor, unique) else {
            continue;
        };
        let value = UniqueValue::at(ctx, descriptor, index, unique, value)?;
        value.release(client, ctx, member).await?;
    }
    if !released.is_empty() {
        return Ok(());
    }
    let pairs = reply_pairs(key, hash)?;
    for index in descriptor.indexes.iter().filter(|i| i.cross_slot) {
        let (IndexKind::Unique, Some(field)) = (index.kind, index.value_field) else {
            continue;
        };
        let stored = pairs.iter().find(|(name, _)| *name == field.as_bytes());
        let Some(value) = stored.and_then(|(_, value)| std::str::from_utf8(value).ok()) else {
            continue;
        };
        let Some(unique) = descriptor.render(index.key, |_| None) else {
            continue;
        };
        let mut ensure =
            UniqueValue::at(ctx, descriptor, index, &unique, value)?.call(ClaimOp::Ensure);
        ensure.arg(member).arg(token::fresh());
        if let Held::By { member: holder, .. } =
            held(ctx, client.write_idempotent(ctx.clone(), &ensure).await?)?
        {
            // Drift (another entity holds the value too), which only data
            // written around this library can make: `verify` reports it.
            tracing::warn!(
                target: TRACE_TARGET,
                entity = descriptor.name,
                key,
                index = index.name,
                holder,
                "a cross_slot unique value the entity holds is mapped to another entity"
            );
        }
    }
    Ok(())
}

/// Releases an entry of the unique hash at `unique` that `rebuild` found
/// stale (`value` mapped to `member`, whose entity does not hold it),
/// unless the entity holds it by now. Returns 1 when the entry is gone,
/// else 0.
pub(crate) async fn release_stale<E: Entity>(
    client: &Client,
    ctx: &Context,
    index: &IndexDescriptor,
    unique: &str,
    value: &str,
    member: &str,
) -> Result<i64> {
    let descriptor = E::descriptor();
    let held_value = UniqueValue::at(ctx, descriptor, index, unique, value)?;
    held_value.release(client, ctx, member).await?;
    let mut hget = redis::cmd("HGET");
    hget.arg(unique).arg(value);
    let holder: Option<String> = client.read(ctx.clone(), &hget).await?;
    Ok(i64::from(holder.as_deref() != Some(member)))
}

/// The entity that holds `value` in the `cross_slot` unique index `index`
/// (hash at `unique`): the hash names it, and its hash holds the value
/// (one that left the value but has not released it yet does not).
pub(crate) async fn lookup<E: Entity>(
    client: &Client,
    ctx: &Context,
    index: &IndexDescriptor,
    unique: &str,
    value: &[u8],
) -> Result<Option<E>> {
    let mut hget = redis::cmd("HGET");
    hget.arg(unique).arg(value);
    let holder: Option<String> = client.read(ctx.clone(), &hget).await?;
    let Some(key) = holder.and_then(|holder| E::descriptor().key_of_member(&holder)) else {
        return Ok(None);
    };
    let mut hgetall = redis::cmd("HGETALL");
    hgetall.arg(&key);
    let hash: redis::Value = client.read(ctx.clone(), &hgetall).await?;
    let field = unique_field(index)?;
    let holds = reply_pairs(&key, &hash)?
        .iter()
        .any(|(name, held)| *name == field.as_bytes() && *held == value);
    if !holds {
        return Ok(None);
    }
    decode_hash(&key, &hash)
}

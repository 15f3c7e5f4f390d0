//! The Rust half of the write script's contract: the mode and TTL action
//! a call sends, its keys and arguments in the order `script::write`
//! reads them, and the codes its reply carries.

use crate::codec::FieldSink;
use crate::error::{Context, Error, Result};
use crate::script::protocol::Switch;
pub(super) use crate::script::protocol::{Mode, TtlAction, WriteCode};
use crate::script::{self, EntityScripts};

use super::model::{Entity, TtlChange, WriteOutcome};

/// Fields to set (flat name/value list) and to remove.
#[derive(Default)]
pub(super) struct Fields {
    /// Present fields, in write order.
    pub(super) set: Vec<(&'static str, Vec<u8>)>,
    pub(super) removed: Vec<&'static str>,
}

impl FieldSink for Fields {
    fn put(&mut self, name: &'static str, value: &[u8]) {
        self.set.push((name, value.to_vec()));
    }
    fn absent(&mut self, name: &'static str) {
        self.removed.push(name);
    }
}

/// The script call of one write: the compiled script of the entity type
/// and its arguments (see `script::write` for their meaning).
/// `claim_token` is sent only by a type whose write checks claims of
/// `cross_slot` unique values ([`EntityScripts::fences`]).
pub(super) fn write_invocation(
    scripts: &'static EntityScripts,
    mode: Mode,
    key: &str,
    member: &str,
    fields: &Fields,
    ttl: (TtlAction, i64),
    claim_token: &str,
) -> redis::ScriptInvocation<'static> {
    let script = match mode {
        Mode::Create => &scripts.create,
        _ => &scripts.write,
    };
    let mut invocation = scripts.call(script, key);
    invocation.key(key);
    if scripts.defers {
        // A key hashed whole that holds a brace has no pending key in its
        // slot; the one given instead is in another slot, so the server
        // refuses the call (`CROSSSLOT`) before it writes anything.
        let pending = redis_schema::pending_index_key(key)
            .unwrap_or_else(|| format!("{}{key}", redis_schema::PENDING_INDEX_PREFIX));
        let lease = redis_schema::pending_index_lease_key(key).unwrap_or_else(|| pending.clone());
        invocation.key(pending).key(lease);
    }
    if scripts.fences {
        // As for the pending key: a key with no fence in its slot gets one
        // in another, which the server refuses (`CROSSSLOT`) before the
        // script runs.
        let fence = redis_schema::unique_fence_key(key)
            .unwrap_or_else(|| format!("{}{key}", redis_schema::reserved::UNIQUE_FENCE_PREFIX));
        invocation.key(fence);
    }
    // An increment sends its amount, not the field's new value.
    if scripts.for_cluster() && mode != Mode::Increment {
        let creates = matches!(mode, Mode::Create | Mode::Save);
        let sent = |name: &str| {
            let field = fields.set.iter().find(|(sent, _)| *sent == name);
            field.and_then(|(_, value)| std::str::from_utf8(value).ok())
        };
        for declared in script::declared_write_keys(scripts.descriptor, creates, sent) {
            invocation.key(declared);
        }
    }
    invocation
        .arg(mode.code())
        .arg(ttl.0.code())
        .arg(ttl.1)
        .arg(member);
    if scripts.fences {
        invocation.arg(claim_token);
    }
    if scripts.defers {
        invocation.arg(crate::cross_slot::lease_token());
    }
    invocation.arg(fields.set.len());
    for (name, value) in &fields.set {
        invocation.arg(*name).arg(value.as_slice());
    }
    invocation.arg(fields.removed.len()).arg(&fields.removed);
    invocation
}

/// The write script's reply: a code, and a detail whose meaning depends on
/// it (the stream entry id, a unique index's name, the current hash of a
/// failed condition, a counter's new value).
pub(super) type WriteReply = (WriteCode, redis::Value);

/// Reads the write script's reply into a [`WriteReply`]: a bare code, a
/// bare stream entry id (a new entity that enqueued one:
/// [`WriteCode::Created`]), or a `{code, detail}` table (see
/// `script::write`). A code the script does not send is an error.
pub(super) fn write_reply(value: redis::Value, ctx: &Context) -> Result<WriteReply> {
    let code = |n: i64| WriteCode::from_value(n).ok_or_else(|| unexpected_write_reply(ctx, &n));
    match value {
        redis::Value::Int(n) => Ok((code(n)?, redis::Value::Nil)),
        entry @ redis::Value::BulkString(_) => Ok((WriteCode::Created, entry)),
        redis::Value::Array(mut parts) if parts.len() == 2 => {
            let detail = parts.pop().unwrap_or(redis::Value::Nil);
            match parts.pop() {
                Some(redis::Value::Int(n)) => Ok((code(n)?, detail)),
                other => Err(unexpected_write_reply(ctx, &other)),
            }
        }
        other => Err(unexpected_write_reply(ctx, &other)),
    }
}

pub(super) fn unexpected_write_reply(ctx: &Context, reply: &dyn std::fmt::Debug) -> Error {
    Error::Command {
        context: ctx.clone(),
        message: format!("unexpected write script reply {reply:?}"),
    }
}

/// The detail of a write reply as text, when it is text.
pub(super) fn detail_text(detail: &redis::Value) -> Option<String> {
    match detail {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// Interprets the write script's `{code, detail}` reply for the outcomes
/// every write shares.
pub(super) fn write_outcome(reply: WriteReply, ctx: Context, key: String) -> Result<WriteOutcome> {
    match reply {
        (WriteCode::Created, detail) => Ok(WriteOutcome {
            existed: false,
            stream_id: detail_text(&detail),
        }),
        (WriteCode::Overwritten, detail) => Ok(WriteOutcome {
            existed: true,
            stream_id: detail_text(&detail),
        }),
        (WriteCode::Exists, _) => Err(Error::AlreadyExists { context: ctx, key }),
        (WriteCode::Missing, _) => Err(Error::NotFound { context: ctx, key }),
        (WriteCode::UniqueViolation, index) => Err(Error::UniqueViolation {
            context: ctx,
            index: detail_text(&index).unwrap_or_default(),
        }),
        (code, _) => Err(Error::Command {
            context: ctx,
            message: format!("unexpected write script reply {code:?} ({code})"),
        }),
    }
}

pub(super) fn ttl_for_new<E: Entity>(entity: &E) -> Result<(TtlAction, i64)> {
    if let Some(at) = entity.expires_at_ms()? {
        return Ok((TtlAction::Absolute, at));
    }
    match E::descriptor().ttl_ms {
        Some(ms) => Ok((TtlAction::Relative, i64::try_from(ms).unwrap_or(i64::MAX))),
        None => Ok((TtlAction::None, 0)),
    }
}

pub(super) fn ttl_for_change<E: Entity>(
    change: TtlChange,
    expires_at: Option<i64>,
) -> (TtlAction, i64) {
    if let Some(at) = expires_at {
        return (TtlAction::Absolute, at);
    }
    match (change, E::descriptor().ttl_ms) {
        (TtlChange::Refresh, Some(ms)) => {
            (TtlAction::Relative, i64::try_from(ms).unwrap_or(i64::MAX))
        }
        _ => (TtlAction::Keep, 0),
    }
}

/// The call of the type-independent patch script (`scripts/patch_fields.lua`).
pub(super) fn patch_fields_invocation(
    key: &str,
    fields: &Fields,
) -> redis::ScriptInvocation<'static> {
    let mut invocation = script::PATCH_FIELDS.prepare_invoke();
    invocation.key(key).arg(fields.set.len());
    for (name, value) in &fields.set {
        invocation.arg(*name).arg(value.as_slice());
    }
    invocation.arg(&fields.removed);
    invocation
}

/// One write script call, described.
pub(super) struct Write<'a> {
    pub(super) mode: Mode,
    pub(super) key: &'a str,
    pub(super) member: &'a str,
    pub(super) fields: &'a Fields,
    pub(super) ttl: (TtlAction, i64),
}

impl<'a> Write<'a> {
    pub(super) fn new(
        mode: Mode,
        key: &'a str,
        member: &'a str,
        fields: &'a Fields,
        ttl: (TtlAction, i64),
    ) -> Self {
        Write {
            mode,
            key,
            member,
            fields,
            ttl,
        }
    }
}

/// The write script call of a conditional write: the write, then the
/// expected values and the fields expected absent (see `script::write`).
pub(super) fn conditional_invocation(
    scripts: &'static EntityScripts,
    write: &Write<'_>,
    conditions: &Fields,
    claim_token: &str,
) -> redis::ScriptInvocation<'static> {
    let mut invocation = write_invocation(
        scripts,
        write.mode,
        write.key,
        write.member,
        write.fields,
        write.ttl,
        claim_token,
    );
    invocation.arg(conditions.set.len());
    for (name, value) in &conditions.set {
        invocation.arg(*name).arg(value.as_slice());
    }
    invocation.arg(&conditions.removed);
    invocation
}

/// The script call of an increment. A field no index is built from, on a
/// type without a version field, needs only the small shared script
/// (`scripts/increment_field.lua`); otherwise the entity's write script
/// takes the field and the amount as the one field set, then the bounds
/// of the field's type, and moves index entries in the same step.
pub(super) fn increment_invocation(
    scripts: &'static EntityScripts,
    key: &str,
    member: &str,
    field: &'static str,
    by: i64,
    bounds: (i128, i128),
    claim_token: &str,
) -> redis::ScriptInvocation<'static> {
    let (low, high) = (bounds.0.to_string(), bounds.1.to_string());
    let descriptor = scripts.descriptor;
    if descriptor.version.is_none() && !descriptor.is_indexed_field(field) {
        let mut invocation = script::INCREMENT_FIELD.prepare_invoke();
        invocation.key(key).arg(field).arg(by).arg(low).arg(high);
        return invocation;
    }
    let mut fields = Fields::default();
    fields.put(field, by.to_string().as_bytes());
    let mut invocation = write_invocation(
        scripts,
        Mode::Increment,
        key,
        member,
        &fields,
        (TtlAction::Keep, 0),
        claim_token,
    );
    invocation.arg(low).arg(high);
    invocation
}

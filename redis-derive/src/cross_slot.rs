//! `cross_slot` and `stream_cross_slot`: the settings that take an index
//! or the stream out of the write's script on a cluster, checked here.
//!
//! `index(key = "jobs:status:{status}", cross_slot)` (or `sorted_index`,
//! or `unique` on a constant key) takes the index out of the write: its
//! key may be in any slot, and the runtime keeps it in step just after the
//! write (the protocol is stated once, in the module doc of the runtime's
//! `cross_slot`). [`check_cross_slot`] refuses it where that cannot work,
//! each time at the `cross_slot` token:
//!
//! * without `cluster`: every index is written in the write's script;
//! * on a `unique` index whose key has placeholders: a cross-slot unique
//!   value is claimed in one hash for the whole type, and a key with
//!   placeholders would need a claim in each hash it renders (nor on a
//!   constant key hashed whole that holds a brace: no claims hash can be
//!   put in its slot, see [`redis_schema::unique_claims_key`]);
//! * on a type that expires (`ttl`, an `expires_at` field): Redis expires
//!   the hash without running a script, so nothing would remove the entries
//!   in other slots;
//! * on an index that shares the entity's slot already: it is not needed,
//!   and without it the index is written atomically with the entity.
//!
//! # `stream_cross_slot`
//!
//! `#[redis(stream = "jobs:stream", stream_cross_slot)]` takes the stream
//! out of the create the same way: the entry is appended just after the
//! write, at least once. On one server the entry is still
//! appended in the write. [`check_stream_cross_slot`] refuses it, at its
//! token, without a `stream`, without `cluster`, on a stream that shares
//! the entity's slot already (nothing to defer), and on a type that
//! expires (a write that defers keeps no TTL registry, as with
//! `cross_slot`).

use redis_schema::{KeyPattern, SlotSource, slot_source};

use crate::ast::{Container, IndexKind};
use crate::ctxt::Ctxt;
use crate::model::{IndexModel, KeyModel};
use crate::slot_plan::{Plan, describe, into_slot, plan, stream_into_slot, without_placeholders};
use crate::symbol::{CLUSTER, CROSS_SLOT, EXPIRES_AT, KEY, STREAM, STREAM_CROSS_SLOT, Symbol, TTL};

/// What marking an index `cross_slot` costs, for the messages that offer it.
pub(crate) const CROSS_SLOT_COST: &str = "the index is then updated just after the write instead of in it, \
                               and queries check each entity against it";

/// What marking a `unique` index `cross_slot` costs, for the messages that
/// offer it.
pub(crate) const UNIQUE_CROSS_SLOT_COST: &str = "each write that sets a new value then claims it first in the unique hash's slot, \
                                      two more round trips, and releases old values just after";

/// What declaring the stream `stream_cross_slot` costs, for the messages
/// that offer it.
pub(crate) const STREAM_CROSS_SLOT_COST: &str =
    "the entry is then appended just after the write instead of in it, at least once";

/// Whether `indexes` may all be marked `cross_slot`: the type does not
/// expire, and each unique one has a constant key with a claims hash
/// (else `check_cross_slot` would refuse it).
pub(crate) fn may_cross_slot(c: &Container<'_>, indexes: &[&IndexModel]) -> bool {
    expiry(c).is_none()
        && indexes.iter().all(|index| {
            index.kind != IndexKind::Unique
                || KeyPattern::parse(&index.key.source)
                    .is_ok_and(|pattern| unique_refusal(&pattern).is_none())
        })
}

/// What marking `indexes` `cross_slot` costs: the cost of a set or sorted
/// index, of a unique one, or both.
pub(crate) fn cross_slot_cost(indexes: &[&IndexModel]) -> String {
    let unique = indexes
        .iter()
        .filter(|index| index.kind == IndexKind::Unique)
        .count();
    match unique {
        0 => CROSS_SLOT_COST.to_string(),
        n if n == indexes.len() => UNIQUE_CROSS_SLOT_COST.to_string(),
        _ => format!("{CROSS_SLOT_COST}; for a unique index, {UNIQUE_CROSS_SLOT_COST}"),
    }
}

/// Why a `unique` index whose key is `pattern` cannot be `cross_slot`
/// wherever its key is, if it cannot: its value is claimed in the claims
/// hash of its one unique hash ([`redis_schema::unique_claims_key`]).
pub(crate) enum UniqueRefusal {
    /// The key has placeholders: one unique hash per rendered key.
    Placeholders,
    /// The key, rendered, is hashed whole and holds a brace: no claims
    /// hash can be put in its slot.
    NoClaims(String),
}

pub(crate) fn unique_refusal(pattern: &KeyPattern) -> Option<UniqueRefusal> {
    if pattern.placeholders().next().is_some() {
        return Some(UniqueRefusal::Placeholders);
    }
    match pattern.render(&[]) {
        Ok(key) if redis_schema::unique_claims_key(&key).is_some() => None,
        Ok(key) => Some(UniqueRefusal::NoClaims(key)),
        // A constant pattern always renders; refuse rather than guess.
        Err(_) => Some(UniqueRefusal::NoClaims(pattern.source().to_string())),
    }
}

/// `pattern` without its placeholders, as a constant key that would pass
/// as a `cross_slot` unique key: `members:{org_id}:by_email` becomes
/// `members:by_email`. `None` when none would.
pub(crate) fn constant_key(pattern: &KeyPattern) -> Option<String> {
    let constant = without_placeholders(pattern, |_| true)?;
    unique_refusal(&constant)
        .is_none()
        .then(|| constant.source().to_string())
}

/// How the type expires, for messages, and what to remove so it does not:
/// `ttl = "1h"` or an `expires_at` field.
pub(crate) fn expiry(c: &Container<'_>) -> Option<(String, String)> {
    if let Some(ttl) = &c.ttl {
        let ttl = format!("{TTL} = {:?}", ttl.value());
        return Some((ttl.clone(), format!("`{ttl}`")));
    }
    let field = c
        .fields
        .iter()
        .flatten()
        .find(|field| field.expires_at.is_some())?;
    Some((
        format!(
            "field `{}` is `{EXPIRES_AT}`",
            crate::model::unraw(field.ident)
        ),
        format!("`{EXPIRES_AT}` from `{}`", crate::model::unraw(field.ident)),
    ))
}

/// The message for a `flag` (`cross_slot`, `stream_cross_slot`) on a key,
/// `what`, that shares the entity's slot anyway: without the flag it is
/// written `atomically`.
pub(crate) fn not_needed(
    flag: Symbol,
    what: &str,
    slot: &SlotSource,
    plan: &Plan<'_>,
    atomically: &str,
) -> String {
    format!(
        "`{flag}` is not needed: {what} takes its hash slot from {slot}, as the entity key \"{}\" does; \
         remove it, and {atomically}",
        plan.key.source
    )
}

/// Reports each `cross_slot` that cannot work, at its token, with what to
/// do instead: one error per index, the first that applies of: no
/// `cluster`, an index that shares the entity's slot anyway, a `unique`
/// index whose key has placeholders or has no claims hash, a type that
/// expires. Runs on a layout that passed every other check, like
/// [`check`].
pub(crate) fn check_cross_slot(
    cx: &Ctxt,
    c: &Container<'_>,
    key: Option<&KeyModel>,
    indexes: &[IndexModel],
) {
    let plan = key.and_then(|key| plan(c, key));
    let expiry = expiry(c);
    for (index, attr) in indexes.iter().zip(&c.indexes) {
        let Some(flag) = &attr.cross_slot else {
            continue;
        };
        if c.cluster.is_none() {
            cx.error_spanned_by(
                flag,
                format!(
                    "`{CROSS_SLOT}` applies to types declared `{CLUSTER}`: it lets an index key be in another \
                     Redis Cluster hash slot than the entity; add `{CLUSTER}` to the type's #[redis(...)], \
                     or remove `{CROSS_SLOT}` (without `{CLUSTER}` every index is written in the same step as the entity)"
                ),
            );
            continue;
        }
        let Some(plan) = &plan else {
            continue;
        };
        let Ok(pattern) = KeyPattern::parse(&index.key.source) else {
            continue;
        };
        let slot = slot_source(&pattern);
        let what = describe(index, &pattern);
        if plan.slot.shares_slot_with(&slot) {
            let atomically = "the index is written atomically with the entity";
            cx.error_spanned_by(flag, not_needed(CROSS_SLOT, &what, &slot, plan, atomically));
        } else if index.kind == IndexKind::Unique
            && let Some(refusal) = unique_refusal(&pattern)
        {
            let in_slot = format!(
                "keep the index in the entity's slot: remove `{CROSS_SLOT}` and {}, \
                 or drop `{CLUSTER}` and `{CROSS_SLOT}` (standalone and Sentinel only)",
                into_slot(plan, index, &pattern)
            );
            let message = match refusal {
                UniqueRefusal::Placeholders => {
                    // A constant key passes only on a type that does not
                    // expire.
                    let constant = match (&expiry, constant_key(&pattern)) {
                        (Some(_), _) => String::new(),
                        (None, Some(key)) => format!(
                            "use a constant key, e.g. {KEY} = \"{key}\" (a value is then unique across the whole type), or "
                        ),
                        (None, None) => {
                            "use a constant key (a value is then unique across the whole type), or "
                                .into()
                        }
                    };
                    format!(
                        "`{CROSS_SLOT}` cannot be used on {what}: its key has placeholders, and a cross-slot unique value \
                         is claimed in one hash for the whole type, where a key with placeholders would need a claim \
                         in each hash it renders; {constant}{in_slot}"
                    )
                }
                UniqueRefusal::NoClaims(key) => format!(
                    "`{CROSS_SLOT}` cannot be used on {what}: a cross-slot unique value is claimed in a claims hash \
                     put in the unique hash's slot by holding its key as a hash tag, and \"{key}\" is hashed whole and \
                     holds a brace, which a hash tag cannot hold; take the braces out of the key, or {in_slot}"
                ),
            };
            cx.error_spanned_by(flag, message);
        } else if let Some((expires, remove)) = &expiry {
            cx.error_spanned_by(
                flag,
                format!(
                    "`{CROSS_SLOT}` cannot be used on a type that expires ({expires}): Redis expires the entity \
                     without running a script, so nothing would remove its entry from {what} in another hash slot; \
                     remove {remove}, or keep the index in the entity's slot: remove `{CROSS_SLOT}` and {}",
                    into_slot(plan, index, &pattern)
                ),
            );
        }
    }
}

/// Reports a `stream_cross_slot` that cannot work, at its token, with what
/// to do instead: the first that applies of no `stream`, no `cluster`, a
/// stream that shares the entity's slot anyway, a type that expires. Needs
/// only the attributes and the entity key (`None` when it did not pass),
/// so it runs with the checks of single attributes and its error comes
/// with theirs.
pub(crate) fn check_stream_cross_slot(cx: &Ctxt, c: &Container<'_>, key: Option<&KeyModel>) {
    let Some(flag) = &c.stream_cross_slot else {
        return;
    };
    let Some(lit) = &c.stream else {
        let cluster = if c.cluster.is_none() {
            format!(", and `{CLUSTER}`")
        } else {
            String::new()
        };
        cx.error_spanned_by(
            flag,
            format!(
                "`{STREAM_CROSS_SLOT}` needs a stream: it lets the type's stream be in another Redis Cluster \
                 hash slot than the entity, and this type has none; remove `{STREAM_CROSS_SLOT}`, \
                 or add a stream, e.g. {STREAM} = \"jobs:stream\"{cluster}"
            ),
        );
        return;
    };
    if c.cluster.is_none() {
        cx.error_spanned_by(
            flag,
            format!(
                "`{STREAM_CROSS_SLOT}` applies to types declared `{CLUSTER}`: it lets the stream be in another \
                 Redis Cluster hash slot than the entity; add `{CLUSTER}` to the type's #[redis(...)], \
                 or remove `{STREAM_CROSS_SLOT}` (without `{CLUSTER}` the entry is appended in the same step as the entity)"
            ),
        );
        return;
    }
    // A key or stream that did not pass is reported already; a stream
    // with a placeholder has no one slot.
    let Some(plan) = key.and_then(|key| plan(c, key)) else {
        return;
    };
    let Some(pattern) = KeyPattern::parse(&lit.value())
        .ok()
        .filter(|pattern| pattern.placeholders().next().is_none())
    else {
        return;
    };
    let slot = slot_source(&pattern);
    let what = format!("the stream \"{}\"", pattern.source());
    if plan.slot.shares_slot_with(&slot) {
        let atomically = "the entry is appended atomically with the entity";
        cx.error_spanned_by(
            flag,
            not_needed(STREAM_CROSS_SLOT, &what, &slot, &plan, atomically),
        );
    } else if let Some((expires, remove)) = expiry(c) {
        cx.error_spanned_by(
            flag,
            format!(
                "`{STREAM_CROSS_SLOT}` cannot be used on a type that expires ({expires}): on a Redis Cluster its \
                 create records the entry in the entity's slot for the client to append after it, and a write \
                 that defers a key this way keeps no TTL registry, so the type cannot expire (as with `{CROSS_SLOT}`); \
                 remove {remove}, or keep {what} in the entity's slot: remove `{STREAM_CROSS_SLOT}` and {}",
                stream_into_slot(&plan, &pattern)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(source: &str) -> KeyPattern {
        KeyPattern::parse(source).expect("pattern")
    }

    #[test]
    fn a_cross_slot_unique_key_is_constant_with_a_claims_hash() {
        assert!(unique_refusal(&pattern("users:by_email")).is_none());
        assert!(unique_refusal(&pattern("users:{{users}}:by_email")).is_none());
        assert!(matches!(
            unique_refusal(&pattern("members:{org_id}:by_email")),
            Some(UniqueRefusal::Placeholders)
        ));
        assert!(matches!(
            unique_refusal(&pattern("users:{{}}:by_email")),
            Some(UniqueRefusal::NoClaims(key)) if key == "users:{}:by_email"
        ));
    }

    #[test]
    fn constant_keys_drop_the_placeholders() {
        let constant = |source: &str| constant_key(&pattern(source));
        assert_eq!(
            constant("members:{org_id}:by_email").as_deref(),
            Some("members:by_email")
        );
        assert_eq!(
            constant("members:by_email:{org_id}:{team}").as_deref(),
            Some("members:by_email")
        );
        assert_eq!(constant("{org_id}").as_deref(), None);
        assert_eq!(constant("members:{{{org_id}}}:by_email").as_deref(), None);
        assert_eq!(constant("users:{{}}:{org_id}").as_deref(), None);
    }
}

//! Every key one entity type can touch is a different Redis key from every
//! other, whatever the values: the entity's hash, each index key, the TTL
//! registry and its field hash, the stream and each log.
//!
//! Two patterns that can produce one key corrupt data at run time (a unique
//! index written into an entity's hash, a stream where an entity should
//! be), so such a layout is refused here, with the key both can produce and
//! a prefix that would not collide.

use redis_schema::{IndexLayout, KeyLayout, KeyPattern, Overlap, OwnedKey, OwnedRole, overlap};

use crate::ast::{Container, IndexKind};
use crate::ctxt::Ctxt;
use crate::model::{IndexModel, KeyModel, LogModel, StreamModel};

/// One key of the entity, with the string literal errors about it point at.
struct Owned<'c> {
    /// What it is, for messages: "the entity key", "index by_email", ...
    what: String,
    pattern: KeyPattern,
    lit: &'c syn::LitStr,
    /// Keys the derive names itself (the TTL registry): a collision is
    /// reported on the other key, which the user wrote.
    derived: bool,
    /// For a log, its name: the natural suffix of a log key.
    log: Option<&'c str>,
}

/// Reports each pair of the entity's keys that can produce the same key.
/// Runs on a layout that passed every other check, so every attribute has
/// its model and patterns parse. `registry` is the TTL registry key the
/// type uses and whether it is kept per tag (`valid::ttl_registry`).
pub(crate) fn check(
    cx: &Ctxt,
    c: &Container<'_>,
    key: Option<&KeyModel>,
    indexes: &[IndexModel],
    registry: (Option<&str>, bool),
    stream: Option<&StreamModel>,
    logs: &[LogModel],
) {
    let Some(key) = key else { return };
    let layout = KeyLayout {
        key_pattern: &key.source,
        indexes: indexes
            .iter()
            .map(|index| IndexLayout {
                name: &index.name,
                key_pattern: &index.key.source,
                kind: match index.kind {
                    IndexKind::Set => redis_schema::IndexKind::Set,
                    IndexKind::Sorted => redis_schema::IndexKind::Sorted,
                    IndexKind::Unique => redis_schema::IndexKind::Unique,
                },
                cross_slot: index.cross_slot,
            })
            .collect(),
        ttl_registry: registry.0,
        ttl_registry_per_tag: registry.1,
        stream: stream.map(|stream| (stream.key.as_str(), stream.cross_slot)),
        logs: logs
            .iter()
            .map(|log| (log.name.as_str(), log.key.as_str()))
            .collect(),
    };
    let keys: Vec<Owned<'_>> = layout
        .owned_keys()
        .iter()
        .filter_map(|owned| spanned(c, indexes, logs, owned))
        .collect();
    for (j, later) in keys.iter().enumerate() {
        for earlier in &keys[..j] {
            let Some(found) = overlap(&earlier.pattern, &later.pattern) else {
                continue;
            };
            let (reported, other) = if later.derived {
                (earlier, later)
            } else {
                (later, earlier)
            };
            cx.error_spanned_by(reported.lit, message(reported, other, &found, &keys));
            // One error per key: its other collisions go away with the fix.
            break;
        }
    }
}

/// An owned key with what errors about it say and point at: the string
/// literal that declared it, or for a key the derive names itself (the TTL
/// registry, the `cross_slot` companions) the entity key's.
fn spanned<'c>(
    c: &'c Container<'_>,
    indexes: &[IndexModel],
    logs: &'c [LogModel],
    owned: &OwnedKey<'_>,
) -> Option<Owned<'c>> {
    let index_at = |name: &str| indexes.iter().position(|index| index.name == name);
    let entity_lit = c.key.as_ref();
    let (what, lit, derived, log) = match owned.role {
        OwnedRole::Entity => ("the entity key".to_owned(), entity_lit, false, None),
        OwnedRole::Index(name) => {
            let lit = c.indexes.get(index_at(name)?)?.key.as_ref();
            (format!("index {name}"), lit, false, None)
        }
        OwnedRole::TtlRegistry => ("the TTL registry".to_owned(), entity_lit, true, None),
        OwnedRole::TtlRegistryFields => {
            let what = "the TTL registry's field hash".to_owned();
            (what, entity_lit, true, None)
        }
        OwnedRole::Stream => ("the stream".to_owned(), c.stream.as_ref(), false, None),
        OwnedRole::Log(name) => {
            let n = logs.iter().position(|log| log.name == name)?;
            let lit = c.logs.get(n)?.key.as_ref();
            (
                format!("log {name}"),
                lit,
                false,
                Some(logs[n].name.as_str()),
            )
        }
        OwnedRole::PendingIndexMoves => {
            let what = "the record of cross_slot moves".to_owned();
            (what, entity_lit, true, None)
        }
        OwnedRole::PendingIndexLease => {
            let what = "the lease of cross_slot moves".to_owned();
            (what, entity_lit, true, None)
        }
        OwnedRole::UniqueFence => ("the unique fence".to_owned(), entity_lit, true, None),
        OwnedRole::UniqueClaims(name) => {
            let lit = c.indexes.get(index_at(name)?)?.key.as_ref();
            (format!("the claims hash of index {name}"), lit, true, None)
        }
    };
    Some(Owned {
        what,
        pattern: owned.parse().ok()?,
        lit: lit?,
        derived,
        log,
    })
}

fn message(reported: &Owned<'_>, other: &Owned<'_>, found: &Overlap, keys: &[Owned<'_>]) -> String {
    let values = |values: &[(String, String)]| -> Vec<String> {
        values
            .iter()
            .map(|(name, value)| format!("{name} = \"{value}\""))
            .collect()
    };
    let mut assignments = values(&found.left);
    for assignment in values(&found.right) {
        if !assignments.contains(&assignment) {
            assignments.push(assignment);
        }
    }
    let when = if assignments.is_empty() {
        String::new()
    } else {
        format!(" when {}", assignments.join(", "))
    };
    let fix = match suggestion(reported, keys) {
        Some(better) => format!("use a key the other cannot produce, e.g. \"{better}\""),
        None => "give one of them a prefix the other cannot produce".to_owned(),
    };
    format!(
        "{} `{}` and {} `{}` can be the same Redis key, `{}`{when}: one would overwrite the other; {fix}",
        reported.what,
        reported.pattern.source(),
        other.what,
        other.pattern.source(),
        found.key,
    )
}

/// A nearby pattern for `reported` that collides with none of the
/// entity's other keys: a log gets its name as a last segment
/// (`job:{id}:output`), a pattern with a placeholder names it in a segment
/// of its own (`tasks:queue:{queue}`), a fixed key gets a longer first word
/// (`cjs:by_slot`).
fn suggestion(reported: &Owned<'_>, keys: &[Owned<'_>]) -> Option<String> {
    let source = reported.pattern.source();
    let candidate = if let Some(name) = reported.log {
        format!("{source}:{name}")
    } else if let Some(placeholder) = reported.pattern.placeholders().next() {
        let slot = format!("{{{placeholder}}}");
        source.replacen(&slot, &format!("{placeholder}:{slot}"), 1)
    } else {
        let cut = source.find(':').unwrap_or(source.len());
        let suffix = if source[..cut].ends_with('s') {
            "x"
        } else {
            "s"
        };
        format!("{}{suffix}{}", &source[..cut], &source[cut..])
    };
    let pattern = KeyPattern::parse(&candidate).ok()?;
    let others = keys.iter().filter(|k| !std::ptr::eq(*k, reported));
    others
        .into_iter()
        .all(|k| overlap(&k.pattern, &pattern).is_none())
        .then_some(candidate)
}

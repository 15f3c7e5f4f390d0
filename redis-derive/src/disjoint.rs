//! Every key one entity type can touch is a different Redis key from every
//! other, whatever the values: the entity's hash, each index key, the TTL
//! registry and its field hash, the stream and each log.
//!
//! Two patterns that can produce one key corrupt data at run time (a unique
//! index written into an entity's hash, a stream where an entity should
//! be), so such a layout is refused here, with the key both can produce and
//! a prefix that would not collide.

use redis_schema::{KeyPattern, Overlap, overlap};

use crate::ast::Container;
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
/// type uses (`valid::ttl_registry`), if any.
pub(crate) fn check(
    cx: &Ctxt,
    c: &Container<'_>,
    key: Option<&KeyModel>,
    indexes: &[IndexModel],
    registry: Option<&str>,
    stream: Option<&StreamModel>,
    logs: &[LogModel],
) {
    let keys = owned_keys(c, key, indexes, registry, stream, logs);
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

fn owned_keys<'c>(
    c: &'c Container<'_>,
    key: Option<&KeyModel>,
    indexes: &[IndexModel],
    registry: Option<&str>,
    stream: Option<&StreamModel>,
    logs: &'c [LogModel],
) -> Vec<Owned<'c>> {
    let mut keys = Vec::new();
    let mut push = |what: String, source: &str, lit: Option<&'c syn::LitStr>, derived, log| {
        if let (Ok(pattern), Some(lit)) = (KeyPattern::parse(source), lit) {
            keys.push(Owned {
                what,
                pattern,
                lit,
                derived,
                log,
            });
        }
    };
    let Some(key) = key else { return Vec::new() };
    push(
        "the entity key".into(),
        &key.source,
        c.key.as_ref(),
        false,
        None,
    );
    for (index, attr) in indexes.iter().zip(&c.indexes) {
        let what = format!("index {}", index.name);
        push(what, &index.key.source, attr.key.as_ref(), false, None);
    }
    if let Some(registry) = registry {
        let fields = format!("{registry}:fields");
        let lit = c.key.as_ref();
        push("the TTL registry".into(), &fixed(registry), lit, true, None);
        push(
            "the TTL registry's field hash".into(),
            &fixed(&fields),
            lit,
            true,
            None,
        );
    }
    if let Some(stream) = stream {
        push(
            "the stream".into(),
            &fixed(&stream.key),
            c.stream.as_ref(),
            false,
            None,
        );
    }
    for (log, attr) in logs.iter().zip(&c.logs) {
        let what = format!("log {}", log.name);
        push(
            what,
            &log.key,
            attr.key.as_ref(),
            false,
            Some(log.name.as_str()),
        );
    }
    keys
}

/// A fixed key as a pattern: its braces are literal text.
pub(crate) fn fixed(key: &str) -> String {
    key.replace('{', "{{").replace('}', "}}")
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

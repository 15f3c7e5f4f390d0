//! The stream entries are enqueued on, and the per-entity append logs.

use crate::ast::{self, Container};
use crate::ctxt::Ctxt;
use crate::model::{FieldModel, KeyModel, LogModel, StreamModel, unraw};
use crate::symbol::{KEY, LOG, MAX_LEN, NAME, STREAM, STREAM_MAXLEN};

use super::literals::{identifier_literal, parse_pattern, positive_int, ttl_literal};

/// The stream entries are enqueued on, with its `MAXLEN` (0: untrimmed).
/// Its name goes into `XADD` as is, so it must be one plain word.
pub(super) fn stream_model(cx: &Ctxt, c: &Container<'_>) -> Option<StreamModel> {
    let Some(lit) = &c.stream else {
        // A length limit with no stream to trim is a forgotten `stream`.
        if let Some(maxlen) = &c.stream_maxlen {
            cx.error_spanned_by(
                maxlen,
                format!("{STREAM_MAXLEN} needs a stream: add {STREAM} = \"...\""),
            );
        }
        return None;
    };
    // A stream is one fixed key shared by every entity of the type: it is
    // parsed as a key pattern (so the same literal rules hold), and a
    // placeholder, which nothing would fill in, is refused.
    let pattern = parse_pattern(cx, lit, "stream key");
    let name = match pattern
        .as_ref()
        .map(|p| (p.placeholders().next(), p.literal_prefix()))
    {
        Some((None, text)) => text.to_owned(),
        Some((Some(placeholder), _)) => {
            cx.error_spanned_by(
                lit,
                format!(
                    "a stream is one key for all entities of this type, so `{{{placeholder}}}` would never be filled in; \
                     name a fixed stream, e.g. {STREAM} = \"jobs:stream\", and put `{placeholder}` in the entry's fields instead"
                ),
            );
            lit.value()
        }
        None => lit.value(),
    };
    let maxlen = c
        .stream_maxlen
        .as_ref()
        .and_then(|lit| positive_int(cx, lit, STREAM_MAXLEN));
    Some(StreamModel {
        key: name,
        maxlen: maxlen.unwrap_or(0),
        cross_slot: c.stream_cross_slot.is_some(),
    })
}

/// Every log. Each generates a `<name>_log` method, so names must differ.
pub(super) fn log_models(
    cx: &Ctxt,
    c: &Container<'_>,
    fields: &[FieldModel<'_>],
    entity_key: Option<&KeyModel>,
) -> Vec<LogModel> {
    let logs = c
        .logs
        .iter()
        .filter_map(|log| log_model(cx, log, fields, entity_key))
        .collect::<Vec<_>>();
    let mut names: Vec<&str> = Vec::new();
    for (log, attr) in logs.iter().zip(&c.logs) {
        if names.contains(&log.name.as_str()) {
            cx.error_spanned_by(
                &attr.path,
                format!("two logs are named `{}`; give each its own name", log.name),
            );
        }
        names.push(&log.name);
    }
    logs
}

/// Checks one `log(...)`: it needs a name for its accessor and a key.
fn log_model(
    cx: &Ctxt,
    attr: &ast::LogAttr,
    fields: &[FieldModel<'_>],
    entity_key: Option<&KeyModel>,
) -> Option<LogModel> {
    let path = &attr.path;
    let name = match &attr.name {
        None => {
            cx.error_spanned_by(
                path,
                format!("`{LOG}` needs a name for its accessor, e.g. {NAME} = \"output\" (gives `output_log`)"),
            );
            return None;
        }
        Some(lit) => identifier_literal(cx, lit, "a log name", "output")?,
    };
    let Some(key_lit) = &attr.key else {
        cx.error_spanned_by(
            path,
            format!("`{LOG}` needs a key pattern, e.g. {KEY} = \"job:{{id}}:output\""),
        );
        return None;
    };
    let key = log_key(cx, key_lit, fields, entity_key)?;
    // Both settings are checked, so one compile reports both mistakes.
    let ttl_ms = attr.ttl.as_ref().map(|lit| ttl_literal(cx, lit).ok_or(()));
    let max_len = attr
        .max_len
        .as_ref()
        .map(|lit| positive_int(cx, lit, MAX_LEN).ok_or(()));
    let (Ok(ttl_ms), Ok(max_len)) = (ttl_ms.transpose(), max_len.transpose()) else {
        return None;
    };
    Some(LogModel {
        name,
        key,
        ttl_ms,
        max_len,
    })
}

/// A log's key pattern: exactly one placeholder, naming a key field, so the
/// log is addressed by the entity's id.
// Checks of a literal share the parameter shape (errors, the literal, the
// fields it may name, what it is for) and differ in their rules.
fn log_key(
    cx: &Ctxt,
    lit: &syn::LitStr,
    fields: &[FieldModel<'_>],
    entity_key: Option<&KeyModel>,
) -> Option<String> {
    let pattern = parse_pattern(cx, lit, "log key pattern")?;
    let placeholders: Vec<&str> = pattern.placeholders().collect();
    let key_fields: Vec<String> = entity_key
        .map(|k| k.field_indexes().map(|i| unraw(fields[i].ident)).collect())
        .unwrap_or_default();
    match placeholders.as_slice() {
        [one] if key_fields.iter().any(|k| k == one) => Some(lit.value()),
        _ => {
            cx.error_spanned_by(
                lit,
                format!(
                    "a log key needs exactly one placeholder naming a key field ({}), e.g. \"job:{{id}}:output\"",
                    key_fields.join(", ")
                ),
            );
            None
        }
    }
}

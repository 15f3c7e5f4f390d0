//! Key patterns (an entity's, an index's): parsed, unambiguous, each
//! placeholder bound to a field that can fill it.

use redis_schema::KeySegment;

use crate::ctxt::Ctxt;
use crate::model::{FieldModel, KeyModel, Segment};
use crate::symbol::JSON;

use super::literals::{field_named, parse_pattern, quote_type, reject_option};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyUse {
    Entity,
    Index,
}

/// Parses a key pattern literal and binds each placeholder to a field.
/// An entity key needs a placeholder (else every entity shares one key);
/// any key must be unambiguous, so a key can be read back into its values.
pub(super) fn key_model(
    cx: &Ctxt,
    lit: &syn::LitStr,
    fields: &[FieldModel<'_>],
    usage: KeyUse,
) -> Option<KeyModel> {
    let source = lit.value();
    let pattern = parse_pattern(cx, lit, "key pattern")?;
    if usage == KeyUse::Entity && pattern.placeholders().next().is_none() {
        cx.error_spanned_by(
            lit,
            format!("key pattern {source:?} has no placeholder; name the id field in braces, e.g. \"user:{{id}}\""),
        );
        return None;
    }
    if !pattern.is_unambiguous() {
        cx.error_spanned_by(
            lit,
            format!(
                "key pattern {source:?} is ambiguous: separate placeholders with text containing `:`, e.g. \"{{tenant_id}}:user:{{id}}\""
            ),
        );
        return None;
    }
    let mut ok = true;
    let mut segments = Vec::new();
    for segment in pattern.segments() {
        match segment {
            KeySegment::Literal(text) => segments.push(Segment::Literal(text.clone())),
            KeySegment::Placeholder(name) => match key_field(cx, lit, fields, name, usage) {
                Some(i) => segments.push(Segment::Field(i)),
                None => ok = false,
            },
        }
    }
    ok.then_some(KeyModel { source, segments })
}

/// The field a key placeholder names. A key needs a value from every
/// entity, so not an `Option`. An index key is built from stored plain
/// values, so not skipped or `json` either; on the entity key those two
/// are reported on the flag itself by `check_key_fields`.
fn key_field(
    cx: &Ctxt,
    lit: &syn::LitStr,
    fields: &[FieldModel<'_>],
    name: &str,
    usage: KeyUse,
) -> Option<usize> {
    let missing = format!("placeholder `{{{name}}}` names no field");
    let i = field_named(cx, lit, fields, name, &missing)?;
    let field = &fields[i];
    let remedy = format!(
        "a key needs every value; make it `{}`",
        quote_type(field.value_ty())
    );
    if reject_option(cx, field, "fills a key pattern", &remedy) {
        return None;
    }
    if usage == KeyUse::Entity {
        return Some(i);
    }
    if field.skip {
        cx.error_spanned_by(
            lit,
            format!("index key uses `{{{name}}}`, but that field is skipped and never stored"),
        );
        return None;
    }
    if field.json {
        cx.error_spanned_by(
            lit,
            format!("index key uses `{{{name}}}`, but that field is `{JSON}`: key values must be plain text or integers"),
        );
        return None;
    }
    Some(i)
}

//! Checks of single literals shared by the model's parts: names that
//! become identifiers, TTLs, positive limits, key patterns, fields named
//! by an attribute.

use quote::quote;
use redis_schema::KeyPattern;

use crate::ctxt::Ctxt;
use crate::model::{FieldModel, unraw};
use crate::symbol::{NAME, Symbol, TTL};

/// A name that becomes part of a generated method name, or `None` after
/// reporting that it is not a Rust identifier.
pub(super) fn identifier_literal(
    cx: &Ctxt,
    lit: &syn::LitStr,
    what: &str,
    example: &str,
) -> Option<String> {
    let name = lit.value();
    if syn::parse_str::<syn::Ident>(&name).is_err() {
        cx.error_spanned_by(
            lit,
            format!("{what} must be a Rust identifier, e.g. {NAME} = \"{example}\""),
        );
        return None;
    }
    Some(name)
}

/// A TTL literal in milliseconds, or `None` after reporting why it is bad.
pub(super) fn ttl_literal(cx: &Ctxt, lit: &syn::LitStr) -> Option<u64> {
    match redis_schema::duration::parse_ttl_millis(&lit.value()) {
        Ok(ms) => Some(ms),
        Err(e) => {
            cx.error_spanned_by(lit, format!("invalid {TTL} {:?}: {e}", lit.value()));
            None
        }
    }
}

/// A length limit: zero would keep nothing, so it must be positive.
pub(super) fn positive_int(cx: &Ctxt, lit: &syn::LitInt, setting: Symbol) -> Option<u64> {
    match lit.base10_parse::<u64>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            cx.error_spanned_by(
                lit,
                format!("{setting} must be a positive integer, e.g. {setting} = 10000"),
            );
            None
        }
    }
}

/// A key pattern literal, parsed, or `None` after reporting why it is not
/// one (`what` names the pattern in the message).
pub(super) fn parse_pattern(cx: &Ctxt, lit: &syn::LitStr, what: &str) -> Option<KeyPattern> {
    let source = lit.value();
    KeyPattern::parse(&source)
        .map_err(|e| {
            cx.error_spanned_by(lit, format!("invalid {what} {source:?}: {}", e.message()));
        })
        .ok()
}

/// The field whose Rust name is `name`, or `None` after reporting
/// `missing` together with the stored fields (what could have been meant).
pub(super) fn field_named(
    cx: &Ctxt,
    lit: &syn::LitStr,
    fields: &[FieldModel<'_>],
    name: &str,
    missing: &str,
) -> Option<usize> {
    let found = fields.iter().position(|f| unraw(f.ident) == name);
    if found.is_none() {
        let names: Vec<String> = fields
            .iter()
            .filter(|f| !f.skip)
            .map(|f| unraw(f.ident))
            .collect();
        cx.error_spanned_by(lit, format!("{missing}; fields are: {}", names.join(", ")));
    }
    found
}

/// Reports `field` at its type when it is an `Option` although its `role`
/// needs a value from every entity; `true` when it was reported.
pub(super) fn reject_option(cx: &Ctxt, field: &FieldModel<'_>, role: &str, remedy: &str) -> bool {
    if field.option_of.is_none() {
        return false;
    }
    cx.error_spanned_by(
        field.ty,
        format!(
            "field `{}` {role}, so it cannot be an Option: {remedy}",
            unraw(field.ident)
        ),
    );
    true
}

pub(super) fn quote_type(ty: &syn::Type) -> String {
    quote!(#ty).to_string().replace(' ', "")
}

//! Fields: hash names (renames, aliases, no two alike), empty-value
//! rules, skipped fields, the key fields, and the `expires_at` and
//! `version` fields.

use std::collections::BTreeMap;

use redis_schema::RenameRule;

use crate::ast::{self, Container, Derive, option_inner};
use crate::ctxt::Ctxt;
use crate::model::{EmptyRule, FieldModel, KeyModel, is_integer};
use crate::symbol::{
    ALIAS, DEFAULT, EMPTY_IS_NONE, EMPTY_IS_SOME, EXPIRES_AT, JSON, KEY, RENAME, RENAME_ALL, SKIP,
    TTL, VERSION,
};

use super::keys::{KeyUse, key_model};

/// Resolves every field's hash name and flags.
pub(super) fn field_models<'a>(
    cx: &Ctxt,
    c: &Container<'a>,
    ast_fields: &[ast::Field<'a>],
    rule: RenameRule,
) -> Vec<FieldModel<'a>> {
    let fields: Vec<FieldModel<'a>> = ast_fields
        .iter()
        .map(|f| field_model(cx, f, rule))
        .collect();
    check_hash_names(cx, c, &fields, ast_fields);
    check_aliases(cx, &fields, ast_fields);
    fields
}

/// An alias is read as if it were the field, so it must not be any other
/// stored field's name or alias (a hash field would fill two fields), nor
/// repeat the field's own name.
fn check_aliases(cx: &Ctxt, fields: &[FieldModel<'_>], ast_fields: &[ast::Field<'_>]) {
    // Every stored name first, so an alias clashing with a later field's
    // name is found too.
    let mut claimed: BTreeMap<&str, (usize, bool)> = BTreeMap::new();
    for (i, model) in fields.iter().enumerate() {
        if !model.skip {
            claimed.entry(&model.hash_name).or_insert((i, false));
        }
    }
    for (i, (model, field)) in fields.iter().zip(ast_fields).enumerate() {
        if model.skip {
            continue;
        }
        for (alias, lit) in model.aliases.iter().zip(&field.aliases) {
            if alias.is_empty() {
                cx.error_spanned_by(
                    lit,
                    format!("an {ALIAS} cannot be empty; write the old hash field name, e.g. {ALIAS} = \"oldName\""),
                );
                continue;
            }
            let Some(&(owner, is_alias)) = claimed.get(alias.as_str()) else {
                claimed.insert(alias, (i, true));
                continue;
            };
            let owner_ident = fields[owner].ident;
            let message = match (owner == i, is_alias) {
                (true, false) => format!(
                    "{ALIAS} {alias:?} is the hash field name of `{owner_ident}` itself; remove it"
                ),
                (true, true) => format!("{ALIAS} {alias:?} is given twice; give it once"),
                (false, false) => format!(
                    "{ALIAS} {alias:?} of field `{}` is the hash field name of field `{owner_ident}`: both would read it; remove the {ALIAS} or rename `{owner_ident}`",
                    model.ident
                ),
                (false, true) => format!(
                    "{ALIAS} {alias:?} is claimed by fields `{owner_ident}` and `{}`: both would read it; keep it on one",
                    model.ident
                ),
            };
            cx.error_spanned_by(lit, message);
        }
    }
}

/// No two stored fields may share a hash field: they would overwrite each
/// other on every write.
fn check_hash_names(
    cx: &Ctxt,
    c: &Container<'_>,
    fields: &[FieldModel<'_>],
    ast_fields: &[ast::Field<'_>],
) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (model, field)) in fields.iter().zip(ast_fields).enumerate() {
        if model.skip {
            continue;
        }
        let Some(&first) = seen.get(model.hash_name.as_str()) else {
            seen.insert(&model.hash_name, i);
            continue;
        };
        let blame: &dyn quote::ToTokens = match &field.rename {
            Some(lit) => lit,
            None => field.ident,
        };
        // Say where the name came from when a rule, not a `rename`, made it.
        let via_rule = match (&c.rename_all, &ast_fields[first].rename, &field.rename) {
            (Some(rule), None, _) | (Some(rule), _, None) => {
                format!(" under {RENAME_ALL} = {:?}", rule.value())
            }
            _ => String::new(),
        };
        cx.error_spanned_by(
            blame,
            format!(
                "fields `{}` and `{}` are both stored as hash field {:?}{via_rule}; rename one with #[redis({RENAME} = \"...\")]",
                fields[first].ident, model.ident, model.hash_name
            ),
        );
    }
}

fn field_model<'a>(cx: &Ctxt, field: &ast::Field<'a>, rule: RenameRule) -> FieldModel<'a> {
    let hash_name = match &field.rename {
        Some(lit) => {
            let name = lit.value();
            // Redis would take an empty field name; no reader expects one.
            if name.is_empty() {
                cx.error_spanned_by(
                    lit,
                    format!("a hash field name cannot be empty; write a name, e.g. {RENAME} = \"createdAt\", or remove `{RENAME}`"),
                );
            }
            name
        }
        None => rule.apply(&field.ident.to_string()),
    };
    check_skipped(cx, field);
    let option_of = option_inner(field.ty);
    FieldModel {
        ident: field.ident,
        ty: field.ty,
        option_of,
        hash_name,
        skip: field.skip.is_some(),
        default: field.default.is_some(),
        json: field.json.is_some(),
        is_key: false,
        aliases: field.aliases.iter().map(syn::LitStr::value).collect(),
        empty: empty_rule(cx, field, option_of.is_some()),
    }
}

/// The `empty_is_none` / `empty_is_some` choice: one of them, and only on
/// an `Option` field (a required field has no `None` to read `""` as).
fn empty_rule(cx: &Ctxt, field: &ast::Field<'_>, optional: bool) -> EmptyRule {
    let rule = match (&field.empty_is_none, &field.empty_is_some) {
        (None, None) => return EmptyRule::Auto,
        (Some(_), Some(some)) => {
            cx.error_spanned_by(
                some,
                format!("`{EMPTY_IS_NONE}` and `{EMPTY_IS_SOME}` contradict each other; keep one"),
            );
            return EmptyRule::Auto;
        }
        (Some(path), None) => (EmptyRule::None, path),
        (None, Some(path)) => (EmptyRule::Some, path),
    };
    if !optional {
        cx.error_spanned_by(
            rule.1,
            format!(
                "`{}` applies to `Option` fields: it says whether an empty stored value reads as `None`; make `{}` an Option or remove it",
                ast::path_name(rule.1),
                field.ident
            ),
        );
        return EmptyRule::Auto;
    }
    rule.0
}

/// A skipped field is never stored, so flags about how it is stored are
/// mistakes: the user meant one or the other.
fn check_skipped(cx: &Ctxt, field: &ast::Field<'_>) {
    let Some(skip) = &field.skip else {
        return;
    };
    if field.rename.is_some() {
        cx.error_spanned_by(
            skip,
            format!("a skipped field is not stored, so `{RENAME}` has no effect; remove one"),
        );
    }
    if field.json.is_some() || field.default.is_some() {
        cx.error_spanned_by(
            skip,
            format!("a skipped field is not stored; remove `{JSON}`/`{DEFAULT}` or `{SKIP}`"),
        );
    }
    if !field.aliases.is_empty() || field.empty_is_none.is_some() || field.empty_is_some.is_some() {
        cx.error_spanned_by(
            skip,
            format!("a skipped field is never read; remove `{ALIAS}`/`{EMPTY_IS_NONE}`/`{EMPTY_IS_SOME}` or `{SKIP}`"),
        );
    }
}

/// The entity's key pattern, with its fields marked as key fields. Every
/// entity needs one (it is the entity's identity); a record has none.
pub(super) fn entity_key(
    cx: &Ctxt,
    c: &Container<'_>,
    derive: Derive,
    fields: &mut [FieldModel<'_>],
    ast_fields: &[ast::Field<'_>],
) -> Option<KeyModel> {
    let key = match (derive, &c.key) {
        // A `key` with an invalid value was already reported where it is.
        (Derive::Entity, None) if c.key_given => None,
        (Derive::Entity, None) => {
            cx.error_spanned_by(
                c.ident,
                format!("missing key pattern: add #[redis({KEY} = \"...\")] with the key fields in braces, e.g. #[redis({KEY} = \"user:{{id}}\")]"),
            );
            None
        }
        (Derive::Entity, Some(lit)) => key_model(cx, lit, fields, KeyUse::Entity),
        (Derive::Record, _) => None,
    }?;
    for i in key.field_indexes() {
        fields[i].is_key = true;
    }
    check_key_fields(cx, fields, ast_fields);
    Some(key)
}

/// The key is built from the key fields' plain values: such a field must
/// be stored (not `skip`) and must not be `json`. Reported on the flag,
/// which is what to remove.
fn check_key_fields(cx: &Ctxt, fields: &[FieldModel<'_>], ast_fields: &[ast::Field<'_>]) {
    for (model, field) in fields.iter().zip(ast_fields) {
        if !model.is_key {
            continue;
        }
        if let Some(skip) = &field.skip {
            cx.error_spanned_by(
                skip,
                format!(
                    "key field `{}` cannot be skipped: the key is built from it",
                    field.ident
                ),
            );
        }
        if let Some(json) = &field.json {
            cx.error_spanned_by(
                json,
                format!(
                    "key field `{}` cannot be `{JSON}`: key values must be plain text or integers",
                    field.ident
                ),
            );
        }
    }
}

/// The one `expires_at` field. Two expiry rules would fight, so it excludes
/// a second `expires_at` and `ttl`; a record has no key to expire; and the
/// expiry is computed from the stored value, so it cannot be skipped.
pub(super) fn expires_at_field(
    cx: &Ctxt,
    c: &Container<'_>,
    derive: Derive,
    fields: &[FieldModel<'_>],
    ast_fields: &[ast::Field<'_>],
) -> Option<usize> {
    let mut expires_at = None;
    for (i, field) in ast_fields.iter().enumerate() {
        let Some(path) = &field.expires_at else {
            continue;
        };
        if expires_at.is_some() {
            cx.error_spanned_by(path, format!("only one field can be `{EXPIRES_AT}`"));
        } else if let Some(ttl) = &c.ttl {
            cx.error_spanned_by(
                path,
                format!(
                    "`{EXPIRES_AT}` conflicts with {TTL} = {:?}; keep one way of expiring",
                    ttl.value()
                ),
            );
        } else if derive == Derive::Record {
            cx.error_spanned_by(
                path,
                format!("`{EXPIRES_AT}` applies to stored entities: use #[derive(RedisEntity)]"),
            );
        } else if fields[i].skip {
            cx.error_spanned_by(path, format!("a skipped field cannot be `{EXPIRES_AT}`"));
        } else {
            expires_at = Some(i);
        }
    }
    expires_at
}

/// The one `version` field: stored, not part of the key, a plain (not
/// optional) integer, since every write stores the previous value plus one.
pub(super) fn version_field(
    cx: &Ctxt,
    derive: Derive,
    fields: &[FieldModel<'_>],
    ast_fields: &[ast::Field<'_>],
) -> Option<usize> {
    let mut version = None;
    for (i, field) in ast_fields.iter().enumerate() {
        let Some(path) = &field.version else {
            continue;
        };
        let f = &fields[i];
        let ty = f.ty;
        let type_name = quote::quote!(#ty).to_string().replace(' ', "");
        if version.is_some() {
            cx.error_spanned_by(path, format!("only one field can be `{VERSION}`"));
        } else if derive == Derive::Record {
            cx.error_spanned_by(
                path,
                format!("`{VERSION}` applies to stored entities: use #[derive(RedisEntity)]"),
            );
        } else if f.skip {
            cx.error_spanned_by(
                path,
                format!("a skipped field cannot be `{VERSION}`: the version is stored"),
            );
        } else if f.is_key {
            cx.error_spanned_by(
                path,
                format!(
                    "key field `{}` cannot be `{VERSION}`: a version changes on every write; add a separate field such as `version: u64`",
                    f.ident
                ),
            );
        } else if f.option_of.is_some() || !is_integer(ty) {
            cx.error_spanned_by(
                ty,
                format!(
                    "`{VERSION}` must be a plain integer type such as `u64`, found `{type_name}` (a new entity gets version 1)"
                ),
            );
        } else {
            version = Some(i);
        }
    }
    version
}

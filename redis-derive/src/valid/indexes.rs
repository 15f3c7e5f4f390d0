//! Indexes: each one's key, score or unique field and name, no two on one
//! key or with one name, and no generated method named twice.

use std::collections::{BTreeMap, BTreeSet};

use crate::ast::{self, Container, IndexKind};
use crate::ctxt::Ctxt;
use crate::model::{FieldModel, IndexModel, KeyModel, is_float, unraw};
use crate::symbol::{FIELD, JSON, KEY, NAME, SCORE, Symbol};

use super::keys::{KeyUse, key_model};
use super::literals::{field_named, identifier_literal, reject_option};

/// Every index. Two indexes on one key pattern would write into the same
/// Redis key; two with one name would generate the same query methods.
pub(super) fn index_models(
    cx: &Ctxt,
    c: &Container<'_>,
    fields: &[FieldModel<'_>],
) -> Vec<IndexModel> {
    let mut indexes = Vec::new();
    // A key is taken even by an index then dropped for its name.
    let mut keys = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut methods = MethodNames::new(c);
    for attr in &c.indexes {
        let Some(index) = index_model(cx, attr, fields) else {
            continue;
        };
        if !keys.insert(index.key.source.clone()) {
            let blame: &dyn quote::ToTokens = match &attr.key {
                Some(key) => key,
                None => &attr.path,
            };
            cx.error_spanned_by(
                blame,
                format!(
                    "two indexes use the key pattern {:?}; each index needs its own key",
                    index.key.source
                ),
            );
            continue;
        }
        if !names.insert(index.name.clone()) {
            cx.error_spanned_by(
                &attr.path,
                format!(
                    "two indexes are named `{}`; give one a different name with {NAME} = \"...\"",
                    index.name
                ),
            );
            continue;
        }
        if !methods.claim(cx, attr, &index) {
            continue;
        }
        indexes.push(index);
    }
    indexes
}

/// Names that become method names: the inherent methods every entity gets,
/// each log's accessor, and each index's query methods. Two equal names
/// would be two definitions of one method, which rustc reports on the
/// derive with no hint of which attribute to change.
struct MethodNames {
    /// Method name → what generates it, for the message.
    taken: BTreeMap<String, String>,
}

/// The inherent methods `expand.rs` generates on every entity.
const ENTITY_METHODS: &[&str] = &[
    "key_for",
    "create",
    "save",
    "update",
    "update_refreshing_ttl",
    "get",
    "get_many",
    "patch",
    "patch_refreshing_ttl",
    "patch_if",
    "delete",
    "exists",
    "ttl",
    "expire",
    "persist",
];

impl MethodNames {
    fn new(c: &Container<'_>) -> Self {
        let mut taken: BTreeMap<String, String> = ENTITY_METHODS
            .iter()
            .map(|m| (m.to_string(), "a method every entity has".to_string()))
            .collect();
        for log in &c.logs {
            if let Some(name) = &log.name {
                let method = format!("{}_log", name.value());
                let what = format!("the accessor of log `{}`", name.value());
                taken.insert(method, what);
            }
        }
        MethodNames { taken }
    }

    /// The query methods of `index`, suffix and what each is.
    fn of(index: &IndexModel) -> Vec<(String, &'static str)> {
        let base = &index.name;
        let mut out = vec![(base.clone(), "query")];
        if index.kind != IndexKind::Unique {
            out.push((format!("{base}_ids"), "ids query"));
            out.push((format!("{base}_count"), "count query"));
            out.push((format!("{base}_after"), "cursor page"));
            out.push((format!("{base}_ids_after"), "ids cursor page"));
            out.push((format!("delete_{base}"), "bulk delete"));
        }
        if index.kind == IndexKind::Sorted {
            out.push((format!("{base}_in_range"), "range query"));
            out.push((format!("{base}_ids_in_range"), "ids range query"));
            out.push((format!("{base}_where"), "filtered query"));
            out.push((format!("{base}_where_count"), "filtered count"));
        }
        out
    }

    /// Takes the query methods of `index`; `false` after reporting one
    /// that is already taken.
    fn claim(&mut self, cx: &Ctxt, attr: &ast::IndexAttr, index: &IndexModel) -> bool {
        let methods = Self::of(index);
        for (method, _) in &methods {
            if let Some(owner) = self.taken.get(method) {
                let blame: &dyn quote::ToTokens = match &attr.name {
                    Some(lit) => lit,
                    None => &attr.path,
                };
                cx.error_spanned_by(
                    blame,
                    format!(
                        "index `{}` would generate method `{method}`, which is already {owner}; give the index another name with {NAME} = \"...\"",
                        index.name
                    ),
                );
                return false;
            }
        }
        for (method, what) in methods {
            let owner = format!("the {what} of index `{}`", index.name);
            self.taken.insert(method, owner);
        }
        true
    }
}

fn index_model(cx: &Ctxt, attr: &ast::IndexAttr, fields: &[FieldModel<'_>]) -> Option<IndexModel> {
    let Some(key_lit) = &attr.key else {
        cx.error_spanned_by(
            &attr.path,
            format!(
                "`{}` needs a key, e.g. {KEY} = \"jobs:user:{{user_id}}\"",
                attr.kind.attr_name()
            ),
        );
        return None;
    };
    let key = key_model(cx, key_lit, fields, KeyUse::Index);
    let value_field = match attr.kind {
        IndexKind::Set => None,
        IndexKind::Sorted => {
            let needs = format!("a score field, e.g. {SCORE} = \"created_at\"");
            Some(value_field(
                cx,
                attr,
                attr.score.as_ref(),
                fields,
                SCORE,
                &needs,
            )?)
        }
        IndexKind::Unique => {
            let needs = format!("the unique field, e.g. {FIELD} = \"email\"");
            let field = value_field(cx, attr, attr.field.as_ref(), fields, FIELD, &needs)?;
            if is_float(fields[field].value_ty()) {
                cx.error_spanned_by(
                    fields[field].ty,
                    format!(
                        "field `{}` is a float, so it cannot be the {FIELD} of a unique index: \
                         `0.0` and `-0.0` are equal but would be two values, and a computed \
                         `0.1 + 0.2` would not find `0.3`; make it an integer (e.g. cents as \
                         `i64`) or a `String`",
                        unraw(fields[field].ident)
                    ),
                );
                return None;
            }
            Some(field)
        }
    };
    let key = key?;
    let name = match &attr.name {
        Some(lit) => identifier_literal(cx, lit, "an index name", "by_user")?,
        None => default_index_name(cx, attr.kind, key_lit, &key, value_field, fields)?,
    };
    Some(IndexModel {
        kind: attr.kind,
        name,
        key,
        value_field,
        cross_slot: attr.cross_slot.is_some(),
    })
}

/// `by_<key fields>`, plus `_and_<field>` for a unique index: the query
/// methods' stem when no `name` is given. A key without fields gives none.
fn default_index_name(
    cx: &Ctxt,
    kind: IndexKind,
    key_lit: &syn::LitStr,
    key: &KeyModel,
    value_field: Option<usize>,
    fields: &[FieldModel<'_>],
) -> Option<String> {
    let mut parts: Vec<String> = key
        .field_indexes()
        .map(|i| unraw(fields[i].ident))
        .collect();
    if let (IndexKind::Unique, Some(i)) = (kind, value_field) {
        parts.push(unraw(fields[i].ident));
    }
    if parts.is_empty() {
        cx.error_spanned_by(
            key_lit,
            format!("cannot derive a name for this index: add {NAME} = \"...\""),
        );
        return None;
    }
    Some(format!("by_{}", parts.join("_and_")))
}

/// The field a sorted index scores by or a unique index keeps unique
/// (`setting` says which; `needs` describes it when it is missing). Every
/// entity is placed by its stored plain value, so the field must have one.
fn value_field(
    cx: &Ctxt,
    attr: &ast::IndexAttr,
    lit: Option<&syn::LitStr>,
    fields: &[FieldModel<'_>],
    setting: Symbol,
    needs: &str,
) -> Option<usize> {
    let Some(lit) = lit else {
        cx.error_spanned_by(
            &attr.path,
            format!("`{}` needs {needs}", attr.kind.attr_name()),
        );
        return None;
    };
    let name = lit.value();
    let missing = format!("`{setting} = \"{name}\"` names no field");
    let i = field_named(cx, lit, fields, &name, &missing)?;
    let field = &fields[i];
    let role = format!("is the {setting} of an index");
    if reject_option(cx, field, &role, "every entity needs a value") {
        return None;
    }
    if field.skip || field.json {
        cx.error_spanned_by(
            lit,
            format!(
                "field `{name}` is skipped or `{JSON}`, so it cannot be the {setting} of an index"
            ),
        );
        return None;
    }
    Some(i)
}

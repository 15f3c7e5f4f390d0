//! Phase 2: judge the attribute model and resolve it into what expansion
//! needs: hash names, key segments bound to fields, indexes, TTL.
//!
//! Every check records a spanned error and carries on, so all mistakes are
//! reported together.

use std::collections::BTreeMap;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use redis_schema::{KeyPattern, KeySegment, RenameRule};

use crate::ast::{self, Container, Derive, IndexKind, option_inner};
use crate::ctxt::Ctxt;

pub(crate) struct Model<'a> {
    pub(crate) ident: &'a syn::Ident,
    pub(crate) vis: &'a syn::Visibility,
    /// Path to the runtime crate, `::redis_runtime` unless overridden.
    pub(crate) krate: TokenStream,
    pub(crate) fields: Vec<FieldModel<'a>>,
    pub(crate) key: Option<KeyModel>,
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) indexes: Vec<IndexModel>,
    pub(crate) stream: Option<(String, u64)>,
    pub(crate) patch_ident: syn::Ident,
    pub(crate) expires_at: Option<usize>,
    pub(crate) logs: Vec<LogModel>,
}

/// A per-entity append log (`log(name = "output", key = "job:{id}:output")`).
pub(crate) struct LogModel {
    /// Method name stem: `<name>_log`.
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) max_len: Option<u64>,
}

pub(crate) struct FieldModel<'a> {
    pub(crate) ident: &'a syn::Ident,
    pub(crate) ty: &'a syn::Type,
    /// `T` of an `Option<T>` field.
    pub(crate) option_of: Option<&'a syn::Type>,
    pub(crate) hash_name: String,
    pub(crate) skip: bool,
    pub(crate) default: bool,
    pub(crate) json: bool,
    pub(crate) is_key: bool,
}

impl FieldModel<'_> {
    /// The type stored in the hash (`T` for `Option<T>`).
    pub(crate) fn value_ty(&self) -> &syn::Type {
        self.option_of.unwrap_or(self.ty)
    }
}

#[derive(Clone)]
pub(crate) enum Segment {
    Literal(String),
    /// Index into `Model::fields`.
    Field(usize),
}

pub(crate) struct KeyModel {
    pub(crate) source: String,
    pub(crate) segments: Vec<Segment>,
}

impl KeyModel {
    pub(crate) fn field_indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Field(i) => Some(*i),
            Segment::Literal(_) => None,
        })
    }
}

pub(crate) struct IndexModel {
    pub(crate) kind: IndexKind,
    pub(crate) name: String,
    pub(crate) key: KeyModel,
    /// Score field (sorted) or unique field (unique).
    pub(crate) value_field: Option<usize>,
}

pub(crate) fn check<'a>(cx: &Ctxt, c: &Container<'a>, derive: Derive) -> Option<Model<'a>> {
    let rule = match &c.rename_all {
        None => RenameRule::default(),
        Some(lit) => match RenameRule::from_name(&lit.value()) {
            Some(rule) => rule,
            None => {
                cx.error_spanned_by(
                    lit,
                    format!(
                        "unknown rename rule {:?}; use one of: {}",
                        lit.value(),
                        RenameRule::ALL_NAMES.join(", ")
                    ),
                );
                RenameRule::default()
            }
        },
    };
    let krate = match &c.krate {
        None => quote!(::redis_runtime),
        Some(lit) => match lit.parse::<syn::Path>() {
            Ok(path) => quote!(#path),
            Err(_) => {
                cx.error_spanned_by(lit, "`crate` takes a path, e.g. crate = \"my_runtime\"");
                quote!(::redis_runtime)
            }
        },
    };
    let Some(ast_fields) = &c.fields else {
        return None;
    };
    let mut fields: Vec<FieldModel<'a>> = ast_fields
        .iter()
        .map(|f| field_model(cx, f, rule))
        .collect();

    // Two fields must never share a hash field.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (model, field)) in fields.iter().zip(ast_fields).enumerate() {
        if model.skip {
            continue;
        }
        if let Some(&first) = seen.get(&model.hash_name) {
            let blame: &dyn quote::ToTokens = match &field.rename {
                Some(lit) => lit,
                None => field.ident,
            };
            // Say where the name came from when a rule, not a `rename`, made it.
            let via_rule = match (&c.rename_all, &ast_fields[first].rename, &field.rename) {
                (Some(rule), None, _) | (Some(rule), _, None) => {
                    format!(" under rename_all = {:?}", rule.value())
                }
                _ => String::new(),
            };
            cx.error_spanned_by(
                blame,
                format!(
                    "fields `{}` and `{}` are both stored as hash field {:?}{via_rule}; rename one with #[redis(rename = \"...\")]",
                    fields[first].ident, model.ident, model.hash_name
                ),
            );
        } else {
            seen.insert(model.hash_name.clone(), i);
        }
    }

    let key = match (derive, &c.key) {
        // A `key` with an invalid value was already reported where it is.
        (Derive::Entity, None) if c.key_given => None,
        (Derive::Entity, None) => {
            cx.error_spanned_by(
                c.ident,
                "missing key pattern: add #[redis(key = \"...\")] with the key fields in braces, e.g. #[redis(key = \"user:{id}\")]",
            );
            None
        }
        (Derive::Entity, Some(lit)) => key_model(cx, lit, &fields, ast_fields, KeyUse::Entity),
        (Derive::Record, _) => None,
    };
    if let Some(key) = &key {
        for i in key.field_indexes() {
            fields[i].is_key = true;
        }
        for (i, field) in ast_fields.iter().enumerate() {
            if !fields[i].is_key {
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
                cx.error_spanned_by(json, format!("key field `{}` cannot be `json`: key values must be plain text or integers", field.ident));
            }
        }
    }

    let ttl_ms = c.ttl.as_ref().and_then(|lit| ttl_literal(cx, lit));

    let mut expires_at = None;
    for (i, field) in ast_fields.iter().enumerate() {
        if let Some(path) = &field.expires_at {
            if expires_at.is_some() {
                cx.error_spanned_by(path, "only one field can be `expires_at`");
            } else if let Some(ttl) = &c.ttl {
                cx.error_spanned_by(
                    path,
                    format!(
                        "`expires_at` conflicts with ttl = {:?}; keep one way of expiring",
                        ttl.value()
                    ),
                );
            } else if derive == Derive::Record {
                cx.error_spanned_by(
                    path,
                    "`expires_at` applies to stored entities: use #[derive(RedisEntity)]",
                );
            } else if fields[i].skip {
                cx.error_spanned_by(path, "a skipped field cannot be `expires_at`");
            } else {
                expires_at = Some(i);
            }
        }
    }

    let mut indexes = Vec::new();
    let mut index_keys: BTreeMap<String, ()> = BTreeMap::new();
    let mut index_names: BTreeMap<String, ()> = BTreeMap::new();
    for attr in &c.indexes {
        let Some(index) = index_model(cx, attr, &fields, ast_fields) else {
            continue;
        };
        if index_keys.insert(index.key.source.clone(), ()).is_some() {
            let blame = attr.key.as_ref().map(|k| quote!(#k)).unwrap_or_else(|| {
                let p = &attr.path;
                quote!(#p)
            });
            cx.error_spanned_by(
                blame,
                format!(
                    "two indexes use the key pattern {:?}; each index needs its own key",
                    index.key.source
                ),
            );
            continue;
        }
        if index_names.insert(index.name.clone(), ()).is_some() {
            let path = &attr.path;
            cx.error_spanned_by(
                path,
                format!(
                    "two indexes are named `{}`; give one a different name with name = \"...\"",
                    index.name
                ),
            );
            continue;
        }
        indexes.push(index);
    }

    let stream = match (&c.stream, &c.stream_maxlen) {
        (Some(lit), maxlen) => {
            let name = lit.value();
            if name.is_empty() || name.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                cx.error_spanned_by(lit, "a stream name must be non-empty and free of whitespace, e.g. stream = \"jobs:stream\"");
            }
            let maxlen = match maxlen {
                Some(lit) => {
                    match lit.base10_parse::<u64>() {
                        Ok(0) | Err(_) => {
                            cx.error_spanned_by(lit, "stream_maxlen must be a positive integer, e.g. stream_maxlen = 10000");
                            0
                        }
                        Ok(n) => n,
                    }
                }
                None => 0,
            };
            Some((name, maxlen))
        }
        (None, Some(lit)) => {
            cx.error_spanned_by(lit, "stream_maxlen needs a stream: add stream = \"...\"");
            None
        }
        (None, None) => None,
    };

    let patch_ident = match &c.patch {
        Some(lit) => match lit.parse::<syn::Ident>() {
            Ok(ident) => ident,
            Err(_) => {
                cx.error_spanned_by(
                    lit,
                    "`patch` takes a type name, e.g. patch = \"UserChanges\"",
                );
                format_ident!("{}Patch", c.ident)
            }
        },
        None => format_ident!("{}Patch", c.ident),
    };

    let logs = c
        .logs
        .iter()
        .filter_map(|log| log_model(cx, log, &fields, key.as_ref()))
        .collect::<Vec<_>>();
    let mut log_names: Vec<&str> = Vec::new();
    for (log, attr) in logs.iter().zip(&c.logs) {
        if log_names.contains(&log.name.as_str()) {
            cx.error_spanned_by(
                &attr.path,
                format!("two logs are named `{}`; give each its own name", log.name),
            );
        }
        log_names.push(&log.name);
    }

    if cx.has_errors() {
        return None;
    }
    Some(Model {
        ident: c.ident,
        vis: c.vis,
        krate,
        fields,
        key,
        ttl_ms,
        indexes,
        stream,
        patch_ident,
        expires_at,
        logs,
    })
}

/// A name that becomes part of a generated method name, or `None` after
/// reporting that it is not a Rust identifier.
fn identifier_literal(cx: &Ctxt, lit: &syn::LitStr, what: &str, example: &str) -> Option<String> {
    let name = lit.value();
    if syn::parse_str::<syn::Ident>(&name).is_err() {
        cx.error_spanned_by(
            lit,
            format!("{what} must be a Rust identifier, e.g. name = \"{example}\""),
        );
        return None;
    }
    Some(name)
}

/// A TTL literal in milliseconds, or `None` after reporting why it is bad.
fn ttl_literal(cx: &Ctxt, lit: &syn::LitStr) -> Option<u64> {
    match redis_schema::duration::parse_ttl_millis(&lit.value()) {
        Ok(ms) => Some(ms),
        Err(e) => {
            cx.error_spanned_by(lit, format!("invalid ttl {:?}: {e}", lit.value()));
            None
        }
    }
}

/// Checks one `log(...)`: its key pattern must have exactly one
/// placeholder, naming a key field, so the log is addressed by the
/// entity's id.
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
                "`log` needs a name for its accessor, e.g. name = \"output\" (gives `output_log`)",
            );
            return None;
        }
        Some(lit) => identifier_literal(cx, lit, "a log name", "output")?,
    };
    let Some(key_lit) = &attr.key else {
        cx.error_spanned_by(
            path,
            "`log` needs a key pattern, e.g. key = \"job:{id}:output\"",
        );
        return None;
    };
    let source = key_lit.value();
    let pattern = match KeyPattern::parse(&source) {
        Ok(pattern) => pattern,
        Err(e) => {
            cx.error_spanned_by(
                key_lit,
                format!("invalid log key pattern {source:?}: {}", e.message()),
            );
            return None;
        }
    };
    let placeholders: Vec<&str> = pattern.placeholders().collect();
    let key_fields: Vec<String> = entity_key
        .map(|k| k.field_indexes().map(|i| unraw(fields[i].ident)).collect())
        .unwrap_or_default();
    match placeholders.as_slice() {
        [one] if key_fields.iter().any(|k| k == one) => {}
        _ => {
            cx.error_spanned_by(
                key_lit,
                format!(
                    "a log key needs exactly one placeholder naming a key field ({}), e.g. \"job:{{id}}:output\"",
                    key_fields.join(", ")
                ),
            );
            return None;
        }
    }
    // Both settings are checked, so one compile reports both mistakes.
    let mut ok = true;
    let ttl_ms = match &attr.ttl {
        None => None,
        Some(lit) => {
            let ms = ttl_literal(cx, lit);
            ok &= ms.is_some();
            ms
        }
    };
    let max_len = match &attr.max_len {
        None => None,
        Some(lit) => match lit.base10_parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                cx.error_spanned_by(
                    lit,
                    "max_len must be a positive integer, e.g. max_len = 10000",
                );
                ok = false;
                None
            }
        },
    };
    ok.then_some(LogModel {
        name,
        key: source,
        ttl_ms,
        max_len,
    })
}

fn field_model<'a>(cx: &Ctxt, field: &ast::Field<'a>, rule: RenameRule) -> FieldModel<'a> {
    let hash_name = match &field.rename {
        Some(lit) => {
            let name = lit.value();
            if name.is_empty() {
                cx.error_spanned_by(
                    lit,
                    "a hash field name cannot be empty; write a name, e.g. rename = \"createdAt\", or remove `rename`",
                );
            }
            name
        }
        None => rule.apply(&field.ident.to_string()),
    };
    if let Some(skip) = &field.skip {
        for (other, name) in [(&field.rename.as_ref().map(|l| quote!(#l)), "rename")] {
            if other.is_some() {
                cx.error_spanned_by(
                    skip,
                    format!("a skipped field is not stored, so `{name}` has no effect; remove one"),
                );
            }
        }
        if field.json.is_some() || field.default.is_some() {
            cx.error_spanned_by(
                skip,
                "a skipped field is not stored; remove `json`/`default` or `skip`",
            );
        }
    }
    FieldModel {
        ident: field.ident,
        ty: field.ty,
        option_of: option_inner(field.ty),
        hash_name,
        skip: field.skip.is_some(),
        default: field.default.is_some(),
        json: field.json.is_some(),
        is_key: false,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyUse {
    Entity,
    Index,
}

/// Parses a key pattern literal and binds each placeholder to a field.
fn key_model(
    cx: &Ctxt,
    lit: &syn::LitStr,
    fields: &[FieldModel<'_>],
    ast_fields: &[ast::Field<'_>],
    usage: KeyUse,
) -> Option<KeyModel> {
    let source = lit.value();
    let pattern = match KeyPattern::parse(&source) {
        Ok(pattern) => pattern,
        Err(e) => {
            cx.error_spanned_by(
                lit,
                format!("invalid key pattern {source:?}: {}", e.message()),
            );
            return None;
        }
    };
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
            KeySegment::Placeholder(name) => {
                let found = fields.iter().position(|f| unraw(f.ident) == *name);
                match found {
                    None => {
                        let names: Vec<String> = fields
                            .iter()
                            .filter(|f| !f.skip)
                            .map(|f| unraw(f.ident))
                            .collect();
                        cx.error_spanned_by(
                            lit,
                            format!(
                                "placeholder `{{{name}}}` names no field; fields are: {}",
                                names.join(", ")
                            ),
                        );
                        ok = false;
                    }
                    Some(i) => {
                        let field = &fields[i];
                        if field.option_of.is_some() {
                            cx.error_spanned_by(
                                ast_fields[i].ty,
                                format!(
                                    "field `{name}` fills a key pattern, so it cannot be an Option: a key needs every value; make it `{}`",
                                    quote_type(field.value_ty())
                                ),
                            );
                            ok = false;
                        } else if usage == KeyUse::Entity {
                            // `skip`/`json` on an entity key field are
                            // reported on the flag itself by `check`.
                        } else if field.skip {
                            cx.error_spanned_by(lit, format!("index key uses `{{{name}}}`, but that field is skipped and never stored"));
                            ok = false;
                        } else if field.json {
                            cx.error_spanned_by(lit, format!("index key uses `{{{name}}}`, but that field is `json`: key values must be plain text or integers"));
                            ok = false;
                        }
                        segments.push(Segment::Field(i));
                    }
                }
            }
        }
    }
    ok.then_some(KeyModel { source, segments })
}

fn index_model(
    cx: &Ctxt,
    attr: &ast::IndexAttr,
    fields: &[FieldModel<'_>],
    ast_fields: &[ast::Field<'_>],
) -> Option<IndexModel> {
    let path = &attr.path;
    let Some(key_lit) = &attr.key else {
        cx.error_spanned_by(
            path,
            format!(
                "`{}` needs a key, e.g. key = \"jobs:user:{{user_id}}\"",
                attr.kind.attr_name()
            ),
        );
        return None;
    };
    let key = key_model(cx, key_lit, fields, ast_fields, KeyUse::Index);
    let value_field = match attr.kind {
        IndexKind::Set => None,
        IndexKind::Sorted => match &attr.score {
            None => {
                cx.error_spanned_by(
                    path,
                    "`sorted_index` needs a score field, e.g. score = \"created_at\"",
                );
                return None;
            }
            Some(lit) => Some(value_field(cx, lit, fields, ast_fields, "score")?),
        },
        IndexKind::Unique => match &attr.field {
            None => {
                cx.error_spanned_by(
                    path,
                    "`unique` needs the unique field, e.g. field = \"email\"",
                );
                return None;
            }
            Some(lit) => Some(value_field(cx, lit, fields, ast_fields, "field")?),
        },
    };
    let key = key?;
    let name = match &attr.name {
        Some(lit) => identifier_literal(cx, lit, "an index name", "by_user")?,
        None => {
            let mut parts: Vec<String> = key
                .field_indexes()
                .map(|i| unraw(fields[i].ident))
                .collect();
            if let (IndexKind::Unique, Some(i)) = (attr.kind, value_field) {
                parts.push(unraw(fields[i].ident));
            }
            if parts.is_empty() {
                cx.error_spanned_by(
                    key_lit,
                    "cannot derive a name for this index: add name = \"...\"",
                );
                return None;
            }
            format!("by_{}", parts.join("_and_"))
        }
    };
    Some(IndexModel {
        kind: attr.kind,
        name,
        key,
        value_field,
    })
}

fn value_field(
    cx: &Ctxt,
    lit: &syn::LitStr,
    fields: &[FieldModel<'_>],
    ast_fields: &[ast::Field<'_>],
    what: &str,
) -> Option<usize> {
    let name = lit.value();
    let Some(i) = fields.iter().position(|f| unraw(f.ident) == name) else {
        let names: Vec<String> = fields
            .iter()
            .filter(|f| !f.skip)
            .map(|f| unraw(f.ident))
            .collect();
        cx.error_spanned_by(
            lit,
            format!(
                "{what} field `{name}` does not exist; fields are: {}",
                names.join(", ")
            ),
        );
        return None;
    };
    let field = &fields[i];
    if field.option_of.is_some() {
        cx.error_spanned_by(
            ast_fields[i].ty,
            format!("field `{name}` is the {what} of an index, so it cannot be an Option: every entity needs a value"),
        );
        return None;
    }
    if field.skip || field.json {
        cx.error_spanned_by(
            lit,
            format!("field `{name}` is skipped or `json`, so it cannot be the {what} of an index"),
        );
        return None;
    }
    Some(i)
}

pub(crate) fn unraw(ident: &syn::Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
}

fn quote_type(ty: &syn::Type) -> String {
    quote!(#ty).to_string().replace(' ', "")
}

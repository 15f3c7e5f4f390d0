//! Phase 1: read `#[redis(...)]` attributes into a plain model.
//!
//! Nothing is judged here beyond the attribute syntax itself; every problem
//! is recorded in the [`Ctxt`] and parsing carries on, so a single compile
//! reports all mistakes. Semantic checks live in `valid.rs`.

use syn::meta::ParseNestedMeta;

use crate::ctxt::Ctxt;

/// What the derive is asked to produce.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Derive {
    /// A stored entity with a key (`RedisEntity`).
    Entity,
    /// A bare record: a stream message or nested value (`RedisRecord`).
    Record,
}

impl Derive {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Derive::Entity => "RedisEntity",
            Derive::Record => "RedisRecord",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexKind {
    Set,
    Sorted,
    Unique,
}

impl IndexKind {
    pub(crate) fn attr_name(self) -> &'static str {
        match self {
            IndexKind::Set => "index",
            IndexKind::Sorted => "sorted_index",
            IndexKind::Unique => "unique",
        }
    }
}

/// One `index(...)`, `sorted_index(...)` or `unique(...)` attribute.
pub(crate) struct IndexAttr {
    pub(crate) kind: IndexKind,
    /// The attribute's path, for errors about the whole index.
    pub(crate) path: syn::Path,
    pub(crate) key: Option<syn::LitStr>,
    pub(crate) score: Option<syn::LitStr>,
    pub(crate) field: Option<syn::LitStr>,
    pub(crate) name: Option<syn::LitStr>,
}

/// One `log(...)` attribute: a per-entity append log.
pub(crate) struct LogAttr {
    /// The attribute's path, for errors about the whole log.
    pub(crate) path: syn::Path,
    pub(crate) name: Option<syn::LitStr>,
    pub(crate) key: Option<syn::LitStr>,
    pub(crate) ttl: Option<syn::LitStr>,
    pub(crate) max_len: Option<syn::LitInt>,
}

pub(crate) struct Field<'a> {
    pub(crate) ident: &'a syn::Ident,
    pub(crate) ty: &'a syn::Type,
    pub(crate) rename: Option<syn::LitStr>,
    pub(crate) skip: Option<syn::Path>,
    pub(crate) default: Option<syn::Path>,
    pub(crate) json: Option<syn::Path>,
    pub(crate) expires_at: Option<syn::Path>,
}

pub(crate) struct Container<'a> {
    pub(crate) ident: &'a syn::Ident,
    pub(crate) vis: &'a syn::Visibility,
    pub(crate) key: Option<syn::LitStr>,
    /// Whether a `key` attribute was written at all, even with an invalid
    /// value (so a bad value is not also reported as a missing key).
    pub(crate) key_given: bool,
    pub(crate) ttl: Option<syn::LitStr>,
    pub(crate) rename_all: Option<syn::LitStr>,
    pub(crate) krate: Option<syn::LitStr>,
    pub(crate) stream: Option<syn::LitStr>,
    pub(crate) stream_maxlen: Option<syn::LitInt>,
    pub(crate) patch: Option<syn::LitStr>,
    pub(crate) indexes: Vec<IndexAttr>,
    pub(crate) logs: Vec<LogAttr>,
    /// `None` when the input is not a struct with named fields.
    pub(crate) fields: Option<Vec<Field<'a>>>,
}

const CONTAINER_KEYS: &str =
    "key, ttl, rename_all, crate, stream, stream_maxlen, patch, index, sorted_index, unique, log";
const RECORD_KEYS: &str = "rename_all, crate";
const FIELD_KEYS: &str = "rename, skip, default, json, expires_at";

impl<'a> Container<'a> {
    pub(crate) fn from_ast(cx: &Ctxt, input: &'a syn::DeriveInput, derive: Derive) -> Self {
        let mut container = Container {
            ident: &input.ident,
            vis: &input.vis,
            key: None,
            key_given: false,
            ttl: None,
            rename_all: None,
            krate: None,
            stream: None,
            stream_maxlen: None,
            patch: None,
            indexes: Vec::new(),
            logs: Vec::new(),
            fields: None,
        };
        for attr in redis_attrs(&input.attrs) {
            let result = attr.parse_nested_meta(|meta| {
                container.read_container_key(cx, &meta, derive);
                Ok(())
            });
            if let Err(e) = result {
                cx.syn_error(e);
            }
        }
        if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
            cx.error_spanned_by(
                &input.generics,
                format!(
                    "#[derive({})] does not support generic types; \
                     define a concrete struct (type parameters and lifetimes are not stored)",
                    derive.name()
                ),
            );
        }
        match &input.data {
            syn::Data::Struct(syn::DataStruct {
                fields: syn::Fields::Named(named),
                ..
            }) => {
                container.fields = Some(
                    named
                        .named
                        .iter()
                        .filter_map(|f| f.ident.as_ref().map(|ident| Field::from_ast(cx, f, ident)))
                        .collect(),
                );
            }
            syn::Data::Struct(syn::DataStruct { fields, .. }) => {
                let what = match fields {
                    syn::Fields::Unit => "a unit struct",
                    _ => "a tuple struct",
                };
                cx.error_spanned_by(
                    &input.ident,
                    format!(
                        "#[derive({})] needs a struct with named fields, not {what}: \
                         each field becomes a named hash field",
                        derive.name()
                    ),
                );
            }
            syn::Data::Enum(e) => cx.error_spanned_by(
                e.enum_token,
                format!(
                    "#[derive({})] needs a struct with named fields; \
                     for a unit enum stored in one field use #[derive(RedisValue)]",
                    derive.name()
                ),
            ),
            syn::Data::Union(u) => cx.error_spanned_by(
                u.union_token,
                format!(
                    "#[derive({})] needs a struct with named fields, not a union",
                    derive.name()
                ),
            ),
        }
        container
    }

    fn read_container_key(&mut self, cx: &Ctxt, meta: &ParseNestedMeta<'_>, derive: Derive) {
        let name = path_name(&meta.path);
        let entity_only = !matches!(name.as_str(), "rename_all" | "crate");
        if derive == Derive::Record && entity_only {
            let known = CONTAINER_KEYS.split(", ").any(|k| k == name);
            let hint = if known {
                format!("`{name}` applies to stored entities: use #[derive(RedisEntity)]")
            } else {
                format!("unknown attribute `{name}`; #[derive(RedisRecord)] accepts: {RECORD_KEYS}")
            };
            cx.error_spanned_by(&meta.path, hint);
            skip_value(meta);
            return;
        }
        match name.as_str() {
            "key" => {
                self.key_given = true;
                set_once(
                    cx,
                    meta,
                    &mut self.key,
                    string_value(cx, meta, "key = \"user:{id}\""),
                );
            }
            "ttl" => set_once(
                cx,
                meta,
                &mut self.ttl,
                string_value(cx, meta, "ttl = \"7d\""),
            ),
            "rename_all" => set_once(
                cx,
                meta,
                &mut self.rename_all,
                string_value(cx, meta, "rename_all = \"camelCase\""),
            ),
            "crate" => set_once(
                cx,
                meta,
                &mut self.krate,
                string_value(cx, meta, "crate = \"my_runtime\""),
            ),
            "stream" => set_once(
                cx,
                meta,
                &mut self.stream,
                string_value(cx, meta, "stream = \"jobs:stream\""),
            ),
            "stream_maxlen" => set_once(
                cx,
                meta,
                &mut self.stream_maxlen,
                int_value(cx, meta, "stream_maxlen = 10000"),
            ),
            "patch" => set_once(
                cx,
                meta,
                &mut self.patch,
                string_value(cx, meta, "patch = \"UserChanges\""),
            ),
            "index" => self.read_index(cx, meta, IndexKind::Set),
            "sorted_index" => self.read_index(cx, meta, IndexKind::Sorted),
            "unique" => self.read_index(cx, meta, IndexKind::Unique),
            "log" => self.read_log(cx, meta),
            _ => {
                cx.error_spanned_by(
                    &meta.path,
                    format!("unknown attribute `{name}`; #[redis(...)] on a struct accepts: {CONTAINER_KEYS}"),
                );
                skip_value(meta);
            }
        }
    }

    fn read_log(&mut self, cx: &Ctxt, meta: &ParseNestedMeta<'_>) {
        let mut log = LogAttr {
            path: meta.path.clone(),
            name: None,
            key: None,
            ttl: None,
            max_len: None,
        };
        if !meta.input.peek(syn::token::Paren) {
            cx.error_spanned_by(
                &meta.path,
                "`log` needs its settings in parentheses, e.g. log(name = \"output\", key = \"job:{id}:output\", ttl = \"24h\")",
            );
            skip_value(meta);
            return;
        }
        let result = meta.parse_nested_meta(|inner| {
            let name = path_name(&inner.path);
            match name.as_str() {
                "name" => set_once(
                    cx,
                    &inner,
                    &mut log.name,
                    string_value(cx, &inner, "name = \"output\""),
                ),
                "key" => set_once(
                    cx,
                    &inner,
                    &mut log.key,
                    string_value(cx, &inner, "key = \"job:{id}:output\""),
                ),
                "ttl" => set_once(
                    cx,
                    &inner,
                    &mut log.ttl,
                    string_value(cx, &inner, "ttl = \"24h\""),
                ),
                "max_len" => set_once(
                    cx,
                    &inner,
                    &mut log.max_len,
                    int_value(cx, &inner, "max_len = 10000"),
                ),
                _ => {
                    cx.error_spanned_by(
                        &inner.path,
                        format!(
                            "unknown setting `{name}` in `log`; it accepts: name, key, ttl, max_len"
                        ),
                    );
                    skip_value(&inner);
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
        self.logs.push(log);
    }

    fn read_index(&mut self, cx: &Ctxt, meta: &ParseNestedMeta<'_>, kind: IndexKind) {
        let mut index = IndexAttr {
            kind,
            path: meta.path.clone(),
            key: None,
            score: None,
            field: None,
            name: None,
        };
        if !meta.input.peek(syn::token::Paren) {
            let example = match kind {
                IndexKind::Set => "index(key = \"jobs:status:{status}\")",
                IndexKind::Sorted => {
                    "sorted_index(key = \"jobs:user:{user_id}\", score = \"created_at\")"
                }
                IndexKind::Unique => "unique(key = \"users:by_email\", field = \"email\")",
            };
            cx.error_spanned_by(
                &meta.path,
                format!(
                    "`{}` needs its settings in parentheses, e.g. {example}",
                    kind.attr_name()
                ),
            );
            skip_value(meta);
            return;
        }
        let allowed = match kind {
            IndexKind::Set => "key, name",
            IndexKind::Sorted => "key, score, name",
            IndexKind::Unique => "key, field, name",
        };
        let result = meta.parse_nested_meta(|inner| {
            let name = path_name(&inner.path);
            match (name.as_str(), kind) {
                ("key", _) => set_once(
                    cx,
                    &inner,
                    &mut index.key,
                    string_value(cx, &inner, "key = \"jobs:user:{user_id}\""),
                ),
                ("name", _) => set_once(
                    cx,
                    &inner,
                    &mut index.name,
                    string_value(cx, &inner, "name = \"by_user\""),
                ),
                ("score", IndexKind::Sorted) => set_once(
                    cx,
                    &inner,
                    &mut index.score,
                    string_value(cx, &inner, "score = \"created_at\""),
                ),
                ("field", IndexKind::Unique) => set_once(
                    cx,
                    &inner,
                    &mut index.field,
                    string_value(cx, &inner, "field = \"email\""),
                ),
                _ => {
                    cx.error_spanned_by(
                        &inner.path,
                        format!(
                            "unknown setting `{name}` in `{}`; it accepts: {allowed}",
                            kind.attr_name()
                        ),
                    );
                    skip_value(&inner);
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
        self.indexes.push(index);
    }
}

impl<'a> Field<'a> {
    fn from_ast(cx: &Ctxt, field: &'a syn::Field, ident: &'a syn::Ident) -> Self {
        let mut out = Field {
            ident,
            ty: &field.ty,
            rename: None,
            skip: None,
            default: None,
            json: None,
            expires_at: None,
        };
        for attr in redis_attrs(&field.attrs) {
            let result = attr.parse_nested_meta(|meta| {
                let name = path_name(&meta.path);
                match name.as_str() {
                    "rename" => set_once(cx, &meta, &mut out.rename, string_value(cx, &meta, "rename = \"createdAt\"")),
                    "skip" => set_flag(cx, &meta, &mut out.skip),
                    "default" => set_flag(cx, &meta, &mut out.default),
                    "json" => set_flag(cx, &meta, &mut out.json),
                    "expires_at" => set_flag(cx, &meta, &mut out.expires_at),
                    _ => {
                        cx.error_spanned_by(
                            &meta.path,
                            format!("unknown attribute `{name}`; #[redis(...)] on a field accepts: {FIELD_KEYS}"),
                        );
                        skip_value(&meta);
                    }
                }
                Ok(())
            });
            if let Err(e) = result {
                cx.syn_error(e);
            }
        }
        out
    }
}

pub(crate) fn redis_attrs(attrs: &[syn::Attribute]) -> impl Iterator<Item = &syn::Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("redis"))
}

pub(crate) fn path_name(path: &syn::Path) -> String {
    quote::ToTokens::to_token_stream(path)
        .to_string()
        .replace(' ', "")
}

pub(crate) fn set_once<T>(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    slot: &mut Option<T>,
    value: Option<T>,
) {
    if let Some(value) = value {
        if slot.is_some() {
            cx.error_spanned_by(
                &meta.path,
                format!(
                    "duplicate attribute `{}`; give it once",
                    path_name(&meta.path)
                ),
            );
        } else {
            *slot = Some(value);
        }
    }
}

fn set_flag(cx: &Ctxt, meta: &ParseNestedMeta<'_>, slot: &mut Option<syn::Path>) {
    let name = path_name(&meta.path);
    if meta.input.peek(syn::Token![=]) || meta.input.peek(syn::token::Paren) {
        cx.error_spanned_by(
            &meta.path,
            format!("`{name}` takes no value; write #[redis({name})]"),
        );
        skip_value(meta);
        return;
    }
    if slot.is_some() {
        cx.error_spanned_by(
            &meta.path,
            format!("duplicate attribute `{name}`; give it once"),
        );
        return;
    }
    *slot = Some(meta.path.clone());
}

/// Consumes whatever follows a key (`= expr` or `(...)`), so parsing can go on.
pub(crate) fn skip_value(meta: &ParseNestedMeta<'_>) {
    if meta.input.peek(syn::Token![=]) {
        if let Ok(value) = meta.value() {
            let _ = value.parse::<syn::Expr>();
        }
    } else if meta.input.peek(syn::token::Paren) {
        let _ = meta.parse_nested_meta(|inner| {
            skip_value(&inner);
            Ok(())
        });
    }
}

fn value_expr(cx: &Ctxt, meta: &ParseNestedMeta<'_>, example: &str) -> Option<syn::Expr> {
    let name = path_name(&meta.path);
    if !meta.input.peek(syn::Token![=]) {
        cx.error_spanned_by(
            &meta.path,
            format!("`{name}` needs a value, e.g. {example}"),
        );
        skip_value(meta);
        return None;
    }
    match meta.value().and_then(|v| v.parse::<syn::Expr>()) {
        Ok(expr) => Some(expr),
        Err(e) => {
            cx.syn_error(e);
            None
        }
    }
}

pub(crate) fn string_value(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    example: &str,
) -> Option<syn::LitStr> {
    match value_expr(cx, meta, example)? {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Some(s),
        other => {
            cx.error_spanned_by(
                &other,
                format!(
                    "`{}` takes a string literal in double quotes, not {}; e.g. {example}",
                    path_name(&meta.path),
                    describe_expr(&other)
                ),
            );
            None
        }
    }
}

/// What a wrongly typed attribute value is, for "takes X, not Y" messages.
fn describe_expr(expr: &syn::Expr) -> &'static str {
    match expr {
        syn::Expr::Lit(syn::ExprLit { lit, .. }) => match lit {
            syn::Lit::Str(_) => "a string",
            syn::Lit::Int(_) | syn::Lit::Float(_) => "a number",
            syn::Lit::Bool(_) => "a boolean",
            syn::Lit::Char(_) => "a character",
            syn::Lit::ByteStr(_) | syn::Lit::CStr(_) => "a byte string",
            _ => "this literal",
        },
        syn::Expr::Path(_) => "a bare identifier or path",
        _ => "an expression",
    }
}

fn int_value(cx: &Ctxt, meta: &ParseNestedMeta<'_>, example: &str) -> Option<syn::LitInt> {
    match value_expr(cx, meta, example)? {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => Some(i),
        other => {
            cx.error_spanned_by(
                &other,
                format!(
                    "`{}` takes an integer literal, not {}; e.g. {example}",
                    path_name(&meta.path),
                    describe_expr(&other)
                ),
            );
            None
        }
    }
}

/// `Some(T)` when `ty` is spelled `Option<T>` (any path ending in `Option`).
pub(crate) fn option_inner(ty: &syn::Type) -> Option<&syn::Type> {
    let syn::Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(syn::GenericArgument::Type(inner)) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}

//! Phase 1: read `#[redis(...)]` attributes into a plain model.
//!
//! Nothing is judged here beyond the attribute syntax itself; every problem
//! is recorded in the [`Ctxt`] and parsing carries on, so a single compile
//! reports all mistakes. Semantic checks live in `valid.rs`.

use syn::meta::ParseNestedMeta;

use crate::ctxt::Ctxt;
use crate::symbol::{
    ALIAS, CLUSTER, CRATE, CROSS_SLOT, DEFAULT, EMPTY_IS_NONE, EMPTY_IS_SOME, EXPIRES_AT, FIELD,
    INDEX, JSON, KEY, LOG, MAX_LEN, NAME, PATCH, REDIS, RENAME, RENAME_ALL, SCORE, SKIP,
    SORTED_INDEX, STREAM, STREAM_CROSS_SLOT, STREAM_MAXLEN, Symbol, TTL, UNIQUE, VERSION,
};

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
    pub(crate) fn attr_name(self) -> Symbol {
        match self {
            IndexKind::Set => INDEX,
            IndexKind::Sorted => SORTED_INDEX,
            IndexKind::Unique => UNIQUE,
        }
    }

    /// The settings its parentheses accept: only a sorted index has a
    /// score, only a unique index names its field. A unique index may be
    /// `cross_slot` only with a constant key (`cross_slot.rs`).
    fn settings(self) -> &'static [Symbol] {
        match self {
            IndexKind::Set => &[KEY, NAME, CROSS_SLOT],
            IndexKind::Sorted => &[KEY, SCORE, NAME, CROSS_SLOT],
            IndexKind::Unique => &[KEY, FIELD, NAME, CROSS_SLOT],
        }
    }

    /// A whole attribute of this kind, for messages.
    fn example(self) -> String {
        match self {
            IndexKind::Set => format!("{INDEX}({KEY} = \"jobs:status:{{status}}\")"),
            IndexKind::Sorted => format!(
                "{SORTED_INDEX}({KEY} = \"jobs:user:{{user_id}}\", {SCORE} = \"created_at\")"
            ),
            IndexKind::Unique => {
                format!("{UNIQUE}({KEY} = \"users:by_email\", {FIELD} = \"email\")")
            }
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
    /// `cross_slot`: under `cluster`, the index key may be in another hash
    /// slot than the entity; it is kept in step just after the write
    /// instead of in it (checked in `cross_slot.rs`).
    pub(crate) cross_slot: Option<syn::Path>,
}

/// One `log(...)` attribute: a per-entity append log.
// Like every attribute struct here, it keeps the literals as written
// (`Option<Lit…>`, `None` when absent) for `valid.rs` to check with spans,
// so the structs share a shape.
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
    /// `#[redis(version)]`: the optimistic-concurrency version.
    pub(crate) version: Option<syn::Path>,
    /// Other hash field names read when the canonical one is absent, in
    /// order of preference (`alias` is repeatable).
    pub(crate) aliases: Vec<syn::LitStr>,
    pub(crate) empty_is_none: Option<syn::Path>,
    pub(crate) empty_is_some: Option<syn::Path>,
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
    /// `stream_cross_slot`: under `cluster`, the stream may be in another
    /// hash slot than the entity; the create records the entry beside the
    /// entity and the client appends it just after (checked in
    /// `cross_slot.rs`).
    pub(crate) stream_cross_slot: Option<syn::Path>,
    pub(crate) patch: Option<syn::LitStr>,
    pub(crate) indexes: Vec<IndexAttr>,
    pub(crate) logs: Vec<LogAttr>,
    /// `#[redis(cluster)]`: every key a write touches must share the
    /// entity's Redis Cluster hash slot (checked in `cluster.rs`).
    pub(crate) cluster: Option<syn::Path>,
    /// `None` when the input is not a struct with named fields.
    pub(crate) fields: Option<Vec<Field<'a>>>,
}

/// What `#[redis(...)]` accepts on a struct deriving `RedisEntity`. Each
/// list below is both what the parser looks names up in and what its
/// "accepts: ..." message shows, so the two cannot drift apart.
const CONTAINER_ATTRS: &[Symbol] = &[
    KEY,
    TTL,
    RENAME_ALL,
    CRATE,
    STREAM,
    STREAM_MAXLEN,
    STREAM_CROSS_SLOT,
    PATCH,
    INDEX,
    SORTED_INDEX,
    UNIQUE,
    LOG,
    CLUSTER,
];
/// On a `RedisRecord`: it has no key, so nothing that hangs off one.
const RECORD_ATTRS: &[Symbol] = &[RENAME_ALL, CRATE];
const FIELD_ATTRS: &[Symbol] = &[
    RENAME,
    ALIAS,
    SKIP,
    DEFAULT,
    JSON,
    EXPIRES_AT,
    VERSION,
    EMPTY_IS_NONE,
    EMPTY_IS_SOME,
];
const LOG_SETTINGS: &[Symbol] = &[NAME, KEY, TTL, MAX_LEN];

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
            stream_cross_slot: None,
            patch: None,
            indexes: Vec::new(),
            logs: Vec::new(),
            cluster: None,
            fields: None,
        };
        for_each_attr(cx, &input.attrs, |meta| {
            container.read_attr(cx, meta, derive);
        });
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
        container.fields = fields_from_ast(cx, input, derive);
        container
    }

    fn read_attr(&mut self, cx: &Ctxt, meta: &ParseNestedMeta<'_>, derive: Derive) {
        let accepted = match derive {
            Derive::Entity => CONTAINER_ATTRS,
            Derive::Record => RECORD_ATTRS,
        };
        match Symbol::find(&meta.path, accepted) {
            Some(KEY) => {
                self.key_given = true;
                read_string(cx, meta, &mut self.key, "\"user:{id}\"");
            }
            Some(TTL) => read_string(cx, meta, &mut self.ttl, "\"7d\""),
            Some(RENAME_ALL) => read_string(cx, meta, &mut self.rename_all, "\"camelCase\""),
            Some(CRATE) => read_string(cx, meta, &mut self.krate, "\"my_runtime\""),
            Some(STREAM) => read_string(cx, meta, &mut self.stream, "\"jobs:stream\""),
            Some(STREAM_MAXLEN) => read_int(cx, meta, &mut self.stream_maxlen, "10000"),
            Some(STREAM_CROSS_SLOT) => read_flag(cx, meta, &mut self.stream_cross_slot),
            Some(PATCH) => read_string(cx, meta, &mut self.patch, "\"UserChanges\""),
            Some(INDEX) => self.read_index(cx, meta, IndexKind::Set),
            Some(SORTED_INDEX) => self.read_index(cx, meta, IndexKind::Sorted),
            Some(UNIQUE) => self.read_index(cx, meta, IndexKind::Unique),
            Some(LOG) => self.read_log(cx, meta),
            Some(CLUSTER) => read_flag(cx, meta, &mut self.cluster),
            _ => match (derive, Symbol::find(&meta.path, CONTAINER_ATTRS)) {
                // Say so when the attribute exists but only for entities.
                (Derive::Record, Some(attr)) => reject(
                    cx,
                    meta,
                    format!("`{attr}` applies to stored entities: use #[derive(RedisEntity)]"),
                ),
                (Derive::Record, None) => {
                    unknown_attribute(cx, meta, "#[derive(RedisRecord)]", RECORD_ATTRS);
                }
                (Derive::Entity, _) => {
                    unknown_attribute(cx, meta, "#[redis(...)] on a struct", CONTAINER_ATTRS);
                }
            },
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
        let example =
            format!("{LOG}({NAME} = \"output\", {KEY} = \"job:{{id}}:output\", {TTL} = \"24h\")");
        let parsed = read_settings(cx, meta, LOG, &example, |inner| {
            match Symbol::find(&inner.path, LOG_SETTINGS) {
                Some(NAME) => read_string(cx, inner, &mut log.name, "\"output\""),
                Some(KEY) => read_string(cx, inner, &mut log.key, "\"job:{id}:output\""),
                Some(TTL) => read_string(cx, inner, &mut log.ttl, "\"24h\""),
                Some(MAX_LEN) => read_int(cx, inner, &mut log.max_len, "10000"),
                _ => unknown_setting(cx, inner, LOG, LOG_SETTINGS),
            }
        });
        if parsed {
            self.logs.push(log);
        }
    }

    fn read_index(&mut self, cx: &Ctxt, meta: &ParseNestedMeta<'_>, kind: IndexKind) {
        let mut index = IndexAttr {
            kind,
            path: meta.path.clone(),
            key: None,
            score: None,
            field: None,
            name: None,
            cross_slot: None,
        };
        let attr = kind.attr_name();
        let parsed = read_settings(cx, meta, attr, &kind.example(), |inner| {
            // `find` only returns what this kind accepts.
            match Symbol::find(&inner.path, kind.settings()) {
                Some(KEY) => read_string(cx, inner, &mut index.key, "\"jobs:user:{user_id}\""),
                Some(NAME) => read_string(cx, inner, &mut index.name, "\"by_user\""),
                Some(SCORE) => read_string(cx, inner, &mut index.score, "\"created_at\""),
                Some(FIELD) => read_string(cx, inner, &mut index.field, "\"email\""),
                Some(CROSS_SLOT) => {
                    // `index(key = "...", cross_slot)`.
                    let example = kind.example();
                    let bare = example.strip_suffix(')').unwrap_or(&example);
                    let written = format!("{bare}, {CROSS_SLOT})");
                    read_flag_as(cx, inner, &mut index.cross_slot, &written);
                }
                _ => unknown_setting(cx, inner, attr, kind.settings()),
            }
        });
        if parsed {
            self.indexes.push(index);
        }
    }
}

/// The named fields of a struct, or `None` after reporting why the input
/// has none: each field becomes a hash field, which needs a name.
fn fields_from_ast<'a>(
    cx: &Ctxt,
    input: &'a syn::DeriveInput,
    derive: Derive,
) -> Option<Vec<Field<'a>>> {
    let derive = derive.name();
    match &input.data {
        syn::Data::Struct(syn::DataStruct {
            fields: syn::Fields::Named(named),
            ..
        }) => {
            return Some(
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
                    "#[derive({derive})] needs a struct with named fields, not {what}: \
                     each field becomes a named hash field"
                ),
            );
        }
        syn::Data::Enum(e) => cx.error_spanned_by(
            e.enum_token,
            format!(
                "#[derive({derive})] needs a struct with named fields; \
                 for a unit enum stored in one field use #[derive(RedisValue)]"
            ),
        ),
        syn::Data::Union(u) => cx.error_spanned_by(
            u.union_token,
            format!("#[derive({derive})] needs a struct with named fields, not a union"),
        ),
    }
    None
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
            version: None,
            aliases: Vec::new(),
            empty_is_none: None,
            empty_is_some: None,
        };
        for_each_attr(cx, &field.attrs, |meta| {
            match Symbol::find(&meta.path, FIELD_ATTRS) {
                Some(RENAME) => read_string(cx, meta, &mut out.rename, "\"createdAt\""),
                Some(ALIAS) => read_repeated_string(cx, meta, &mut out.aliases, "\"oldName\""),
                Some(EMPTY_IS_NONE) => read_flag(cx, meta, &mut out.empty_is_none),
                Some(EMPTY_IS_SOME) => read_flag(cx, meta, &mut out.empty_is_some),
                Some(SKIP) => read_flag(cx, meta, &mut out.skip),
                Some(DEFAULT) => read_flag(cx, meta, &mut out.default),
                Some(JSON) => read_flag(cx, meta, &mut out.json),
                Some(EXPIRES_AT) => read_flag(cx, meta, &mut out.expires_at),
                Some(VERSION) => read_flag(cx, meta, &mut out.version),
                _ => unknown_attribute(cx, meta, "#[redis(...)] on a field", FIELD_ATTRS),
            }
        });
        out
    }
}

/// Runs `each` on every item inside every `#[redis(...)]` of `attrs`. An
/// item syn cannot read is recorded, and ends the reading of its attribute.
pub(crate) fn for_each_attr(
    cx: &Ctxt,
    attrs: &[syn::Attribute],
    mut each: impl FnMut(&ParseNestedMeta<'_>),
) {
    for attr in attrs.iter().filter(|attr| *attr.path() == REDIS) {
        let result = attr.parse_nested_meta(|meta| {
            each(&meta);
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
}

/// Runs `each` on every setting in `attr(...)`; `false` after reporting
/// that the parentheses are missing (`example` shows a whole `attr(...)`).
fn read_settings(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    attr: Symbol,
    example: &str,
    mut each: impl FnMut(&ParseNestedMeta<'_>),
) -> bool {
    if !meta.input.peek(syn::token::Paren) {
        reject(
            cx,
            meta,
            format!("`{attr}` needs its settings in parentheses, e.g. {example}"),
        );
        return false;
    }
    // The same recording as in `for_each_attr`, one level further in.
    let result = meta.parse_nested_meta(|inner| {
        each(&inner);
        Ok(())
    });
    if let Err(e) = result {
        cx.syn_error(e);
    }
    true
}

pub(crate) fn path_name(path: &syn::Path) -> String {
    quote::ToTokens::to_token_stream(path)
        .to_string()
        .replace(' ', "")
}

/// Reports `message` at the item's name and skips its value, so parsing
/// goes on with the next item.
fn reject(cx: &Ctxt, meta: &ParseNestedMeta<'_>, message: String) {
    cx.error_spanned_by(&meta.path, message);
    skip_value(meta);
}

/// Reports an attribute that `place` does not take, listing what it does.
pub(crate) fn unknown_attribute(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    place: &str,
    accepted: &[Symbol],
) {
    let name = path_name(&meta.path);
    let accepted = Symbol::list(accepted);
    reject(
        cx,
        meta,
        format!("unknown attribute `{name}`; {place} accepts: {accepted}"),
    );
}

/// Reports a setting that `attr(...)` does not take, listing what it does.
fn unknown_setting(cx: &Ctxt, meta: &ParseNestedMeta<'_>, attr: Symbol, accepted: &[Symbol]) {
    let name = path_name(&meta.path);
    let accepted = Symbol::list(accepted);
    reject(
        cx,
        meta,
        format!("unknown setting `{name}` in `{attr}`; it accepts: {accepted}"),
    );
}

/// Stores `value` unless the attribute was already given: a second value
/// is an error rather than a silent override.
fn set_once<T>(cx: &Ctxt, meta: &ParseNestedMeta<'_>, slot: &mut Option<T>, value: Option<T>) {
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

/// Reads `name = "..."` into `slot`; `example` is a value to suggest.
pub(crate) fn read_string(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    slot: &mut Option<syn::LitStr>,
    example: &str,
) {
    let value = literal_value(
        cx,
        meta,
        example,
        "a string literal in double quotes",
        |lit| match lit {
            syn::Lit::Str(s) => Some(s.clone()),
            _ => None,
        },
    );
    set_once(cx, meta, slot, value);
}

/// Reads one more `name = "..."` of a repeatable attribute into `all`.
pub(crate) fn read_repeated_string(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    all: &mut Vec<syn::LitStr>,
    example: &str,
) {
    let mut slot = None;
    read_string(cx, meta, &mut slot, example);
    all.extend(slot);
}

/// Reads `name = 123` into `slot`; `example` is a value to suggest.
fn read_int(cx: &Ctxt, meta: &ParseNestedMeta<'_>, slot: &mut Option<syn::LitInt>, example: &str) {
    let value = literal_value(cx, meta, example, "an integer literal", |lit| match lit {
        syn::Lit::Int(i) => Some(i.clone()),
        _ => None,
    });
    set_once(cx, meta, slot, value);
}

/// Reads a bare `name` into `slot`, keeping its path for errors about it.
fn read_flag(cx: &Ctxt, meta: &ParseNestedMeta<'_>, slot: &mut Option<syn::Path>) {
    let name = path_name(&meta.path);
    read_flag_as(cx, meta, slot, &format!("#[redis({name})]"));
}

/// [`read_flag`] for a flag inside another attribute's parentheses;
/// `written` shows it written bare in its place.
fn read_flag_as(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    slot: &mut Option<syn::Path>,
    written: &str,
) {
    if meta.input.peek(syn::Token![=]) || meta.input.peek(syn::token::Paren) {
        let name = path_name(&meta.path);
        reject(
            cx,
            meta,
            format!("`{name}` takes no value; write {written}"),
        );
        return;
    }
    set_once(cx, meta, slot, Some(meta.path.clone()));
}

/// Consumes whatever follows a key (`= expr` or `(...)`), so parsing can go on.
fn skip_value(meta: &ParseNestedMeta<'_>) {
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

/// The literal after `name =` that `pick` accepts, or `None` after
/// reporting a missing value or one that is not `expected`.
fn literal_value<T>(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    example: &str,
    expected: &str,
    pick: impl FnOnce(&syn::Lit) -> Option<T>,
) -> Option<T> {
    let name = path_name(&meta.path);
    if !meta.input.peek(syn::Token![=]) {
        reject(
            cx,
            meta,
            format!("`{name}` needs a value, e.g. {name} = {example}"),
        );
        return None;
    }
    let expr = match meta.value().and_then(|v| v.parse::<syn::Expr>()) {
        Ok(expr) => expr,
        Err(e) => {
            cx.syn_error(e);
            return None;
        }
    };
    if let syn::Expr::Lit(syn::ExprLit { lit, .. }) = &expr
        && let Some(value) = pick(lit)
    {
        return Some(value);
    }
    cx.error_spanned_by(
        &expr,
        format!(
            "`{name}` takes {expected}, not {}; e.g. {name} = {example}",
            describe_expr(&expr)
        ),
    );
    None
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

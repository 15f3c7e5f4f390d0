//! Phase 2: judge the attribute model and resolve it into what expansion
//! needs: hash names, key segments bound to fields, indexes, TTL.
//!
//! Every check records a spanned error and carries on, so all mistakes are
//! reported together.

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use redis_schema::{KeyPattern, KeySegment, RenameRule};

use crate::ast::{self, Container, Derive, IndexKind, option_inner};
use crate::ctxt::Ctxt;
use crate::disjoint;
use crate::symbol::{
    ALIAS, CRATE, DEFAULT, EMPTY_IS_NONE, EMPTY_IS_SOME, EXPIRES_AT, FIELD, JSON, KEY, LOG,
    MAX_LEN, NAME, PATCH, RENAME, RENAME_ALL, SCORE, SKIP, STREAM, STREAM_MAXLEN, Symbol, TTL,
    VERSION,
};

pub(crate) struct Model<'a> {
    pub(crate) ident: &'a syn::Ident,
    pub(crate) vis: &'a syn::Visibility,
    /// Path to the runtime crate, `::redis_runtime` unless overridden.
    pub(crate) krate: TokenStream,
    pub(crate) fields: Vec<FieldModel<'a>>,
    pub(crate) key: Option<KeyModel>,
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) indexes: Vec<IndexModel>,
    pub(crate) stream: Option<StreamModel>,
    pub(crate) patch_ident: syn::Ident,
    pub(crate) expires_at: Option<usize>,
    /// The `#[redis(version)]` field.
    pub(crate) version: Option<usize>,
    pub(crate) logs: Vec<LogModel>,
    /// The TTL registry key ([`ttl_registry`]), if the type has one.
    pub(crate) ttl_registry: Option<String>,
    /// One registry per hash tag value, named by `ttl_registry`.
    pub(crate) ttl_registry_per_tag: bool,
    /// `#[redis(cluster)]`, checked by `cluster.rs`.
    pub(crate) cluster: bool,
}

/// The stream entries are enqueued on (`stream = "jobs:stream"`).
pub(crate) struct StreamModel {
    /// The stream's key: one fixed key for every entity of the type.
    pub(crate) key: String,
    /// `stream_maxlen`, 0 when the stream is not trimmed.
    pub(crate) maxlen: u64,
    /// `stream_cross_slot`: on a cluster, the entry is recorded in the
    /// entity's slot and appended just after the write instead of in it
    /// (checked by `cluster.rs`).
    pub(crate) cross_slot: bool,
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
    /// Other hash field names read when `hash_name` is absent, preferred
    /// in this order (`alias`); writes use `hash_name` only.
    pub(crate) aliases: Vec<String>,
    /// How an empty stored value of an `Option` field reads.
    pub(crate) empty: EmptyRule,
}

/// How an `Option` field reads an empty stored value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmptyRule {
    /// `None` unless `""` decodes as a value of the type (`String`,
    /// `Vec<u8>` keep `Some("")`): the default.
    Auto,
    /// Always `None` (`empty_is_none`).
    None,
    /// Always decoded as a value (`empty_is_some`): strict.
    Some,
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
    /// `cross_slot`: on a cluster, kept in step just after the write
    /// instead of in it (checked by `cluster.rs`).
    pub(crate) cross_slot: bool,
}

/// Checks the attributes and resolves them into a [`Model`], or `None`
/// when anything was reported. The steps run in a fixed order, which is
/// the order their errors appear in.
pub(crate) fn check<'a>(cx: &Ctxt, c: &Container<'a>, derive: Derive) -> Option<Model<'a>> {
    let rule = rename_rule(cx, c.rename_all.as_ref());
    let krate = checked_runtime_path(cx, c.krate.as_ref());
    let ast_fields = c.fields.as_ref()?;
    let mut fields = field_models(cx, c, ast_fields, rule);
    let key = entity_key(cx, c, derive, &mut fields, ast_fields);
    let ttl_ms = c.ttl.as_ref().and_then(|lit| ttl_literal(cx, lit));
    let expires_at = expires_at_field(cx, c, derive, &fields, ast_fields);
    let version = version_field(cx, derive, &fields, ast_fields);
    let indexes = index_models(cx, c, &fields);
    let stream = stream_model(cx, c);
    // These need only the attributes, so they are reported with the
    // mistakes above.
    crate::cluster::check_stream_cross_slot(cx, c, key.as_ref());
    crate::cluster::check_cross_slot(cx, c, key.as_ref(), &indexes);
    let patch_ident = patch_ident(cx, c);
    let logs = log_models(cx, c, &fields, key.as_ref());
    if cx.has_errors() {
        return None;
    }
    // Only a layout whose every part is valid can be checked as a whole.
    let cluster = c.cluster.is_some();
    let (ttl_registry, ttl_registry_per_tag) = ttl_registry(key.as_ref(), &indexes, cluster);
    let registry = ttl_registry.as_deref();
    disjoint::check(
        cx,
        c,
        key.as_ref(),
        &indexes,
        registry,
        stream.as_ref(),
        &logs,
    );
    if let (Some(_), Some(key)) = (&c.cluster, &key) {
        crate::cluster::check(cx, c, key, &indexes, stream.as_ref());
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
        version,
        logs,
        ttl_registry,
        ttl_registry_per_tag,
        cluster,
    })
}

/// The TTL registry key of an entity type with indexes (one without has
/// none): the write script lists there every entity that expires, whether
/// by `ttl`, `expires_at` or a TTL given later with `expire`, so it touches
/// the registry on every create and delete, TTL or not. Under `cluster` a
/// type pinned to one slot gets [`redis_schema::cluster_ttl_registry_key`],
/// in that slot, and a type whose tag holds a field's value one registry
/// per tag value (`true`: [`redis_schema::tagged_ttl_registry_key`]);
/// every other type keeps [`redis_schema::ttl_registry_key`] (under
/// `cluster`, `cluster.rs` refuses those, whose key has no tag, unless
/// every index is `cross_slot` and the stream, if any, is
/// `stream_cross_slot`: on a cluster the write of a type with a
/// `cross_slot` index or a `stream_cross_slot` stream keeps no registry,
/// as such a type never expires).
fn ttl_registry(
    key: Option<&KeyModel>,
    indexes: &[IndexModel],
    cluster: bool,
) -> (Option<String>, bool) {
    if indexes.is_empty() {
        return (None, false);
    }
    // Parsed without error by `key_model` already.
    let Some(pattern) = key.and_then(|key| KeyPattern::parse(&key.source).ok()) else {
        return (None, false);
    };
    let plain = redis_schema::ttl_registry_key(&pattern);
    if !cluster {
        return (Some(plain), false);
    }
    match redis_schema::slot_source(&pattern) {
        tag @ redis_schema::SlotSource::Tag(_) if !tag.is_fixed() => (Some(plain), true),
        _ => (
            Some(redis_schema::cluster_ttl_registry_key(&pattern).unwrap_or(plain)),
            false,
        ),
    }
}

/// The `rename_all` rule (snake_case when absent). An unknown name is
/// reported and snake_case used, so the remaining checks still run.
pub(crate) fn rename_rule(cx: &Ctxt, rename_all: Option<&syn::LitStr>) -> RenameRule {
    let Some(lit) = rename_all else {
        return RenameRule::default();
    };
    RenameRule::from_name(&lit.value()).unwrap_or_else(|| {
        cx.error_spanned_by(
            lit,
            format!(
                "unknown rename rule {:?}; use one of: {}",
                lit.value(),
                RenameRule::ALL_NAMES.join(", ")
            ),
        );
        RenameRule::default()
    })
}

/// The path generated code reaches the runtime through: what `crate = "..."`
/// names (the runtime may be renamed in Cargo.toml), else `::redis_runtime`.
/// `Err` holds a `crate` value that is not a path.
pub(crate) fn runtime_path(krate: Option<&syn::LitStr>) -> Result<TokenStream, &syn::LitStr> {
    let Some(lit) = krate else {
        return Ok(default_runtime_path());
    };
    let path = lit.parse::<syn::Path>().map_err(|_| lit)?;
    Ok(quote!(#path))
}

/// [`runtime_path`], reporting a bad `crate` value and going on with the default.
pub(crate) fn checked_runtime_path(cx: &Ctxt, krate: Option<&syn::LitStr>) -> TokenStream {
    runtime_path(krate).unwrap_or_else(|lit| {
        cx.error_spanned_by(
            lit,
            format!("`{CRATE}` takes a path, e.g. {CRATE} = \"my_runtime\""),
        );
        default_runtime_path()
    })
}

pub(crate) fn default_runtime_path() -> TokenStream {
    quote!(::redis_runtime)
}

/// Resolves every field's hash name and flags.
fn field_models<'a>(
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
fn entity_key(
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
fn expires_at_field(
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
fn version_field(
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

/// Whether `ty` is a primitive integer type, spelled plainly (`u32`,
/// `core::primitive::i64`, ...).
pub(crate) fn is_integer(ty: &syn::Type) -> bool {
    let syn::Type::Path(syn::TypePath { qself: None, path }) = ty else {
        return false;
    };
    path.segments.last().is_some_and(|last| {
        last.arguments.is_none()
            && matches!(
                last.ident.to_string().as_str(),
                "i8" | "i16" | "i32" | "i64" | "isize" | "u8" | "u16" | "u32" | "u64" | "usize"
            )
    })
}

/// Every index. Two indexes on one key pattern would write into the same
/// Redis key; two with one name would generate the same query methods.
fn index_models(cx: &Ctxt, c: &Container<'_>, fields: &[FieldModel<'_>]) -> Vec<IndexModel> {
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

/// The stream entries are enqueued on, with its `MAXLEN` (0: untrimmed).
/// Its name goes into `XADD` as is, so it must be one plain word.
fn stream_model(cx: &Ctxt, c: &Container<'_>) -> Option<StreamModel> {
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

/// The generated patch type: `<Type>Patch`, or what `patch = "..."` names,
/// which must then be a Rust type name.
fn patch_ident(cx: &Ctxt, c: &Container<'_>) -> syn::Ident {
    let default = || format_ident!("{}Patch", c.ident);
    let Some(lit) = &c.patch else {
        return default();
    };
    lit.parse::<syn::Ident>().unwrap_or_else(|_| {
        cx.error_spanned_by(
            lit,
            format!("`{PATCH}` takes a type name, e.g. {PATCH} = \"UserChanges\""),
        );
        default()
    })
}

/// Every log. Each generates a `<name>_log` method, so names must differ.
fn log_models(
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

/// A name that becomes part of a generated method name, or `None` after
/// reporting that it is not a Rust identifier.
fn identifier_literal(cx: &Ctxt, lit: &syn::LitStr, what: &str, example: &str) -> Option<String> {
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
fn ttl_literal(cx: &Ctxt, lit: &syn::LitStr) -> Option<u64> {
    match redis_schema::duration::parse_ttl_millis(&lit.value()) {
        Ok(ms) => Some(ms),
        Err(e) => {
            cx.error_spanned_by(lit, format!("invalid {TTL} {:?}: {e}", lit.value()));
            None
        }
    }
}

/// A length limit: zero would keep nothing, so it must be positive.
fn positive_int(cx: &Ctxt, lit: &syn::LitInt, setting: Symbol) -> Option<u64> {
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
fn parse_pattern(cx: &Ctxt, lit: &syn::LitStr, what: &str) -> Option<KeyPattern> {
    let source = lit.value();
    KeyPattern::parse(&source)
        .map_err(|e| {
            cx.error_spanned_by(lit, format!("invalid {what} {source:?}: {}", e.message()));
        })
        .ok()
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyUse {
    Entity,
    Index,
}

/// Parses a key pattern literal and binds each placeholder to a field.
/// An entity key needs a placeholder (else every entity shares one key);
/// any key must be unambiguous, so a key can be read back into its values.
fn key_model(
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
            Some(value_field(
                cx,
                attr,
                attr.field.as_ref(),
                fields,
                FIELD,
                &needs,
            )?)
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
    let missing = format!("{setting} field `{name}` does not exist");
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

/// The field whose Rust name is `name`, or `None` after reporting
/// `missing` together with the stored fields (what could have been meant).
fn field_named(
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
fn reject_option(cx: &Ctxt, field: &FieldModel<'_>, role: &str, remedy: &str) -> bool {
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

pub(crate) fn unraw(ident: &syn::Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
}

fn quote_type(ty: &syn::Type) -> String {
    quote!(#ty).to_string().replace(' ', "")
}

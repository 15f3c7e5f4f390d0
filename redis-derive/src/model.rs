//! The resolved model of a type: what the checks in `valid` produce from
//! the attributes and what expansion works from (hash names, key segments
//! bound to fields, indexes, TTL, stream and logs).

use proc_macro2::TokenStream;

use crate::ast::IndexKind;

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
    /// The TTL registry key (`valid::ttl_registry`), if the type has one.
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
    /// (checked by `cross_slot.rs`).
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
    /// instead of in it (checked by `cross_slot.rs`).
    pub(crate) cross_slot: bool,
}

/// Whether `ty` is `f32` or `f64`, spelled plainly.
pub(crate) fn is_float(ty: &syn::Type) -> bool {
    last_segment_is(ty, &["f32", "f64"])
}

/// Whether the last segment of the plain path `ty` is one of `names`,
/// without generic arguments.
fn last_segment_is(ty: &syn::Type, names: &[&str]) -> bool {
    let syn::Type::Path(syn::TypePath { qself: None, path }) = ty else {
        return false;
    };
    path.segments.last().is_some_and(|last| {
        last.arguments.is_none() && names.contains(&last.ident.to_string().as_str())
    })
}

/// Whether `ty` is a primitive integer type, spelled plainly (`u32`,
/// `core::primitive::i64`, ...).
pub(crate) fn is_integer(ty: &syn::Type) -> bool {
    last_segment_is(
        ty,
        &[
            "i8", "i16", "i32", "i64", "isize", "u8", "u16", "u32", "u64", "usize",
        ],
    )
}

/// The name of `ident` without a raw prefix (`r#type` is `type`): how a
/// field is named in attributes and generated method names.
pub(crate) fn unraw(ident: &syn::Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
}

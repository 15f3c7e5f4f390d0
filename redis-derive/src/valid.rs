//! Phase 2: judge the attribute model and resolve it into a [`Model`]:
//! fields (`fields`), key patterns (`keys`), indexes (`indexes`), the
//! stream and logs (`streams`), then the layout checks as a whole
//! (`disjoint`, `cluster`).
//!
//! Every check records a spanned error and carries on, so all mistakes are
//! reported together.

mod fields;
mod indexes;
mod keys;
mod literals;
mod streams;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use redis_schema::{KeyPattern, RenameRule};

use crate::ast::{Container, Derive};
use crate::ctxt::Ctxt;
use crate::disjoint;
use crate::model::{IndexModel, KeyModel, Model};
use crate::symbol::{CRATE, PATCH};

use self::fields::{entity_key, expires_at_field, field_models, version_field};
use self::indexes::index_models;
use self::literals::ttl_literal;
use self::streams::{log_models, stream_model};

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
    crate::cross_slot::check_stream_cross_slot(cx, c, key.as_ref());
    crate::cross_slot::check_cross_slot(cx, c, key.as_ref(), &indexes);
    let patch_ident = patch_ident(cx, c);
    let logs = log_models(cx, c, &fields, key.as_ref());
    if cx.has_errors() {
        return None;
    }
    // Only a layout whose every part is valid can be checked as a whole.
    let cluster = c.cluster.is_some();
    let (ttl_registry, ttl_registry_per_tag) = ttl_registry(key.as_ref(), &indexes, cluster);
    let registry = (ttl_registry.as_deref(), ttl_registry_per_tag);
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

//! `#[derive(RedisValue)]`: a unit-only enum stored in one field (and
//! usable in keys) as its variant name in snake_case, or its `rename`.
//! Reads ignore ASCII case (`"COMPLETED"` reads as `completed`) and accept
//! each variant's `alias` spellings; writes are always the stored name.

use proc_macro2::TokenStream;
use quote::quote;
use redis_schema::RenameRule;

use crate::ast::{for_each_attr, read_repeated_string, read_string, unknown_attribute};
use crate::ctxt::Ctxt;
use crate::symbol::{ALIAS, CRATE, JSON, RENAME, RENAME_ALL, Symbol};
use crate::valid::{checked_runtime_path, rename_rule};

/// What `#[redis(...)]` accepts on the enum, and on one of its variants.
const ENUM_ATTRS: &[Symbol] = &[RENAME_ALL, CRATE];
const VARIANT_ATTRS: &[Symbol] = &[RENAME, ALIAS];

/// A unit variant: its stored name and the other spellings it reads.
struct Variant<'a> {
    ident: &'a syn::Ident,
    stored: String,
    aliases: Vec<String>,
}

pub(crate) fn derive(input: &syn::DeriveInput) -> Result<TokenStream, syn::Error> {
    let cx = Ctxt::default();
    let (rule, krate) = enum_attrs(&cx, input);
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "#[derive(RedisValue)] does not support generic enums",
        );
    }
    let syn::Data::Enum(data) = &input.data else {
        cx.error_spanned_by(
            &input.ident,
            "#[derive(RedisValue)] is for unit-only enums; for structs use #[derive(RedisEntity)] or #[derive(RedisRecord)]",
        );
        return cx.check().map(|()| TokenStream::new());
    };
    let variants = stored_names(&cx, data, rule);
    if data.variants.is_empty() {
        cx.error_spanned_by(
            &input.ident,
            "#[derive(RedisValue)] needs at least one variant",
        );
    }
    cx.check()?;
    Ok(expand(&input.ident, &krate, &variants))
}

/// The enum's naming rule and runtime path, from its `#[redis(...)]`.
fn enum_attrs(cx: &Ctxt, input: &syn::DeriveInput) -> (RenameRule, TokenStream) {
    let mut rename_all: Option<syn::LitStr> = None;
    let mut krate: Option<syn::LitStr> = None;
    for_each_attr(cx, &input.attrs, |meta| {
        match Symbol::find(&meta.path, ENUM_ATTRS) {
            Some(RENAME_ALL) => read_string(cx, meta, &mut rename_all, "\"kebab-case\""),
            Some(CRATE) => read_string(cx, meta, &mut krate, "\"my_runtime\""),
            _ => unknown_attribute(cx, meta, "#[derive(RedisValue)] on an enum", ENUM_ATTRS),
        }
    });
    let rule = rename_rule(cx, rename_all.as_ref());
    (rule, checked_runtime_path(cx, krate.as_ref()))
}

/// Each unit variant with the name it is stored as. A stored name also
/// fills keys, so it must be valid in one; and two variants stored under
/// one name could not be told apart when read back, nor two whose names or
/// aliases differ only in ASCII case (reads ignore case).
fn stored_names<'a>(cx: &Ctxt, data: &'a syn::DataEnum, rule: RenameRule) -> Vec<Variant<'a>> {
    let mut variants: Vec<Variant<'a>> = Vec::new();
    for variant in &data.variants {
        if !matches!(variant.fields, syn::Fields::Unit) {
            cx.error_spanned_by(
                &variant.fields,
                format!(
                    "variant `{}` has data; #[derive(RedisValue)] stores unit variants only (use #[redis({JSON})] on the field for enums with data)",
                    variant.ident
                ),
            );
            continue;
        }
        let mut rename: Option<syn::LitStr> = None;
        let mut alias_lits: Vec<syn::LitStr> = Vec::new();
        for_each_attr(cx, &variant.attrs, |meta| {
            match Symbol::find(&meta.path, VARIANT_ATTRS) {
                Some(RENAME) => read_string(cx, meta, &mut rename, "\"done\""),
                Some(ALIAS) => read_repeated_string(cx, meta, &mut alias_lits, "\"finished\""),
                _ => unknown_attribute(cx, meta, "#[redis(...)] on a variant", VARIANT_ATTRS),
            }
        });
        let stored = match &rename {
            Some(lit) => lit.value(),
            None => rule.apply(&variant.ident.to_string()),
        };
        // Blame the `rename` when there is one: that is what to change.
        let blame: &dyn quote::ToTokens = match &rename {
            Some(lit) => lit,
            None => &variant.ident,
        };
        if let Err(e) = redis_schema::validate_key_value(&stored) {
            cx.error_spanned_by(
                blame,
                format!("stored name {stored:?} cannot be used in keys: {e}; rename the variant"),
            );
        }
        if let Some(first) = variants.iter().find(|v| v.stored == stored) {
            cx.error_spanned_by(
                blame,
                format!(
                    "variants `{}` and `{}` are both stored as {stored:?}; give one a different #[redis({RENAME} = \"...\")]",
                    first.ident, variant.ident
                ),
            );
        } else if let Some((first, name)) = read_as(&variants, &stored) {
            cx.error_spanned_by(
                blame,
                format!(
                    "variant `{}` is stored as {stored:?}, which reads as variant `{}` ({name:?}): reads ignore ASCII case; give one a different #[redis({RENAME} = \"...\")]",
                    variant.ident, first.ident
                ),
            );
        }
        let mut aliases: Vec<String> = Vec::new();
        for lit in &alias_lits {
            let alias = lit.value();
            let taken = if alias.is_empty() {
                Some("an alias cannot be empty".to_string())
            } else if alias.eq_ignore_ascii_case(&stored)
                || aliases.iter().any(|a| a.eq_ignore_ascii_case(&alias))
            {
                Some(format!(
                    "{ALIAS} {alias:?} repeats a name of `{}` (reads ignore ASCII case); remove it",
                    variant.ident
                ))
            } else {
                read_as(&variants, &alias).map(|(first, name)| {
                    format!(
                        "{ALIAS} {alias:?} of variant `{}` already reads as variant `{}` ({name:?}; reads ignore ASCII case); keep it on one",
                        variant.ident, first.ident
                    )
                })
            };
            match taken {
                Some(message) => cx.error_spanned_by(lit, message),
                None => aliases.push(alias),
            }
        }
        variants.push(Variant {
            ident: &variant.ident,
            stored,
            aliases,
        });
    }
    variants
}

/// The earlier variant that already reads `text`, with its matching name.
fn read_as<'v, 'a>(variants: &'v [Variant<'a>], text: &str) -> Option<(&'v Variant<'a>, &'v str)> {
    variants.iter().find_map(|v| {
        std::iter::once(&v.stored)
            .chain(&v.aliases)
            .find(|name| name.eq_ignore_ascii_case(text))
            .map(|name| (v, name.as_str()))
    })
}

/// `FieldValue` and `KeyPart` for the enum, mapping each variant to its
/// stored name and back.
fn expand(ident: &syn::Ident, krate: &TokenStream, variants: &[Variant<'_>]) -> TokenStream {
    let p = quote!(#krate::__private);
    let to_str = variants.iter().map(|v| {
        let (variant, name) = (v.ident, &v.stored);
        quote!(#ident::#variant => #name,)
    });
    // Exact stored names first (what this crate writes), then any spelling
    // in any ASCII case.
    let exact = variants.iter().map(|v| {
        let variant = v.ident;
        let bytes = syn::LitByteStr::new(v.stored.as_bytes(), proc_macro2::Span::call_site());
        quote!(#bytes => return ::core::result::Result::Ok(#ident::#variant),)
    });
    let folded = variants.iter().map(|v| {
        let variant = v.ident;
        let names = std::iter::once(&v.stored)
            .chain(&v.aliases)
            .map(|name| syn::LitByteStr::new(name.as_bytes(), proc_macro2::Span::call_site()));
        quote! {
            if #(raw.eq_ignore_ascii_case(#names))||* {
                return ::core::result::Result::Ok(#ident::#variant);
            }
        }
    });
    let expected = variants
        .iter()
        .map(|v| v.stored.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    quote! {
        #[automatically_derived]
        impl #p::FieldValue for #ident {
            const ENCODING: #p::FieldEncoding = #p::FieldEncoding::Enum;
            fn encode_value(&self, out: &mut ::std::vec::Vec<::core::primitive::u8>) -> ::core::result::Result<(), ::std::string::String> {
                let name: &'static ::core::primitive::str = match self { #(#to_str)* };
                out.extend_from_slice(name.as_bytes());
                ::core::result::Result::Ok(())
            }
            fn decode_value(raw: &[::core::primitive::u8]) -> ::core::result::Result<Self, ::std::string::String> {
                match raw {
                    #(#exact)*
                    _ => {}
                }
                #(#folded)*
                ::core::result::Result::Err(#p::unknown_variant(raw, #expected))
            }
        }

        #[automatically_derived]
        impl #p::KeyPart for #ident {
            fn key_part(&self) -> #p::Cow<'_, ::core::primitive::str> {
                let mut out = ::std::vec::Vec::new();
                let _ = <Self as #p::FieldValue>::encode_value(self, &mut out);
                #p::Cow::Owned(::std::string::String::from_utf8_lossy(&out).into_owned())
            }
        }
    }
}

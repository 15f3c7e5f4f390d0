//! `#[derive(RedisValue)]`: a unit-only enum stored in one field (and
//! usable in keys) as its variant name in snake_case, or its `rename`.

use proc_macro2::TokenStream;
use quote::quote;
use redis_schema::RenameRule;

use crate::ast::{for_each_attr, read_string, unknown_attribute};
use crate::ctxt::Ctxt;
use crate::symbol::{CRATE, JSON, RENAME, RENAME_ALL, Symbol};
use crate::valid::{checked_runtime_path, rename_rule};

/// What `#[redis(...)]` accepts on the enum, and on one of its variants.
const ENUM_ATTRS: &[Symbol] = &[RENAME_ALL, CRATE];
const VARIANT_ATTRS: &[Symbol] = &[RENAME];

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
/// one name could not be told apart when read back.
fn stored_names<'a>(
    cx: &Ctxt,
    data: &'a syn::DataEnum,
    rule: RenameRule,
) -> Vec<(&'a syn::Ident, String)> {
    let mut variants: Vec<(&syn::Ident, String)> = Vec::new();
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
        for_each_attr(cx, &variant.attrs, |meta| {
            match Symbol::find(&meta.path, VARIANT_ATTRS) {
                Some(RENAME) => read_string(cx, meta, &mut rename, "\"done\""),
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
        if let Some((first, _)) = variants.iter().find(|(_, name)| *name == stored) {
            cx.error_spanned_by(
                blame,
                format!(
                    "variants `{first}` and `{}` are both stored as {stored:?}; give one a different #[redis({RENAME} = \"...\")]",
                    variant.ident
                ),
            );
        }
        variants.push((&variant.ident, stored));
    }
    variants
}

/// `FieldValue` and `KeyPart` for the enum, mapping each variant to its
/// stored name and back.
fn expand(
    ident: &syn::Ident,
    krate: &TokenStream,
    variants: &[(&syn::Ident, String)],
) -> TokenStream {
    let p = quote!(#krate::__private);
    let to_str = variants
        .iter()
        .map(|(v, name)| quote!(#ident::#v => #name,));
    let from_bytes = variants.iter().map(|(v, name)| {
        let bytes = syn::LitByteStr::new(name.as_bytes(), proc_macro2::Span::call_site());
        quote!(#bytes => ::core::result::Result::Ok(#ident::#v),)
    });
    let expected = variants
        .iter()
        .map(|(_, name)| name.as_str())
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
                    #(#from_bytes)*
                    _ => ::core::result::Result::Err(#p::unknown_variant(raw, #expected)),
                }
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

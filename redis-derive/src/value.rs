//! `#[derive(RedisValue)]`: a unit-only enum stored in one field (and
//! usable in keys) as its variant name in snake_case, or its `rename`.

use proc_macro2::TokenStream;
use quote::quote;
use redis_schema::RenameRule;

use crate::ast::{path_name, redis_attrs, set_once, skip_value, string_value};
use crate::ctxt::Ctxt;

pub(crate) fn derive(input: &syn::DeriveInput) -> Result<TokenStream, syn::Error> {
    let cx = Ctxt::default();
    let mut rename_all: Option<syn::LitStr> = None;
    let mut krate: Option<syn::LitStr> = None;
    for attr in redis_attrs(&input.attrs) {
        let result = attr.parse_nested_meta(|meta| {
            let name = path_name(&meta.path);
            match name.as_str() {
                "rename_all" => set_once(
                    &cx,
                    &meta,
                    &mut rename_all,
                    string_value(&cx, &meta, "rename_all = \"kebab-case\""),
                ),
                "crate" => set_once(
                    &cx,
                    &meta,
                    &mut krate,
                    string_value(&cx, &meta, "crate = \"my_runtime\""),
                ),
                _ => {
                    cx.error_spanned_by(
                        &meta.path,
                        format!(
                            "unknown attribute `{name}`; #[derive(RedisValue)] on an enum accepts: rename_all, crate"
                        ),
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
    let rule = match &rename_all {
        None => RenameRule::SnakeCase,
        Some(lit) => RenameRule::from_name(&lit.value()).unwrap_or_else(|| {
            cx.error_spanned_by(
                lit,
                format!(
                    "unknown rename rule {:?}; use one of: {}",
                    lit.value(),
                    RenameRule::ALL_NAMES.join(", ")
                ),
            );
            RenameRule::SnakeCase
        }),
    };
    let krate = match &krate {
        None => quote!(::redis_runtime),
        Some(lit) => match lit.parse::<syn::Path>() {
            Ok(path) => quote!(#path),
            Err(_) => {
                cx.error_spanned_by(lit, "`crate` takes a path, e.g. crate = \"my_runtime\"");
                quote!(::redis_runtime)
            }
        },
    };
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
    let mut variants = Vec::new();
    // Each stored name, with the variant that claimed it first.
    let mut names: Vec<(String, &syn::Ident)> = Vec::new();
    for variant in &data.variants {
        if !matches!(variant.fields, syn::Fields::Unit) {
            cx.error_spanned_by(
                &variant.fields,
                format!(
                    "variant `{}` has data; #[derive(RedisValue)] stores unit variants only (use #[redis(json)] on the field for enums with data)",
                    variant.ident
                ),
            );
            continue;
        }
        let mut rename: Option<syn::LitStr> = None;
        for attr in redis_attrs(&variant.attrs) {
            let result = attr.parse_nested_meta(|meta| {
                let name = path_name(&meta.path);
                if name == "rename" {
                    set_once(
                        &cx,
                        &meta,
                        &mut rename,
                        string_value(&cx, &meta, "rename = \"done\""),
                    );
                } else {
                    cx.error_spanned_by(
                        &meta.path,
                        format!(
                            "unknown attribute `{name}`; #[redis(...)] on a variant accepts: rename"
                        ),
                    );
                    skip_value(&meta);
                }
                Ok(())
            });
            if let Err(e) = result {
                cx.syn_error(e);
            }
        }
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
        if let Some((_, first)) = names.iter().find(|(name, _)| *name == stored) {
            cx.error_spanned_by(
                blame,
                format!(
                    "variants `{first}` and `{}` are both stored as {stored:?}; give one a different #[redis(rename = \"...\")]",
                    variant.ident
                ),
            );
        }
        names.push((stored.clone(), &variant.ident));
        variants.push((&variant.ident, stored));
    }
    if data.variants.is_empty() {
        cx.error_spanned_by(
            &input.ident,
            "#[derive(RedisValue)] needs at least one variant",
        );
    }
    cx.check()?;

    let ident = &input.ident;
    let p = quote!(#krate::__private);
    let to_str = variants
        .iter()
        .map(|(v, name)| quote!(#ident::#v => #name,));
    let from_bytes = variants.iter().map(|(v, name)| {
        let bytes = syn::LitByteStr::new(name.as_bytes(), proc_macro2::Span::call_site());
        quote!(#bytes => ::core::result::Result::Ok(#ident::#v),)
    });
    let expected = names
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    Ok(quote! {
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
    })
}

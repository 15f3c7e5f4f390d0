//! The generated index queries: for each index of an entity, the methods
//! that read it (`by_<index>`, its ids, counts, ranges, unique lookups).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::IndexKind;
use crate::expand::{codec_of, key_builder_calls, lit, private};
use crate::valid::{FieldModel, Model, unraw};

/// The `impl` block of `m`'s index queries (empty without indexes).
pub(crate) fn queries(m: &Model<'_>) -> TokenStream {
    if m.indexes.is_empty() {
        return TokenStream::new();
    }
    let p = private(m);
    let ident = m.ident;
    let vis = m.vis;
    let methods = m.indexes.iter().enumerate().map(|(position, index)| {
        // The index's own descriptor: queries never look an index up by name.
        let name = quote!(&<Self as #p::Record>::descriptor().indexes[#position]);
        let base = format_ident!("{}", index.name);
        let ids = format_ident!("{}_ids", index.name);
        let count = format_ident!("{}_count", index.name);
        let in_range = format_ident!("{}_in_range", index.name);
        let ids_in_range = format_ident!("{}_ids_in_range", index.name);
        let fields: Vec<&FieldModel<'_>> = index.key.field_indexes().map(|i| &m.fields[i]).collect();
        let params: Vec<TokenStream> = fields
            .iter()
            .map(|f| {
                let ident = f.ident;
                quote!(#ident: &(impl #p::KeyPart + ?::core::marker::Sized),)
            })
            .collect();
        let pattern = lit(&index.key.source);
        let build = key_builder_calls(m, &index.key);
        let key = quote! {
            (|| -> #p::Result<::std::string::String> {
                ::core::result::Result::Ok(#p::KeyBuilder::new(#pattern) #(#build)* .finish())
            })()
        };
        let source = &index.key.source;
        match index.kind {
            IndexKind::Sorted => {
                let score = index.value_field.map(|i| unraw(m.fields[i].ident)).unwrap_or_default();
                let doc_page = format!("A page of entities from sorted index `{source}` (scored by `{score}`); two round trips (ids, then the hashes in one pipeline). Never returns expired entities; entities that do not decode are reported in the `Listing` (call `.strict()` for all or nothing).");
                let doc_range = format!("Like `{}`, restricted to scores (`{score}`) in `range`.", index.name);
                let doc_ids = format!("A page of ids from sorted index `{source}`, restricted to scores (`{score}`) in `range`.");
                let doc_count = format!("How many entities sorted index `{source}` holds.");
                let renamed = format!("renamed to `{}_ids_in_range` (the names say which queries take a range); `{}_ids` will take only a page, like `{}`", index.name, index.name, index.name);
                quote! {
                    #[doc = #doc_page]
                    #vis async fn #base(client: &#p::Client, #(#params)* page: #p::Page) -> #p::Result<#p::index::Listing<Self>> {
                        #p::index::page::<Self>(client, #name, #key, &#p::ScoreRange::all(), page).await
                    }
                    #[doc = #doc_range]
                    #vis async fn #in_range(client: &#p::Client, #(#params)* range: &#p::ScoreRange, page: #p::Page) -> #p::Result<#p::index::Listing<Self>> {
                        #p::index::page::<Self>(client, #name, #key, range, page).await
                    }
                    #[doc = #doc_ids]
                    #vis async fn #ids_in_range(client: &#p::Client, #(#params)* range: &#p::ScoreRange, page: #p::Page) -> #p::Result<::std::vec::Vec<::std::string::String>> {
                        #p::index::page_ids::<Self>(client, #name, #key, range, page).await
                    }
                    #[doc = #doc_ids]
                    #[deprecated(note = #renamed)]
                    #vis async fn #ids(client: &#p::Client, #(#params)* range: &#p::ScoreRange, page: #p::Page) -> #p::Result<::std::vec::Vec<::std::string::String>> {
                        #p::index::page_ids::<Self>(client, #name, #key, range, page).await
                    }
                    #[doc = #doc_count]
                    #vis async fn #count(client: &#p::Client, #(#params)*) -> #p::Result<::core::primitive::u64> {
                        #p::index::count::<Self>(client, #name, #key).await
                    }
                }
            }
            IndexKind::Set => {
                let doc_all = format!("All entities in set index `{source}`, sorted by id; two round trips (ids, then the hashes in one pipeline). Never returns expired entities; entities that do not decode are reported in the `Listing` (call `.strict()` for all or nothing).");
                let doc_ids = format!("All ids in set index `{source}`, sorted.");
                let doc_count = format!("How many entities set index `{source}` holds.");
                quote! {
                    #[doc = #doc_all]
                    #vis async fn #base(client: &#p::Client, #(#params)*) -> #p::Result<#p::index::Listing<Self>> {
                        #p::index::members::<Self>(client, #name, #key).await
                    }
                    #[doc = #doc_ids]
                    #vis async fn #ids(client: &#p::Client, #(#params)*) -> #p::Result<::std::vec::Vec<::std::string::String>> {
                        #p::index::member_ids::<Self>(client, #name, #key).await
                    }
                    #[doc = #doc_count]
                    #vis async fn #count(client: &#p::Client, #(#params)*) -> #p::Result<::core::primitive::u64> {
                        #p::index::count::<Self>(client, #name, #key).await
                    }
                }
            }
            IndexKind::Unique => {
                let Some(i) = index.value_field else { return TokenStream::new() };
                let f = &m.fields[i];
                let ty = f.ty;
                let hash = lit(&f.hash_name);
                let codec = codec_of(m, f);
                let field_name = unraw(f.ident);
                let doc = format!("The entity whose `{field_name}` is `value` (unique index `{source}`), if any; one round trip.");
                // A text field is looked up by any `&str`-like value
                // (`"a@b"`, `&String`), not only `&String`.
                let (value_ty, encode) = if is_string(ty) {
                    (
                        quote!(&(impl ::core::convert::AsRef<::core::primitive::str> + ?::core::marker::Sized)),
                        quote!(#codec.encode_str_to_vec(#hash, ::core::convert::AsRef::<::core::primitive::str>::as_ref(value))),
                    )
                } else {
                    (quote!(&#ty), quote!(#codec.encode_to_vec(#hash, value)))
                };
                quote! {
                    #[doc = #doc]
                    #vis async fn #base(client: &#p::Client, #(#params)* value: #value_ty) -> #p::Result<::core::option::Option<Self>> {
                        #p::index::unique::<Self>(client, #name, #key, #encode).await
                    }
                }
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl #ident {
            #(#methods)*
        }
    }
}

/// Whether `ty` is spelled as the standard `String` (`String`,
/// `std::string::String`, `::alloc::string::String`, ...). A local type named
/// `String` would match too; its codec then has no `encode_str_to_vec`, so
/// that is a compile error on the lookup, not a wrong encoding.
fn is_string(ty: &syn::Type) -> bool {
    let syn::Type::Path(syn::TypePath { qself: None, path }) = ty else {
        return false;
    };
    let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let plain = path.segments.iter().all(|s| s.arguments.is_none());
    plain
        && matches!(
            names
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice(),
            ["String"] | ["std" | "alloc", "string", "String"]
        )
}

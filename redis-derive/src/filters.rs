//! The generated filtered queries: for an entity with a sorted index and
//! set indexes keyed by one field each, a `<Type>Filter` struct naming the
//! set-index values to keep, and per sorted index `by_<index>_where` and
//! `by_<index>_where_count` (see `redis_runtime::index::filtered_page`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::IndexKind;
use crate::emit::{key_builder_calls, lit, private};
use crate::model::{FieldModel, IndexModel, Model, unraw};
use crate::queries::{IndexArgs, fixed_param};

/// The set indexes a filter can use (keyed by exactly one field), with
/// their position among the entity's indexes and that field.
fn filterable<'m, 'a>(m: &'m Model<'a>) -> Vec<(usize, &'m IndexModel, &'m FieldModel<'a>)> {
    m.indexes
        .iter()
        .enumerate()
        .filter(|(_, index)| index.kind == IndexKind::Set)
        .filter_map(|(position, index)| {
            let mut fields = index.key.field_indexes();
            match (fields.next(), fields.next()) {
                (Some(only), None) => Some((position, index, &m.fields[only])),
                _ => None,
            }
        })
        .collect()
}

/// The filter struct and the `_where` queries; nothing when the entity has
/// no sorted index or no filterable set index.
pub(crate) fn filters(m: &Model<'_>) -> TokenStream {
    let sets = filterable(m);
    let has_sorted = m.indexes.iter().any(|i| i.kind == IndexKind::Sorted);
    if sets.is_empty() || !has_sorted {
        return TokenStream::new();
    }
    let p = private(m);
    let ident = m.ident;
    let vis = m.vis;
    let filter_ident = format_ident!("{}Filter", ident);
    let decls = sets.iter().map(|(_, index, f)| {
        let name = f.ident;
        let ty = f.option_of.unwrap_or(f.ty);
        let doc = format!(
            "`Some(v)`: keep only entities whose `{}` is `v` (set index `{}`).",
            unraw(name),
            index.key.source
        );
        quote! {
            #[doc = #doc]
            pub #name: ::core::option::Option<#ty>,
        }
    });
    let defaults = sets.iter().map(|(_, _, f)| {
        let name = f.ident;
        quote!(#name: ::core::option::Option::None)
    });
    // Each wanted value selects one set index key.
    let pushes = |filter_p: &syn::Ident| -> Vec<TokenStream> {
        sets.iter()
        .map(|(position, index, f)| {
            let name = f.ident;
            let pattern = lit(&index.key.source);
            let build = key_builder_calls(m, &index.key);
            quote! {
                if let ::core::option::Option::Some(#name) = &#filter_p.#name {
                    let key = (|| -> #p::Result<::std::string::String> {
                        ::core::result::Result::Ok(#p::KeyBuilder::new(#pattern) #(#build)* .finish())
                    })();
                    sets.push((&<Self as #p::Record>::descriptor().indexes[#position], key));
                }
            }
        })
        .collect()
    };
    let methods = m
        .indexes
        .iter()
        .enumerate()
        .filter(|(_, index)| index.kind == IndexKind::Sorted)
        .map(|(position, index)| {
            let sorted = quote!(&<Self as #p::Record>::descriptor().indexes[#position]);
            let base = format_ident!("{}_where", index.name);
            let count = format_ident!("{}_where_count", index.name);
            let IndexArgs { fields, params, key } = IndexArgs::of(m, index);
            let client_p = fixed_param(&fields, "client");
            let filter_p = fixed_param(&fields, "filter");
            let range_p = fixed_param(&fields, "range");
            let page_p = fixed_param(&fields, "page");
            let pushes = pushes(&filter_p);
            let source = &index.key.source;
            let doc_page = format!(
                "A page of sorted index `{source}` (its order and `range`) holding only the entities `filter` keeps, evaluated in Redis in one step, then read like `{}`. Never returns expired entities or entities whose values no longer match.",
                index.name
            );
            let doc_count =
                format!("How many entities of sorted index `{source}` within `range` `filter` keeps.");
            quote! {
                #[doc = #doc_page]
                #vis async fn #base(#client_p: &#p::Client, #(#params)* #filter_p: &#filter_ident, #range_p: &#p::ScoreRange, #page_p: #p::Page) -> #p::Result<#p::index::Listing<Self>> {
                    let mut sets: ::std::vec::Vec<#p::index::SetFilter> = ::std::vec::Vec::new();
                    #(#pushes)*
                    #p::index::filtered_page::<Self>(#client_p, #sorted, #key, sets, #range_p, #page_p).await
                }
                #[doc = #doc_count]
                #vis async fn #count(#client_p: &#p::Client, #(#params)* #filter_p: &#filter_ident, #range_p: &#p::ScoreRange) -> #p::Result<::core::primitive::u64> {
                    let mut sets: ::std::vec::Vec<#p::index::SetFilter> = ::std::vec::Vec::new();
                    #(#pushes)*
                    #p::index::filtered_count::<Self>(#client_p, #sorted, #key, sets, #range_p).await
                }
            }
        });
    let doc = format!(
        "Which set-index values a filtered query of [`{ident}`] keeps (`{ident}::by_<sorted index>_where`); `None` members do not filter. Build it with struct-update syntax: `{filter_ident} {{ field: Some(value), ..Default::default() }}`."
    );
    quote! {
        #[doc = #doc]
        #vis struct #filter_ident {
            #(#decls)*
        }

        #[automatically_derived]
        impl ::core::default::Default for #filter_ident {
            fn default() -> Self {
                Self { #(#defaults),* }
            }
        }

        #[automatically_derived]
        impl #ident {
            #(#methods)*
        }
    }
}

//! The generated index queries: for each index of an entity, the methods
//! that read it (`by_<index>`, its ids, counts, ranges, unique lookups,
//! cursor pages) and delete by it (`delete_<index>`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::IndexKind;
use crate::emit::{codec_of, key_builder_calls, lit, private};
use crate::model::{FieldModel, IndexModel, Model, unraw};

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
        let IndexArgs { fields, params, key } = IndexArgs::of(m, index);
        // The fixed parameters, renamed with a trailing `_` where a key
        // field of this index has the same name.
        let client_p = fixed_param(&fields, "client");
        let page_p = fixed_param(&fields, "page");
        let range_p = fixed_param(&fields, "range");
        let value_p = fixed_param(&fields, "value");
        let source = &index.key.source;
        let walk = Walk {
            index: &index.name,
            source,
            sorted: index.kind == IndexKind::Sorted,
            cross_slot: index.cross_slot,
        };
        // What a reader of a `cross_slot` index sees on a cluster.
        let read_note = if index.cross_slot {
            " On a Redis Cluster the index is `cross_slot`: it is updated just after each write, so an entity written a moment ago may be missing, and entities that no longer match are passed over (each one read is checked against the index)."
        } else {
            ""
        };
        let count_note = if index.cross_slot {
            " On a Redis Cluster the index is `cross_slot`: the count may include, for a moment, entities whose last write moved them elsewhere."
        } else {
            ""
        };
        let cursor_and_bulk = walk.methods(&p, vis, &name, &params, &key, [&client_p, &page_p]);
        match index.kind {
            IndexKind::Sorted => {
                let score = index.value_field.map(|i| unraw(m.fields[i].ident)).unwrap_or_default();
                let doc_page = format!("A page of entities from sorted index `{source}` (scored by `{score}`); two round trips (ids, then the hashes in one pipeline). Never returns expired entities; entities that do not decode are reported in the `Listing` (call `.strict()` for all or nothing).{read_note}");
                let doc_range = format!("Like `{}`, restricted to scores (`{score}`) in `range`.", index.name);
                let doc_ids = format!("A page of ids from sorted index `{source}`, restricted to scores (`{score}`) in `range`.{read_note}");
                let doc_count = format!("How many entities sorted index `{source}` holds.{count_note}");
                let renamed = format!("renamed to `{}_ids_in_range` (the names say which queries take a range); `{}_ids` will take only a page, like `{}`", index.name, index.name, index.name);
                quote! {
                    #[doc = #doc_page]
                    #vis async fn #base(#client_p: &#p::Client, #(#params)* #page_p: #p::Page) -> #p::Result<#p::index::Listing<Self>> {
                        #p::index::page::<Self>(#client_p, #name, #key, &#p::ScoreRange::all(), #page_p).await
                    }
                    #[doc = #doc_range]
                    #vis async fn #in_range(#client_p: &#p::Client, #(#params)* #range_p: &#p::ScoreRange, #page_p: #p::Page) -> #p::Result<#p::index::Listing<Self>> {
                        #p::index::page::<Self>(#client_p, #name, #key, #range_p, #page_p).await
                    }
                    #[doc = #doc_ids]
                    #vis async fn #ids_in_range(#client_p: &#p::Client, #(#params)* #range_p: &#p::ScoreRange, #page_p: #p::Page) -> #p::Result<::std::vec::Vec<::std::string::String>> {
                        #p::index::page_ids::<Self>(#client_p, #name, #key, #range_p, #page_p).await
                    }
                    #[doc = #doc_ids]
                    #[deprecated(note = #renamed)]
                    #vis async fn #ids(#client_p: &#p::Client, #(#params)* #range_p: &#p::ScoreRange, #page_p: #p::Page) -> #p::Result<::std::vec::Vec<::std::string::String>> {
                        #p::index::page_ids::<Self>(#client_p, #name, #key, #range_p, #page_p).await
                    }
                    #[doc = #doc_count]
                    #vis async fn #count(#client_p: &#p::Client, #(#params)*) -> #p::Result<::core::primitive::u64> {
                        #p::index::count::<Self>(#client_p, #name, #key).await
                    }
                    #cursor_and_bulk
                }
            }
            IndexKind::Set => {
                let doc_all = format!("All entities in set index `{source}`, sorted by id; two round trips (ids, then the hashes in one pipeline). Never returns expired entities; entities that do not decode are reported in the `Listing` (call `.strict()` for all or nothing).{read_note}");
                let doc_ids = format!("All ids in set index `{source}`, sorted.{read_note}");
                let doc_count = format!("How many entities set index `{source}` holds.{count_note}");
                quote! {
                    #[doc = #doc_all]
                    #vis async fn #base(#client_p: &#p::Client, #(#params)*) -> #p::Result<#p::index::Listing<Self>> {
                        #p::index::members::<Self>(#client_p, #name, #key).await
                    }
                    #[doc = #doc_ids]
                    #vis async fn #ids(#client_p: &#p::Client, #(#params)*) -> #p::Result<::std::vec::Vec<::std::string::String>> {
                        #p::index::member_ids::<Self>(#client_p, #name, #key).await
                    }
                    #[doc = #doc_count]
                    #vis async fn #count(#client_p: &#p::Client, #(#params)*) -> #p::Result<::core::primitive::u64> {
                        #p::index::count::<Self>(#client_p, #name, #key).await
                    }
                    #cursor_and_bulk
                }
            }
            IndexKind::Unique => {
                let Some(i) = index.value_field else { return TokenStream::new() };
                let f = &m.fields[i];
                let ty = f.ty;
                let hash = lit(&f.hash_name);
                let codec = codec_of(m, f);
                let field_name = unraw(f.ident);
                let trips = if index.cross_slot {
                    "one round trip; on a Redis Cluster two, the entity read after the hash names it and returned only if it holds `value` (`cross_slot`)"
                } else {
                    "one round trip"
                };
                let doc = format!("The entity whose `{field_name}` is `value` (unique index `{source}`), if any; {trips}.");
                // A text field is looked up by any `&str`-like value
                // (`"a@b"`, `&String`), not only `&String`.
                let (value_ty, encode) = if is_string(ty) {
                    (
                        quote!(&(impl ::core::convert::AsRef<::core::primitive::str> + ?::core::marker::Sized)),
                        quote!(#codec.encode_str_to_vec(#hash, ::core::convert::AsRef::<::core::primitive::str>::as_ref(#value_p))),
                    )
                } else {
                    (quote!(&#ty), quote!(#codec.encode_to_vec(#hash, #value_p)))
                };
                quote! {
                    #[doc = #doc]
                    #vis async fn #base(#client_p: &#p::Client, #(#params)* #value_p: #value_ty) -> #p::Result<::core::option::Option<Self>> {
                        #p::index::unique::<Self>(#client_p, #name, #key, #encode).await
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

/// The cursor pages and the bulk delete of one set or sorted index:
/// `<index>_after`, `<index>_ids_after` and `delete_<index>`.
struct Walk<'a> {
    index: &'a str,
    source: &'a str,
    sorted: bool,
    /// The index is `cross_slot`: on a cluster these read it in windows
    /// and check each entity (see the docs they generate).
    cross_slot: bool,
}

impl Walk<'_> {
    fn methods(
        &self,
        p: &TokenStream,
        vis: &syn::Visibility,
        name: &TokenStream,
        params: &[TokenStream],
        key: &TokenStream,
        [client_p, page_p]: [&syn::Ident; 2],
    ) -> TokenStream {
        let index = self.index;
        let source = self.source;
        let after = format_ident!("{index}_after");
        let ids_after = format_ident!("{index}_ids_after");
        let delete = format_ident!("delete_{index}");
        let (kind, order, cost) = if self.sorted {
            (
                "sorted",
                "by score, equal scores by id",
                "two round trips (ids, then the hashes in one pipeline)",
            )
        } else {
            (
                "set",
                "by id (`CursorPage::by_id`; `Order::Descending` walks from the greatest id)",
                "two round trips (a script picks the page's ids from the members, then the hashes in one pipeline); the script costs O(N) server time per page for N members",
            )
        };
        let (cluster_walk, cluster_delete) = if self.cross_slot {
            (
                " On a Redis Cluster, where the index is `cross_slot`, the entries are read in windows of 200 and each entity is checked against the index: entities that no longer match are passed over, and a page reads every entry up to its last match.",
                " On a Redis Cluster, where the type's writes defer (`cross_slot`), its entities are deleted one by one instead, each only while it still matches.",
            )
        } else {
            ("", "")
        };
        let doc_after = format!(
            "The entities of {kind} index `{source}` after `page.after`, {order}: at most `page.limit`, and the cursor to continue after (`None` at the end); {cost}. Stable while others insert and delete: an entity in the index for the whole walk is returned exactly once, and none twice. Never returns expired entities; entities that do not decode are reported in the listing.{cluster_walk}"
        );
        let doc_ids = format!(
            "The ids of {kind} index `{source}` after `page.after`, {order}, and the cursor to continue after; one round trip. Stable like `{index}_after`.{cluster_walk}"
        );
        let doc_delete = format!(
            "Deletes every entity {kind} index `{source}` lists, each exactly as `delete` does (with all its index, unique and TTL-registry entries), in atomic batches of 100; returns how many were deleted. Not atomic as a whole: other clients see the index shrink batch by batch (`{index}_count` counts it first).{cluster_delete}"
        );
        quote! {
            #[doc = #doc_after]
            #vis async fn #after(#client_p: &#p::Client, #(#params)* #page_p: &#p::index::CursorPage) -> #p::Result<#p::index::CursorListing<Self>> {
                #p::index::page_after::<Self>(#client_p, #name, #key, #page_p).await
            }
            #[doc = #doc_ids]
            #vis async fn #ids_after(#client_p: &#p::Client, #(#params)* #page_p: &#p::index::CursorPage) -> #p::Result<#p::index::CursorIds> {
                #p::index::ids_after::<Self>(#client_p, #name, #key, #page_p).await
            }
            #[doc = #doc_delete]
            #vis async fn #delete(#client_p: &#p::Client, #(#params)*) -> #p::Result<::core::primitive::u64> {
                #p::index::delete_all::<Self>(#client_p, #name, #key).await
            }
        }
    }
}

/// What every generated method of one index takes and builds: the key
/// fields (one `&impl KeyPart` parameter each, named after the field) and
/// the expression that renders the index key from them.
pub(crate) struct IndexArgs<'m, 'a> {
    /// The fields filling the index key's placeholders, in order.
    pub(crate) fields: Vec<&'m FieldModel<'a>>,
    /// `field: &(impl KeyPart + ?Sized),` per key field.
    pub(crate) params: Vec<TokenStream>,
    /// A `Result<String>` expression: the index key.
    pub(crate) key: TokenStream,
}

impl<'m, 'a> IndexArgs<'m, 'a> {
    pub(crate) fn of(m: &'m Model<'a>, index: &IndexModel) -> Self {
        let p = private(m);
        let fields: Vec<&FieldModel<'_>> =
            index.key.field_indexes().map(|i| &m.fields[i]).collect();
        let params = fields
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
        Self {
            fields,
            params,
            key,
        }
    }
}

/// The name of a fixed parameter of a generated query (`page`, `range`,
/// ...): `name`, or `name_` when a key field of the index is called that,
/// so the two never clash.
pub(crate) fn fixed_param(fields: &[&FieldModel<'_>], name: &str) -> syn::Ident {
    if fields.iter().any(|f| unraw(f.ident) == name) {
        format_ident!("{name}_")
    } else {
        format_ident!("{name}")
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

//! Phase 3: generate code. Everything is named by absolute path (through
//! `<runtime>::__private`, `::core`, `::std`, `::core::primitive`), so user
//! code needs no imports and local types named `Result`, `Option`, `String`,
//! `Vec`, `str`, `u8`, `i64` or `bool` cannot capture our paths.
//! Generated code stays thin: it fills in static layouts and per-field
//! encode/decode calls; the runtime does the work.
//!
//! Every trait bound a field's type must meet is required in exactly one
//! place, spanned on that type (see [`field_items`] and [`type_checks`]), so
//! a type that cannot play its role is reported once, on the field.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::IndexKind;
use crate::emit::{
    codec_of, index_pattern_fields, key_fields, key_part_of, lit, private, put_field,
};
use crate::methods::inherent;
use crate::model::{EmptyRule, FieldModel, KeyModel, Model, Segment, unraw};
use crate::patch::patch;

pub(crate) fn record(m: &Model<'_>) -> TokenStream {
    let ident = m.ident;
    let p = private(m);
    let items = field_items(m);
    let descriptor = descriptor(m);
    let write_fields = write_fields(m);
    let read_fields = read_fields(m);
    quote! {
        #items

        #[automatically_derived]
        impl #p::Record for #ident {
            fn descriptor() -> &'static #p::EntityDescriptor {
                #descriptor
            }
            #write_fields
            #read_fields
        }
    }
}

pub(crate) fn entity(m: &Model<'_>) -> TokenStream {
    let items = [
        record(m),
        entity_impl(m),
        inherent(m),
        crate::queries::queries(m),
        crate::filters::filters(m),
        patch(m),
        type_checks(m),
    ];
    quote!(#(#items)*)
}

/// Hidden associated items, one per field role, each the single place where
/// the field's type must implement a runtime trait, spanned on that type:
///
/// - `__codec_<field>`: the field's codec (`FieldValue`, or serde for
///   `json`), used by the descriptor, the writes, the reads, the patch and
///   the unique-index lookups;
/// - `__key_part_<field>`: the text of a key or index-key field (`KeyPart`);
/// - `__expires_at`: the `expires_at` field as epoch ms (`ExpiryValue`).
///
/// Everything else calls these with concrete types, so a type that cannot
/// play its role is reported exactly once, on the field.
fn field_items(m: &Model<'_>) -> TokenStream {
    let ident = m.ident;
    let p = private(m);
    let c = private(m);
    let mut items = Vec::new();
    for (_, f) in stored(m) {
        let codec = format_ident!("__codec_{}", unraw(f.ident));
        let ty = f.value_ty();
        let make = if f.json {
            quote_spanned!(ty.span()=> #c::json_codec::<#ty>())
        } else {
            quote_spanned!(ty.span()=> #c::field_codec::<#ty>())
        };
        items.push(quote!(const #codec: #c::FieldCodec<#ty> = #make;));
    }
    if m.key.is_some() {
        let key_part_fields = key_fields(m)
            .into_iter()
            .chain(index_pattern_fields(m).into_iter().map(|(_, f)| f));
        for f in key_part_fields {
            let helper = format_ident!("__key_part_{}", unraw(f.ident));
            let ty = f.ty;
            let body = quote_spanned!(ty.span()=> <#ty as #p::KeyPart>::key_part(value));
            items.push(quote! {
                fn #helper(value: &#ty) -> #p::Cow<'_, ::core::primitive::str> {
                    #body
                }
            });
        }
        if let Some(i) = m.expires_at {
            let f = &m.fields[i];
            let ty = f.ty;
            let name = lit(&f.hash_name);
            let body = quote_spanned!(ty.span()=> #p::expiry_of::<#ty>(#name, value));
            items.push(quote! {
                fn __expires_at(value: &#ty) -> #p::Result<::core::option::Option<::core::primitive::i64>> {
                    #body
                }
            });
        }
    }
    if items.is_empty() {
        return TokenStream::new();
    }
    quote! {
        #[automatically_derived]
        #[allow(non_upper_case_globals)]
        impl #ident {
            #(#items)*
        }
    }
}

fn stored<'m, 'a>(m: &'m Model<'a>) -> impl Iterator<Item = (usize, &'m FieldModel<'a>)> {
    m.fields.iter().enumerate().filter(|(_, f)| !f.skip)
}

/// `Some(n)` / `None` as a `u64` option literal.
fn optional_u64(value: Option<u64>) -> TokenStream {
    match value {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    }
}

fn descriptor(m: &Model<'_>) -> TokenStream {
    let p = private(m);
    let name = lit(&m.ident.to_string());
    let key_pattern = lit(m.key.as_ref().map(|k| k.source.as_str()).unwrap_or(""));
    let ttl = optional_u64(m.ttl_ms);
    let fields = stored(m).map(|(_, f)| {
        let rust_name = lit(&unraw(f.ident));
        let hash_name = lit(&f.hash_name);
        let optional = f.option_of.is_some();
        let is_key = f.is_key;
        let codec = codec_of(m, f);
        quote! {
            #p::FieldDescriptor {
                rust_name: #rust_name,
                hash_name: #hash_name,
                optional: #optional,
                is_key: #is_key,
                encoding: #codec.encoding(),
            }
        }
    });
    let indexes = m.indexes.iter().map(|index| {
        let kind = match index.kind {
            IndexKind::Set => quote!(#p::entity::IndexKind::Set),
            IndexKind::Sorted => quote!(#p::entity::IndexKind::Sorted),
            IndexKind::Unique => quote!(#p::entity::IndexKind::Unique),
        };
        let name = lit(&index.name);
        let key_pattern = lit(&index.key.source);
        let key = pattern_parts(m, &index.key);
        let field = match index.value_field {
            Some(i) => {
                let hash = lit(&m.fields[i].hash_name);
                quote!(::core::option::Option::Some(#hash))
            }
            None => quote!(::core::option::Option::None),
        };
        let cross_slot = index.cross_slot;
        quote! {
            #p::IndexDescriptor { kind: #kind, name: #name, key_pattern: #key_pattern, key: #key, value_field: #field, cross_slot: #cross_slot }
        }
    });
    let stream = match &m.stream {
        Some(stream) => {
            let key = lit(&stream.key);
            let maxlen = stream.maxlen;
            let cross_slot = stream.cross_slot;
            // `new(0)` is `None`: a stream that is not trimmed.
            quote!(::core::option::Option::Some(#p::StreamDescriptor { key: #key, maxlen: #p::NonZeroU64::new(#maxlen), cross_slot: #cross_slot }))
        }
        None => quote!(::core::option::Option::None),
    };
    let key = match &m.key {
        Some(key) => pattern_parts(m, key),
        None => quote!(&[]),
    };
    let ttl_registry = match &m.ttl_registry {
        Some(registry) => {
            let registry = lit(registry);
            quote!(::core::option::Option::Some(#registry))
        }
        None => quote!(::core::option::Option::None),
    };
    let version = match m.version {
        Some(i) => {
            let hash = lit(&m.fields[i].hash_name);
            quote!(::core::option::Option::Some(#hash))
        }
        None => quote!(::core::option::Option::None),
    };
    let cluster = m.cluster;
    let ttl_registry_per_tag = m.ttl_registry_per_tag;
    let logs = m.logs.iter().map(|log| {
        let name = lit(&log.name);
        let key_pattern = lit(&log.key);
        let ttl = optional_u64(log.ttl_ms);
        let max_len = optional_u64(log.max_len);
        quote!(#p::LogDescriptor { name: #name, key_pattern: #key_pattern, ttl_ms: #ttl, max_len: #max_len })
    });
    quote! {
        static DESCRIPTOR: #p::EntityDescriptor = #p::EntityDescriptor {
            name: #name,
            key_pattern: #key_pattern,
            key: #key,
            ttl_ms: #ttl,
            fields: &[#(#fields),*],
            indexes: &[#(#indexes),*],
            stream: #stream,
            ttl_registry: #ttl_registry,
            ttl_registry_per_tag: #ttl_registry_per_tag,
            logs: &[#(#logs),*],
            version: #version,
            cluster: #cluster,
        };
        &DESCRIPTOR
    }
}

fn write_fields(m: &Model<'_>) -> TokenStream {
    let p = private(m);
    let writes = stored(m).map(|(_, f)| {
        let ident = f.ident;
        let name = lit(&f.hash_name);
        if f.option_of.is_some() {
            let put = put_field(m, f, quote!(value));
            quote! {
                match &self.#ident {
                    ::core::option::Option::Some(value) => { #put }
                    ::core::option::Option::None => sink.absent(#name),
                }
            }
        } else {
            put_field(m, f, quote!(&self.#ident))
        }
    });
    quote! {
        fn write_fields(&self, sink: &mut dyn #p::FieldSink) -> #p::Result<()> {
            let mut scratch = <::std::vec::Vec<::core::primitive::u8> as ::core::default::Default>::default();
            #(#writes)*
            let _ = &mut scratch;
            ::core::result::Result::Ok(())
        }
    }
}

fn read_fields(m: &Model<'_>) -> TokenStream {
    let p = private(m);
    let slots: Vec<syn::Ident> = m
        .fields
        .iter()
        .enumerate()
        .map(|(i, _)| format_ident!("__field{}", i))
        .collect();
    // One slot per stored name and per alias; an alias fills the field
    // only when its canonical name is absent, earlier aliases first.
    let alias_slots = |i: usize, f: &FieldModel<'_>| -> Vec<syn::Ident> {
        (0..f.aliases.len())
            .map(|j| format_ident!("__field{}_alias{}", i, j))
            .collect()
    };
    let declare = stored(m).map(|(i, f)| {
        let slot = &slots[i];
        let aliases = alias_slots(i, f);
        quote! {
            let mut #slot: ::core::option::Option<&[::core::primitive::u8]> = ::core::option::Option::None;
            #(let mut #aliases: ::core::option::Option<&[::core::primitive::u8]> = ::core::option::Option::None;)*
        }
    });
    let arms = stored(m).flat_map(|(i, f)| {
        let names = std::iter::once(&f.hash_name).chain(&f.aliases);
        let targets = std::iter::once(slots[i].clone()).chain(alias_slots(i, f));
        names
            .zip(targets)
            .map(|(name, slot)| {
                let bytes = syn::LitByteStr::new(name.as_bytes(), proc_macro2::Span::call_site());
                quote!(#bytes => #slot = ::core::option::Option::Some(value),)
            })
            .collect::<Vec<_>>()
    });
    let fallbacks = stored(m)
        .filter(|(_, f)| !f.aliases.is_empty())
        .map(|(i, f)| {
            let slot = &slots[i];
            let aliases = alias_slots(i, f);
            quote!(let #slot = #slot #(.or(#aliases))*;)
        });
    let inits = m.fields.iter().enumerate().map(|(i, f)| {
        let ident = f.ident;
        if f.skip {
            return quote!(#ident: ::core::default::Default::default());
        }
        let slot = &slots[i];
        let name = lit(&f.hash_name);
        let codec = codec_of(m, f);
        let ty = f.ty;
        let expr = match (f.option_of.is_some(), f.default) {
            (true, _) => {
                let decode = match f.empty {
                    EmptyRule::Auto => quote!(decode_optional),
                    EmptyRule::None => quote!(decode_optional_empty_none),
                    EmptyRule::Some => quote!(decode_optional_strict),
                };
                quote!(#codec.#decode(key, #name, #slot)?)
            }
            // `default` needs `T: Default`: report a missing impl on the field.
            (false, true) => {
                let decode = quote_spanned!(ty.span()=> decode_or_default);
                quote!(#codec.#decode(key, #name, #slot)?)
            }
            (false, false) => quote!(#codec.decode_required(key, #name, #slot)?),
        };
        quote!(#ident: #expr)
    });
    quote! {
        fn read_fields(key: &::core::primitive::str, fields: &#p::RawFields<'_>) -> #p::Result<Self> {
            #(#declare)*
            for &(name, value) in fields.iter() {
                match name {
                    #(#arms)*
                    _ => {}
                }
            }
            #(#fallbacks)*
            let _ = key;
            ::core::result::Result::Ok(Self { #(#inits),* })
        }
    }
}

/// `&[PatternPart::Literal("user:"), PatternPart::Field(0)]`: a key
/// pattern as the descriptor holds it, each placeholder resolved to the
/// position of its field among the stored fields.
fn pattern_parts(m: &Model<'_>, key: &KeyModel) -> TokenStream {
    let p = private(m);
    let parts = key.segments.iter().map(|s| match s {
        Segment::Literal(text) => {
            let text = lit(text);
            quote!(#p::PatternPart::Literal(#text))
        }
        Segment::Field(i) => {
            let position = stored(m).position(|(j, _)| j == *i).unwrap_or(0);
            quote!(#p::PatternPart::Field(#position))
        }
    });
    quote!(&[#(#parts),*])
}

fn entity_impl(m: &Model<'_>) -> TokenStream {
    let p = private(m);
    let ident = m.ident;
    if m.key.is_none() {
        return TokenStream::new();
    };
    let key_args: Vec<TokenStream> = key_fields(m)
        .into_iter()
        .map(|f| {
            let ident = f.ident;
            let key_part = key_part_of(m, f);
            quote!(&*#key_part(&self.#ident))
        })
        .collect();
    let checks = index_pattern_fields(m).into_iter().map(|(pattern, f)| {
        let ident = f.ident;
        let name = lit(&f.hash_name);
        let pattern = lit(pattern);
        let key_part = key_part_of(m, f);
        quote!(#p::KeyBuilder::new(#pattern).part(#name, &*#key_part(&self.#ident))?;)
    });
    let expires = m.expires_at.map(|i| {
        let ident = m.fields[i].ident;
        quote! {
            fn expires_at_ms(&self) -> #p::Result<::core::option::Option<::core::primitive::i64>> {
                Self::__expires_at(&self.#ident)
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl #p::Entity for #ident {
            fn key(&self) -> #p::Result<::std::string::String> {
                Self::__entity_key(#(#key_args),*).map(|k| k.key)
            }
            fn member(&self) -> #p::Result<::std::string::String> {
                Self::__entity_key(#(#key_args),*).map(|k| k.member)
            }
            fn entity_key(&self) -> #p::Result<#p::entity::EntityKey> {
                Self::__entity_key(#(#key_args),*)
            }
            fn check_index_values(&self) -> #p::Result<()> {
                #(#checks)*
                ::core::result::Result::Ok(())
            }
            #expires
        }
    }
}

/// Trait-bound assertions for roles no generated code exercises (a sorted
/// index's score is read by the write script, not by Rust), spanned on the
/// user's field type so a type that cannot play its role is reported there.
fn type_checks(m: &Model<'_>) -> TokenStream {
    let p = private(m);
    let checks: Vec<TokenStream> = m
        .indexes
        .iter()
        .filter_map(|index| match (index.kind, index.value_field) {
            (IndexKind::Sorted, Some(i)) => {
                let ty = m.fields[i].ty;
                Some(quote_spanned!(ty.span()=> __assert_score::<#ty>();))
            }
            _ => None,
        })
        .collect();
    if checks.is_empty() {
        return TokenStream::new();
    }
    quote! {
        const _: fn() = || {
            fn __assert_score<T: #p::ScoreValue>() {}
            #(#checks)*
        };
    }
}

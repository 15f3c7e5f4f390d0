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
use crate::valid::{EmptyRule, FieldModel, KeyModel, Model, Segment, is_integer, unraw};

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

pub(crate) fn private(m: &Model<'_>) -> TokenStream {
    let krate = &m.krate;
    quote!(#krate::__private)
}

/// `Type::__codec_<field>`: the field's codec constant (see [`field_items`]).
pub(crate) fn codec_of(m: &Model<'_>, f: &FieldModel<'_>) -> TokenStream {
    let ident = m.ident;
    let codec = format_ident!("__codec_{}", unraw(f.ident));
    quote!(#ident::#codec)
}

/// `Type::__key_part_<field>`: the field's key text (see [`field_items`]).
fn key_part_of(m: &Model<'_>, f: &FieldModel<'_>) -> TokenStream {
    let ident = m.ident;
    let helper = format_ident!("__key_part_{}", unraw(f.ident));
    quote!(#ident::#helper)
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

pub(crate) fn lit(s: &str) -> syn::LitStr {
    syn::LitStr::new(s, proc_macro2::Span::call_site())
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
            #p::IndexDescriptor { kind: #kind, name: #name, key_pattern: #key_pattern, key: #key, score_field: #field, cross_slot: #cross_slot }
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

/// Encodes `value` (an expression of type `&value_ty`) into `scratch` and
/// puts it.
fn put_field(m: &Model<'_>, f: &FieldModel<'_>, value: TokenStream) -> TokenStream {
    let name = lit(&f.hash_name);
    let codec = codec_of(m, f);
    quote! {
        #codec.encode(#name, #value, &mut scratch)?;
        sink.put(#name, &scratch);
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

/// `.literal("user:").part("id", id)?` calls that build a key from the
/// parameters named after its fields.
pub(crate) fn key_builder_calls(m: &Model<'_>, key: &KeyModel) -> Vec<TokenStream> {
    key.segments
        .iter()
        .map(|s| match s {
            Segment::Literal(text) => {
                let text = lit(text);
                quote!(.literal(#text))
            }
            Segment::Field(i) => {
                let f = &m.fields[*i];
                let name = lit(&f.hash_name);
                let ident = f.ident;
                quote!(.part(#name, #ident)?)
            }
        })
        .collect()
}

fn key_fields<'m, 'a>(m: &'m Model<'a>) -> Vec<&'m FieldModel<'a>> {
    m.key
        .as_ref()
        .map(|k| k.field_indexes().map(|i| &m.fields[i]).collect())
        .unwrap_or_default()
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

/// Fields that appear in index key patterns, with the pattern they fill.
fn index_pattern_fields<'m, 'a>(m: &'m Model<'a>) -> Vec<(&'m str, &'m FieldModel<'a>)> {
    let mut out: Vec<(&str, &FieldModel<'_>)> = Vec::new();
    for index in &m.indexes {
        for i in index.key.field_indexes() {
            let f = &m.fields[i];
            if !f.is_key && !out.iter().any(|(_, seen)| seen.ident == f.ident) {
                out.push((index.key.source.as_str(), f));
            }
        }
    }
    out
}

fn inherent(m: &Model<'_>) -> TokenStream {
    let p = private(m);
    let ident = m.ident;
    let vis = m.vis;
    let logs = m.logs.iter().map(|log| {
        let method = format_ident!("{}_log", log.name);
        let key = lit(&log.key);
        let ttl = match log.ttl_ms {
            Some(ms) => quote!(::core::option::Option::Some(#p::Duration::from_millis(#ms))),
            None => quote!(::core::option::Option::None),
        };
        let max_len = log.max_len.map(|n| quote!(.map(|log| log.with_max_len(#n))));
        let ttl_doc = match log.ttl_ms {
            Some(ms) => format!(", expiring {ms} ms after the last append"),
            None => String::new(),
        };
        let doc = format!(
            "The `{}` append log of each `{ident}`: a list at `{}`{ttl_doc}. Address it with the entity's id.",
            log.name, log.key
        );
        quote! {
            #[doc = #doc]
            #vis fn #method(client: &#p::Client) -> #p::Result<#p::AppendLog<::std::string::String>> {
                #p::AppendLog::new(client, #key, #ttl) #max_len
            }
        }
    });
    let Some(key) = &m.key else {
        return TokenStream::new();
    };
    let patch_ident = &m.patch_ident;
    let fields = key_fields(m);
    let params: Vec<TokenStream> = fields
        .iter()
        .map(|f| {
            let ident = f.ident;
            quote!(#ident: &(impl #p::KeyPart + ?::core::marker::Sized))
        })
        .collect();
    let args: Vec<&syn::Ident> = fields.iter().map(|f| f.ident).collect();
    let counters = counters(m, &params, &args);
    let versioned = versioned(m, &params, &args);
    let pattern = lit(&key.source);
    let build = key_builder_calls(m, key);
    let member_parts = fields.iter().map(|f| {
        let ident = f.ident;
        quote!(#p::KeyPart::key_part(#ident))
    });
    let doc_key = format!(
        "Builds the key of a `{ident}` (`{}`) from its key fields; `INVALID_KEY` if a value could break out of its segment.",
        key.source
    );
    let get_many = if fields.len() == 1 {
        let arg = fields[0].ident;
        quote! {
            /// Reads many entities in one round trip (a pipeline); the result keeps the order of `ids`, with `None` for missing ones.
            #vis async fn get_many<I>(client: &#p::Client, ids: I) -> #p::Result<::std::vec::Vec<::core::option::Option<Self>>>
            where
                I: ::core::iter::IntoIterator,
                I::Item: #p::KeyPart,
            {
                let mut keys = ::std::vec::Vec::new();
                for #arg in ids {
                    keys.push(Self::__entity_key(&#arg).map(|k| k.key));
                }
                #p::entity::get_many::<Self>(client, keys).await
            }
        }
    } else {
        quote! {
            /// Reads many entities by key (see `key_for`) in one round trip; order is kept, `None` for missing ones.
            #vis async fn get_many(client: &#p::Client, keys: ::std::vec::Vec<::std::string::String>) -> #p::Result<::std::vec::Vec<::core::option::Option<Self>>> {
                #p::entity::get_many::<Self>(client, keys.into_iter().map(::core::result::Result::Ok).collect()).await
            }
        }
    };
    quote! {
        #[automatically_derived]
        impl #ident {
            #[doc = #doc_key]
            #vis fn key_for(#(#params),*) -> #p::Result<::std::string::String> {
                Self::__entity_key(#(#args),*).map(|k| k.key)
            }

            #[doc(hidden)]
            fn __entity_key(#(#params),*) -> #p::Result<#p::entity::EntityKey> {
                let key = #p::KeyBuilder::new(#pattern) #(#build)* .finish();
                let member = [#(#member_parts),*].join(":");
                ::core::result::Result::Ok(#p::entity::EntityKey { key, member })
            }

            /// Creates it: fails with `ALREADY_EXISTS` and writes nothing if the key exists. TTL, index entries and stream entry are written in the same atomic step.
            #vis async fn create(&self, client: &#p::Client) -> #p::Result<#p::WriteOutcome> {
                #p::entity::create(client, self).await
            }

            /// Creates it, or replaces its declared fields (upsert), restarting its TTL; fields the type does not declare are left alone.
            #vis async fn save(&self, client: &#p::Client) -> #p::Result<#p::WriteOutcome> {
                #p::entity::save(client, self).await
            }

            /// Replaces the stored entity's declared fields, removing those that are now `None` (fields the type does not declare are left alone); keeps the remaining TTL. `NOT_FOUND` if absent.
            #vis async fn update(&self, client: &#p::Client) -> #p::Result<()> {
                #p::entity::update(client, self, #p::TtlChange::Keep).await
            }

            /// Like `update`, and restarts the declared TTL.
            #vis async fn update_refreshing_ttl(&self, client: &#p::Client) -> #p::Result<()> {
                #p::entity::update(client, self, #p::TtlChange::Refresh).await
            }

            /// Reads it; `None` when absent or expired.
            #vis async fn get(client: &#p::Client, #(#params),*) -> #p::Result<::core::option::Option<Self>> {
                #p::entity::get::<Self>(client, Self::__entity_key(#(#args),*).map(|k| k.key)).await
            }

            #get_many

            #(#logs)*

            /// Applies a partial update; fields left `None` in the patch are untouched. Keeps the remaining TTL. `NOT_FOUND` if absent.
            #vis async fn patch(client: &#p::Client, #(#params,)* patch: &#patch_ident) -> #p::Result<()> {
                #p::entity::patch(client, Self::__entity_key(#(#args),*), patch, #p::TtlChange::Keep).await
            }

            /// Like `patch`, and restarts the declared TTL.
            #vis async fn patch_refreshing_ttl(client: &#p::Client, #(#params,)* patch: &#patch_ident) -> #p::Result<()> {
                #p::entity::patch(client, Self::__entity_key(#(#args),*), patch, #p::TtlChange::Refresh).await
            }

            /// Applies `patch` only if the stored entity holds every value `expected` names (`Some(v)`: stored as `v`; `Some(None)` on an optional field: absent; `None`: not checked), in one atomic step. `Conditional::Failed` carries the entity as stored when a value did not hold; nothing is written then. `NOT_FOUND` if absent.
            #vis async fn patch_if(client: &#p::Client, #(#params,)* expected: &#patch_ident, patch: &#patch_ident) -> #p::Result<#p::Conditional<Self>> {
                #p::entity::patch_if(client, Self::__entity_key(#(#args),*), expected, patch, #p::TtlChange::Keep).await
            }

            #(#counters)*

            #versioned

            /// Deletes it and all its index entries; returns whether it existed.
            #vis async fn delete(client: &#p::Client, #(#params),*) -> #p::Result<::core::primitive::bool> {
                #p::entity::delete::<Self>(client, Self::__entity_key(#(#args),*)).await
            }

            /// Whether it exists (and has not expired).
            #vis async fn exists(client: &#p::Client, #(#params),*) -> #p::Result<::core::primitive::bool> {
                #p::entity::exists::<Self>(client, Self::__entity_key(#(#args),*).map(|k| k.key)).await
            }

            /// Its remaining lifetime.
            #vis async fn ttl(client: &#p::Client, #(#params),*) -> #p::Result<#p::Ttl> {
                #p::entity::ttl::<Self>(client, Self::__entity_key(#(#args),*).map(|k| k.key)).await
            }

            /// Makes it expire `ttl` from now (extending or shortening its life); returns whether it exists.
            #vis async fn expire(client: &#p::Client, #(#params,)* ttl: #p::Duration) -> #p::Result<::core::primitive::bool> {
                #p::entity::expire::<Self>(client, Self::__entity_key(#(#args),*), ::core::option::Option::Some(ttl)).await
            }

            /// Removes its TTL so it never expires; returns whether it exists.
            #vis async fn persist(client: &#p::Client, #(#params),*) -> #p::Result<::core::primitive::bool> {
                #p::entity::expire::<Self>(client, Self::__entity_key(#(#args),*), ::core::option::Option::None).await
            }
        }
    }
}

fn patch(m: &Model<'_>) -> TokenStream {
    let p = private(m);
    let ident = m.ident;
    let vis = m.vis;
    let patch_ident = &m.patch_ident;
    // The version is written by the server on every write, never by hand.
    let patchable: Vec<&FieldModel<'_>> = m
        .fields
        .iter()
        .enumerate()
        .filter(|(i, f)| !f.skip && !f.is_key && m.version != Some(*i))
        .map(|(_, f)| f)
        .collect();
    let decls = patchable.iter().map(|f| {
        let name = f.ident;
        let ty = f.ty;
        let doc = if f.option_of.is_some() {
            format!(
                "`Some(Some(v))` sets `{}`, `Some(None)` removes it, `None` leaves it.",
                unraw(name)
            )
        } else {
            format!("`Some(v)` sets `{}`, `None` leaves it.", unraw(name))
        };
        quote! {
            #[doc = #doc]
            pub #name: ::core::option::Option<#ty>,
        }
    });
    let defaults = patchable.iter().map(|f| {
        let name = f.ident;
        quote!(#name: ::core::option::Option::None)
    });
    let writes = patchable.iter().map(|f| {
        let name = f.ident;
        let hash = lit(&f.hash_name);
        let put = put_field(m, f, quote!(value));
        if f.option_of.is_some() {
            quote! {
                match &self.#name {
                    ::core::option::Option::Some(::core::option::Option::Some(value)) => { #put }
                    ::core::option::Option::Some(::core::option::Option::None) => sink.absent(#hash),
                    ::core::option::Option::None => {}
                }
            }
        } else {
            quote! {
                if let ::core::option::Option::Some(value) = &self.#name { #put }
            }
        }
    });
    let checks = index_pattern_fields(m).into_iter().map(|(pattern, f)| {
        let name = f.ident;
        let hash = lit(&f.hash_name);
        let pattern = lit(pattern);
        let key_part = key_part_of(m, f);
        quote! {
            if let ::core::option::Option::Some(value) = &self.#name {
                #p::KeyBuilder::new(#pattern).part(#hash, &*#key_part(value))?;
            }
        }
    });
    let expires = m.expires_at.filter(|i| !m.fields[*i].is_key).map(|i| {
        let name = m.fields[i].ident;
        quote! {
            fn expires_at_ms(&self) -> #p::Result<::core::option::Option<::core::primitive::i64>> {
                match &self.#name {
                    ::core::option::Option::Some(value) => #ident::__expires_at(value),
                    ::core::option::Option::None => ::core::result::Result::Ok(::core::option::Option::None),
                }
            }
        }
    });
    let doc = format!(
        "A partial update of [`{ident}`] for `{ident}::patch`: each `None` member leaves that field as stored. Build it with struct-update syntax: `{patch_ident} {{ field: Some(value), ..Default::default() }}`."
    );
    quote! {
        #[doc = #doc]
        #vis struct #patch_ident {
            #(#decls)*
        }

        #[automatically_derived]
        impl ::core::default::Default for #patch_ident {
            fn default() -> Self {
                Self { #(#defaults),* }
            }
        }

        #[automatically_derived]
        impl #p::Patch for #patch_ident {
            type Entity = #ident;
            fn write_patch(&self, sink: &mut dyn #p::FieldSink) -> #p::Result<()> {
                let mut scratch = <::std::vec::Vec<::core::primitive::u8> as ::core::default::Default>::default();
                #(#writes)*
                let _ = (&mut scratch, &sink);
                ::core::result::Result::Ok(())
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

/// Typed query methods named after each index.
/// With a `#[redis(version)]` field: writes that require the stored
/// version to match, and a read-modify-write loop built on them.
fn versioned(m: &Model<'_>, params: &[TokenStream], args: &[&syn::Ident]) -> TokenStream {
    let Some(i) = m.version else {
        return TokenStream::new();
    };
    let p = private(m);
    let vis = m.vis;
    let patch_ident = &m.patch_ident;
    let f = &m.fields[i];
    let field = f.ident;
    let ty = f.ty;
    let hash = lit(&f.hash_name);
    let name = unraw(field);
    let doc_update = format!(
        "Replaces the stored entity like `update`, only if its stored `{name}` still equals `self.{name}`; then `self.{name}` is the new version. `CONFLICT` (with the stored version) if another write came first; `NOT_FOUND` if absent."
    );
    let doc_patch = format!(
        "Applies `patch` like `patch`, only if the stored `{name}` equals `version`; returns the new version. `CONFLICT` (with the stored version) if another write came first; `NOT_FOUND` if absent."
    );
    let doc_modify = format!(
        "Read-modify-write with optimistic concurrency: reads the entity, applies `change` to it and writes it back with `update_if_{name}`, re-reading and re-applying when another write came first (at most `attempts` times, then `CONFLICT`). Returns the entity as written, or `None` if it does not exist. `change` may run more than once: keep it free of side effects."
    );
    let update_if = format_ident!("update_if_{}", name);
    let patch_if = format_ident!("patch_if_{}", name);
    quote! {
        #[doc = #doc_update]
        #vis async fn #update_if(&mut self, client: &#p::Client) -> #p::Result<()> {
            let expected = ::std::string::ToString::to_string(&self.#field);
            #p::entity::update_if_version(client, self, #hash, expected).await?;
            self.#field += 1;
            ::core::result::Result::Ok(())
        }

        #[doc = #doc_patch]
        #vis async fn #patch_if(client: &#p::Client, #(#params,)* version: #ty, patch: &#patch_ident) -> #p::Result<#ty> {
            let expected = ::std::string::ToString::to_string(&version);
            #p::entity::patch_if_version(client, Self::__entity_key(#(#args),*), #hash, expected, patch).await?;
            ::core::result::Result::Ok(version + 1)
        }

        #[doc = #doc_modify]
        #vis async fn modify(client: &#p::Client, #(#params,)* attempts: ::core::primitive::u32, mut change: impl ::core::ops::FnMut(&mut Self)) -> #p::Result<::core::option::Option<Self>> {
            let mut left = attempts.max(1);
            loop {
                let ::core::option::Option::Some(mut entity) = Self::get(client, #(#args),*).await? else {
                    return ::core::result::Result::Ok(::core::option::Option::None);
                };
                change(&mut entity);
                match entity.#update_if(client).await {
                    ::core::result::Result::Ok(()) => return ::core::result::Result::Ok(::core::option::Option::Some(entity)),
                    ::core::result::Result::Err(#p::Error::Conflict { .. }) if left > 1 => left -= 1,
                    ::core::result::Result::Err(error) => return ::core::result::Result::Err(error),
                }
            }
        }
    }
}

/// `incr_<field>` for every stored integer field that is not part of the
/// key: an atomic server-side increment (see `entity::increment`).
fn counters(m: &Model<'_>, params: &[TokenStream], args: &[&syn::Ident]) -> Vec<TokenStream> {
    let p = private(m);
    let vis = m.vis;
    m.fields
        .iter()
        .enumerate()
        .filter(|(i, f)| !f.skip && !f.is_key && !f.json && m.version != Some(*i))
        .filter_map(|(_, f)| {
            let ty = f.option_of.unwrap_or(f.ty);
            is_integer(ty).then_some((f, ty))
        })
        .map(|(f, ty)| {
            let method = format_ident!("incr_{}", unraw(f.ident));
            let hash = lit(&f.hash_name);
            let doc = format!(
                "Adds `by` (may be negative) to `{}` and returns the new value, in one atomic step in which index entries built from it move too; a missing value counts as 0. A result outside `{}`'s range is refused with `ENCODE` (nothing written). `NOT_FOUND` if absent.",
                unraw(f.ident),
                quote!(#ty)
            );
            quote! {
                #[doc = #doc]
                #vis async fn #method(client: &#p::Client, #(#params,)* by: ::core::primitive::i64) -> #p::Result<#ty> {
                    let bounds = (<#ty>::MIN as ::core::primitive::i128, <#ty>::MAX as ::core::primitive::i128);
                    let value = #p::entity::increment::<Self>(client, Self::__entity_key(#(#args),*), #hash, by, bounds).await?;
                    <#ty as ::core::convert::TryFrom<::core::primitive::i64>>::try_from(value).map_err(|_| #p::Error::Encode {
                        context: #p::Context::new("increment", ""),
                        field: ::std::string::String::from(#hash),
                        reason: ::std::format!("{value} is outside the field's type"),
                    })
                }
            }
        })
        .collect()
}

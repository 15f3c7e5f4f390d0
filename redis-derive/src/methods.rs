//! The inherent methods every entity gets: CRUD, TTL, its logs'
//! accessors, versioned writes and counters.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::emit::{key_builder_calls, key_fields, lit, private};
use crate::model::{Model, is_integer, unraw};

pub(crate) fn inherent(m: &Model<'_>) -> TokenStream {
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

/// With a `#[redis(version)]` field: writes that require the stored
/// version to match, and a read-modify-write loop built on them.
pub(crate) fn versioned(
    m: &Model<'_>,
    params: &[TokenStream],
    args: &[&syn::Ident],
) -> TokenStream {
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
        "Read-modify-write with optimistic concurrency: reads the entity, applies `change` to it and writes it back with `update_if_{name}`, re-reading and re-applying when another write came first, after a short random wait that grows with each conflict (at most `attempts` times, then `CONFLICT`). Returns the entity as written, or `None` if it does not exist. `change` may run more than once: keep it free of side effects."
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
                    ::core::result::Result::Err(#p::Error::Conflict { .. }) if left > 1 => {
                        left -= 1;
                        #p::entity::after_conflict(attempts.max(1) - left).await;
                    }
                    ::core::result::Result::Err(error) => return ::core::result::Result::Err(error),
                }
            }
        }
    }
}

/// `incr_<field>` for every stored integer field that is not part of the
/// key: an atomic server-side increment (see `entity::increment`).
pub(crate) fn counters(
    m: &Model<'_>,
    params: &[TokenStream],
    args: &[&syn::Ident],
) -> Vec<TokenStream> {
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

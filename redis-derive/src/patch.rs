//! The patch type (`<Type>Patch`): a partial update whose index entries
//! move with it.

use proc_macro2::TokenStream;
use quote::quote;

use crate::emit::{index_pattern_fields, key_part_of, lit, private, put_field};
use crate::model::{FieldModel, Model, unraw};

pub(crate) fn patch(m: &Model<'_>) -> TokenStream {
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

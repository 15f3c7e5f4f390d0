//! When attributes are wrong, emit the errors plus stub impls of the traits,
//! so code that uses the type still type-checks and the user sees our
//! messages rather than a cascade of "trait not implemented" errors.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::{Container, Derive};
use crate::valid::{default_runtime_path, runtime_path};

pub(crate) fn with_errors(
    input: &syn::DeriveInput,
    derive: Derive,
    container: &Container<'_>,
    errors: syn::Error,
) -> TokenStream {
    let errors = errors.to_compile_error();
    // Stubs only make sense for a plain struct; for anything else the
    // errors alone are the clearest output.
    let is_plain_struct = container.fields.is_some() && input.generics.params.is_empty();
    if !is_plain_struct {
        return errors;
    }
    let ident = &input.ident;
    // A bad `crate` value is among `errors` already.
    let krate = runtime_path(container.krate.as_ref()).unwrap_or_else(|_| default_runtime_path());
    let p = quote!(#krate::__private);
    let record = quote! {
        impl #p::Record for #ident {
            fn descriptor() -> &'static #p::EntityDescriptor { ::core::unreachable!() }
            fn write_fields(&self, _: &mut dyn #p::FieldSink) -> #p::Result<()> { ::core::unreachable!() }
            fn read_fields(_: &::core::primitive::str, _: &#p::RawFields<'_>) -> #p::Result<Self> { ::core::unreachable!() }
        }
    };
    let entity = match derive {
        Derive::Record => TokenStream::new(),
        Derive::Entity => quote! {
            impl #p::Entity for #ident {
                fn key(&self) -> #p::Result<::std::string::String> { ::core::unreachable!() }
                fn member(&self) -> #p::Result<::std::string::String> { ::core::unreachable!() }
            }
        },
    };
    quote! {
        #errors
        #record
        #entity
    }
}

//! What every generator shares: the path into the runtime, a field's
//! hidden codec and key-part items (defined by `expand::field_items`),
//! string literals, key-building calls, and which fields fill which key.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::model::{FieldModel, KeyModel, Model, Segment, unraw};

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
pub(crate) fn key_part_of(m: &Model<'_>, f: &FieldModel<'_>) -> TokenStream {
    let ident = m.ident;
    let helper = format_ident!("__key_part_{}", unraw(f.ident));
    quote!(#ident::#helper)
}

pub(crate) fn lit(s: &str) -> syn::LitStr {
    syn::LitStr::new(s, proc_macro2::Span::call_site())
}

/// Encodes `value` (an expression of type `&value_ty`) into `scratch` and
/// puts it.
pub(crate) fn put_field(m: &Model<'_>, f: &FieldModel<'_>, value: TokenStream) -> TokenStream {
    let name = lit(&f.hash_name);
    let codec = codec_of(m, f);
    quote! {
        #codec.encode(#name, #value, &mut scratch)?;
        sink.put(#name, &scratch);
    }
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

pub(crate) fn key_fields<'m, 'a>(m: &'m Model<'a>) -> Vec<&'m FieldModel<'a>> {
    m.key
        .as_ref()
        .map(|k| k.field_indexes().map(|i| &m.fields[i]).collect())
        .unwrap_or_default()
}

/// Fields that appear in index key patterns, with the pattern they fill.
pub(crate) fn index_pattern_fields<'m, 'a>(m: &'m Model<'a>) -> Vec<(&'m str, &'m FieldModel<'a>)> {
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

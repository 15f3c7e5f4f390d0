//! Helpers the schema property tests share.

/// `a::b` → `a:b`: literal text may not hold an empty segment.
pub(crate) fn collapse_colons(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if !(ch == ':' && out.ends_with(':')) {
            out.push(ch);
        }
    }
    out
}

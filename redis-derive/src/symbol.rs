//! Every name the derives accept inside `#[redis(...)]`, as one constant
//! each. The parser matches on these and the error messages print them, so
//! renaming an attribute here renames it in both places at once.

use std::fmt;

/// An attribute name or setting name inside `#[redis(...)]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Symbol(&'static str);

/// The attribute itself: `#[redis(...)]`. Messages spell it out as
/// `#[redis(...)]`, the same way `attributes(redis)` in `lib.rs` does.
pub(crate) const REDIS: Symbol = Symbol("redis");

// On a struct (`RedisEntity`, `RedisRecord`) or an enum (`RedisValue`).
pub(crate) const KEY: Symbol = Symbol("key");
pub(crate) const TTL: Symbol = Symbol("ttl");
pub(crate) const RENAME_ALL: Symbol = Symbol("rename_all");
pub(crate) const CRATE: Symbol = Symbol("crate");
pub(crate) const STREAM: Symbol = Symbol("stream");
pub(crate) const STREAM_MAXLEN: Symbol = Symbol("stream_maxlen");
pub(crate) const STREAM_CROSS_SLOT: Symbol = Symbol("stream_cross_slot");
pub(crate) const PATCH: Symbol = Symbol("patch");
pub(crate) const INDEX: Symbol = Symbol("index");
pub(crate) const SORTED_INDEX: Symbol = Symbol("sorted_index");
pub(crate) const UNIQUE: Symbol = Symbol("unique");
pub(crate) const LOG: Symbol = Symbol("log");
pub(crate) const CLUSTER: Symbol = Symbol("cluster");

// Inside `index(...)`, `sorted_index(...)`, `unique(...)` and `log(...)`
// (besides `key` and `ttl` above).
pub(crate) const NAME: Symbol = Symbol("name");
pub(crate) const SCORE: Symbol = Symbol("score");
pub(crate) const FIELD: Symbol = Symbol("field");
pub(crate) const MAX_LEN: Symbol = Symbol("max_len");
pub(crate) const CROSS_SLOT: Symbol = Symbol("cross_slot");

// On a field (`rename` and `alias` also on an enum variant).
pub(crate) const RENAME: Symbol = Symbol("rename");
pub(crate) const ALIAS: Symbol = Symbol("alias");
pub(crate) const EMPTY_IS_NONE: Symbol = Symbol("empty_is_none");
pub(crate) const EMPTY_IS_SOME: Symbol = Symbol("empty_is_some");
pub(crate) const SKIP: Symbol = Symbol("skip");
pub(crate) const DEFAULT: Symbol = Symbol("default");
pub(crate) const JSON: Symbol = Symbol("json");
pub(crate) const EXPIRES_AT: Symbol = Symbol("expires_at");
pub(crate) const VERSION: Symbol = Symbol("version");

impl Symbol {
    /// The symbol among `accepted` that `path` spells, if any.
    pub(crate) fn find(path: &syn::Path, accepted: &[Symbol]) -> Option<Symbol> {
        accepted.iter().copied().find(|symbol| path == symbol)
    }

    /// `accepted` as the comma-separated list that messages show.
    pub(crate) fn list(accepted: &[Symbol]) -> String {
        accepted
            .iter()
            .map(|symbol| symbol.0)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl PartialEq<Symbol> for syn::Path {
    fn eq(&self, symbol: &Symbol) -> bool {
        self.is_ident(symbol.0)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

//! Derive macros for `redis-runtime`. Use them through `redis_runtime`,
//! which re-exports them; the generated code names only `redis_runtime`.
//!
//! The derive works in three phases, one module each: `ast` reads the
//! attributes, `valid` checks them (collecting every error, so one compile
//! reports all of them) and `expand` generates code. When there are errors,
//! `fallback` emits them together with stub trait impls so the rest of the
//! crate does not drown in follow-up errors.
//!
//! `symbol` names every attribute once, for the parser and its messages;
//! `ctxt` collects the errors and refuses to be dropped unreported.

mod ast;
mod cluster;
mod cross_slot;
mod ctxt;
mod disjoint;
mod emit;
mod expand;
mod fallback;
mod filters;
mod methods;
mod model;
mod patch;
mod queries;
mod slot_plan;
mod symbol;
mod valid;
mod value;

use proc_macro::TokenStream;

/// Derives a stored Redis entity: a hash at a key pattern, with CRUD, TTL,
/// secondary indexes and stream enqueue, each write one atomic step.
///
/// # Container attributes: `#[redis(...)]` on the struct
///
/// | attribute | meaning |
/// | --- | --- |
/// | `key = "user:{id}"` | **required**: the key pattern; `{field}` placeholders name the key fields (not `Option`). Literal braces are written `{{` `}}` (room for cluster hash tags: `"user:{{{id}}}"`) |
/// | `ttl = "7d"` | entities expire this long after create/save: whole numbers with the units `ms`, `s`, `m`, `h`, `d` (any case), largest first, e.g. `"1h 30m"` |
/// | `rename_all = "camelCase"` | hash field naming; default `snake_case` |
/// | `crate = "path"` | path of the runtime crate if renamed; default `redis_runtime` |
/// | `index(key = "jobs:status:{status}", name = "...")` | a set of ids per value; add `cross_slot` to let its key be in another Redis Cluster hash slot (see `cluster`) |
/// | `sorted_index(key = "jobs:user:{user_id}", score = "created_at")` | a sorted set of ids scored by a numeric or timestamp field; takes `cross_slot` too |
/// | `unique(key = "users:by_email", field = "email")` | at most one entity per value (`UNIQUE_VIOLATION`); the field may not be a float (`0.0` and `-0.0` would be two values) |
/// | `stream = "jobs:stream"`, `stream_maxlen = 10000` | enqueue an entry on creation, in the same step (a transactional outbox), trimmed with `MAXLEN ~`; add `stream_cross_slot` to let the stream be in another Redis Cluster hash slot (see `cluster`) |
/// | `patch = "JobChanges"` | name of the generated patch type; default `<Type>Patch` |
/// | `log(name = "output", key = "job:{id}:output", ttl = "24h", max_len = 10000)` | a per-entity append log (a list per entity, TTL refreshed on every append, optionally capped); generates `Job::output_log(&client)` |
/// | `cluster` | for Redis Cluster: a compile error unless every key a write touches (hash, index keys, TTL registry, stream) shares the entity's hash slot. A type with indexes (other than `cross_slot` ones) or a stream (unless `stream_cross_slot`) must be pinned to one slot by a constant tag in each pattern (`key = "job:{{jobs}}:{id}"`, `index(key = "jobs:{{jobs}}:status:{status}")`, `stream = "jobs:{{jobs}}:stream"`); its TTL registry moves into that slot (`__ttl:job:{jobs}:id`: rename the old one and its `:fields` on a type holding data). Otherwise any tag, or none, is accepted. Logs are written by their own commands, so they are not checked: give one the entity's tag only to use it atomically with the entity. An index marked `cross_slot` (`index(key = "jobs:status:{status}", cross_slot)`) is not checked either: its key may be in any slot, and it is updated just after the write instead of in it (the write records the move in the entity's slot, then the client applies it), so its queries check each entity they read against it. `stream_cross_slot` (`stream = "jobs:stream", stream_cross_slot`) does the same for the stream: its key may be in any slot, the create records the entry in the entity's slot and the client appends it just after, at least once (a client that dies between appending and clearing the record leaves it to a repair pass, which appends it again); on one server the entry is still appended in the create. A key without a tag is then accepted when every index is `cross_slot` and the stream, if any, is `stream_cross_slot`. A `unique` index with a constant key (`unique(key = "users:by_email", field = "email", cross_slot)`) may be `cross_slot` too: a write that sets a new value claims it first in the unique hash's slot, then writes the entity, refused if the claim was taken back since, and releases old values just after; lookups check the entity they read. `cross_slot` is a compile error without `cluster`, on a `unique` index whose key has placeholders (a cross-slot value is claimed in one hash for the whole type), on a type that expires (`ttl`, `expires_at`: expiry runs no script) and on an index already in the entity's slot; `stream_cross_slot` without `cluster`, without a `stream`, on a type that expires (a write that defers keeps no TTL registry) and on a stream already in the entity's slot |
///
/// # Field attributes
///
/// | attribute | meaning |
/// | --- | --- |
/// | `rename = "createdAt"` | the hash field name |
/// | `skip` | not stored; filled with `Default::default()` on read |
/// | `default` | a missing hash field reads as `Default::default()` instead of a `DECODE` error |
/// | `json` | stored as JSON (maps, vectors, nested structs; needs serde) |
/// | `expires_at` | the entity expires at this timestamp (`i64` epoch ms, `SystemTime`, …); a timestamp already past makes the write a delete |
/// | `alias = "oldName"` | also read the field from this hash field when the canonical one is absent (repeatable); always written under the canonical name |
/// | `empty_is_none` / `empty_is_some` | on an `Option` field: read `""` as `None` even for text, or never (by default `""` is `None` exactly when it is not a valid value of the type, so `Option<i64>` reads `""` as `None` and `Option<String>` as `Some("")`) |
///
/// Field types without `json`: `String`, integers, floats, `bool`,
/// `Vec<u8>`, `SystemTime` (and `chrono`/`time`/`uuid` types behind the
/// runtime's features), unit enums with `#[derive(RedisValue)]`, and
/// `Option` of any of those (`None` = no hash field).
///
/// # Generated API
///
/// `key_for`, `create`, `save`, `update`, `update_refreshing_ttl`, `get`,
/// `get_many`, `patch`, `patch_refreshing_ttl`, `delete`, `exists`, `ttl`,
/// `expire`, `persist`, a `<Type>Patch` struct, query methods per index
/// (set indexes: `by_<name>`, `by_<name>_ids`, `by_<name>_count`; sorted
/// indexes: `by_<name>(page)`, `by_<name>_in_range(range, page)`,
/// `by_<name>_ids_in_range(range, page)`, `by_<name>_count`; unique
/// indexes: `by_<name>(value)`) and `<name>_log` per log. The rustdoc of
/// `redis_runtime::example_generated` shows them all on an example entity.
///
/// ```
/// use redis_runtime::{RedisEntity, RedisValue};
///
/// #[derive(RedisValue, Debug, Clone, Copy, PartialEq)]
/// pub enum Role { Admin, Member }
///
/// #[derive(RedisEntity, Debug, Clone, PartialEq)]
/// #[redis(key = "user:{id}")]
/// pub struct User {
///     pub id: String,
///     pub name: String,
///     pub role: Role,
///     pub created_at: i64,
///     pub avatar_url: Option<String>,
/// }
///
/// # async fn demo(client: &redis_runtime::Client) -> redis_runtime::Result<()> {
/// let user = User { id: "u1".into(), name: "Ada".into(), role: Role::Admin, created_at: 0, avatar_url: None };
/// user.create(client).await?;
/// let loaded = User::get(client, "u1").await?;
/// assert_eq!(loaded, Some(user));
/// User::patch(client, "u1", &UserPatch { name: Some("Ada L.".into()), ..Default::default() }).await?;
/// # Ok(()) }
/// ```
#[proc_macro_derive(RedisEntity, attributes(redis))]
pub fn derive_redis_entity(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    derive_struct(&input, ast::Derive::Entity).into()
}

/// Derives only the field codec ([`Record`]): for stream messages and other
/// structs stored as a flat set of fields without a key of their own.
/// Accepts `rename_all`, `crate` and the field attributes of `RedisEntity`.
///
/// [`Record`]: https://docs.rs/redis-runtime/latest/redis_runtime/codec/trait.Record.html
#[proc_macro_derive(RedisRecord, attributes(redis))]
pub fn derive_redis_record(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    derive_struct(&input, ast::Derive::Record).into()
}

/// Derives storage for a unit-only enum as its variant name (snake_case by
/// default; `#[redis(rename_all = "...")]` on the enum, `#[redis(rename =
/// "...")]` on a variant). The value can also fill key placeholders. Reads
/// match the stored name in any case, and each `#[redis(alias = "...")]`
/// of a variant (repeatable); writes are always the stored name.
///
/// ```
/// #[derive(redis_runtime::RedisValue)]
/// enum JobStatus { Queued, Running, #[redis(rename = "done")] Completed }
/// ```
#[proc_macro_derive(RedisValue, attributes(redis))]
pub fn derive_redis_value(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    match value::derive(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn derive_struct(input: &syn::DeriveInput, derive: ast::Derive) -> proc_macro2::TokenStream {
    let cx = ctxt::Ctxt::default();
    let container = ast::Container::from_ast(&cx, input, derive);
    let model = valid::check(&cx, &container, derive);
    match (cx.check(), model) {
        (Ok(()), Some(model)) => match derive {
            ast::Derive::Entity => expand::entity(&model),
            ast::Derive::Record => expand::record(&model),
        },
        (Err(errors), _) => fallback::with_errors(input, derive, &container, errors),
        (Ok(()), None) => fallback::with_errors(
            input,
            derive,
            &container,
            syn::Error::new_spanned(&input.ident, "cannot derive for this item"),
        ),
    }
}

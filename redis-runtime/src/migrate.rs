//! Moving data that older versions wrote under other names.
//!
//! Before 0.2 the TTL registry of an entity type was named after its key
//! pattern with the braces left in (`session:{id}:__ttl`), which reads like
//! a template bug and is a Redis Cluster hash tag shared by every entity
//! type. It is now `__ttl:session:id` ([`redis_schema::ttl_registry_key`]).
//! [`move_legacy_ttl_registry`] moves an old registry over; `index::rebuild`
//! runs it first, so one rebuild per entity type after upgrading is enough.

use std::sync::LazyLock;

use crate::client::Client;
use crate::entity::Entity;
use crate::error::{Context, Result};
use redis_schema::legacy_ttl_registry_key;

static MOVE_REGISTRY: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/move_registry.lua")));

/// Moves `E`'s TTL registry from its pre-0.2 name to the current one, in
/// one atomic step, merging with entries already under the new name (those
/// win). Returns how many entries were moved; 0 when there was nothing to
/// move or `E` has no registry.
///
/// ```no_run
/// # use redis_runtime::{Client, RedisEntity};
/// # #[derive(RedisEntity)]
/// # #[redis(key = "session:{id}", ttl = "7d")]
/// # #[redis(index(key = "sessions:user:{user_id}"))]
/// # struct Session { id: String, user_id: String }
/// # async fn demo(client: &Client) -> redis_runtime::Result<()> {
/// let moved = redis_runtime::migrate::move_legacy_ttl_registry::<Session>(client).await?;
/// println!("{moved} registry entries moved");
/// # Ok(())
/// # }
/// ```
pub async fn move_legacy_ttl_registry<E: Entity>(client: &Client) -> Result<u64> {
    let descriptor = E::descriptor();
    let Some(registry) = descriptor.ttl_registry else {
        return Ok(0);
    };
    // `#[redis(cluster)]` came after 0.2: such a type never had a legacy
    // registry, and its name hashes elsewhere than the registry's.
    if descriptor.cluster {
        return Ok(0);
    }
    let legacy = legacy_ttl_registry_key(descriptor.key_pattern);
    let mut invocation = MOVE_REGISTRY.prepare_invoke();
    invocation
        .key(&legacy)
        .key(format!("{legacy}:fields"))
        .key(registry)
        .key(format!("{registry}:fields"));
    let ctx = Context::new(
        format!("{}.move_legacy_ttl_registry", descriptor.name),
        descriptor.key_pattern,
    );
    client.write(ctx, &invocation).await
}

//! The Lua scripts of an entity type, built from its descriptor.
//!
//! Every server-side step on an entity (its writes, index queries, TTL
//! sweeps, expiry changes, index repairs) is one Lua script, so that it is
//! atomic and one round trip. Each entity type gets its own copy of each
//! script, assembled from three pieces:
//!
//! 1. a **layout literal**, the function `layout()` returning a table
//!    rendered from the type's [`EntityDescriptor`] (key parts, indexes,
//!    TTL registry), built on first use;
//! 2. the **helpers** it needs from `scripts/prelude.lua`, the one copy of
//!    the key rules and TTL sweeping in Lua;
//! 3. a **body**: a fixed one from `scripts/` (query, sweep, unindex,
//!    expire), or the write body that [`write`] generates for the type with
//!    its field names and key shapes written in as literals.
//!
//! The scripts are built once per type on first use and sent with EVALSHA
//! (redis-rs loads a script on a `NOSCRIPT` reply). Writing the layout into
//! the source, instead of passing it on every call, keeps the arguments to
//! what the call itself is about.
//!
//! Every key a script touches must share the slot of `KEYS[1]` on a Redis
//! Cluster, which routes the call: `#[redis(cluster)]` proves that at
//! compile time, and [`check_cluster`] refuses the scripts of other types
//! that touch more than their hash. A cluster's write calls also declare
//! every key the client can compute ([`declared_write_keys`]: new index
//! keys, the unique hash, the registry, the stream), so that the server
//! itself refuses a call whose keys span slots. Some keys cannot be
//! declared: the index keys a write leaves are named by the stored values,
//! which only the script reads; one server's calls declare only the keys
//! the body reads, as before.
//!
//! So a cluster gets its own copy of every script ([`Target::Cluster`]):
//!
//! - it starts with a `#!lua` shebang, which makes the server refuse a key
//!   of another slot even when the node serves both (a broken assumption
//!   fails loudly instead of working by accident), and refuse a script
//!   that may write before it runs when the server is out of memory;
//! - its first key is the slot guard ([`redis_schema::slot_guard_key`]), a
//!   key of the same slot that never exists, which the script leaves out of
//!   the `KEYS` its body reads. While the slot migrates, a call
//!   declaring a missing key is refused (`TRYAGAIN`) before it runs, so no
//!   script ever sees a slot half moved: it runs before the migration or
//!   after it, never with a write applied and the next key gone.
//!   [`EntityScripts::call`] declares it.

mod prelude;
pub(crate) mod protocol;
pub(crate) mod write;

/// How long a claim holds an entity's pending moves (`cross_slot`): far
/// longer than the moves take, short enough that a dead client's record is
/// applied by `index::settle` soon after. The write script takes the first
/// claim with it; `cross_slot::pending` every later one.
pub(crate) const LEASE: std::time::Duration = std::time::Duration::from_secs(10);

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, RwLock};

use redis_schema::{EntityDescriptor, PatternPart};

/// Which server a copy of an entity type's scripts is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// One server (with or without replicas and Sentinel).
    Node,
    /// A Redis Cluster: shebang, and the slot guard as the first key.
    Cluster,
}

/// The compiled scripts of one entity type, for one [`Target`].
pub(crate) struct EntityScripts {
    /// The server they are for.
    target: Target,
    /// The type they are for.
    pub(crate) descriptor: &'static EntityDescriptor,
    /// Create, save, update, patch, delete and reindex (see [`write`]).
    pub(crate) write: redis::Script,
    /// Create alone: the write script without what only the other modes
    /// need ([`write::compile_create`]).
    pub(crate) create: redis::Script,
    /// Index reads (`scripts/query.lua`).
    pub(crate) query: redis::Script,
    /// Removal of expired entities' index entries (`scripts/sweep.lua`).
    pub(crate) sweep: redis::Script,
    /// Removal of one stale index entry (`scripts/unindex.lua`).
    pub(crate) unindex: redis::Script,
    /// TTL changes that keep the registry in step (`scripts/expire.lua`).
    pub(crate) expire: redis::Script,
    /// Cursor pages of sorted and set indexes (`scripts/cursor.lua`).
    pub(crate) cursor: redis::Script,
    /// Batches of deletes by index (`index::bulk`).
    pub(crate) bulk_delete: redis::Script,
    /// The write records its `cross_slot` index moves and its
    /// `stream_cross_slot` entry for the client to apply: a cluster copy of
    /// a type that has either (see `cross_slot::pending`).
    pub(crate) defers: bool,
    /// The write refuses to set a value of a `cross_slot` unique index
    /// unless the client claimed it first, and takes the entity's unique
    /// fence as `KEYS[4]` and the claim token as its fifth argument: a
    /// cluster copy of a type with such an index (see
    /// `cross_slot::unique_claims`).
    pub(crate) fences: bool,
    /// Takes the lease on an entity's pending index moves and reads them
    /// (`scripts/pending_lease.lua`).
    pub(crate) pending_lease: redis::Script,
    /// Ends a round, removing the record and the lease if no write came since
    /// (`scripts/pending_release.lua`).
    pub(crate) pending_release: redis::Script,
}

/// A patch of fields no index is built from, keeping the TTL: one script for
/// every type (`scripts/patch_fields.lua`), far cheaper than the write
/// script because it has no index values to read, check or move.
pub(crate) static PATCH_FIELDS: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../scripts/patch_fields.lua")));

/// An increment of a field no index is built from, on a type without a
/// version field: one script for every type (`scripts/increment_field.lua`).
pub(crate) static INCREMENT_FIELD: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("../scripts/increment_field.lua")));

impl EntityScripts {
    /// Whether these are a cluster's copies, whose write calls declare
    /// every key the client can compute ([`declared_write_keys`]).
    pub(crate) fn for_cluster(&self) -> bool {
        self.target == Target::Cluster
    }

    /// Starts a call of `script`, one of these, whose keys are all in the
    /// hash slot of `slot_key`, declaring the keys every script of the type
    /// takes first ([`leading_keys`]): on a cluster the slot guard (see the
    /// module docs), and for a registry per tag the registry of that slot.
    /// The caller adds the script's own keys and arguments.
    pub(crate) fn call<'s>(
        &self,
        script: &'s redis::Script,
        slot_key: &str,
    ) -> redis::ScriptInvocation<'s> {
        let mut invocation = script.prepare_invoke();
        for key in leading_keys(self.target, self.descriptor, slot_key) {
            invocation.key(key);
        }
        invocation
    }
}

/// Scripts by the address of their type's `static` descriptor (unique per
/// type) and their target.
static CACHE: LazyLock<RwLock<HashMap<(usize, Target), &'static EntityScripts>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// The one-server scripts of the entity type this descriptor describes
/// (what [`for_client`] answers for a client of one server).
pub(crate) fn for_entity(descriptor: &'static EntityDescriptor) -> &'static EntityScripts {
    for_target(descriptor, Target::Node)
}

/// The scripts of `descriptor`'s type for the server `client` talks to,
/// after [`check_cluster`]. A cluster's scripts carry a shebang, which
/// needs Redis 7.0: [`crate::Client::connect`] refuses an older cluster,
/// and a lazily connected client refuses here once it knows the version.
pub(crate) fn for_client(
    client: &crate::Client,
    descriptor: &'static EntityDescriptor,
    context: &crate::Context,
) -> crate::Result<&'static EntityScripts> {
    if !client.config().is_cluster() {
        return Ok(for_entity(descriptor));
    }
    check_cluster(client, descriptor)?;
    client.require_if_known(crate::server::Feature::ScriptFlags, context)?;
    Ok(for_target(descriptor, Target::Cluster))
}

/// Refuses to run `descriptor`'s scripts on a Redis Cluster unless the type
/// was declared `#[redis(cluster)]` or its scripts touch nothing beside its
/// hash. A script may only touch keys of one hash slot; one that reached a
/// key of another slot would fail there, after the writes before it were
/// applied. `cluster` proved at compile time that every key shares the
/// entity's slot.
pub(crate) fn check_cluster(
    client: &crate::Client,
    descriptor: &EntityDescriptor,
) -> crate::Result<()> {
    let beside_the_hash = !descriptor.indexes.is_empty()
        || descriptor.stream.is_some()
        || descriptor.ttl_registry.is_some();
    if client.config().is_cluster() && !descriptor.cluster && beside_the_hash {
        return Err(crate::Error::Config(format!(
            "{} is not declared #[redis(cluster)], and its scripts touch keys beside its hash \
             (indexes, stream, TTL registry) that may be in other hash slots of this Redis Cluster: \
             add `cluster` to its #[redis(...)] attributes, which checks at compile time that they \
             share its slot",
            descriptor.name
        )));
    }
    Ok(())
}

fn for_target(descriptor: &'static EntityDescriptor, target: Target) -> &'static EntityScripts {
    let id = (std::ptr::from_ref(descriptor) as usize, target);
    if let Some(scripts) = CACHE.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
        return scripts;
    }
    let mut cache = CACHE.write().unwrap_or_else(|e| e.into_inner());
    cache.entry(id).or_insert_with(|| {
        let script = |source: String| redis::Script::new(&for_server(target, descriptor, source));
        let fixed = |what, body| script(assemble_fixed(descriptor, what, body));
        let defers = target == Target::Cluster && descriptor.defers_on_cluster();
        let (write, create) = if defers {
            (
                write::compile_deferring(descriptor, false),
                write::compile_deferring(descriptor, true),
            )
        } else {
            (
                write::compile(descriptor),
                write::compile_create(descriptor),
            )
        };
        // One leaked set of scripts per entity type and target: bounded by
        // the program's types.
        Box::leak(Box::new(EntityScripts {
            target,
            descriptor,
            defers,
            fences: defers
                && descriptor
                    .indexes
                    .iter()
                    .any(|index| index.cross_slot && index.kind == redis_schema::IndexKind::Unique),
            write: script(write),
            create: script(create),
            query: fixed("query", include_str!("../scripts/query.lua")),
            sweep: fixed("sweep", include_str!("../scripts/sweep.lua")),
            unindex: fixed("unindex", include_str!("../scripts/unindex.lua")),
            expire: fixed("expire", include_str!("../scripts/expire.lua")),
            cursor: fixed("cursor", include_str!("../scripts/cursor.lua")),
            bulk_delete: script(bulk_delete_source(descriptor)),
            pending_lease: fixed(
                "pending claim",
                include_str!("../scripts/pending_lease.lua"),
            ),
            pending_release: fixed(
                "pending release",
                include_str!("../scripts/pending_release.lua"),
            ),
        }))
    })
}

/// The keys a write of `descriptor`'s type on a cluster declares after its
/// own (the entity, and for a deferring type its pending record, lease
/// and fence): every other key the write may touch that the client can
/// compute before it runs. `value(hash_name)` gives the text of a field
/// the write sends: each index key in the entity's slot whose values it
/// sends (for a unique index, its hash), the TTL registry when it is one
/// key for the type (a registry per tag is a leading key already), and
/// the stream when the write may create the entity (`creates`). The body
/// never reads them: declared, they make the server refuse the call
/// (`CROSSSLOT`) before it runs if one were in another slot, which the
/// derive proved it is not. What a write leaves (old index keys, named by
/// stored values) only the script can know; those keys share the slot by
/// the same proof.
pub(crate) fn declared_write_keys<'v>(
    descriptor: &EntityDescriptor,
    creates: bool,
    value: impl Fn(&str) -> Option<&'v str>,
) -> Vec<String> {
    let mut keys: Vec<String> = descriptor
        .indexes
        .iter()
        .filter(|index| !index.cross_slot)
        .filter_map(|index| descriptor.render(index.key, &value))
        .collect();
    let registry = descriptor
        .ttl_registry
        .filter(|_| !descriptor.ttl_registry_per_tag && !descriptor.defers_on_cluster());
    if let Some(registry) = registry {
        keys.push(registry.to_string());
        keys.push(format!("{registry}:fields"));
    }
    let stream = descriptor.stream.filter(|stream| !stream.cross_slot);
    if let (true, Some(stream)) = (creates, stream) {
        keys.push(stream.key.to_string());
    }
    keys
}

/// The keys a call of `descriptor`'s scripts on `target` declares before
/// its own, in order: the slot guard on a cluster, then a registry per
/// tag. The script's preamble ([`for_server`]) takes them off `KEYS`.
fn leading_keys(
    target: Target,
    descriptor: &EntityDescriptor,
    slot_key: &str,
) -> impl Iterator<Item = String> {
    let guard = (target == Target::Cluster).then(|| redis_schema::slot_guard_key(slot_key));
    let registry = descriptor
        .ttl_registry
        .filter(|_| descriptor.ttl_registry_per_tag)
        .map(|registry| redis_schema::tagged_ttl_registry_key(registry, slot_key));
    guard.into_iter().chain(registry)
}

/// `source` as sent to `target`, after a preamble that takes the keys
/// [`leading_keys`] declares off `KEYS` (so each body reads its own keys
/// from `KEYS[1]` on), keeping a registry per tag in the local
/// `REGISTRY`. On a cluster the script starts with a `#!lua` shebang (see
/// the module docs). Unchanged for a type with no leading keys on one
/// server.
fn for_server(target: Target, descriptor: &EntityDescriptor, source: String) -> String {
    let mut out = String::new();
    let mut leading = 0;
    if target == Target::Cluster {
        out.push_str("#!lua\n-- KEYS[1] is the slot guard: declared so that the server refuses this\n-- call while the slot migrates, and never touched.\n");
        leading += 1;
    }
    if descriptor.ttl_registry.is_some() && descriptor.ttl_registry_per_tag {
        leading += 1;
        let _ = writeln!(
            out,
            "-- KEYS[{leading}] is the TTL registry of this slot's tag.\nlocal {REGISTRY} = KEYS[{leading}]"
        );
    }
    if leading > 0 {
        let _ = writeln!(out, "local KEYS = {{ unpack(KEYS, {}) }}", leading + 1);
    }
    out.push_str(&source);
    out
}

/// A fixed body from `scripts/`, with the helpers it names ([`needs_of`]).
fn assemble_fixed(descriptor: &EntityDescriptor, what: &str, body: &str) -> String {
    assemble(descriptor, what, &needs_of(body), body)
}

/// The bulk delete script of an entity type: the layout and helpers its
/// body needs, the type's write script wrapped as `write_one(KEYS, ARGV)`
/// (the wrapper's parameters shadow the globals the write script reads, and
/// its own helper copies stay local to it), then `scripts/bulk_delete.lua`.
pub(crate) fn bulk_delete_source(descriptor: &EntityDescriptor) -> String {
    let body = include_str!("../scripts/bulk_delete.lua");
    let needs = needs_of(body);
    let wrapped = format!(
        "local function write_one(KEYS, ARGV)\n{}end\n{body}",
        write::compile(descriptor)
    );
    assemble(descriptor, "bulk delete", &needs, &wrapped)
}

/// The prelude helpers a body from `scripts/` calls: its first line,
/// `--- needs: a b`, names them.
pub(crate) fn needs_of(body: &str) -> Vec<&str> {
    body.lines()
        .next()
        .and_then(|line| line.strip_prefix("--- needs:"))
        .map(|names| names.split_whitespace().collect())
        .unwrap_or_default()
}

/// Layout literal (if a needed helper reads it), then the needed helpers
/// and their dependencies in prelude order, then `body`.
pub(crate) fn assemble(
    descriptor: &EntityDescriptor,
    what: &str,
    needs: &[&str],
    body: &str,
) -> String {
    assemble_with_rare(descriptor, what, needs, &[], body)
}

/// [`assemble`], with the helpers in `rare` (and what they depend on that
/// `needs` does not bring) defined on their first call instead of on every
/// call: Lua creates each function a script defines every time the script
/// runs, which a create that never calls them measurably pays for.
pub(crate) fn assemble_with_rare(
    descriptor: &EntityDescriptor,
    what: &str,
    needs: &[&str],
    rare: &[&str],
    body: &str,
) -> String {
    let helpers = prelude::with_dependencies(needs);
    let mut out = format!(
        "-- The {what} script of {}, assembled by redis-runtime's script module.\n",
        descriptor.name
    );
    if helpers.iter().any(|h| h.name == prelude::LAYOUT) {
        out.push_str(&layout_literal(descriptor));
    }
    for helper in &helpers {
        out.push_str(helper.source);
    }
    for name in rare {
        let group: Vec<&prelude::Helper> = prelude::with_dependencies(&[name])
            .into_iter()
            .filter(|h| !helpers.iter().any(|defined| defined.name == h.name))
            .collect();
        out.push_str(&defined_on_first_call(descriptor, name, &group));
    }
    out.push_str(body);
    out
}

/// `local <name>`: a function that, on its first call, defines `group` (the
/// helper `name` and the dependencies not defined already) and then
/// forwards every call to the helper.
fn defined_on_first_call(
    descriptor: &EntityDescriptor,
    name: &str,
    group: &[&prelude::Helper],
) -> String {
    let mut out = format!(
        "-- `{name}` and what only it needs are defined on its first call.\n\
         local {name}\ndo\n  local defined\n  {name} = function(...)\n    \
         if not defined then\n      defined = (function()\n"
    );
    if group.iter().any(|h| h.name == prelude::LAYOUT) {
        out.push_str(&layout_literal(descriptor));
    }
    for helper in group {
        out.push_str(helper.source);
    }
    let _ = write!(
        out,
        "      return {name}\n      end)()\n    end\n    return defined(...)\n  end\nend\n"
    );
    out
}

/// `layout()`: the layout table `scripts/prelude.lua` describes, for this
/// entity type, built on its first call (a table costs time on every call
/// of a script that builds it, and a write rarely needs it).
pub(crate) fn layout_literal(descriptor: &EntityDescriptor) -> String {
    let mut out = String::from("local layout_table\nlocal function layout()\n");
    out.push_str("  if layout_table then return layout_table end\n");
    out.push_str("  layout_table = {\n");
    let _ = writeln!(out, "    key = {},", parts(descriptor, descriptor.key));
    out.push_str("    indexes = {\n");
    for index in descriptor.indexes {
        let value = index
            .value_field
            .map(|field| format!(", value = {}", lua_str(field)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "      {{ kind = '{}', name = {}, key = {}{value} }},",
            index.kind.redis_type(),
            lua_str(index.name),
            parts(descriptor, index.key),
        );
    }
    out.push_str("    },\n");
    if let Some((registry, _)) = registry_lua(descriptor) {
        let _ = writeln!(out, "    registry = {registry},");
    }
    out.push_str("  }\n  return layout_table\nend\n");
    out
}

/// The TTL registry and its `:fields` hash as Lua expressions: literals,
/// or for a registry per tag the key the call declared (see
/// [`EntityScripts::call`]).
pub(crate) fn registry_lua(descriptor: &EntityDescriptor) -> Option<(String, String)> {
    let registry = descriptor.ttl_registry?;
    if descriptor.ttl_registry_per_tag {
        return Some((REGISTRY.into(), format!("{REGISTRY} .. ':fields'")));
    }
    Some((lua_str(registry), lua_str(&format!("{registry}:fields"))))
}

/// The Lua local holding the key of a registry per tag.
const REGISTRY: &str = "REGISTRY";

/// A key pattern as the alternating Lua list the prelude reads: literal
/// text at odd positions, field names at even ones.
fn parts(descriptor: &EntityDescriptor, parts: &[PatternPart]) -> String {
    let mut items = Vec::new();
    for part in parts {
        match part {
            PatternPart::Literal(text) => items.push(lua_str(text)),
            PatternPart::Field(n) => {
                if items.len() % 2 == 0 {
                    // A pattern that starts with a placeholder.
                    items.push(lua_str(""));
                }
                items.push(lua_str(descriptor.hash_name(*n)));
            }
        }
    }
    format!("{{ {} }}", items.join(", "))
}

/// A Lua string literal for `text`, escaping everything outside printable
/// ASCII so no field name or key text can break out of it.
pub(crate) fn lua_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for byte in text.bytes() {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            0x20..=0x7e => out.push(byte as char),
            _ => {
                let _ = write!(out, "\\{byte:03}");
            }
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod golden;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_cannot_break_out_of_lua_strings() {
        assert_eq!(lua_str("a'b\\c\n"), "'a\\'b\\\\c\\010'");
        assert_eq!(lua_str("é"), "'\\195\\169'");
    }

    #[tokio::test]
    async fn cluster_scripts_carry_the_shebang_and_declare_the_slot_guard_first() {
        let node = for_target(&golden::JOB, Target::Node);
        let cluster = for_target(&golden::JOB, Target::Cluster);
        let write = for_server(Target::Cluster, &golden::JOB, write::compile(&golden::JOB));
        assert!(write.starts_with("#!lua\n"), "{write:.40}");
        assert_eq!(
            cluster.write.get_hash(),
            redis::Script::new(&write).get_hash()
        );
        assert_ne!(node.write.get_hash(), cluster.write.get_hash());

        let key = "job:{jobs}:j1";
        let mut expected = redis::cmd("EVALSHA");
        expected
            .arg(cluster.expire.get_hash())
            .arg(2)
            .arg("__slot_guard:{jobs}")
            .arg(key)
            .arg(5);
        let mut call = cluster.call(&cluster.expire, key);
        call.key(key).arg(5);
        let mut conn = redis_test::MockRedisConnection::new(vec![redis_test::MockCmd::new(
            expected,
            Ok(redis::Value::Int(1)),
        )]);
        let sent: i64 = call.invoke_async(&mut conn).await.expect("sent");
        assert_eq!(sent, 1);

        let mut plain = node.call(&node.expire, key);
        plain.key(key).arg(5);
        let mut expected = redis::cmd("EVALSHA");
        expected.arg(node.expire.get_hash()).arg(1).arg(key).arg(5);
        let mut conn = redis_test::MockRedisConnection::new(vec![redis_test::MockCmd::new(
            expected,
            Ok(redis::Value::Int(1)),
        )]);
        let sent: i64 = plain.invoke_async(&mut conn).await.expect("sent");
        assert_eq!(sent, 1);
    }

    #[test]
    fn a_cluster_write_declares_the_keys_its_values_render() {
        let sent = |name: &str| match name {
            "user_id" => Some("u1"),
            "status" => Some("queued"),
            _ => None,
        };
        let create = declared_write_keys(&golden::JOB, true, sent);
        assert_eq!(
            create,
            ["jobs:user:u1", "jobs:status:queued", "jobs:stream"]
        );
        // A patch of the status alone: the other index key is named by a
        // stored value, and a patch creates nothing.
        let status_only = |name: &str| (name == "status").then_some("done");
        assert_eq!(
            declared_write_keys(&golden::JOB, false, status_only),
            ["jobs:status:done"]
        );
        // A value that cannot be part of a key is not rendered.
        let unsafe_value = |name: &str| (name == "status").then_some("a:b*");
        assert!(declared_write_keys(&golden::JOB, false, unsafe_value).is_empty());

        // `cross_slot` keys are in other slots: never declared.
        static DEFERRING: EntityDescriptor = EntityDescriptor {
            indexes: &[redis_schema::IndexDescriptor {
                cross_slot: true,
                ..golden::JOB.indexes[1]
            }],
            stream: Some(redis_schema::StreamDescriptor {
                cross_slot: true,
                ..golden::JOB.stream.unwrap()
            }),
            ..golden::JOB
        };
        assert!(declared_write_keys(&DEFERRING, true, sent).is_empty());
    }

    #[test]
    fn a_registry_per_tag_is_declared_after_the_guard_and_read_from_keys() {
        // The layout of `golden::JOB`, keeping a registry per tag value.
        static PER_TAG: EntityDescriptor = EntityDescriptor {
            name: "Run",
            key_pattern: "run:{{{user_id}}}:{id}",
            ttl_registry: Some("__ttl:run:user_id:id"),
            ttl_registry_per_tag: true,
            cluster: true,
            ..golden::JOB
        };
        let key = "run:{u1}:r1";
        let keys: Vec<String> = leading_keys(Target::Cluster, &PER_TAG, key).collect();
        assert_eq!(keys, ["__slot_guard:{u1}", "__ttl:run:user_id:id:{u1}"]);
        let keys: Vec<String> = leading_keys(Target::Node, &PER_TAG, key).collect();
        assert_eq!(keys, ["__ttl:run:user_id:id:{u1}"]);
        assert_eq!(leading_keys(Target::Node, &golden::JOB, key).count(), 0);

        let write = for_server(Target::Cluster, &PER_TAG, write::compile(&PER_TAG));
        assert!(write.starts_with("#!lua\n"));
        assert!(write.contains("local REGISTRY = KEYS[2]\nlocal KEYS = { unpack(KEYS, 3) }\n"));
        assert!(write.contains("redis.call('ZADD', REGISTRY, now_ms() + left, member)"));
        assert!(!write.contains("'__ttl:run"), "no registry literal");
        let sweep = for_server(
            Target::Node,
            &PER_TAG,
            assemble_fixed(&PER_TAG, "sweep", include_str!("../scripts/sweep.lua")),
        );
        assert!(sweep.starts_with("-- KEYS[1] is the TTL registry of this slot's tag.\nlocal REGISTRY = KEYS[1]\nlocal KEYS = { unpack(KEYS, 2) }\n"));
        assert!(sweep.contains("registry = REGISTRY,"));
    }

    #[test]
    fn fixed_scripts_take_only_the_helpers_they_name() {
        let sweep = assemble_fixed(&golden::JOB, "sweep", include_str!("../scripts/sweep.lua"));
        assert!(sweep.contains("local function layout()"));
        assert!(sweep.contains("local function sweep(budget)"));
        assert!(
            sweep.contains("local function forget_expired(registry, m)"),
            "a dependency"
        );
        assert!(!sweep.contains("score_ok"), "not needed");
    }
}

//! The write script of an entity type: create, save, update, patch, delete
//! and reindex, generated per type with its field names, key shapes, TTL
//! registry and stream written in as literals, so a call does only the work
//! of a hand-written script for the same type.
//!
//! Its keys, arguments and reply codes are the [`protocol`](super::protocol)
//! (one definition for this generator and the calls `entity` builds).
//!
//! Create, save, update and patch write only the fields they send: the
//! pairs are set and the names removed (for save and update, every declared
//! field that is `None`). Fields the type does not declare, which another
//! service may keep in the same hash, are left alone; only a delete removes
//! the whole hash.
//!
//! Plain writes answer with a bare code (or a new entity's stream entry
//! id) rather than `{code, detail}` because Redis turns a Lua table into a
//! reply slowly: `{1, entry}` cost 0.6 µs of a 7.8 µs create on the
//! server, more than all the create's checks.
//!
//! Why the steps are in this order (the "atomic writes" and "no index drift"
//! guarantees of ARCHITECTURE.md): every check (existence, key-safe index
//! values, numeric scores, unique holders, key types) runs before the first
//! write, because Redis does not roll back a script that fails midway.
//! Index keys are derived inside the script from the hash as it was and as
//! it will be, so concurrent writers can never leave an entry behind.
//!
//! In the generated Lua, `o<n>` and `n<n>` are the old and new values of
//! the n-th indexed field ([`EntityDescriptor::indexed_fields`]), and
//! `old_k<i>`/`new_k<i>` the old and new key of the i-th index.

use redis_schema::{EntityDescriptor, FieldEncoding, IndexDescriptor, IndexKind, PatternPart};

mod checks;
mod deferred;

use super::protocol::{Mode, Switch, TtlAction, WriteCode};
use super::{assemble_with_rare, lua_str};

/// The Lua source of the write script of `descriptor`'s entity type.
pub(crate) fn compile(descriptor: &EntityDescriptor) -> String {
    generate(descriptor, false, false)
}

/// [`compile`] or [`compile_create`] (`create_only`) for a Redis Cluster
/// when `descriptor` has `cross_slot` indexes or a `stream_cross_slot`
/// stream: their entries are not written here but recorded in the
/// entity's pending index key, declared as [`key::PENDING`] (see
/// `cross_slot`), and claimed under its lease, [`key::LEASE`], for the
/// client to apply. A new entity's stream entry is recorded under
/// [`redis_schema::PENDING_STREAM_ENTRY`] and the write count, which the
/// script returns in place of the entry id.
/// A `cross_slot` unique index's values are claimed by the client before
/// the write, under the entity's unique fence, [`key::FENCE`], and the values
/// it leaves are recorded for the client to release (see
/// `cross_slot::unique_claims`).
/// Such a type never expires (the derive refuses a TTL, and
/// `entity::expire` refuses one on a cluster), so its write keeps no TTL
/// registry, whose key may be in another slot.
pub(crate) fn compile_deferring(descriptor: &EntityDescriptor, create_only: bool) -> String {
    generate(descriptor, create_only, true)
}

/// The Lua source of the create script of `descriptor`'s entity type: the
/// write script specialised for a create, with what only the other modes
/// need left out (stored values and their checks, conditions, counters,
/// old index entries). Same arguments; the mode argument is not read. A
/// create is the hottest write, and the branches and helper functions it
/// did not use cost it about a tenth of its server time.
pub(crate) fn compile_create(descriptor: &EntityDescriptor) -> String {
    generate(descriptor, true, false)
}

fn generate(descriptor: &EntityDescriptor, create_only: bool, defer: bool) -> String {
    let mut w = Writer::new(descriptor, create_only, defer);
    w.arguments();
    if !descriptor.indexes.is_empty() {
        w.indexed_values();
        w.index_checks();
        w.claims_check();
        w.forget_earlier_incarnation();
    }
    w.key_type_checks();
    w.past_expiry_is_a_delete();
    w.first_index_entry();
    w.hash_and_ttl();
    w.index_moves();
    w.pending_moves();
    w.registry();
    w.outbox();
    let leases = w.leases_pending_moves();
    // With a lease, the reply goes inside the lease's (`leases_pending_moves`).
    let give = |reply: &str| {
        if leases {
            format!("return with_lease({reply})")
        } else {
            format!("return {reply}")
        }
    };
    if !create_only {
        w.line(format!(
            "if {} then {} end",
            Mode::Increment.is(),
            give(&format!("{{ {}, counted }}", WriteCode::Overwritten))
        ));
        w.line(format!(
            "if exists then {} end",
            give(&WriteCode::Overwritten.to_string())
        ));
    }
    w.line(give(&format!("entry or {}", WriteCode::Created)));
    let what = if create_only { "create" } else { "write" };
    assemble_with_rare(descriptor, what, &w.needs(), &w.rare(), &w.out)
}

/// The Lua test for a write that creates the entity: a create, or a save
/// of one that does not exist.
fn creates() -> String {
    format!(
        "{} or ({} and not exists)",
        Mode::Create.is(),
        Mode::Save.is()
    )
}

/// The Lua test for a write that starts from the stored values: a patch,
/// a reindex or an increment.
fn starts_from_stored() -> String {
    format!(
        "{} or {} or {}",
        Mode::Patch.is(),
        Mode::Reindex.is(),
        Mode::Increment.is()
    )
}

struct Writer<'d> {
    descriptor: &'d EntityDescriptor,
    /// The indexed fields; field `n` in the Lua is `fields[n - 1]`.
    fields: Vec<&'static str>,
    /// Generating the create script: the entity does not exist (checked
    /// first), nothing is read from its hash, and no old entry moves.
    create_only: bool,
    /// Generating for a cluster a type with `cross_slot` indexes or a
    /// `stream_cross_slot` stream: their entries are recorded in the
    /// pending index key instead of written ([`compile_deferring`]).
    defer: bool,
    out: String,
}

impl<'d> Writer<'d> {
    fn new(descriptor: &'d EntityDescriptor, create_only: bool, defer: bool) -> Self {
        Self {
            descriptor,
            fields: descriptor.indexed_fields(),
            create_only,
            defer: defer && descriptor.defers_on_cluster(),
            out: String::new(),
        }
    }

    /// The stream this script appends to itself, if any: not one whose
    /// entry it records as pending.
    fn written_stream(&self) -> Option<redis_schema::StreamDescriptor> {
        self.descriptor.stream.filter(|_| !self.defers_stream())
    }

    /// Whether the stream entry is recorded as pending instead of appended
    /// by this script.
    fn defers_stream(&self) -> bool {
        self.defer && self.descriptor.stream.is_some_and(|s| s.cross_slot)
    }

    /// Whether the type has a `cross_slot` unique index that this script
    /// leaves to the client: a value it sets must have been claimed in the
    /// unique hash's slot first, under the entity's unique fence
    /// (`claims_check`).
    fn fences(&self) -> bool {
        self.numbered(true)
            .iter()
            .any(|(_, index)| index.kind == IndexKind::Unique)
    }

    /// Whether index `index`'s entries are recorded as pending instead of
    /// written by this script.
    fn deferred(&self, index: &IndexDescriptor) -> bool {
        self.defer && index.cross_slot
    }

    /// The 1-based numbers and descriptors of the indexes this script
    /// writes itself.
    fn written(&self) -> Vec<(usize, &'d IndexDescriptor)> {
        self.numbered(false)
    }

    /// The indexes whose entries are deferred (`deferred` true) or written
    /// (false), with their 1-based numbers.
    fn numbered(&self, deferred: bool) -> Vec<(usize, &'d IndexDescriptor)> {
        let numbered = self.descriptor.indexes.iter().enumerate();
        numbered
            .filter(|(_, index)| self.deferred(index) == deferred)
            .map(|(i, index)| (i + 1, index))
            .collect()
    }

    /// The TTL registry as Lua expressions, when this script keeps it.
    fn registry_lua(&self) -> Option<(String, String)> {
        if self.defer {
            return None;
        }
        super::registry_lua(self.descriptor)
    }

    fn line(&mut self, text: impl AsRef<str>) {
        self.out.push_str(text.as_ref());
        self.out.push('\n');
    }

    /// A line inside a `mode ~= 'd'` branch, which the create script does
    /// not need (a create is never a delete): indented only in the write
    /// script.
    fn branch_line(&mut self, text: impl AsRef<str>) {
        if !self.create_only {
            self.out.push_str("  ");
        }
        self.line(text);
    }

    /// The prelude helpers the body calls on its common paths.
    fn needs(&self) -> Vec<&'static str> {
        let d = self.descriptor;
        let mut needs = vec!["now_ms"];
        // Stored values (never read by a create) are checked with `safe`
        // and `score_ok`; a create checks only scores of non-numeric types.
        if !d.indexes.is_empty() && !self.create_only {
            needs.push("safe");
        }
        let unchecked_score = |i: &IndexDescriptor| {
            i.kind == IndexKind::Sorted && (!self.create_only || !self.numeric_score(i))
        };
        if d.indexes.iter().any(unchecked_score) {
            needs.push("score_ok");
        }
        let unique_written = self
            .written()
            .iter()
            .any(|(_, index)| index.kind == IndexKind::Unique);
        if unique_written {
            needs.push("key_of_member");
        }
        let checked_index = d
            .indexes
            .iter()
            .skip(1)
            .any(|i| i.kind != IndexKind::Unique);
        if checked_index || self.written_stream().is_some() {
            needs.push("kind_ok");
        }
        if self.fences() {
            needs.push("claim_first");
        }
        needs
    }

    /// The helpers only a rare path calls: forgetting the index entries of
    /// an earlier incarnation that expired (see [`assemble_with_rare`]).
    fn rare(&self) -> Vec<&'static str> {
        if self.registry_lua().is_some() {
            vec!["forget_expired"]
        } else {
            Vec::new()
        }
    }

    /// `render(hash_name, number)` for every indexed field, in order.
    fn per_field(&self, render: impl Fn(&str, usize) -> String) -> Vec<String> {
        let numbered = self.fields.iter().enumerate();
        numbered.map(|(i, name)| render(name, i + 1)).collect()
    }

    /// The Lua number (1-based) of an indexed field.
    fn number(&self, hash_name: &str) -> usize {
        self.fields
            .iter()
            .position(|f| *f == hash_name)
            .unwrap_or(0)
            + 1
    }

    /// The Lua number of an index's value field (score or unique value).
    fn value_number(&self, index: &IndexDescriptor) -> Option<usize> {
        index.value_field.map(|field| self.number(field))
    }

    /// `safe(o1) and safe(o2)` for the fields of an index key (`true` if none).
    fn all_safe(&self, index: &IndexDescriptor, prefix: &str) -> String {
        self.for_every_key_field(index, |n| format!("safe({prefix}{n})"))
    }

    /// `n1 and n2 …`: every key value of `index` is there.
    fn all_present(&self, index: &IndexDescriptor, prefix: &str) -> String {
        self.for_every_key_field(index, |n| format!("{prefix}{n}"))
    }

    /// `test(1) and test(2) …` over the field numbers of an index key
    /// (`true` if none).
    fn for_every_key_field(
        &self,
        index: &IndexDescriptor,
        test: impl Fn(usize) -> String,
    ) -> String {
        let tests: Vec<String> = self.key_field_numbers(index).map(test).collect();
        if tests.is_empty() {
            "true".into()
        } else {
            tests.join(" and ")
        }
    }

    /// Whether the client always sends `index`'s score as a number `ZADD`
    /// accepts: the field's encoding is numeric (the codec refuses NaN).
    fn numeric_score(&self, index: &IndexDescriptor) -> bool {
        let field = self
            .descriptor
            .fields
            .iter()
            .find(|f| Some(f.hash_name) == index.value_field);
        field.is_some_and(|f| {
            matches!(
                f.encoding,
                FieldEncoding::Integer | FieldEncoding::Float | FieldEncoding::TimestampMillis
            )
        })
    }

    fn concat(&self, index: &IndexDescriptor, prefix: &str) -> String {
        let pieces: Vec<String> = index
            .key
            .iter()
            .map(|part| match part {
                PatternPart::Literal(text) => lua_str(text),
                PatternPart::Field(f) => {
                    format!("{prefix}{}", self.number(self.descriptor.hash_name(*f)))
                }
            })
            .collect();
        if pieces.is_empty() {
            "''".into()
        } else {
            pieces.join(" .. ")
        }
    }

    fn key_field_numbers<'a>(
        &'a self,
        index: &'a IndexDescriptor,
    ) -> impl Iterator<Item = usize> + 'a {
        index.key.iter().filter_map(|part| match part {
            PatternPart::Field(f) => Some(self.number(self.descriptor.hash_name(*f))),
            PatternPart::Literal(_) => None,
        })
    }

    /// `o<n>` from the stored hash, `n<n>` as they will be after the write.
    fn indexed_values(&mut self) {
        let olds = self.per_field(|_, n| format!("o{n}"));
        let news = self.per_field(|_, n| format!("n{n}"));
        self.line(format!("local {}", olds.join(", ")));
        self.line(format!("local {}", news.join(", ")));
        if self.create_only {
            // A create's new values are the ones it sends.
            self.new_values_sent("set_start", "del_at - 1, 2", "ARGV[j + 1]");
            return;
        }
        let names = self.per_field(|name, _| lua_str(name));
        self.line("if exists then");
        self.line(format!(
            "  local v = redis.call('HMGET', key, {})",
            names.join(", ")
        ));
        for i in 1..=self.fields.len() {
            self.line(format!("  o{i} = v[{i}] or nil"));
        }
        self.line("end");
        self.line(format!("if {} then", Mode::Delete.is_not()));
        // A patch or reindex starts from the stored values; the others
        // replace every declared field, and indexed fields are declared,
        // so the new values are exactly the ones sent (nil if removed).
        self.line(format!(
            "  if {} then {} = {} end",
            starts_from_stored(),
            news.join(", "),
            olds.join(", ")
        ));
        self.new_values_sent("set_start", "del_at - 1, 2", "ARGV[j + 1]");
        self.new_values_sent("del_start", "del_start + ndel - 1", "nil");
        self.line("end");
    }

    /// Sets `n<n>` to `value` for every indexed field named in ARGV from
    /// `from` to `to`.
    fn new_values_sent(&mut self, from: &str, to: &str, value: &str) {
        self.branch_line(format!("for j = {from}, {to} do"));
        self.branch_line("  local f = ARGV[j]");
        let arms = self.per_field(|name, n| format!("f == {} then n{n} = {value}", lua_str(name)));
        self.branch_line(format!("  if {} end", arms.join(" elseif ")));
        self.branch_line("end");
    }

    /// A previous incarnation that expired may still have index entries:
    /// its registry entry says so. Probed here, so that `forget_expired`
    /// (defined on first call) is only called when there is one.
    fn forget_earlier_incarnation(&mut self) {
        if let Some((registry, fields)) = self.registry_lua() {
            let new = if self.create_only {
                ""
            } else {
                "not exists and "
            };
            self.line(format!(
                "if {new}redis.call('HEXISTS', {fields}, member) == 1 then forget_expired({registry}, member) end"
            ));
        }
    }

    fn past_expiry_is_a_delete(&mut self) {
        self.line(format!(
            "if {} and {} and {} and tonumber(ttl_ms) <= now_ms() then",
            TtlAction::Absolute.is(),
            Mode::Delete.is_not(),
            Mode::Reindex.is_not()
        ));
        self.line(format!("  mode = {}", Mode::Delete.lua()));
        let count = self.descriptor.indexes.len();
        if count > 0 {
            let keys: Vec<String> = (1..=count).map(|i| format!("new_k{i}")).collect();
            let nils = vec!["nil"; count];
            self.line(format!("  {} = {}", keys.join(", "), nils.join(", ")));
        }
        self.line("end");
    }

    /// The hash and its TTL. A delete removes the whole hash (the entity is
    /// gone); the other writes touch only the fields they send, so fields
    /// another service keeps in the hash survive (see the module docs).
    /// Writing fields keeps the hash's TTL, so keeping it (`k`) needs no
    /// command, while a save with no TTL (`n`) makes an existing entity
    /// persistent, as saving restarts the TTL.
    fn hash_and_ttl(&mut self) {
        self.line(format!("if {} then", Mode::Delete.is()));
        self.line("  redis.call('DEL', key)");
        self.line(format!("elseif {} then", Mode::Reindex.is_not()));
        // Set before removing, so the hash (and its TTL) never goes away in
        // between. Only a patch may send no field to set; a whole-entity
        // write always sends at least its key fields.
        self.line(format!(
            "  if nset > 0 or {} then redis.call('HSET', key, unpack(ARGV, set_start, del_at - 1)) end",
            Mode::Patch.is_not()
        ));
        self.line("  if ndel > 0 then redis.call('HDEL', key, unpack(ARGV, del_start, del_start + ndel - 1)) end");
        if let Some(field) = self.descriptor.version {
            self.line(format!(
                "  if version then redis.call('HSET', key, {}, version) end",
                lua_str(field)
            ));
        }
        self.line(format!(
            "  if {} then redis.call('PEXPIRE', key, ttl_ms)",
            TtlAction::Relative.is()
        ));
        self.line(format!(
            "  elseif {} then redis.call('PEXPIREAT', key, ttl_ms)",
            TtlAction::Absolute.is()
        ));
        self.line(format!(
            "  elseif {} and exists and {} then redis.call('PERSIST', key) end",
            TtlAction::None.is(),
            Mode::Patch.is_not()
        ));
        self.line("end");
    }

    /// The first index's new entry, written before anything else so that
    /// it needs no key-type check (see `key_type_checks`).
    fn first_index_entry(&mut self) {
        if let Some(&(i, index)) = self.written().first() {
            self.index_add(i, index);
        }
    }

    /// Moves each index entry: removes the old one where the key (or the
    /// unique value) changed, and adds the new one (the first index's was
    /// added by `first_index_entry`).
    fn index_moves(&mut self) {
        let first = self.written().first().map(|&(i, _)| i);
        for (i, index) in self.written() {
            let later = Some(i) != first;
            if self.create_only {
                // Nothing to remove: a new entity has no old entries.
                if later {
                    self.index_add(i, index);
                }
                continue;
            }
            match (index.kind, self.value_number(index)) {
                (IndexKind::Set, _) => self.line(format!(
                    "if old_k{i} and old_k{i} ~= new_k{i} then redis.pcall('SREM', old_k{i}, member) end"
                )),
                (IndexKind::Sorted, Some(_)) => self.line(format!(
                    "if old_k{i} and old_k{i} ~= new_k{i} then redis.pcall('ZREM', old_k{i}, member) end"
                )),
                (IndexKind::Unique, Some(v)) => {
                    self.line(format!(
                        "if old_k{i} and o{v} and (old_k{i} ~= new_k{i} or o{v} ~= n{v}) then"
                    ));
                    self.line(format!("  if redis.pcall('HGET', old_k{i}, o{v}) == member then redis.call('HDEL', old_k{i}, o{v}) end"));
                    self.line("end");
                }
                _ => {}
            }
            if later {
                self.index_add(i, index);
            }
        }
    }

    /// Adds the new entry of index number `i`, if it has one and it differs
    /// from the old one (same key, and for sorted and unique indexes the
    /// same value): an unchanged entry is already there. A reindex always
    /// writes it, since repairing a missing entry is its purpose.
    fn index_add(&mut self, i: usize, index: &IndexDescriptor) {
        let (command, same_value) = match (index.kind, self.value_number(index)) {
            (IndexKind::Set, _) => (format!("'SADD', new_k{i}, member"), String::new()),
            (IndexKind::Sorted, Some(v)) => (
                format!("'ZADD', new_k{i}, n{v}, member"),
                format!(" and o{v} == n{v}"),
            ),
            (IndexKind::Unique, Some(v)) => (
                format!("'HSET', new_k{i}, n{v}, member"),
                format!(" and o{v} == n{v}"),
            ),
            _ => return,
        };
        self.line(format!(
            "if new_k{i} and ({} or not (old_k{i} == new_k{i}{same_value})) then redis.call({command}) end",
            Mode::Reindex.is()
        ));
    }

    /// Only entities that expire (now, or before this write) are listed in
    /// the TTL registry, with the values their index entries were built from.
    fn registry(&mut self) {
        let Some((reg, reg_fields)) = self.registry_lua() else {
            return;
        };
        let snapshot = self.per_field(|name, n| format!("[{}] = n{n}", lua_str(name)));
        // A new entity can only expire if this write gave it a TTL; an
        // existing one may have had one before and may keep it.
        self.line("local left = -1");
        self.line(format!(
            "if {} and (exists or {} or {}) then",
            Mode::Delete.is_not(),
            TtlAction::Relative.is(),
            TtlAction::Absolute.is()
        ));
        self.line("  left = redis.call('PTTL', key)");
        self.line("end");
        self.line("if left > 0 then");
        self.line(format!(
            "  redis.call('ZADD', {reg}, now_ms() + left, member)"
        ));
        self.line(format!(
            "  redis.call('HSET', {reg_fields}, member, cjson.encode({{ {} }}))",
            snapshot.join(", ")
        ));
        // A write that kept the TTL of an entity that has none leaves it
        // unlisted as it was (the sweep drops entries of entities made
        // persistent behind our back), so it skips the two removals.
        self.line(format!(
            "elseif {} or (exists and {}) then",
            Mode::Delete.is(),
            TtlAction::Keep.is_not()
        ));
        self.line(format!("  redis.call('ZREM', {reg}, member)"));
        self.line(format!("  redis.call('HDEL', {reg_fields}, member)"));
        self.line("end");
    }

    /// The outbox: an entry on the stream in the same step as the creation,
    /// or, when the stream is in another slot, recorded as pending under
    /// the write count (`pending_moves`), each field and value as its
    /// length, `:` and its bytes. The record's field name stands in for
    /// the entry id in the reply; the client appends the entry and answers
    /// with the id (`cross_slot::pending`).
    fn outbox(&mut self) {
        self.line("local entry = false");
        if self.defers_stream() {
            self.line("if enqueue then");
            self.line(format!(
                "  entry = {} .. writes",
                lua_str(redis_schema::PENDING_STREAM_ENTRY)
            ));
            self.line("  local parts = {}");
            self.line("  for j = set_start, del_at - 1 do parts[#parts + 1] = #ARGV[j] .. ':' .. ARGV[j] end");
            self.line("  redis.call('HSET', pending, entry, table.concat(parts))");
            self.line("end");
            return;
        }
        let Some(stream) = self.written_stream() else {
            return;
        };
        let trim = stream
            .maxlen
            .map(|n| format!("'MAXLEN', '~', {n}, "))
            .unwrap_or_default();
        // Not when an expiry in the past made the write a delete.
        self.line(format!("if {} then", creates()));
        self.line(format!(
            "  entry = redis.call('XADD', {}, {trim}'*', unpack(ARGV, set_start, del_at - 1))",
            lua_str(stream.key)
        ));
        self.line("end");
    }
}

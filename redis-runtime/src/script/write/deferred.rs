//! The write script's part of the `cross_slot` protocol (see the
//! runtime's `cross_slot` module): recording in the entity's pending
//! record the index moves, stream entry and unique values it leaves to the
//! client, taking the record's lease, and refusing values of a
//! `cross_slot` unique index that were not claimed first.

use redis_schema::{IndexDescriptor, IndexKind};

use super::{Writer, creates};
use crate::script::lua_str;
use crate::script::protocol::{LEASED_TAG, Mode, Switch, WriteCode, arg, key};

/// The Lua text the pending record's field of a unique value to release
/// starts with, for index number `i` (the value follows; see
/// [`redis_schema::PENDING_UNIQUE_VALUE`]).
fn released_field(i: usize) -> String {
    lua_str(&format!("{}{i} ", redis_schema::PENDING_UNIQUE_VALUE))
}

impl Writer<'_> {
    /// A `cross_slot` unique index's new value, when the write sets one the
    /// entity does not hold yet, must have been claimed by the client:
    /// listed in `claims` as the unique hash and the value.
    pub(super) fn claim_needed(&mut self, i: usize, name: &str, v: usize) {
        self.branch_line(format!(
            "if not n{v} then return redis.error_reply({}) end",
            lua_str(&format!(
                "DECODE the value of unique index {name} is missing"
            ))
        ));
        let changed = if self.create_only {
            "true".to_string()
        } else {
            format!("{} and n{v} ~= o{v}", Mode::Reindex.is_not())
        };
        let intent = released_field(i);
        self.branch_line(format!("if {changed} then"));
        self.branch_line(format!(
            "  claims[#claims + 1] = new_k{i}; claims[#claims + 1] = n{v}"
        ));
        self.branch_line(format!("  intents[#intents + 1] = {intent} .. n{v}"));
        self.branch_line("end");
    }

    /// Refuses, before the entity is written, a write that sets values of
    /// `cross_slot` unique indexes without the claim token that covers
    /// them (the prelude's `claim_first`): the entity's unique fence
    /// (`KEYS[4]`) as it is now, `|`, and the unique hashes and values,
    /// each as its length, `:` and its bytes. The reply `{ -5, { token,
    /// hash, value, ... } }` tells the client what to claim; it sends the
    /// write again with the token. The fence is read here, before the
    /// claims, and raised by whoever takes a value from the entity
    /// (`scripts/unique_fence.lua`): a token is stale as soon as any claim
    /// made under it may have been taken back.
    ///
    /// Before it answers -5, the script records each value about to be
    /// claimed in the entity's pending record (`KEYS[2]`) as a value to
    /// release unless the entity holds it, counting a write: a client that
    /// dies between its claim and its write leaves the claim to `settle`,
    /// which releases it. The write that carries the token removes those
    /// fields (the entity holds the values now), and the record with them
    /// if nothing else is in it.
    pub(super) fn claims_check(&mut self) {
        if !self.fences() {
            return;
        }
        self.line(format!(
            "local refused = claim_first(KEYS[{}], KEYS[{}], ARGV[{}], claims, intents, {}, {})",
            key::FENCE,
            key::PENDING,
            arg::CLAIM_TOKEN,
            lua_str(redis_schema::PENDING_WRITES),
            WriteCode::ClaimFirst
        ));
        self.line("if refused then return refused end");
    }

    /// For each deferred index whose entry this write moves (another key,
    /// another score, or a reindex), lists the old key in the pending index
    /// key (`KEYS[2]`) with the index's number and counts the write under
    /// the empty field. The client then moves the entries (see
    /// `cross_slot::pending`); a client that dies first leaves the record for
    /// `index::settle`. The new keys are not listed: they follow from the
    /// hash, which the client reads when it applies the record.
    pub(super) fn pending_moves(&mut self) {
        if !self.defer {
            return;
        }
        self.line(format!("local pending = KEYS[{}]", key::PENDING));
        self.line(format!("local moved = {}", Mode::Reindex.is()));
        for (i, index) in self.numbered(true) {
            if index.kind == IndexKind::Unique {
                self.pending_release(i, index);
                continue;
            }
            if self.create_only {
                self.line(format!("if new_k{i} then moved = true end"));
                continue;
            }
            let same_value = match self.value_number(index) {
                Some(v) if index.kind == IndexKind::Sorted => format!(" or o{v} ~= n{v}"),
                _ => String::new(),
            };
            self.line(format!("if old_k{i} ~= new_k{i}{same_value} then"));
            self.line("  moved = true");
            self.line(format!(
                "  if old_k{i} then redis.call('HSET', pending, old_k{i}, '{i}') end"
            ));
            self.line("end");
        }
        if self.defers_stream() {
            // Not when an expiry in the past made the write a delete.
            self.line(format!("local enqueue = {}", creates()));
            self.line("if enqueue then moved = true end");
        }
        self.line("local writes = 0");
        self.line(format!(
            "if moved then writes = redis.call('HINCRBY', pending, {}, 1) end",
            lua_str(redis_schema::PENDING_WRITES)
        ));
    }

    /// A value of a `cross_slot` unique index that the entity leaves (a new
    /// value, or a delete) is recorded for the client to release from the
    /// unique hash (field [`redis_schema::PENDING_UNIQUE_VALUE`], the
    /// index's number and the value; the hash's key as the value). The new
    /// value needs nothing: the client claimed it before this write.
    pub(super) fn pending_release(&mut self, i: usize, index: &IndexDescriptor) {
        let (Some(v), false) = (self.value_number(index), self.create_only) else {
            return;
        };
        self.line(format!("if old_k{i} and o{v} and o{v} ~= n{v} then"));
        self.line("  moved = true");
        self.line(format!(
            "  redis.call('HSET', pending, {} .. o{v}, old_k{i})",
            released_field(i)
        ));
        self.line("end");
    }

    /// When this write recorded moves, it also takes the lease on them,
    /// saving the client that round trip (`cross_slot::pending`): it takes
    /// the lease (`KEYS[3]`) if no other client holds it, with the token
    /// the client sent (`cross_slot`'s one token format), and wraps its
    /// reply as `{ LEASED_TAG, reply, token, { 1, record, hash } }`, the
    /// last part shaped like the lease script's reply. A
    /// lease held by another client leaves the moves to it: the reply is
    /// plain. Returns whether the script has this step.
    pub(super) fn leases_pending_moves(&mut self) -> bool {
        if !self.defer {
            return false;
        }
        let lease_ms = crate::script::LEASE.as_millis();
        self.line("local function with_lease(reply)");
        self.line("  if not moved then return reply end");
        self.line(format!(
            "  local token = ARGV[{}]",
            arg::lease_token(self.fences())
        ));
        self.line(format!(
            "  if not redis.call('SET', KEYS[{}], token, 'NX', 'PX', {lease_ms}) then return reply end",
            key::LEASE
        ));
        self.line(format!(
            "  return {{ {}, reply, token, {{ 1, redis.call('HGETALL', pending), redis.call('HGETALL', key) }} }}",
            lua_str(LEASED_TAG)
        ));
        self.line("end");
        true
    }
}

//! The checks a write script runs before its first write (Redis does not
//! roll back a script that fails midway): its arguments, the stored
//! version, a conditional write's conditions, a counter's bounds, every
//! new index key and value, unique holders, and the Redis type of the
//! keys it will write to.

use redis_schema::IndexKind;

use super::{Writer, creates, starts_from_stored};
use crate::script::lua_str;
use crate::script::protocol::{Mode, Switch, WriteCode, arg, key};

impl Writer<'_> {
    pub(super) fn arguments(&mut self) {
        self.line(format!("local key = KEYS[{}]", key::HASH));
        let mode = if self.create_only {
            Mode::Create.lua()
        } else {
            format!("ARGV[{}]", arg::MODE)
        };
        self.line(format!(
            "local mode, ttl_action, ttl_ms, member = {mode}, ARGV[{}], ARGV[{}], ARGV[{}]",
            arg::TTL_ACTION,
            arg::TTL_MS,
            arg::MEMBER
        ));
        // With a `cross_slot` unique index, the claim token the client got
        // from `claims_check` ('' before it claimed anything) comes next,
        // then for a deferring type its lease token.
        let first = arg::first_field(self.fences(), self.defer);
        self.line(format!("local nset = tonumber(ARGV[{first}])"));
        self.line(format!(
            "local set_start, del_at = {}, {} + 2 * nset",
            first + 1,
            first + 1
        ));
        self.line("local ndel = tonumber(ARGV[del_at])");
        self.line("local del_start = del_at + 1");
        if self.create_only {
            self.line(format!(
                "if redis.call('EXISTS', key) == 1 then return {} end",
                WriteCode::Exists
            ));
            self.line("local exists = false");
            self.version();
            return;
        }
        self.line("local exists = redis.call('EXISTS', key) == 1");
        self.line(format!(
            "if {} and exists then return {} end",
            Mode::Create.is(),
            WriteCode::Exists
        ));
        self.line(format!(
            "if {} and {} and not exists then return {} end",
            Mode::Create.is_not(),
            Mode::Save.is_not(),
            WriteCode::Missing
        ));
        self.conditions();
        self.counter();
        self.version();
    }

    /// With a version field, every write but a delete or reindex stores
    /// the stored version plus one (1 for a new entity): in the fields it
    /// sends, so the outbox entry carries it too, and written again after
    /// the hash for writes that do not send it (a patch).
    pub(super) fn version(&mut self) {
        let Some(field) = self.descriptor.version else {
            return;
        };
        let f = lua_str(field);
        self.line("local version = false");
        self.line(format!(
            "if {} and {} then",
            Mode::Delete.is_not(),
            Mode::Reindex.is_not()
        ));
        self.line("  local now = '0'");
        self.line(format!(
            "  if exists then now = redis.call('HGET', key, {f}) or '0' end"
        ));
        self.line("  if not string.match(now, '^%d+$') then");
        self.line(format!(
            "    return redis.error_reply({})",
            lua_str(&format!(
                "DECODE the stored {field} is not a non-negative integer; nothing was written"
            ))
        ));
        self.line("  end");
        self.line("  version = string.format('%.0f', tonumber(now) + 1)");
        self.line(format!(
            "  for j = set_start, del_at - 1, 2 do if ARGV[j] == {f} then ARGV[j + 1] = version end end"
        ));
        self.line("end");
    }

    /// A conditional write (`patch_if`) carries, after the fields to
    /// remove, the expected stored values (`n`, then name/value pairs)
    /// and the fields expected absent. Any mismatch answers `{ -3, hash }`
    /// before anything is written, so the caller sees the current values.
    pub(super) fn conditions(&mut self) {
        self.line("local cond_at = del_start + ndel");
        self.line(format!(
            "if {} and #ARGV >= cond_at then",
            Mode::Increment.is_not()
        ));
        self.line("  local ncond = tonumber(ARGV[cond_at])");
        self.line("  local held = true");
        self.line("  for j = cond_at + 1, cond_at + 2 * ncond, 2 do");
        self.line("    if redis.call('HGET', key, ARGV[j]) ~= ARGV[j + 1] then held = false end");
        self.line("  end");
        self.line("  for j = cond_at + 2 * ncond + 1, #ARGV do");
        self.line("    if redis.call('HEXISTS', key, ARGV[j]) == 1 then held = false end");
        self.line("  end");
        self.line(format!(
            "  if not held then return {{ {}, redis.call('HGETALL', key) }} end",
            WriteCode::ConditionFailed
        ));
        self.line("end");
    }

    /// An increment (mode `i`) sends one field and the amount, then the
    /// bounds of the field's Rust type. The new value replaces the amount
    /// in ARGV, so from here on the increment is a patch of that field:
    /// index entries built from it move in the same step. Lua numbers are
    /// doubles, so results beyond 2^53 are refused rather than rounded.
    pub(super) fn counter(&mut self) {
        self.line("local counted = false");
        self.line(format!("if {} then", Mode::Increment.is()));
        self.line("  local f = ARGV[set_start]");
        self.line("  local cur = redis.call('HGET', key, f) or '0'");
        self.line("  if not string.match(cur, '^-?%d+$') then");
        self.line("    return redis.error_reply('DECODE the stored value of ' .. f .. ' is not an integer; nothing was written')");
        self.line("  end");
        self.line("  local v = tonumber(cur) + tonumber(ARGV[set_start + 1])");
        self.line("  if v < tonumber(ARGV[cond_at]) or v > tonumber(ARGV[cond_at + 1]) or math.abs(v) > 9007199254740991 then");
        self.line(format!("    return {{ {}, cur }}", WriteCode::OutOfRange));
        self.line("  end");
        self.line("  counted = string.format('%.0f', v)");
        self.line("  ARGV[set_start + 1] = counted");
        self.line("end");
    }

    /// Old and new index keys, and every check on the new values.
    ///
    /// New values sent by the client were already checked in Rust (key
    /// values against the full key rule, scores encoded from a number), so
    /// for those only their presence is checked here; the full checks run
    /// on values that come from the stored hash (`stored`: a patch keeps
    /// unpatched values, a reindex uses them all), and on scores whose
    /// field type does not encode as a number.
    pub(super) fn index_checks(&mut self) {
        if !self.create_only {
            self.line(format!("local stored = {}", starts_from_stored()));
        }
        if self.fences() {
            self.line("local claims, intents = {}, {}");
        }
        for (i, index) in self.descriptor.indexes.iter().enumerate() {
            let i = i + 1;
            let name = index.name;
            self.line(format!("local old_k{i}, new_k{i}"));
            if !self.create_only {
                self.line(format!(
                    "if exists and {} then old_k{i} = {} end",
                    self.all_safe(index, "o"),
                    self.concat(index, "o")
                ));
                self.line(format!("if {} then", Mode::Delete.is_not()));
            }
            let unusable = if self.create_only {
                // A key without placeholders has no value to check.
                (self.key_field_numbers(index).next().is_some())
                    .then(|| format!("not ({})", self.all_present(index, "n")))
            } else {
                Some(format!(
                    "not ({}) or (stored and not ({}))",
                    self.all_present(index, "n"),
                    self.all_safe(index, "n")
                ))
            };
            if let Some(unusable) = unusable {
                self.branch_line(format!(
                    "if {unusable} then return redis.error_reply({}) end",
                    lua_str(&format!(
                        "INVALID_KEY a value of index {name} cannot be part of a key"
                    ))
                ));
            }
            self.branch_line(format!("new_k{i} = {}", self.concat(index, "n")));
            match (index.kind, self.value_number(index)) {
                (IndexKind::Sorted, Some(v)) => {
                    let when = match (self.numeric_score(index), self.create_only) {
                        (true, true) => format!("not n{v}"),
                        (true, false) => format!("not n{v} or (stored and not score_ok(n{v}))"),
                        (false, _) => format!("not score_ok(n{v})"),
                    };
                    self.branch_line(format!(
                        "if {when} then return redis.error_reply({}) end",
                        lua_str(&format!("DECODE the score of index {name} is not a number"))
                    ));
                }
                (IndexKind::Unique, Some(v)) if self.deferred(index) => {
                    self.claim_needed(i, name, v);
                }
                (IndexKind::Unique, Some(v)) => self.unique_check(i, name, v),
                _ => {}
            }
            if !self.create_only {
                self.line("end");
            }
        }
    }

    /// A unique value held by another live entity stops the write.
    pub(super) fn unique_check(&mut self, i: usize, name: &str, v: usize) {
        self.branch_line(format!(
            "if not n{v} then return redis.error_reply({}) end",
            lua_str(&format!(
                "DECODE the value of unique index {name} is missing"
            ))
        ));
        self.branch_line(format!("local holder = redis.call('HGET', new_k{i}, n{v})"));
        self.branch_line("if holder and holder ~= member then");
        self.branch_line("  local holder_key = key_of_member(holder)");
        // A reindex (repairing existing data) skips just this entry, so the
        // entity still gets its other indexes and the conflict is left for
        // `verify` to report.
        self.branch_line("  if holder_key and redis.call('EXISTS', holder_key) == 1 then");
        self.branch_line(format!(
            "    if {} then new_k{i} = nil else return {{ {}, {} }} end",
            Mode::Reindex.is(),
            WriteCode::UniqueViolation,
            lua_str(name)
        ));
        self.branch_line("  end");
        self.branch_line("end");
    }

    /// Keys of another Redis type (foreign data in our key space) would make
    /// an index or stream command fail after the hash was written: refuse
    /// before writing anything instead.
    /// Refuses the write, before it writes anything, when a key it will add
    /// to holds another Redis type: a command failing halfway through would
    /// leave a half-applied write. Only keys that need it are checked:
    /// * the first index's new key is written first (`first_index_entry`),
    ///   so a wrong type there fails before anything else is written;
    /// * a unique index's new key was already read with `HGET` by its
    ///   check, which fails on a wrong type before any write;
    /// * old keys are only removed from, with `redis.pcall`, and a key
    ///   holding foreign data has no entry of ours to remove.
    pub(super) fn key_type_checks(&mut self) {
        for (i, index) in self.written().into_iter().skip(1) {
            if index.kind == IndexKind::Unique {
                continue;
            }
            let t = index.kind.redis_type();
            self.line(format!("if new_k{i} and not kind_ok(new_k{i}, '{t}') then"));
            self.line(format!(
                "  return redis.error_reply('WRONGTYPE an index key holds a value that is not a {t}; nothing was written')"
            ));
            self.line("end");
        }
        if let Some(stream) = self.written_stream() {
            let creates_and = format!("({}) and ", creates());
            let creating = if self.create_only { "" } else { &creates_and };
            self.line(format!(
                "if {creating}not kind_ok({}, 'stream') then",
                lua_str(stream.key)
            ));
            self.line("  return redis.error_reply('WRONGTYPE the stream key holds a value that is not a stream; nothing was written')");
            self.line("end");
        }
    }
}

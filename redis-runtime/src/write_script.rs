//! Compiles an entity's [`Layout`] into its own Lua write script.
//!
//! Every write (create, save, update, patch, delete, reindex) of an entity
//! type runs one script, specialised for that type: field names, index key
//! shapes, the TTL registry and the stream are written into the Lua source
//! as literals, so each call does only the work of a hand-written script
//! for the same type. The generated source is built once per type, cached,
//! and sent with EVALSHA (redis-rs loads it on a NOSCRIPT reply).
//!
//! Arguments of the generated script:
//!
//! * `KEYS[1]`: the entity's hash.
//! * `ARGV`: mode (`c` create, `s` save, `u` update, `p` patch, `d` delete,
//!   `x` reindex), TTL action (`k` keep, `s` set relative ms, `a` set
//!   absolute ms, `n` none), TTL ms, member id, `nset` and `nset`
//!   field/value pairs, `ndel` and `ndel` field names.
//!
//! It returns `{code, detail}`: 1 written (detail: the stream entry id or
//! false), 2 written over an existing entity, 0 create found the key, -1
//! the entity is missing, -2 unique violation (detail: the index name).
//!
//! Why the steps are in this order: every check (existence, key-safe index
//! values, numeric scores, unique holders) runs before the first write,
//! because Redis does not roll back a script that fails midway. Index keys
//! are derived inside the script from the hash as it was and as it will be,
//! so concurrent writers can never leave an entry behind.
//!
//! Keys touched but not declared in `KEYS`: index keys, the registry and the
//! stream. With cluster hash tags in the patterns they can share the
//! entity's slot; a cluster mode would have to declare them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, RwLock};

use crate::entity::{IndexKind, Layout};

/// Compiled scripts, one per entity type, keyed by the address of its
/// `static` layout (unique per type).
static CACHE: LazyLock<RwLock<HashMap<usize, &'static redis::Script>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// The write script of the entity type whose layout this is.
pub(crate) fn for_layout(layout: &'static Layout) -> &'static redis::Script {
    let id = std::ptr::from_ref(layout) as usize;
    if let Some(script) = CACHE.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
        return script;
    }
    let mut cache = CACHE.write().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(id)
        // One leaked script per entity type: bounded by the program's types.
        .or_insert_with(|| Box::leak(Box::new(redis::Script::new(&compile(layout)))))
}

/// A Lua string literal for `text`, escaping everything outside printable
/// ASCII so no field name or key text can break out of it.
fn lua_str(text: &str) -> String {
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

/// A part of a key shape: literal text, or the value of field number `n`.
enum Part<'a> {
    Literal(&'a str),
    Field(usize),
}

struct Compiler<'a> {
    layout: &'a Layout,
    /// Hash fields the indexes read, in a fixed order: `o<n>`/`n<n>` in Lua.
    fields: Vec<&'a str>,
    out: String,
}

impl<'a> Compiler<'a> {
    fn field(&mut self, name: &'a str) -> usize {
        match self.fields.iter().position(|f| *f == name) {
            Some(n) => n + 1,
            None => {
                self.fields.push(name);
                self.fields.len()
            }
        }
    }

    fn parts(&mut self, parts: &'a [&'a str]) -> Vec<Part<'a>> {
        parts
            .iter()
            .map(|part| match part.strip_prefix('=') {
                Some(text) => Part::Literal(text),
                None => Part::Field(self.field(part.strip_prefix('@').unwrap_or(part))),
            })
            .collect()
    }

    fn line(&mut self, text: impl AsRef<str>) {
        self.out.push_str(text.as_ref());
        self.out.push('\n');
    }
}

/// `safe(o1) and safe(o2)` for the fields of a key shape (`true` if none).
fn all_safe(parts: &[Part<'_>], prefix: &str) -> String {
    let checks: Vec<String> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Field(n) => Some(format!("safe({prefix}{n})")),
            Part::Literal(_) => None,
        })
        .collect();
    if checks.is_empty() {
        "true".into()
    } else {
        checks.join(" and ")
    }
}

/// `'jobs:user:' .. o1` for a key shape.
fn concat(parts: &[Part<'_>], prefix: &str) -> String {
    let pieces: Vec<String> = parts
        .iter()
        .map(|p| match p {
            Part::Literal(text) => lua_str(text),
            Part::Field(n) => format!("{prefix}{n}"),
        })
        .collect();
    if pieces.is_empty() {
        "''".into()
    } else {
        pieces.join(" .. ")
    }
}

/// Generates the Lua source of the write script for `layout`.
pub(crate) fn compile(layout: &Layout) -> String {
    let mut c = Compiler {
        layout,
        fields: Vec::new(),
        out: String::new(),
    };
    let indexes: Vec<(IndexKind, &str, Vec<Part<'_>>, Option<usize>)> = layout
        .indexes
        .iter()
        .map(|index| {
            let parts = c.parts(index.parts);
            let value = (!index.field.is_empty()).then(|| c.field(index.field));
            (index.kind, index.name, parts, value)
        })
        .collect();
    let registry = layout.registry;
    let has_indexes = !indexes.is_empty();

    c.line("-- Generated by redis-runtime's write_script.rs; see that module's docs.");
    c.line("local key = KEYS[1]");
    c.line("local mode, ttl_action, ttl_ms, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4]");
    c.line("local nset = tonumber(ARGV[5])");
    c.line("local set_start, del_at = 6, 6 + 2 * nset");
    c.line("local ndel = tonumber(ARGV[del_at])");
    c.line("local del_start = del_at + 1");
    c.line("local exists = redis.call('EXISTS', key) == 1");
    c.line("if mode == 'c' and exists then return { 0, false } end");
    c.line("if mode ~= 'c' and mode ~= 's' and not exists then return { -1, false } end");

    if has_indexes {
        // Exactly what ZADD accepts: a plain decimal (with optional
        // exponent) that stays finite, or a literal infinity. Lua's tonumber
        // alone is laxer (surrounding spaces, overflow to inf), and a score
        // ZADD then refused would leave a half-applied write.
        if indexes.iter().any(|(kind, ..)| *kind == IndexKind::Sorted) {
            c.line("local function score_ok(v)");
            c.line("  if not v then return false end");
            c.line("  if v == 'inf' or v == '+inf' or v == '-inf' then return true end");
            c.line("  if not (string.match(v, '^[+-]?%d+%.?%d*[eE]?[+-]?%d*$') or string.match(v, '^[+-]?%.%d+[eE]?[+-]?%d*$')) then return false end");
            c.line("  local n = tonumber(v)");
            c.line("  return n ~= nil and n == n and n ~= math.huge and n ~= -math.huge");
            c.line("end");
        }
        c.line("local function safe(v)");
        c.line(
            "  return v and v ~= '' and #v <= 512 and not string.find(v, '[:%*%?%[%]{}\\\\%s%c]')",
        );
        c.line("end");
        // Old and new values of the indexed fields.
        let n = c.fields.len();
        let olds: Vec<String> = (1..=n).map(|i| format!("o{i}")).collect();
        let news: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        c.line(format!("local {}", olds.join(", ")));
        c.line(format!("local {}", news.join(", ")));
        let names: Vec<String> = c.fields.iter().map(|f| lua_str(f)).collect();
        c.line("if exists then");
        c.line(format!(
            "  local v = redis.call('HMGET', key, {})",
            names.join(", ")
        ));
        for i in 1..=n {
            c.line(format!("  o{i} = v[{i}] or nil"));
        }
        c.line("end");
        c.line("if mode ~= 'd' then");
        c.line(format!(
            "  if mode == 'p' or mode == 'x' then {} = {} end",
            news.join(", "),
            olds.join(", ")
        ));
        for (what, from, to, value) in [
            ("set", "set_start", "del_at - 1, 2", "ARGV[j + 1]"),
            ("del", "del_start", "del_start + ndel - 1", "nil"),
        ] {
            let _ = what;
            c.line(format!("  for j = {from}, {to} do"));
            c.line("    local f = ARGV[j]");
            let arms: Vec<String> = c
                .fields
                .iter()
                .enumerate()
                .map(|(i, name)| format!("f == {} then n{} = {value}", lua_str(name), i + 1))
                .collect();
            c.line(format!("    if {} end", arms.join(" elseif ")));
            c.line("  end");
        }
        c.line("end");

        // Key of a member, to check whether a unique value's holder lives.
        // Only emitted when needed: defining it costs about 1 us per call.
        if indexes.iter().any(|(kind, ..)| *kind == IndexKind::Unique) {
            compile_key_of_member(&mut c);
        }

        // Check everything before writing anything.
        for (i, (kind, name, parts, value)) in indexes.iter().enumerate() {
            let i = i + 1;
            c.line(format!("local old_k{i}, new_k{i}"));
            c.line(format!(
                "if exists and {} then old_k{i} = {} end",
                all_safe(parts, "o"),
                concat(parts, "o")
            ));
            c.line("if mode ~= 'd' then");
            c.line(format!(
                "  if not ({}) then return redis.error_reply({}) end",
                all_safe(parts, "n"),
                lua_str(&format!(
                    "INVALID_KEY a value of index {name} cannot be part of a key"
                ))
            ));
            c.line(format!("  new_k{i} = {}", concat(parts, "n")));
            match (kind, value) {
                (IndexKind::Sorted, Some(v)) => {
                    c.line(format!(
                        "  if not score_ok(n{v}) then return redis.error_reply({}) end",
                        lua_str(&format!("DECODE the score of index {name} is not a number"))
                    ));
                }
                (IndexKind::Unique, Some(v)) => {
                    c.line(format!(
                        "  if not n{v} then return redis.error_reply({}) end",
                        lua_str(&format!(
                            "DECODE the value of unique index {name} is missing"
                        ))
                    ));
                    c.line(format!(
                        "  local holder = redis.call('HGET', new_k{i}, n{v})"
                    ));
                    c.line("  if holder and holder ~= member then");
                    c.line("    local holder_key = key_of_member(holder)");
                    // A reindex (repairing existing data) skips just this
                    // entry, so the entity still gets its other indexes and
                    // the conflict is left for `verify` to report.
                    c.line("    if holder_key and redis.call('EXISTS', holder_key) == 1 then");
                    c.line(format!(
                        "      if mode == 'x' then new_k{i} = nil else return {{ -2, {} }} end",
                        lua_str(name)
                    ));
                    c.line("    end");
                    c.line("  end");
                }
                _ => {}
            }
            c.line("end");
        }

        if !registry.is_empty() {
            // A previous incarnation that expired may still have entries.
            c.line("if not exists then");
            c.line(format!(
                "  local encoded = redis.call('HGET', {}, member)",
                lua_str(&format!("{registry}:fields"))
            ));
            c.line("  if encoded then");
            c.line("    local v = cjson.decode(encoded)");
            let decoded: Vec<String> = c
                .fields
                .iter()
                .enumerate()
                .map(|(i, name)| format!("local d{} = v[{}]", i + 1, lua_str(name)))
                .collect();
            for line in decoded {
                c.line(format!("    {line}"));
            }
            for (kind, _, parts, value) in &indexes {
                let cond = all_safe(parts, "d");
                let key = concat(parts, "d");
                let body = match (kind, value) {
                    (IndexKind::Set, _) => format!("redis.call('SREM', {key}, member)"),
                    (IndexKind::Sorted, _) => format!("redis.call('ZREM', {key}, member)"),
                    (IndexKind::Unique, Some(v)) => format!(
                        "if d{v} and redis.call('HGET', {key}, d{v}) == member then redis.call('HDEL', {key}, d{v}) end"
                    ),
                    (IndexKind::Unique, None) => String::new(),
                };
                c.line(format!("    if {cond} then {body} end"));
            }
            c.line(format!(
                "    redis.call('ZREM', {}, member)",
                lua_str(registry)
            ));
            c.line(format!(
                "    redis.call('HDEL', {}, member)",
                lua_str(&format!("{registry}:fields"))
            ));
            c.line("  end");
            c.line("end");
        }
    }

    // Keys of another Redis type (foreign data in our key space) would make
    // an index or stream command fail after the hash was written: refuse
    // before writing anything instead.
    let typed: Vec<(String, &str)> = indexes
        .iter()
        .enumerate()
        .map(|(i, (kind, ..))| {
            let t = match kind {
                IndexKind::Set => "set",
                IndexKind::Sorted => "zset",
                IndexKind::Unique => "hash",
            };
            (format!("{}", i + 1), t)
        })
        .collect();
    if !typed.is_empty() || c.layout.stream.is_some() {
        c.line("local function kind_ok(k, want)");
        c.line("  local got = redis.call('TYPE', k).ok");
        c.line("  return got == 'none' or got == want");
        c.line("end");
    }
    for (i, t) in &typed {
        c.line(format!(
            "if (new_k{i} and not kind_ok(new_k{i}, '{t}')) or (old_k{i} and old_k{i} ~= new_k{i} and not kind_ok(old_k{i}, '{t}')) then"
        ));
        c.line(format!(
            "  return redis.error_reply('WRONGTYPE an index key holds a value that is not a {t}; nothing was written')"
        ));
        c.line("end");
    }
    if let Some((stream, _)) = c.layout.stream {
        c.line(format!(
            "if (mode == 'c' or (mode == 's' and not exists)) and not kind_ok({}, 'stream') then",
            lua_str(stream)
        ));
        c.line("  return redis.error_reply('WRONGTYPE the stream key holds a value that is not a stream; nothing was written')");
        c.line("end");
    }

    // An absolute expiry already in the past: the entity is gone as soon as
    // it is written, so the write is a delete (old entries out, nothing
    // added, no stream entry) rather than index entries for a hash Redis
    // removes at once.
    let cleared: Vec<String> = (1..=indexes.len()).map(|i| format!("new_k{i}")).collect();
    c.line("if ttl_action == 'a' and mode ~= 'd' and mode ~= 'x' then");
    c.line("  local t = redis.call('TIME')");
    c.line(
        "  if tonumber(ttl_ms) <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then",
    );
    c.line("    mode = 'd'");
    if !cleared.is_empty() {
        let nils: Vec<&str> = cleared.iter().map(|_| "nil").collect();
        c.line(format!("    {} = {}", cleared.join(", "), nils.join(", ")));
    }
    c.line("  end");
    c.line("end");

    // The hash and its TTL.
    c.line("local pttl = -1");
    c.line("if mode == 'd' then");
    c.line("  redis.call('DEL', key)");
    c.line("elseif mode == 'p' then");
    c.line("  if nset > 0 then redis.call('HSET', key, unpack(ARGV, set_start, del_at - 1)) end");
    c.line("  if ndel > 0 then redis.call('HDEL', key, unpack(ARGV, del_start, del_start + ndel - 1)) end");
    c.line("elseif mode ~= 'x' then");
    c.line("  if exists then");
    c.line("    pttl = redis.call('PTTL', key)");
    c.line("    redis.call('DEL', key)");
    c.line("  end");
    c.line("  redis.call('HSET', key, unpack(ARGV, set_start, del_at - 1))");
    c.line("end");
    c.line("if mode ~= 'd' and mode ~= 'x' then");
    c.line("  if ttl_action == 's' then redis.call('PEXPIRE', key, ttl_ms)");
    c.line("  elseif ttl_action == 'a' then redis.call('PEXPIREAT', key, ttl_ms)");
    c.line("  elseif ttl_action == 'k' and pttl > 0 then redis.call('PEXPIRE', key, pttl) end");
    c.line("end");

    // Move index entries.
    for (i, (kind, _, _, value)) in indexes.iter().enumerate() {
        let i = i + 1;
        match (kind, value) {
            (IndexKind::Set, _) => {
                c.line(format!("if old_k{i} and old_k{i} ~= new_k{i} then redis.call('SREM', old_k{i}, member) end"));
                c.line(format!(
                    "if new_k{i} then redis.call('SADD', new_k{i}, member) end"
                ));
            }
            (IndexKind::Sorted, Some(v)) => {
                c.line(format!("if old_k{i} and old_k{i} ~= new_k{i} then redis.call('ZREM', old_k{i}, member) end"));
                c.line(format!(
                    "if new_k{i} then redis.call('ZADD', new_k{i}, n{v}, member) end"
                ));
            }
            (IndexKind::Unique, Some(v)) => {
                c.line(format!(
                    "if old_k{i} and o{v} and (old_k{i} ~= new_k{i} or o{v} ~= n{v}) then"
                ));
                c.line(format!("  if redis.call('HGET', old_k{i}, o{v}) == member then redis.call('HDEL', old_k{i}, o{v}) end"));
                c.line("end");
                c.line(format!(
                    "if new_k{i} then redis.call('HSET', new_k{i}, n{v}, member) end"
                ));
            }
            _ => {}
        }
    }

    if !registry.is_empty() {
        // Only entities that expire (now, or before this write) are listed.
        let reg = lua_str(registry);
        let reg_fields = lua_str(&format!("{registry}:fields"));
        let snapshot: Vec<String> = c
            .fields
            .iter()
            .enumerate()
            .map(|(i, name)| format!("[{}] = n{}", lua_str(name), i + 1))
            .collect();
        c.line("local left = -1");
        c.line("if mode ~= 'd' and (ttl_action == 's' or ttl_action == 'a' or pttl > 0 or mode == 'p' or mode == 'x') then");
        c.line("  left = redis.call('PTTL', key)");
        c.line("end");
        c.line("if left > 0 then");
        c.line("  local t = redis.call('TIME')");
        c.line("  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)");
        c.line(format!("  redis.call('ZADD', {reg}, now + left, member)"));
        c.line(format!(
            "  redis.call('HSET', {reg_fields}, member, cjson.encode({{ {} }}))",
            snapshot.join(", ")
        ));
        c.line("elseif pttl > 0 or mode == 'd' or mode == 'p' then");
        c.line(format!("  redis.call('ZREM', {reg}, member)"));
        c.line(format!("  redis.call('HDEL', {reg_fields}, member)"));
        c.line("end");
    }

    // The outbox: an entry on the stream in the same step as the creation.
    c.line("local entry = false");
    if let Some((stream, maxlen)) = c.layout.stream {
        c.line("if mode == 'c' or (mode == 's' and not exists) then");
        let trim = if maxlen > 0 {
            format!("'MAXLEN', '~', {maxlen}, ")
        } else {
            String::new()
        };
        c.line(format!(
            "  entry = redis.call('XADD', {}, {trim}'*', unpack(ARGV, set_start, del_at - 1))",
            lua_str(stream)
        ));
        c.line("end");
    }
    c.line("if exists then return { 2, entry } end");
    c.line("return { 1, entry }");
    c.out
}

/// Emits `key_of_member(m)`: the entity key of an index member (the key's
/// placeholder values joined by ':'), or nil if it does not fit.
fn compile_key_of_member(c: &mut Compiler<'_>) {
    let parts: Vec<&str> = c.layout.key_parts.to_vec();
    let slots = parts.iter().filter(|p| p.starts_with('@')).count();
    c.line("local function key_of_member(m)");
    c.line("  local v, n = {}, 0");
    c.line("  for piece in string.gmatch(m, '[^:]+') do n = n + 1; v[n] = piece end");
    c.line(format!("  if n ~= {slots} then return nil end"));
    let mut pieces = Vec::new();
    let mut checks = Vec::new();
    let mut slot = 0;
    for part in parts {
        match part.strip_prefix('=') {
            Some(text) => pieces.push(lua_str(text)),
            None => {
                slot += 1;
                checks.push(format!("safe(v[{slot}])"));
                pieces.push(format!("v[{slot}]"));
            }
        }
    }
    if !checks.is_empty() {
        c.line(format!(
            "  if not ({}) then return nil end",
            checks.join(" and ")
        ));
    }
    c.line(format!("  return {}", pieces.join(" .. ")));
    c.line("end");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::IndexSpec;

    static LAYOUT: Layout = Layout {
        key_parts: &["=job:", "@id"],
        indexes: &[
            IndexSpec {
                kind: IndexKind::Sorted,
                name: "by_user_id",
                parts: &["=jobs:user:", "@user_id"],
                field: "created_at",
            },
            IndexSpec {
                kind: IndexKind::Unique,
                name: "by_slug",
                parts: &["=jobs:by_slug"],
                field: "slug",
            },
        ],
        stream: Some(("jobs:stream", 100)),
        registry: "job:{id}:__ttl",
        indexed_fields: &["user_id", "created_at", "slug"],
    };

    #[test]
    fn literals_cannot_break_out_of_lua_strings() {
        assert_eq!(lua_str("a'b\\c\n"), "'a\\'b\\\\c\\010'");
        assert_eq!(lua_str("é"), "'\\195\\169'");
    }

    #[test]
    fn generated_script_bakes_in_the_layout() {
        let source = compile(&LAYOUT);
        assert!(source.contains("redis.call('HMGET', key, 'user_id', 'created_at', 'slug')"));
        assert!(source.contains("new_k1 = 'jobs:user:' .. n1"));
        assert!(source.contains("redis.call('XADD', 'jobs:stream', 'MAXLEN', '~', 100, '*'"));
        assert!(source.contains("'job:{id}:__ttl:fields'"));
    }

    #[test]
    fn one_script_per_layout() {
        let a = for_layout(&LAYOUT);
        let b = for_layout(&LAYOUT);
        assert!(std::ptr::eq(a, b));
        assert_eq!(
            a.get_hash(),
            redis::Script::new(&compile(&LAYOUT)).get_hash()
        );
    }
}

-- The Lua helpers every entity script is built from: the one copy of them.
--
-- An entity script is assembled by redis-runtime's `script` module as
--   1. `layout()`: the entity type's layout table, generated from its
--      descriptor (only when a helper below reads it), built on first call
--      so that a write that never needs it does not pay for it;
--   2. the helpers the script needs, in the order of this file;
--   3. the script's own body (`query.lua`, `sweep.lua`, ... or the write
--      body generated per type).
-- Each helper starts at a `--- name: dependencies` line; the assembler
-- takes a helper together with everything it depends on, and nothing else,
-- because defining a function costs time on every call.
--
-- The layout table, `layout()`:
--   key        the entity key pattern as alternating parts: literal text at
--              odd positions, hash field names at even ones
--              ({ 'job:', 'id' } for `job:{id}`)
--   indexes    per index: kind (the Redis type of its keys: 'set', 'zset'
--              or 'hash' for unique indexes), name, key (parts as above),
--              value (the score field of a zset, the unique field of a
--              hash; nil for sets)
--   registry   the TTL registry zset, scoring each member by its expiry,
--              with a companion hash '<registry>:fields' holding the values
--              its index entries were built from; nil for entity types
--              without indexes

--- safe
-- A value may fill a key segment only if it could not break out of it: the
-- rule of redis_schema::validate_key_value, for ASCII (Rust checks values
-- against the full Unicode rule before they reach a script).
local function safe(v)
  return v and v ~= '' and #v <= 512 and not string.find(v, '[:%*%?%[%]{}\\%s%c]')
end

--- now_ms
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

--- score_ok
-- Exactly what ZADD accepts: a plain decimal (with optional exponent) that
-- stays finite, or a literal infinity. Lua's tonumber alone is laxer
-- (surrounding spaces, overflow to inf), and a score ZADD then refused
-- would leave a half-applied write.
local function score_ok(v)
  if not v then return false end
  if v == 'inf' or v == '+inf' or v == '-inf' then return true end
  if not (string.match(v, '^[+-]?%d+%.?%d*[eE]?[+-]?%d*$') or string.match(v, '^[+-]?%.%d+[eE]?[+-]?%d*$')) then return false end
  local n = tonumber(v)
  return n ~= nil and n == n and n ~= math.huge and n ~= -math.huge
end

--- kind_ok
-- Whether key `k` is free or holds a value of Redis type `want`: foreign
-- data at one of our keys must stop a write before it writes anything.
local function kind_ok(k, want)
  local got = redis.call('TYPE', k).ok
  return got == 'none' or got == want
end

--- claim_first
-- The check of the claims of `cross_slot` unique values, in a cluster
-- write (see the runtime's `cross_slot` module). `claims` lists the unique
-- hash and the value of each value the write sets that the entity does not
-- hold yet, `intents` the pending record's field recording each. The write
-- runs only with the claim token covering them: the entity's unique fence
-- (at `fence`) as it is now, '|', and each hash and value as its length,
-- ':' and its bytes. Without it, each value is recorded in the `pending`
-- record as one to release unless the entity holds it, a write is counted
-- under `writes`, and the reply to give is returned: `{ refused, { token,
-- hash, value, ... } }`, what the client must claim. With it, those
-- records go (and the record, if nothing else is in it), and nil is
-- returned: the write goes on.
local function claim_first(fence, pending, token, claims, intents, writes, refused)
  if #claims == 0 then return nil end
  local parts = {}
  for j = 1, #claims do parts[j] = #claims[j] .. ':' .. claims[j] end
  local wanted = (redis.call('GET', fence) or '0') .. '|' .. table.concat(parts)
  if token ~= wanted then
    for j = 1, #intents do redis.call('HSET', pending, intents[j], claims[2 * j - 1]) end
    redis.call('HINCRBY', pending, writes, 1)
    return { refused, { wanted, unpack(claims) } }
  end
  redis.call('HDEL', pending, unpack(intents))
  if redis.call('HLEN', pending) == 1 and redis.call('HEXISTS', pending, writes) == 1 then redis.call('DEL', pending) end
  return nil
end

--- build: safe
-- Renders a key from its parts and a table of field values by name; nil if
-- a value is missing or unsafe.
local function build(parts, values)
  local out = {}
  for p = 1, #parts do
    if p % 2 == 1 then
      out[p] = parts[p]
    else
      local v = values[parts[p]]
      if not safe(v) then return nil end
      out[p] = v
    end
  end
  return table.concat(out)
end

--- key_of_member: layout safe build
-- The entity key of an index member (the key's placeholder values joined by
-- ':'), or nil if the member does not fit the key pattern.
local function key_of_member(m)
  local parts = layout().key
  local slots = math.floor(#parts / 2)
  if slots == 1 then
    if not safe(m) then return nil end
    return parts[1] .. m .. (parts[3] or '')
  end
  local values, n, start = {}, 0, 1
  while true do
    local stop = string.find(m, ':', start, true)
    n = n + 1
    if n > slots then return nil end
    values[parts[2 * n]] = string.sub(m, start, (stop or 0) - 1)
    if not stop then break end
    start = stop + 1
  end
  if n ~= slots then return nil end
  return build(parts, values)
end

--- live: key_of_member
-- Whether index member `m`'s entity is live: with `with_fields`, its hash
-- as a field/value list (false when gone), else true or false.
local function live(m, with_fields)
  local key = key_of_member(m)
  if not key then return false end
  if not with_fields then return redis.call('EXISTS', key) == 1 end
  local fields = redis.call('HGETALL', key)
  if #fields == 0 then return false end
  return fields
end

--- fields_of
-- Appends to `names` the fields index `idx` is built from.
local function fields_of(idx, names)
  for p = 2, #idx.key, 2 do names[#names + 1] = idx.key[p] end
  if idx.value then names[#names + 1] = idx.value end
  return names
end

--- stored_values
-- The stored values of fields `names` of hash `key`, by name (absent fields
-- are left out).
local function stored_values(key, names)
  local values = {}
  if #names > 0 then
    local stored = redis.call('HMGET', key, unpack(names))
    for j, f in ipairs(names) do
      if stored[j] then values[f] = stored[j] end
    end
  end
  return values
end

--- unindex: layout kind_ok build
-- Removes member `m`'s entries from every index, given the field values
-- they were built from. An index key holding foreign data has no entry to
-- remove and is left alone.
local function unindex(m, values)
  for _, idx in ipairs(layout().indexes) do
    local k = build(idx.key, values)
    if k and kind_ok(k, idx.kind) then
      if idx.kind == 'set' then
        redis.call('SREM', k, m)
      elseif idx.kind == 'zset' then
        redis.call('ZREM', k, m)
      else
        local v = values[idx.value]
        if v and redis.call('HGET', k, v) == m then redis.call('HDEL', k, v) end
      end
    end
  end
end

--- forget_expired: unindex
-- Forgets an expired incarnation of `m` listed in TTL registry `registry`:
-- removes the index entries recorded there. Returns true if there was one.
local function forget_expired(registry, m)
  local encoded = redis.call('HGET', registry .. ':fields', m)
  if not encoded then return false end
  unindex(m, cjson.decode(encoded))
  redis.call('ZREM', registry, m)
  redis.call('HDEL', registry .. ':fields', m)
  return true
end

--- sweep: layout now_ms key_of_member forget_expired
-- Removes index entries of entities whose TTL ran out, at most `budget`
-- of them, and returns how many registry entries it looked at. Entities
-- whose TTL was changed behind our back get their registry entry corrected
-- instead. A key that now holds another type is not the entity: forgotten.
local function sweep(budget)
  local registry = layout().registry
  if not registry then return 0 end
  local now = now_ms()
  local due = redis.call('ZRANGEBYSCORE', registry, '-inf', now, 'LIMIT', 0, budget)
  for _, m in ipairs(due) do
    local key = key_of_member(m)
    local left = -2
    if key and redis.call('TYPE', key).ok == 'hash' then left = redis.call('PTTL', key) end
    if left > 0 then
      redis.call('ZADD', registry, now + left, m)
    elseif left == -1 then
      redis.call('ZREM', registry, m)
      redis.call('HDEL', registry .. ':fields', m)
    else
      forget_expired(registry, m)
    end
  end
  return #due
end

-- The query script of Member, assembled by redis-runtime's script module.
local layout = {
  key = { 'member:', 'org', ':', 'user' },
  indexes = {
    { kind = 'hash', name = 'by_email', key = { 'members:by_email' }, value = 'email' },
  },
  registry = 'member:{org}:{user}:__ttl',
}
-- A value may fill a key segment only if it could not break out of it: the
-- rule of redis_schema::validate_key_value, for ASCII (Rust checks values
-- against the full Unicode rule before they reach a script).
local function safe(v)
  return v and v ~= '' and #v <= 512 and not string.find(v, '[:%*%?%[%]{}\\%s%c]')
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

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

-- The entity key of an index member (the key's placeholder values joined by
-- ':'), or nil if the member does not fit the key pattern.
local function key_of_member(m)
  local parts = layout.key
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

-- Removes member `m`'s entries from every index, given the field values
-- they were built from.
local function unindex(m, values)
  for _, idx in ipairs(layout.indexes) do
    local k = build(idx.key, values)
    if k then
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

-- Forgets an expired incarnation of `m`: removes the index entries recorded
-- in the registry. Returns true if there was one.
local function forget_expired(m)
  if not layout.registry then return false end
  local encoded = redis.call('HGET', layout.registry .. ':fields', m)
  if not encoded then return false end
  unindex(m, cjson.decode(encoded))
  redis.call('ZREM', layout.registry, m)
  redis.call('HDEL', layout.registry .. ':fields', m)
  return true
end

-- Removes index entries of entities whose TTL ran out, at most `budget`
-- of them, and returns how many registry entries it looked at. Entities
-- whose TTL was changed behind our back get their registry entry corrected
-- instead.
local function sweep(budget)
  if not layout.registry then return 0 end
  local now = now_ms()
  local due = redis.call('ZRANGEBYSCORE', layout.registry, '-inf', now, 'LIMIT', 0, budget)
  for _, m in ipairs(due) do
    local key = key_of_member(m)
    local left = -2
    if key then left = redis.call('PTTL', key) end
    if left > 0 then
      redis.call('ZADD', layout.registry, now + left, m)
    elseif left == -1 then
      redis.call('ZREM', layout.registry, m)
      redis.call('HDEL', layout.registry .. ':fields', m)
    else
      forget_expired(m)
    end
  end
  return #due
end
--- needs: sweep key_of_member
-- Reads through a secondary index, in one round trip, never returning an
-- entity that has expired.
--
-- KEYS[1]  the index key.
-- ARGV     op, index, then the op's own arguments:
--   op       ids | page | count | sids | members | unique
--   index    1-based position of the index in the layout
--   for ids/page: rev (1 = highest score first), min, max (ZRANGE BYSCORE
--            bounds, e.g. '-inf' '+inf' or '(5'), offset, limit
--   for unique: the value
--
-- Due TTL-registry entries are all swept first, so counts are exact; ids,
-- pages and members also check each id's hash and drop the ones that are
-- gone (a TTL set behind the runtime's back) as they are met.
--
-- Returns: ids/sids -> array of ids; page/members/unique -> flat array of
-- id, {field, value, ...} pairs; count -> integer.

local index_key = KEYS[1]
local op = ARGV[1]
local idx = layout.indexes[tonumber(ARGV[2])]
local i = 3

-- Sweep until nothing is due, so counts and id lists are exact; the work
-- is proportional to what expired since the last query and done once.
while sweep(1000) == 1000 do end

local function drop(m)
  if idx.kind == 'zset' then
    redis.call('ZREM', index_key, m)
  elseif idx.kind == 'set' then
    redis.call('SREM', index_key, m)
  end
end

-- Appends {id, fields} for each live member; drops dead ones.
local function load(members, out)
  for _, m in ipairs(members) do
    local key = key_of_member(m)
    local fields = {}
    if key then fields = redis.call('HGETALL', key) end
    if #fields > 0 then
      out[#out + 1] = m
      out[#out + 1] = fields
    else
      drop(m)
    end
  end
  return out
end

-- Appends the ids whose hash still exists; drops the others.
local function live(members, out)
  for _, m in ipairs(members) do
    local key = key_of_member(m)
    if key and redis.call('EXISTS', key) == 1 then
      out[#out + 1] = m
    else
      drop(m)
    end
  end
  return out
end

local function zrange(offset, limit)
  local rev, min, max = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if rev == '1' then
    return redis.call('ZRANGE', index_key, max, min, 'BYSCORE', 'REV', 'LIMIT', offset, limit)
  end
  return redis.call('ZRANGE', index_key, min, max, 'BYSCORE', 'LIMIT', offset, limit)
end

if op == 'count' then
  if idx.kind == 'zset' then return redis.call('ZCARD', index_key) end
  if idx.kind == 'set' then return redis.call('SCARD', index_key) end
  return redis.call('HLEN', index_key)
elseif op == 'ids' then
  local offset, limit = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local out = {}
  while true do
    local before = #out
    local ids = zrange(offset + before, limit - before)
    live(ids, out)
    if #ids < limit - before or #out >= limit then break end
  end
  return out
elseif op == 'page' then
  local offset, limit = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local out = {}
  -- Dead ids are removed from the index as they are met, so refilling
  -- always makes progress and ends: at the latest when the index runs out.
  while true do
    local before = #out / 2
    local ids = zrange(offset + before, limit - before)
    load(ids, out)
    if #ids < limit - before or #out / 2 >= limit then break end
  end
  return out
elseif op == 'sids' then
  return live(redis.call('SMEMBERS', index_key), {})
elseif op == 'members' then
  return load(redis.call('SMEMBERS', index_key), {})
elseif op == 'unique' then
  local m = redis.call('HGET', index_key, ARGV[i])
  if not m then return {} end
  local out = load({ m }, {})
  if #out == 0 then redis.call('HDEL', index_key, ARGV[i]) end
  return out
end
return redis.error_reply('unknown query op ' .. tostring(op))

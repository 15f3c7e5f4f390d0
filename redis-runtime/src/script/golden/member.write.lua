-- The write script of Member, assembled by redis-runtime's script module.
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

-- Whether key `k` is free or holds a value of Redis type `want`: foreign
-- data at one of our keys must stop a write before it writes anything.
local function kind_ok(k, want)
  local got = redis.call('TYPE', k).ok
  return got == 'none' or got == want
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

local key = KEYS[1]
local mode, ttl_action, ttl_ms, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local nset = tonumber(ARGV[5])
local set_start, del_at = 6, 6 + 2 * nset
local ndel = tonumber(ARGV[del_at])
local del_start = del_at + 1
local exists = redis.call('EXISTS', key) == 1
if mode == 'c' and exists then return { 0, false } end
if mode ~= 'c' and mode ~= 's' and not exists then return { -1, false } end
local o1
local n1
if exists then
  local v = redis.call('HMGET', key, 'email')
  o1 = v[1] or nil
end
if mode ~= 'd' then
  if mode == 'p' or mode == 'x' then n1 = o1 end
  for j = set_start, del_at - 1, 2 do
    local f = ARGV[j]
    if f == 'email' then n1 = ARGV[j + 1] end
  end
  for j = del_start, del_start + ndel - 1 do
    local f = ARGV[j]
    if f == 'email' then n1 = nil end
  end
end
local old_k1, new_k1
if exists and true then old_k1 = 'members:by_email' end
if mode ~= 'd' then
  if not (true) then return redis.error_reply('INVALID_KEY a value of index by_email cannot be part of a key') end
  new_k1 = 'members:by_email'
  if not n1 then return redis.error_reply('DECODE the value of unique index by_email is missing') end
  local holder = redis.call('HGET', new_k1, n1)
  if holder and holder ~= member then
    local holder_key = key_of_member(holder)
    if holder_key and redis.call('EXISTS', holder_key) == 1 then
      if mode == 'x' then new_k1 = nil else return { -2, 'by_email' } end
    end
  end
end
if not exists then forget_expired(member) end
if (new_k1 and not kind_ok(new_k1, 'hash')) or (old_k1 and old_k1 ~= new_k1 and not kind_ok(old_k1, 'hash')) then
  return redis.error_reply('WRONGTYPE an index key holds a value that is not a hash; nothing was written')
end
if ttl_action == 'a' and mode ~= 'd' and mode ~= 'x' and tonumber(ttl_ms) <= now_ms() then
  mode = 'd'
  new_k1 = nil
end
local pttl = -1
if mode == 'd' then
  redis.call('DEL', key)
elseif mode == 'p' then
  if nset > 0 then redis.call('HSET', key, unpack(ARGV, set_start, del_at - 1)) end
  if ndel > 0 then redis.call('HDEL', key, unpack(ARGV, del_start, del_start + ndel - 1)) end
elseif mode ~= 'x' then
  if exists then
    pttl = redis.call('PTTL', key)
    redis.call('DEL', key)
  end
  redis.call('HSET', key, unpack(ARGV, set_start, del_at - 1))
end
if mode ~= 'd' and mode ~= 'x' then
  if ttl_action == 's' then redis.call('PEXPIRE', key, ttl_ms)
  elseif ttl_action == 'a' then redis.call('PEXPIREAT', key, ttl_ms)
  elseif ttl_action == 'k' and pttl > 0 then redis.call('PEXPIRE', key, pttl) end
end
if old_k1 and o1 and (old_k1 ~= new_k1 or o1 ~= n1) then
  if redis.call('HGET', old_k1, o1) == member then redis.call('HDEL', old_k1, o1) end
end
if new_k1 then redis.call('HSET', new_k1, n1, member) end
local left = -1
if mode ~= 'd' and (ttl_action == 's' or ttl_action == 'a' or pttl > 0 or mode == 'p' or mode == 'x') then
  left = redis.call('PTTL', key)
end
if left > 0 then
  redis.call('ZADD', 'member:{org}:{user}:__ttl', now_ms() + left, member)
  redis.call('HSET', 'member:{org}:{user}:__ttl:fields', member, cjson.encode({ ['email'] = n1 }))
elseif pttl > 0 or mode == 'd' or mode == 'p' then
  redis.call('ZREM', 'member:{org}:{user}:__ttl', member)
  redis.call('HDEL', 'member:{org}:{user}:__ttl:fields', member)
end
local entry = false
if exists then return { 2, entry } end
return { 1, entry }

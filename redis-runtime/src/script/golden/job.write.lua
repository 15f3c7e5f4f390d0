-- The write script of Job, assembled by redis-runtime's script module.
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

-- Whether key `k` is free or holds a value of Redis type `want`: foreign
-- data at one of our keys must stop a write before it writes anything.
local function kind_ok(k, want)
  local got = redis.call('TYPE', k).ok
  return got == 'none' or got == want
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
local o1, o2, o3
local n1, n2, n3
if exists then
  local v = redis.call('HMGET', key, 'user_id', 'created_at', 'status')
  o1 = v[1] or nil
  o2 = v[2] or nil
  o3 = v[3] or nil
end
if mode ~= 'd' then
  if mode == 'p' or mode == 'x' then n1, n2, n3 = o1, o2, o3 end
  for j = set_start, del_at - 1, 2 do
    local f = ARGV[j]
    if f == 'user_id' then n1 = ARGV[j + 1] elseif f == 'created_at' then n2 = ARGV[j + 1] elseif f == 'status' then n3 = ARGV[j + 1] end
  end
  for j = del_start, del_start + ndel - 1 do
    local f = ARGV[j]
    if f == 'user_id' then n1 = nil elseif f == 'created_at' then n2 = nil elseif f == 'status' then n3 = nil end
  end
end
local old_k1, new_k1
if exists and safe(o1) then old_k1 = 'jobs:user:' .. o1 end
if mode ~= 'd' then
  if not (safe(n1)) then return redis.error_reply('INVALID_KEY a value of index by_user_id cannot be part of a key') end
  new_k1 = 'jobs:user:' .. n1
  if not score_ok(n2) then return redis.error_reply('DECODE the score of index by_user_id is not a number') end
end
local old_k2, new_k2
if exists and safe(o3) then old_k2 = 'jobs:status:' .. o3 end
if mode ~= 'd' then
  if not (safe(n3)) then return redis.error_reply('INVALID_KEY a value of index by_status cannot be part of a key') end
  new_k2 = 'jobs:status:' .. n3
end
if (new_k1 and not kind_ok(new_k1, 'zset')) or (old_k1 and old_k1 ~= new_k1 and not kind_ok(old_k1, 'zset')) then
  return redis.error_reply('WRONGTYPE an index key holds a value that is not a zset; nothing was written')
end
if (new_k2 and not kind_ok(new_k2, 'set')) or (old_k2 and old_k2 ~= new_k2 and not kind_ok(old_k2, 'set')) then
  return redis.error_reply('WRONGTYPE an index key holds a value that is not a set; nothing was written')
end
if (mode == 'c' or (mode == 's' and not exists)) and not kind_ok('jobs:stream', 'stream') then
  return redis.error_reply('WRONGTYPE the stream key holds a value that is not a stream; nothing was written')
end
if ttl_action == 'a' and mode ~= 'd' and mode ~= 'x' and tonumber(ttl_ms) <= now_ms() then
  mode = 'd'
  new_k1, new_k2 = nil, nil
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
if old_k1 and old_k1 ~= new_k1 then redis.call('ZREM', old_k1, member) end
if new_k1 then redis.call('ZADD', new_k1, n2, member) end
if old_k2 and old_k2 ~= new_k2 then redis.call('SREM', old_k2, member) end
if new_k2 then redis.call('SADD', new_k2, member) end
local entry = false
if mode == 'c' or (mode == 's' and not exists) then
  entry = redis.call('XADD', 'jobs:stream', 'MAXLEN', '~', 10000, '*', unpack(ARGV, set_start, del_at - 1))
end
if exists then return { 2, entry } end
return { 1, entry }

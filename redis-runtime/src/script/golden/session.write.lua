-- The write script of Session, assembled by redis-runtime's script module.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
if ttl_action == 'a' and mode ~= 'd' and mode ~= 'x' and tonumber(ttl_ms) <= now_ms() then
  mode = 'd'
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
local entry = false
if exists then return { 2, entry } end
return { 1, entry }

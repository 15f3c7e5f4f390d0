-- One atomic write of an entity: the hash, its TTL, every index entry, the
-- TTL registry and (on creation) the stream outbox entry.
--
-- KEYS[1]  the entity's hash.
-- ARGV     (1-based, built by redis-runtime's `entity::WriteRequest`):
--   mode         c=create  s=save (upsert)  u=update (replace)  p=patch  d=delete
--   ttl action   k=keep remaining  s=set relative ms  a=set absolute ms  n=none
--   ttl ms
--   member       the entity's id as stored in indexes (key values joined by ':')
--   nset, then nset field/value pairs to write
--   ndel, then ndel field names to remove (patch)
--   nidx, then per index: kind (s=set z=zset u=unique), name, nparts,
--         parts ('=' literal or '@' hash field), value field ('' for sets;
--         the score field for zsets; the unique field for uniques)
--   stream key ('' for none), maxlen (0 for no trimming)
--   registry key ('' for none): zset of member -> expiry ms, with a
--         companion hash '<registry>:fields' holding each member's indexed
--         values, so index entries of expired entities can be swept later
--   nkey, then the entity key pattern's parts (to rebuild a holder's key)
--
-- Index keys are computed here from stored values, so concurrent writers
-- can never leave an entry behind: old keys come from the hash as it was,
-- new keys from the hash as it will be. Everything is checked before the
-- first write, because Redis does not roll back a script that fails midway.
--
-- Keys touched but not declared in KEYS: the index keys, the stream and the
-- registry. They are derived from the entity, so with cluster hash tags in
-- the patterns they share its slot.
--
-- Returns {code, detail}: code 1 written (detail: stream entry id or false),
-- 2 written and it already existed, 0 create found the key, -1 update/patch/
-- delete found no key, -2 unique violation (detail: index name).

local key = KEYS[1]
local mode = ARGV[1]
local ttl_action = ARGV[2]
local ttl_ms = ARGV[3]
local member = ARGV[4]

local i = 5
local nset = tonumber(ARGV[i]); i = i + 1
local set_start = i
i = i + 2 * nset
local ndel = tonumber(ARGV[i]); i = i + 1
local del_start = i
i = i + ndel

local indexes = {}
local nidx = tonumber(ARGV[i]); i = i + 1
for n = 1, nidx do
  local idx = { kind = ARGV[i], name = ARGV[i + 1], parts = {} }
  local nparts = tonumber(ARGV[i + 2]); i = i + 3
  for p = 1, nparts do idx.parts[p] = ARGV[i]; i = i + 1 end
  idx.field = ARGV[i]; i = i + 1
  indexes[n] = idx
end
local stream = ARGV[i]; local maxlen = tonumber(ARGV[i + 1]); i = i + 2
local registry = ARGV[i]; i = i + 1
local key_parts = {}
local nkey = tonumber(ARGV[i]); i = i + 1
for p = 1, nkey do key_parts[p] = ARGV[i]; i = i + 1 end

local exists = redis.call('EXISTS', key) == 1
if mode == 'c' and exists then return { 0, false } end
if (mode == 'u' or mode == 'p' or mode == 'd') and not exists then return { -1, false } end

-- A value may fill a key segment only if it could not break out of it.
local function safe(v)
  return v and v ~= '' and #v <= 512 and not string.find(v, '[:%*%?%[%]{}\\%s%c]')
end

local function build(parts, values)
  local out = {}
  for p = 1, #parts do
    local part = parts[p]
    if string.sub(part, 1, 1) == '=' then
      out[#out + 1] = string.sub(part, 2)
    else
      local v = values[string.sub(part, 2)]
      if not safe(v) then return nil end
      out[#out + 1] = v
    end
  end
  return table.concat(out)
end

local function key_of_member(m)
  local values, n = {}, 0
  for piece in string.gmatch(m, '[^:]+') do n = n + 1; values['#' .. n] = piece end
  local parts, slot = {}, 0
  for p = 1, #key_parts do
    local part = key_parts[p]
    if string.sub(part, 1, 1) == '=' then
      parts[p] = part
    else
      slot = slot + 1
      parts[p] = '@#' .. slot
    end
  end
  return build(parts, values)
end

-- The hash fields the indexes depend on.
local needed, needed_list = {}, {}
local function need(f)
  if f ~= '' and not needed[f] then needed[f] = true; needed_list[#needed_list + 1] = f end
end
for n = 1, nidx do
  for _, part in ipairs(indexes[n].parts) do
    if string.sub(part, 1, 1) == '@' then need(string.sub(part, 2)) end
  end
  need(indexes[n].field)
end

local old, new = {}, {}
if exists and #needed_list > 0 then
  local values = redis.call('HMGET', key, unpack(needed_list))
  for j, f in ipairs(needed_list) do
    if values[j] then old[f] = values[j] end
  end
end
if mode ~= 'd' then
  if mode == 'p' then
    for f, v in pairs(old) do new[f] = v end
  end
  for j = 0, nset - 1 do
    local f = ARGV[set_start + 2 * j]
    if needed[f] then new[f] = ARGV[set_start + 2 * j + 1] end
  end
  for j = 0, ndel - 1 do new[ARGV[del_start + j]] = nil end
end

-- Compute and check every index entry before writing anything.
for n = 1, nidx do
  local idx = indexes[n]
  if exists then idx.old_key = build(idx.parts, old) end
  if mode ~= 'd' then
    idx.new_key = build(idx.parts, new)
    if not idx.new_key then
      return redis.error_reply('INVALID_KEY a value of index ' .. idx.name .. ' cannot be part of a key')
    end
    if idx.kind == 'z' then
      idx.score = new[idx.field]
      local number = tonumber(idx.score)
      if not number or number ~= number then
        return redis.error_reply('DECODE score field ' .. idx.field .. ' of index ' .. idx.name .. ' is not a number')
      end
    elseif idx.kind == 'u' then
      idx.value = new[idx.field]
      idx.old_value = old[idx.field]
      local holder = redis.call('HGET', idx.new_key, idx.value)
      if holder and holder ~= member then
        local holder_key = key_of_member(holder)
        if holder_key and redis.call('EXISTS', holder_key) == 1 then
          return { -2, idx.name }
        end
      end
    end
  end
end

-- Write the hash.
local pttl = -1
if mode == 'd' then
  redis.call('DEL', key)
elseif mode == 'p' then
  if nset > 0 then redis.call('HSET', key, unpack(ARGV, set_start, set_start + 2 * nset - 1)) end
  if ndel > 0 then redis.call('HDEL', key, unpack(ARGV, del_start, del_start + ndel - 1)) end
else
  if exists then
    pttl = redis.call('PTTL', key)
    redis.call('DEL', key)
  end
  redis.call('HSET', key, unpack(ARGV, set_start, set_start + 2 * nset - 1))
end

if mode ~= 'd' then
  if ttl_action == 's' then
    redis.call('PEXPIRE', key, ttl_ms)
  elseif ttl_action == 'a' then
    redis.call('PEXPIREAT', key, ttl_ms)
  elseif ttl_action == 'k' and pttl > 0 then
    redis.call('PEXPIRE', key, pttl)
  end
end

-- Move index entries.
for n = 1, nidx do
  local idx = indexes[n]
  if idx.kind == 's' then
    if idx.old_key and idx.old_key ~= idx.new_key then redis.call('SREM', idx.old_key, member) end
    if idx.new_key then redis.call('SADD', idx.new_key, member) end
  elseif idx.kind == 'z' then
    if idx.old_key and idx.old_key ~= idx.new_key then redis.call('ZREM', idx.old_key, member) end
    if idx.new_key then redis.call('ZADD', idx.new_key, idx.score, member) end
  else
    local old_value = old[idx.field]
    if idx.old_key and old_value and (idx.old_key ~= idx.new_key or old_value ~= idx.value) then
      if redis.call('HGET', idx.old_key, old_value) == member then
        redis.call('HDEL', idx.old_key, old_value)
      end
    end
    if idx.new_key then redis.call('HSET', idx.new_key, idx.value, member) end
  end
end

-- Keep the TTL registry in step, so sweeps can clean up after expiry.
if registry ~= '' then
  local left = -1
  if mode ~= 'd' then left = redis.call('PTTL', key) end
  if left > 0 then
    local now = redis.call('TIME')
    local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    redis.call('ZADD', registry, now_ms + left, member)
    redis.call('HSET', registry .. ':fields', member, cjson.encode(new))
  else
    redis.call('ZREM', registry, member)
    redis.call('HDEL', registry .. ':fields', member)
  end
end

-- The outbox: an entry on the stream in the same step as the creation.
local entry = false
if stream ~= '' and (mode == 'c' or (mode == 's' and not exists)) then
  local args = { 'XADD', stream }
  if maxlen > 0 then
    args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = maxlen
  end
  args[#args + 1] = '*'
  for j = set_start, set_start + 2 * nset - 1 do args[#args + 1] = ARGV[j] end
  entry = redis.call(unpack(args))
end

if exists then return { 2, entry } end
return { 1, entry }

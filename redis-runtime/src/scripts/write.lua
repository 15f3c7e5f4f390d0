-- One atomic write of an entity: the hash, its TTL, every index entry, the
-- TTL registry and (on creation) the stream outbox entry.
--
-- KEYS[1]  the entity's hash.
-- ARGV     the layout (see common.lua), then:
--   mode         c=create  s=save (upsert)  u=update (replace)  p=patch  d=delete
--                x=reindex (re-add the index entries of the stored hash; no hash write)
--   ttl action   k=keep remaining  s=set relative ms  a=set absolute ms  n=none
--   ttl ms
--   member       the entity's id as stored in indexes (key values joined by ':')
--   nset, then nset field/value pairs to write
--   ndel, then ndel field names to remove (patch)
--   stream key ('' for none), maxlen (0 for no trimming)
--
-- Index keys are computed here from stored values, so concurrent writers
-- can never leave an entry behind: old keys come from the hash as it was,
-- new keys from the hash as it will be. Everything is checked before the
-- first write, because Redis does not roll back a script that fails midway.
--
-- Keys touched but not declared in KEYS: the index keys, the stream and the
-- registry. They are derived from the entity, so with cluster hash tags in
-- the patterns they can share its slot.
--
-- Returns {code, detail}: code 1 written (detail: stream entry id or false),
-- 2 written and it already existed, 0 create found the key, -1 update/patch/
-- delete found no key, -2 unique violation (detail: index name).

local i = parse_layout()
local key = KEYS[1]
local mode = ARGV[i]
local ttl_action = ARGV[i + 1]
local ttl_ms = ARGV[i + 2]
local member = ARGV[i + 3]
i = i + 4
local nset = tonumber(ARGV[i]); i = i + 1
local set_start = i
i = i + 2 * nset
local ndel = tonumber(ARGV[i]); i = i + 1
local del_start = i
i = i + ndel
local stream = ARGV[i]; local maxlen = tonumber(ARGV[i + 1])
local indexes = layout.indexes

local exists = redis.call('EXISTS', key) == 1
if mode == 'c' and exists then return { 0, false } end
if (mode == 'u' or mode == 'p' or mode == 'd' or mode == 'x') and not exists then return { -1, false } end

-- The hash fields the indexes depend on.
local needed, needed_list = {}, {}
local function need(f)
  if f ~= '' and not needed[f] then needed[f] = true; needed_list[#needed_list + 1] = f end
end
for _, idx in ipairs(indexes) do
  for _, part in ipairs(idx.parts) do
    if string.sub(part, 1, 1) == '@' then need(string.sub(part, 2)) end
  end
  need(idx.field)
end

local old, new = {}, {}
if exists and #needed_list > 0 then
  local values = redis.call('HMGET', key, unpack(needed_list))
  for j, f in ipairs(needed_list) do
    if values[j] then old[f] = values[j] end
  end
end
if mode ~= 'd' then
  if mode == 'p' or mode == 'x' then
    for f, v in pairs(old) do new[f] = v end
  end
  for j = 0, nset - 1 do
    local f = ARGV[set_start + 2 * j]
    if needed[f] then new[f] = ARGV[set_start + 2 * j + 1] end
  end
  for j = 0, ndel - 1 do new[ARGV[del_start + j]] = nil end
end

-- Compute and check every index entry before writing anything.
for _, idx in ipairs(indexes) do
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

-- A previous incarnation that expired may still have index entries.
if not exists then forget_expired(member) end

-- Write the hash.
local pttl = -1
if mode == 'x' then
  -- reindex: the hash stays as it is
elseif mode == 'd' then
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

if mode ~= 'd' and mode ~= 'x' then
  if ttl_action == 's' then
    redis.call('PEXPIRE', key, ttl_ms)
  elseif ttl_action == 'a' then
    redis.call('PEXPIREAT', key, ttl_ms)
  elseif ttl_action == 'k' and pttl > 0 then
    redis.call('PEXPIRE', key, pttl)
  end
end

-- Move index entries.
for _, idx in ipairs(indexes) do
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

-- Keep the TTL registry in step, so sweeps can clean up after expiry. Only
-- entities that expire (now or before this write) are in it.
if layout.registry ~= '' then
  local left = -1
  if mode ~= 'd' and (ttl_action == 's' or ttl_action == 'a' or pttl > 0 or mode == 'p' or mode == 'x') then
    left = redis.call('PTTL', key)
  end
  if left > 0 then
    redis.call('ZADD', layout.registry, now_ms() + left, member)
    redis.call('HSET', layout.registry .. ':fields', member, cjson.encode(new))
  elseif pttl > 0 or mode == 'd' or mode == 'p' then
    redis.call('ZREM', layout.registry, member)
    redis.call('HDEL', layout.registry .. ':fields', member)
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

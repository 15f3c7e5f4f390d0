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
local idx = layout().indexes[tonumber(ARGV[2])]
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

-- Appends each live member, followed by its {field, value, ...} when
-- `with_fields`; drops dead ones from the index.
local function collect(members, out, with_fields)
  for _, m in ipairs(members) do
    local key = key_of_member(m)
    local fields = false
    if key and with_fields then
      fields = redis.call('HGETALL', key)
      if #fields == 0 then fields = false end
    elseif key then
      fields = redis.call('EXISTS', key) == 1
    end
    if not fields then
      drop(m)
    else
      out[#out + 1] = m
      if with_fields then out[#out + 1] = fields end
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
elseif op == 'ids' or op == 'page' then
  local offset, limit = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local with_fields = op == 'page'
  local per = with_fields and 2 or 1
  local out = {}
  -- Dead ids are removed from the index as they are met, so refilling
  -- always makes progress and ends: at the latest when the index runs out.
  while true do
    local before = #out / per
    local ids = zrange(offset + before, limit - before)
    collect(ids, out, with_fields)
    if #ids < limit - before or #out / per >= limit then break end
  end
  return out
elseif op == 'sids' then
  return collect(redis.call('SMEMBERS', index_key), {}, false)
elseif op == 'members' then
  return collect(redis.call('SMEMBERS', index_key), {}, true)
elseif op == 'unique' then
  local m = redis.call('HGET', index_key, ARGV[i])
  if not m then return {} end
  local out = collect({ m }, {}, true)
  if #out == 0 then redis.call('HDEL', index_key, ARGV[i]) end
  return out
end
return redis.error_reply('unknown query op ' .. tostring(op))

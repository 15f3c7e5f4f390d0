-- Reads through a secondary index, in one round trip, never returning an
-- entity that has expired.
--
-- KEYS[1]  the index key.
-- ARGV     the layout (see common.lua), then:
--   op       ids | page | count | sids | members | unique
--   index    1-based position of the index in the layout
--   for ids/page: rev (1 = highest score first), min, max (ZRANGE BYSCORE
--            bounds, e.g. '-inf' '+inf' or '(5'), offset, limit
--   for unique: the value
--
-- Due TTL-registry entries are swept first (bounded), so counts and pages
-- are exact; an id whose hash is gone anyway (its TTL was set behind our
-- back) is dropped from the index as it is met.
--
-- Returns: ids/sids -> array of ids; page/members/unique -> flat array of
-- id, {field, value, ...} pairs; count -> integer.

local i = parse_layout()
local index_key = KEYS[1]
local op = ARGV[i]
local idx = layout.indexes[tonumber(ARGV[i + 1])]
i = i + 2

sweep(1000)

local function drop(m)
  if idx.kind == 'z' then
    redis.call('ZREM', index_key, m)
  elseif idx.kind == 's' then
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

local function zrange(offset, limit)
  local rev, min, max = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if rev == '1' then
    return redis.call('ZRANGE', index_key, max, min, 'BYSCORE', 'REV', 'LIMIT', offset, limit)
  end
  return redis.call('ZRANGE', index_key, min, max, 'BYSCORE', 'LIMIT', offset, limit)
end

if op == 'count' then
  if idx.kind == 'z' then return redis.call('ZCARD', index_key) end
  if idx.kind == 's' then return redis.call('SCARD', index_key) end
  return redis.call('HLEN', index_key)
elseif op == 'ids' then
  return zrange(tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]))
elseif op == 'page' then
  local offset, limit = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local out = {}
  -- Dead ids are removed as they are met; fetch again to fill the page.
  for _ = 1, 8 do
    local before = #out / 2
    local ids = zrange(offset + before, limit - before)
    load(ids, out)
    if #ids < limit - before or #out / 2 >= limit then break end
  end
  return out
elseif op == 'sids' then
  return redis.call('SMEMBERS', index_key)
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

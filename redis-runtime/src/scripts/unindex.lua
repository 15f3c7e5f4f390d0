-- Removes one index entry if it is stale: its entity is gone, or the
-- entity's stored values no longer map to this index key (or, for a unique
-- index, to this value). Used by `index::rebuild` to repair drift found by
-- `index::verify` without racing concurrent writers.
-- KEYS[1] the index key. ARGV: the layout (see common.lua), then the index
-- position (1-based), the member, and for unique indexes the value.
-- Returns 1 if the entry was removed.
local i = parse_layout()
local index_key = KEYS[1]
local idx = layout.indexes[tonumber(ARGV[i])]
local m, value = ARGV[i + 1], ARGV[i + 2]

local key = key_of_member(m)
if key and redis.call('EXISTS', key) == 1 then
  local names = {}
  for _, part in ipairs(idx.parts) do
    if string.sub(part, 1, 1) == '@' then names[#names + 1] = string.sub(part, 2) end
  end
  if idx.field ~= '' then names[#names + 1] = idx.field end
  local values = {}
  if #names > 0 then
    local stored = redis.call('HMGET', key, unpack(names))
    for j, f in ipairs(names) do
      if stored[j] then values[f] = stored[j] end
    end
  end
  if build(idx.parts, values) == index_key and (idx.kind ~= 'u' or values[idx.field] == value) then
    return 0
  end
end
if idx.kind == 's' then return redis.call('SREM', index_key, m) end
if idx.kind == 'z' then return redis.call('ZREM', index_key, m) end
if redis.call('HGET', index_key, value) == m then return redis.call('HDEL', index_key, value) end
return 0

--- needs: layout key_of_member fields_of stored_values build
-- Removes one index entry if it is stale: its entity is gone, or the
-- entity's stored values no longer map to this index key (or, for a unique
-- index, to this value). Used by `index::rebuild` to repair drift found by
-- `index::verify` without racing concurrent writers.
-- KEYS[1] the index key. ARGV: the index position (1-based), the member,
-- and for unique indexes the value. Returns 1 if the entry was removed.
local index_key = KEYS[1]
local idx = layout().indexes[tonumber(ARGV[1])]
local m, value = ARGV[2], ARGV[3]

local key = key_of_member(m)
if key and redis.call('TYPE', key).ok == 'hash' then
  local values = stored_values(key, fields_of(idx, {}))
  if build(idx.key, values) == index_key and (idx.kind ~= 'hash' or values[idx.value] == value) then
    return 0
  end
end
if idx.kind == 'set' then return redis.call('SREM', index_key, m) end
if idx.kind == 'zset' then return redis.call('ZREM', index_key, m) end
if redis.call('HGET', index_key, value) == m then return redis.call('HDEL', index_key, value) end
return 0

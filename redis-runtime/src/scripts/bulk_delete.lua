--- needs: layout key_of_member fields_of stored_values build forget_expired
-- Deletes a batch of the entities an index key lists, in one atomic step.
-- Each is deleted exactly as `entity::delete` deletes it: by the type's own
-- write script, which `index::bulk` wraps as `write_one(KEYS, ARGV)` ahead
-- of this body, so every index entry, unique entry and TTL-registry entry
-- goes with the hash.
--
-- KEYS[1]  the index key (a set or a sorted set).
-- ARGV     the index's 1-based position in the layout, the batch size.
--
-- Returns { removed, seen }: entities deleted, and index members looked at.
-- Every member looked at leaves the index key: with its entity, or dropped
-- when it names no live entity that belongs there (a dead or stale entry),
-- so repeated calls always make progress. Fewer seen than the batch size
-- means the index key was left empty.

local index_key = KEYS[1]
local idx = layout().indexes[tonumber(ARGV[1])]
local batch = tonumber(ARGV[2])

local members
if idx.kind == 'zset' then
  members = redis.call('ZRANGE', index_key, 0, batch - 1)
elseif idx.kind == 'set' then
  -- Any `batch` distinct members; O(batch), where SMEMBERS would be O(N)
  -- per batch.
  members = redis.call('SRANDMEMBER', index_key, batch)
else
  return redis.error_reply('bulk delete needs a set or sorted index, not ' .. idx.name)
end

local names = fields_of(idx, {})
local registry = layout().registry
local removed = 0
for _, m in ipairs(members) do
  local key = key_of_member(m)
  -- Only an entity that belongs here now is deleted: a stale entry must not
  -- delete an entity that has moved to another index key.
  local ours = false
  if key and redis.call('TYPE', key).ok == 'hash' then
    ours = build(idx.key, stored_values(key, names)) == index_key
  end
  if ours then
    -- The arguments `entity::delete` sends: mode, TTL action, TTL ms,
    -- member, no fields to set, none to remove.
    -- A delete answers 2 (it existed), -1 (it did not) or an error table.
    local reply = write_one({ key }, { 'd', 'n', '0', m, '0', '0' })
    if type(reply) == 'table' and reply.err then return reply end
    if reply == 2 then removed = removed + 1 end
  else
    -- An expired entity's other entries are recorded in the registry.
    if key and registry and redis.call('EXISTS', key) == 0 then forget_expired(registry, m) end
    if idx.kind == 'zset' then
      redis.call('ZREM', index_key, m)
    else
      redis.call('SREM', index_key, m)
    end
  end
end
return { removed, #members }

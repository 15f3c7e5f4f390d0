-- Moves one pending stream entry to the dead-letter stream, with why and how
-- often it was delivered, and acknowledges it: one atomic step, so the entry
-- is never both acknowledged and missing from the dead-letter stream.
--
-- KEYS[1]  the source stream.
-- KEYS[2]  the dead-letter stream (none with 'read').
-- ARGV     group, consumer ('' = whoever holds it), entry id, error text,
--          and 'read' to only return the dead-letter entry's fields and
--          values (for a dead-letter stream in another slot of a Redis
--          Cluster, which the client appends to and then acknowledges).
--
-- The dead-letter entry holds the original fields (none if the entry was
-- trimmed away meanwhile) followed by `dead_letter.*` fields: stream, id,
-- group, consumer, deliveries, error. Record types ignore unknown fields, so
-- the entry still decodes as the original message for a replay.
--
-- Returns the dead-letter entry id, or false when the entry is no longer
-- pending (acknowledged) or another consumer holds it now.

local stream, dead = KEYS[1], KEYS[2]
local group, consumer, id, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local pending = redis.call('XPENDING', stream, group, id, id, 1)
if not pending[1] then return false end
local holder, deliveries = pending[1][2], pending[1][4]
if consumer ~= '' and holder ~= consumer then return false end

local args = { 'XADD', dead, '*' }
local found = redis.call('XRANGE', stream, id, id)
if found[1] and found[1][2] then
  for _, v in ipairs(found[1][2]) do args[#args + 1] = v end
end
local meta = {
  'dead_letter.stream', stream,
  'dead_letter.id', id,
  'dead_letter.group', group,
  'dead_letter.consumer', holder,
  'dead_letter.deliveries', tostring(deliveries),
  'dead_letter.error', reason,
}
for _, v in ipairs(meta) do args[#args + 1] = v end
if ARGV[5] == 'read' then return { unpack(args, 4) } end
local dead_id = redis.call(unpack(args))
redis.call('XACK', stream, group, id)
return dead_id

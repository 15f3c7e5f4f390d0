-- Claims stream entries idle for at least `min idle` ms for this consumer
-- (XAUTOCLAIM, Redis >= 6.2) and reports how often each has now been
-- delivered, in one step, so a worker can dead-letter an entry that keeps
-- killing its consumers without another round trip.
--
-- KEYS[1]  the stream.
-- ARGV     group, consumer, min idle ms, cursor, count.
--
-- Returns { next cursor, entries, deleted ids, delivery counts }: the first
-- three as XAUTOCLAIM gives them (Redis 6.2 has no deleted list: {}), the
-- counts aligned with the entries. An unknown-command error tells the caller
-- to fall back to XPENDING + XCLAIM.

local stream, group = KEYS[1], ARGV[1]
local reply = redis.call('XAUTOCLAIM', stream, group, ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local entries = reply[2]
local counts = {}
for i = 1, #entries do
  local id = entries[i][1]
  local pending = redis.call('XPENDING', stream, group, id, id, 1)
  if pending[1] then counts[i] = pending[1][4] else counts[i] = 0 end
end
return { reply[1], entries, reply[3] or {}, counts }

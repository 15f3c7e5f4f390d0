-- Sets the idle time of entries this consumer holds, without counting a
-- delivery (XCLAIM ... IDLE ... JUSTID). Idle 0 keeps a slow handler's entry
-- from being reclaimed by others; `min idle - backoff` makes a failed entry
-- claimable again after the backoff; a large value releases it at once.
--
-- Entries another consumer holds now (it reclaimed them) or that were acked
-- meanwhile are left alone: the check and the claim are one atomic step.
--
-- KEYS[1]  the stream.
-- ARGV     group, consumer, then pairs of (entry id, idle ms).
--
-- Returns how many entries were updated.

local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local updated = 0
for i = 3, #ARGV - 1, 2 do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', stream, group, id, id, 1, consumer)
  if pending[1] then
    redis.call('XCLAIM', stream, group, consumer, 0, id, 'IDLE', ARGV[i + 1], 'JUSTID')
    updated = updated + 1
  end
end
return updated

-- Puts the items held by reliable-queue consumers back on the queue: those of
-- every consumer whose lease has expired (it died or stalled), or, with a
-- consumer name, that consumer's (it is closing). Moved items go to the pop
-- end, oldest-held first out, since they were due before everything queued.
-- The consumers are dropped from the lease registry; a stalled one that comes
-- back re-registers with its next lease renewal.
--
-- KEYS[1]  the queue.
-- KEYS[2]  the lease registry: zset of consumer -> lease expiry (server ms).
-- KEYS[3]  the slot guard of the queue's slot, never touched (see below).
-- ARGV     processing-list key prefix (the consumer name completes it),
--          consumer ('' = every consumer whose lease expired).
--
-- The processing lists are derived from the registry, so they are not in
-- KEYS; a queue's keys share its prefix (use a hash tag for Redis Cluster).
-- The slot guard is a key of their slot that never exists: declaring it
-- makes a cluster refuse the call while the slot migrates, so the script
-- never finds the queue moved and a processing list not yet (it would read
-- the list as empty and drop its consumer, leaving the items behind).
--
-- Returns how many items were requeued.

local queue, registry, prefix = KEYS[1], KEYS[2], ARGV[1]
local consumers
if ARGV[2] ~= '' then
  consumers = { ARGV[2] }
else
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  consumers = redis.call('ZRANGEBYSCORE', registry, '-inf', '(' .. now_ms)
end
local moved = 0
for _, consumer in ipairs(consumers) do
  local processing = prefix .. consumer
  while redis.call('LMOVE', processing, queue, 'LEFT', 'RIGHT') do
    moved = moved + 1
  end
  redis.call('ZREM', registry, consumer)
end
return moved

-- Reliable queue pop: renew this consumer's lease and move the oldest item
-- from the queue to the consumer's processing list, in one step, so an item
-- is always in exactly one list and always covered by a live lease.
--
-- KEYS[1]  the queue (LPUSH in, pop from the right).
-- KEYS[2]  this consumer's processing list.
-- KEYS[3]  the lease registry: zset of consumer -> lease expiry (server ms).
-- ARGV     consumer, lease ms.
--
-- Returns the item, or false when the queue is empty.

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[3], now_ms + tonumber(ARGV[2]), ARGV[1])
return redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')

-- Renews a reliable-queue consumer's lease: its processing list is safe from
-- requeueing until server time passes now + lease ms.
--
-- KEYS[1]  the lease registry: zset of consumer -> lease expiry (server ms).
-- ARGV     consumer, lease ms.

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
return 1

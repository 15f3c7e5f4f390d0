-- A patch that touches no field an index, a unique hash or the TTL registry
-- is built from, keeping the TTL: the entity must exist, then its fields
-- are set and removed. The same script for every entity type.
--
-- KEYS[1]  the entity key
-- ARGV     nset, then nset field/value pairs, then the names to remove
--
-- Returns 2 (it existed) or -1 (NOT_FOUND), as the write script does.
-- A key holding another type fails at HSET, the first write: nothing is
-- half-applied.
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return -1 end
local last_set = 1 + 2 * tonumber(ARGV[1])
if last_set > 1 then redis.call('HSET', key, unpack(ARGV, 2, last_set)) end
if #ARGV > last_set then redis.call('HDEL', key, unpack(ARGV, last_set + 1)) end
return 2

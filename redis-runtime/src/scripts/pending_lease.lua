--- needs:
-- Takes (or renews) the lease on the pending index moves of one entity
-- (see `cross_slot::pending`), then returns what the client needs to apply
-- them, read in one step so that they agree with each other.
--
-- KEYS[1] the pending index key, KEYS[2] its lease, KEYS[3] the entity.
-- ARGV: the holder's token, the lease in milliseconds.
--
-- Returns { 0 } when nothing is pending, { -1 } when another client holds
-- the lease (it applies every write counted before it releases), else
-- { 1, pending hash, entity hash } as flat field/value arrays.
local pending, lease, key = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', pending) == 0 then return { 0 } end
local holder = redis.call('GET', lease)
if holder and holder ~= ARGV[1] then return { -1 } end
redis.call('SET', lease, ARGV[1], 'PX', ARGV[2])
return { 1, redis.call('HGETALL', pending), redis.call('HGETALL', key) }

--- needs:
-- Ends a round of applying pending index moves (see `cross_slot::pending`): when no
-- write was counted since the lease was taken and the record read, the moves it applied
-- are the last ones, and the record and the lease go. Otherwise the lease
-- is kept, and the holder reads the record again; on its last round, or
-- when its moves failed, it lets the lease go (and keeps the record), so
-- the next write's client can take over.
--
-- The stream entries the holder appended go from the record whatever
-- came since, so that no later round appends them again.
--
-- KEYS[1] the pending index key, KEYS[2] its lease.
-- ARGV: the holder's token, the write count it read ('' if none),
-- then the release mode ('0' a round, '1' the last round, '2' let go
-- only: `cross_slot::pending`'s `Release`); then
-- the record fields of the stream entries appended.
--
-- Returns 1 released, 0 a write came since, -1 the lease was lost (it
-- expired and another client took it over).
local pending, lease = KEYS[1], KEYS[2]
if redis.call('GET', lease) ~= ARGV[1] then return -1 end
if #ARGV > 3 then redis.call('HDEL', pending, unpack(ARGV, 4)) end
if ARGV[3] ~= '2' and (redis.call('HGET', pending, '') or '') == ARGV[2] then
  redis.call('DEL', pending, lease)
  return 1
end
if ARGV[3] ~= '0' then redis.call('DEL', lease) end
return 0

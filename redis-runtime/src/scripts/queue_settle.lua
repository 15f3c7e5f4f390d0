-- Takes one held item off a reliable-queue consumer's processing list and,
-- if it was still there, puts it somewhere else, atomically: back on the
-- queue for another try, or on the dead list when it cannot be decoded.
--
-- KEYS[1]  the consumer's processing list.
-- KEYS[2]  where the item goes (the queue, or the dead list).
-- ARGV     the item, exactly as stored.
--
-- Returns 1 when moved, 0 when the item was not held any more (the lease
-- expired and it was requeued already).

if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1

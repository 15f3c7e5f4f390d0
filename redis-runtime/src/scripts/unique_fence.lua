#!lua
-- Before a value of a `cross_slot` unique index is taken from an entity
-- (released, or given to another), checks in the entity's slot that the
-- entity does not hold it, and raises the entity's unique fence in the
-- same step (see `cross_slot::unique_claims`). A write of the entity that
-- claimed values carries the fence it read before claiming, and is
-- refused if the fence moved: so once this returns 1, no write the entity
-- has in flight can set the value.
--
-- KEYS[1] the entity's hash, KEYS[2] its unique fence.
-- ARGV: the unique field's name, the value, the fence's lifetime in ms.
--
-- Returns 0 when the entity holds the value (it is not to be taken), 1
-- when the fence was raised.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 0 end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1

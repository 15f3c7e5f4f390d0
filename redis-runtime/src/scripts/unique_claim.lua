#!lua
-- Changes who holds a value of a `cross_slot` unique index on a Redis
-- Cluster (see `cross_slot::unique_claims`), in the unique hash's slot.
--
-- KEYS[1] the unique hash (value -> member, the shared layout), KEYS[2]
-- its claims hash (value -> the token of the claim that last took it).
-- ARGV[1] the value, ARGV[2] the mode, then:
--
-- * 'claim' member token: takes the value for member unless another
--   member holds it. Writes a new token even when member holds it
--   already, so that whoever read the value's holder and token before
--   sees that it was claimed since.
-- * 'ensure' member token: the same, but a value member already holds
--   keeps its token (a repair: the entity holds the value, and nothing
--   races to take it from a holder that holds it).
-- * 'read': only reads the value's holder and token.
-- * 'take' holder token new_member new_token: only while the value is
--   still held by holder under token (a compare-and-set on both), gives it
--   to new_member, or removes it when new_member is ''.
--
-- Returns { 1 } done, or { 0, holder, token }: for 'read', and when
-- another member holds the value (claim, ensure) or it changed since
-- (take); holder is '' for a value not mapped, token '' for a value
-- written without a claim (by another service, or on one server).
local unique, claims, value, mode = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local holder = redis.call('HGET', unique, value)
local token = redis.call('HGET', claims, value) or ''
if mode == 'read' then return { 0, holder or '', token } end
if mode == 'take' then
  if holder ~= ARGV[3] or token ~= ARGV[4] then return { 0, holder or '', token } end
  if ARGV[5] == '' then
    redis.call('HDEL', unique, value)
    redis.call('HDEL', claims, value)
  else
    redis.call('HSET', unique, value, ARGV[5])
    redis.call('HSET', claims, value, ARGV[6])
  end
  return { 1 }
end
if holder and holder ~= ARGV[3] then return { 0, holder, token } end
if mode == 'ensure' and holder then return { 1 } end
redis.call('HSET', unique, value, ARGV[3])
redis.call('HSET', claims, value, ARGV[4])
return { 1 }

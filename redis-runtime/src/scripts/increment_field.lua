-- An increment of a field no index is built from, on a type without a
-- version field: the same for every entity type, far cheaper than the
-- entity's write script (which handles the other increments).
--
-- KEYS[1]  the entity key
-- ARGV     field, amount, lowest and highest value the field's type holds
--
-- Returns { 2, new value } or { -1 } (NOT_FOUND) or { -4, stored value }
-- (out of range), as the write script does. Lua numbers are doubles, so a
-- result beyond 2^53 is refused rather than rounded. Nothing is written
-- unless every check passed.
local key, field = KEYS[1], ARGV[1]
-- The field's value answers existence too, except when it is absent.
local cur = redis.call('HGET', key, field)
if not cur then
  if redis.call('EXISTS', key) == 0 then return { -1, false } end
  cur = '0'
end
if not string.match(cur, '^-?%d+$') then
  return redis.error_reply('DECODE the stored value of ' .. field .. ' is not an integer; nothing was written')
end
local v = tonumber(cur) + tonumber(ARGV[2])
if v < tonumber(ARGV[3]) or v > tonumber(ARGV[4]) or math.abs(v) > 9007199254740991 then
  return { -4, cur }
end
local counted = string.format('%.0f', v)
redis.call('HSET', key, field, counted)
return { 2, counted }

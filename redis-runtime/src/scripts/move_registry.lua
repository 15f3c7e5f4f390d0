-- Moves a TTL registry written under an older name into the current one.
-- KEYS: old registry, old field hash, new registry, new field hash.
-- Entries already under the new name win: they were written after the
-- upgrade and are newer. Returns how many registry entries were moved.
local old, old_fields, new, new_fields = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local entries = redis.call('ZRANGE', old, 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  redis.call('ZADD', new, 'NX', entries[i + 1], entries[i])
end
local fields = redis.call('HGETALL', old_fields)
for i = 1, #fields, 2 do
  redis.call('HSETNX', new_fields, fields[i], fields[i + 1])
end
redis.call('DEL', old, old_fields)
return #entries / 2

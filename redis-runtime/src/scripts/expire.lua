--- needs: layout now_ms fields_of stored_values
-- Sets or clears an entity's TTL and keeps the TTL registry in step.
-- KEYS[1] the entity hash. ARGV: the TTL in ms (0 = persist), the member.
-- The values of the indexed fields are copied into the registry so that a
-- sweep can remove the index entries after the hash has expired.
-- Returns 1 if the entity exists.
local key, ms, member = KEYS[1], tonumber(ARGV[1]), ARGV[2]
if redis.call('EXISTS', key) == 0 then return 0 end
local registry = layout().registry
if ms > 0 then
  redis.call('PEXPIRE', key, ms)
  if registry then
    redis.call('ZADD', registry, now_ms() + ms, member)
    local names = {}
    for _, idx in ipairs(layout().indexes) do fields_of(idx, names) end
    redis.call('HSET', registry .. ':fields', member, cjson.encode(stored_values(key, names)))
  end
else
  redis.call('PERSIST', key)
  if registry then
    redis.call('ZREM', registry, member)
    redis.call('HDEL', registry .. ':fields', member)
  end
end
return 1

-- Sets or clears an entity's TTL and keeps the TTL registry in step.
-- KEYS[1] the entity hash. ARGV: ttl ms (0 = persist), registry key ('' for
-- none), member, then the indexed field names (copied into the registry so
-- a sweep can remove the index entries after the hash has expired).
-- Returns 1 if the entity exists, else 0.
local key, ms, registry, member = KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3]
if redis.call('EXISTS', key) == 0 then return 0 end
if ms > 0 then
  redis.call('PEXPIRE', key, ms)
  if registry ~= '' then
    local now = redis.call('TIME')
    local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    redis.call('ZADD', registry, now_ms + ms, member)
    local values = {}
    if #ARGV > 3 then
      local names = { unpack(ARGV, 4) }
      local stored = redis.call('HMGET', key, unpack(names))
      for j, f in ipairs(names) do
        if stored[j] then values[f] = stored[j] end
      end
    end
    redis.call('HSET', registry .. ':fields', member, cjson.encode(values))
  end
else
  redis.call('PERSIST', key)
  if registry ~= '' then
    redis.call('ZREM', registry, member)
    redis.call('HDEL', registry .. ':fields', member)
  end
end
return 1

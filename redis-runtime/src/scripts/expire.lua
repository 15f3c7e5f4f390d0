-- Sets or clears an entity's TTL and keeps the TTL registry in step.
-- KEYS[1] the entity hash. ARGV: the layout (see common.lua), then the TTL
-- in ms (0 = persist), the member, then the indexed field names (their
-- values are copied into the registry so that a sweep can remove the index
-- entries after the hash has expired). Returns 1 if the entity exists.
local i = parse_layout()
local key, ms, member = KEYS[1], tonumber(ARGV[i]), ARGV[i + 1]
if redis.call('EXISTS', key) == 0 then return 0 end
local registry = layout.registry
if ms > 0 then
  redis.call('PEXPIRE', key, ms)
  if registry ~= '' then
    redis.call('ZADD', registry, now_ms() + ms, member)
    local values = {}
    if #ARGV >= i + 2 then
      local names = { unpack(ARGV, i + 2) }
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

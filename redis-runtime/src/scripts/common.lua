-- Shared prelude of every entity script (prepended at build time).
--
-- Every script's ARGV starts with the entity's layout, as written by
-- redis-runtime's `entity::push_layout`:
--   nidx, then per index: kind (s=set z=zset u=unique), name, nparts,
--         parts ('=' literal or '@' hash field), value field ('' for sets;
--         the score field for zsets; the unique field for uniques)
--   registry key ('' for none): zset of member -> expiry ms, with a
--         companion hash '<registry>:fields' holding each member's indexed
--         values, so index entries of expired entities can be removed
--   nkey, then the entity key pattern's parts
-- and `parse_layout()` returns the position of the script's own arguments.

local layout = { indexes = {}, key_parts = {} }

local function parse_layout()
  local i = 1
  local nidx = tonumber(ARGV[i]); i = i + 1
  for n = 1, nidx do
    local idx = { kind = ARGV[i], name = ARGV[i + 1], parts = {} }
    local nparts = tonumber(ARGV[i + 2]); i = i + 3
    for p = 1, nparts do idx.parts[p] = ARGV[i]; i = i + 1 end
    idx.field = ARGV[i]; i = i + 1
    layout.indexes[n] = idx
  end
  layout.registry = ARGV[i]; i = i + 1
  local nkey = tonumber(ARGV[i]); i = i + 1
  for p = 1, nkey do layout.key_parts[p] = ARGV[i]; i = i + 1 end
  -- The common shape, one placeholder between literals, gets a fast path
  -- in key_of_member.
  local slots, prefix, suffix = 0, '', ''
  for p = 1, nkey do
    local part = layout.key_parts[p]
    if string.sub(part, 1, 1) == '@' then
      slots = slots + 1
    elseif slots == 0 then
      prefix = prefix .. string.sub(part, 2)
    else
      suffix = suffix .. string.sub(part, 2)
    end
  end
  layout.key_slots, layout.key_prefix, layout.key_suffix = slots, prefix, suffix
  return i
end

-- A value may fill a key segment only if it could not break out of it
-- (the same rule as redis_schema::validate_key_value, for ASCII).
local function safe(v)
  return v and v ~= '' and #v <= 512 and not string.find(v, '[:%*%?%[%]{}\\%s%c]')
end

-- Builds a key from parts and a table of field values; nil if a value is
-- missing or unsafe.
local function build(parts, values)
  local out = {}
  for p = 1, #parts do
    local part = parts[p]
    if string.sub(part, 1, 1) == '=' then
      out[#out + 1] = string.sub(part, 2)
    else
      local v = values[string.sub(part, 2)]
      if not safe(v) then return nil end
      out[#out + 1] = v
    end
  end
  return table.concat(out)
end

-- The entity key of an index member (key values joined by ':').
local function key_of_member(m)
  if layout.key_slots == 1 then
    if not safe(m) then return nil end
    return layout.key_prefix .. m .. layout.key_suffix
  end
  local values, n = {}, 0
  for piece in string.gmatch(m, '[^:]+') do n = n + 1; values['#' .. n] = piece end
  local parts, slot = {}, 0
  for p = 1, #layout.key_parts do
    local part = layout.key_parts[p]
    if string.sub(part, 1, 1) == '=' then
      parts[p] = part
    else
      slot = slot + 1
      parts[p] = '@#' .. slot
    end
  end
  if slot ~= n then return nil end
  return build(parts, values)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Removes member `m`'s entries from every index, given the field values
-- they were built from.
local function unindex(m, values)
  for _, idx in ipairs(layout.indexes) do
    local k = build(idx.parts, values)
    if k then
      if idx.kind == 's' then
        redis.call('SREM', k, m)
      elseif idx.kind == 'z' then
        redis.call('ZREM', k, m)
      else
        local v = values[idx.field]
        if v and redis.call('HGET', k, v) == m then redis.call('HDEL', k, v) end
      end
    end
  end
end

-- Forgets an expired incarnation of `m`: removes the index entries recorded
-- in the registry. Returns true if there was one.
local function forget_expired(m)
  if layout.registry == '' then return false end
  local encoded = redis.call('HGET', layout.registry .. ':fields', m)
  if not encoded then return false end
  unindex(m, cjson.decode(encoded))
  redis.call('ZREM', layout.registry, m)
  redis.call('HDEL', layout.registry .. ':fields', m)
  return true
end

-- Removes index entries of entities whose TTL ran out, at most `budget`
-- of them. Entities whose TTL was changed behind our back get their
-- registry entry corrected instead.
local function sweep(budget)
  if layout.registry == '' then return 0 end
  local now = now_ms()
  local due = redis.call('ZRANGEBYSCORE', layout.registry, '-inf', now, 'LIMIT', 0, budget)
  if #due == 0 then return 0 end
  for _, m in ipairs(due) do
    local key = key_of_member(m)
    local left = -2
    if key then left = redis.call('PTTL', key) end
    if left > 0 then
      redis.call('ZADD', layout.registry, now + left, m)
    elseif left == -1 then
      redis.call('ZREM', layout.registry, m)
      redis.call('HDEL', layout.registry .. ':fields', m)
    else
      forget_expired(m)
    end
  end
  return #due
end

--- needs: sweep live
-- Reads through a secondary index, in one round trip, never returning an
-- entity that has expired.
--
-- KEYS[1]  the index key.
-- ARGV     op, index, then the op's own arguments:
--   op       ids | page | count | sids | members | unique
--   index    1-based position of the index in the layout
--   for ids/page: rev (1 = highest score first), min, max (ZRANGE BYSCORE
--            bounds, e.g. '-inf' '+inf' or '(5'), offset, limit
--   for unique: the value
--
-- Due TTL-registry entries are all swept first, so counts are exact; ids,
-- pages and members also check each id's hash and drop the ones that are
-- gone (a TTL set behind the runtime's back) as they are met.
--
--   for filter/fpage/fcount: the same as ids/page; KEYS[2..] are set index
--            keys every returned id must also be a member of
--
-- Returns: ids/sids/filter -> array of ids; page/members/unique/fpage ->
-- flat array of id, {field, value, ...} pairs; count/fcount -> integer.

local index_key = KEYS[1]
local op = ARGV[1]
local idx = layout().indexes[tonumber(ARGV[2])]
local i = 3

-- Sweep until nothing is due, so counts and id lists are exact; the work
-- is proportional to what expired since the last query and done once.
while sweep(1000) == 1000 do end

local function drop(m)
  if idx.kind == 'zset' then
    redis.call('ZREM', index_key, m)
  elseif idx.kind == 'set' then
    redis.call('SREM', index_key, m)
  end
end

-- Appends each live member, followed by its {field, value, ...} when
-- `with_fields`; drops dead ones from the index.
local function collect(members, out, with_fields)
  for _, m in ipairs(members) do
    local fields = live(m, with_fields)
    if not fields then
      drop(m)
    else
      out[#out + 1] = m
      if with_fields then out[#out + 1] = fields end
    end
  end
  return out
end

local function zrange(offset, limit)
  local rev, min, max = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if rev == '1' then
    return redis.call('ZRANGE', index_key, max, min, 'BYSCORE', 'REV', 'LIMIT', offset, limit)
  end
  return redis.call('ZRANGE', index_key, min, max, 'BYSCORE', 'LIMIT', offset, limit)
end

-- Whether score `s` (a number) is within the ZRANGE BYSCORE bounds
-- `min`..`max` ('-inf', '(5', '7', ...).
local function within(s, min, max)
  local function edge(b)
    local open = string.sub(b, 1, 1) == '('
    if open then b = string.sub(b, 2) end
    if b == '-inf' then return -math.huge, open end
    if b == '+inf' or b == 'inf' then return math.huge, open end
    return tonumber(b), open
  end
  local lo, lo_open = edge(min)
  local hi, hi_open = edge(max)
  if lo_open then
    if not (s > lo) then return false end
  elseif not (s >= lo) then
    return false
  end
  if hi_open then return s < hi end
  return s <= hi
end

-- The ids of the sorted index KEYS[1], in its order and score range, that
-- are members of every set index key KEYS[2..]: all of them when `all`,
-- else the first offset + limit. Reads from the smallest set when it is
-- smaller than the sorted index (a score lookup per member, then a sort),
-- otherwise walks the sorted index in order, checking set membership.
local function filtered(all, offset, limit)
  local rev, min, max = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local wanted = offset + limit
  local smallest, size = nil, math.huge
  for k = 2, #KEYS do
    local n = redis.call('SCARD', KEYS[k])
    if n < size then smallest, size = KEYS[k], n end
  end
  local function in_sets(m, skip)
    for k = 2, #KEYS do
      if KEYS[k] ~= skip and redis.call('SISMEMBER', KEYS[k], m) == 0 then return false end
    end
    return true
  end
  local found = {}
  if smallest and size < redis.call('ZCARD', index_key) then
    local scored = {}
    for _, m in ipairs(redis.call('SMEMBERS', smallest)) do
      local s = redis.call('ZSCORE', index_key, m)
      if s and within(tonumber(s), min, max) and in_sets(m, smallest) then
        scored[#scored + 1] = { m, tonumber(s) }
      end
    end
    -- The sorted index's own order: by score, ties by member bytes.
    table.sort(scored, function(a, b)
      if a[2] ~= b[2] then
        if rev == '1' then return a[2] > b[2] end
        return a[2] < b[2]
      end
      if rev == '1' then return a[1] > b[1] end
      return a[1] < b[1]
    end)
    for n, pair in ipairs(scored) do
      if not all and n > wanted then break end
      found[n] = pair[1]
    end
  else
    -- Chunks start at twice what is wanted and grow, so a selective
    -- filter does not cost one round of calls per few entries.
    local chunk, pos = all and 500 or math.min(500, math.max(20, 2 * wanted)), 0
    while true do
      local ids = zrange(pos, chunk)
      for _, m in ipairs(ids) do
        if not all and #found >= wanted then break end
        if in_sets(m) then found[#found + 1] = m end
      end
      if #ids < chunk or (not all and #found >= wanted) then break end
      pos = pos + chunk
      chunk = math.min(1000, chunk * 2)
    end
  end
  return found
end

if op == 'count' then
  if idx.kind == 'zset' then return redis.call('ZCARD', index_key) end
  if idx.kind == 'set' then return redis.call('SCARD', index_key) end
  return redis.call('HLEN', index_key)
elseif op == 'ids' or op == 'page' then
  local offset, limit = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local with_fields = op == 'page'
  local per = with_fields and 2 or 1
  local out = {}
  -- Dead ids are removed from the index as they are met, so refilling
  -- always makes progress and ends: at the latest when the index runs out.
  while true do
    local before = #out / per
    local ids = zrange(offset + before, limit - before)
    collect(ids, out, with_fields)
    if #ids < limit - before or #out / per >= limit then break end
  end
  return out
elseif op == 'sids' then
  return collect(redis.call('SMEMBERS', index_key), {}, false)
elseif op == 'members' then
  return collect(redis.call('SMEMBERS', index_key), {}, true)
elseif op == 'unique' then
  local m = redis.call('HGET', index_key, ARGV[i])
  if not m then return {} end
  local out = collect({ m }, {}, true)
  if #out == 0 then redis.call('HDEL', index_key, ARGV[i]) end
  return out
end
if op == 'fcount' then
  return #filtered(true, 0, 0)
elseif op == 'filter' or op == 'fpage' then
  local offset, limit = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local with_fields = op == 'fpage'
  while true do
    local all = filtered(false, offset, limit)
    local page = {}
    for n = offset + 1, math.min(#all, offset + limit) do page[#page + 1] = all[n] end
    if not with_fields then return page end
    -- Dead ids met here are dropped from the sorted index, so a second
    -- pass finds the page without them and ends.
    local out = collect(page, {}, true)
    if #out / 2 == #page then return out end
  end
end
return redis.error_reply('unknown query op ' .. tostring(op))

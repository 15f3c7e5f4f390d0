--- needs: sweep key_of_member live
-- Cursor pages of a sorted or set index in one atomic step: the first
-- `limit` live entries strictly after a position, and whether a live entry
-- follows them. Used for ids-only cursor pages, and as the fallback of
-- entity cursor pages whose pipelined read met a dead or moved entry.
--
-- KEYS[1]  the index key.
-- ARGV     kind ('z' sorted | 's' set), with_fields ('1': each entry's
--          {field, value, ...} too; '2': the index's entries as they are,
--          reading no entity, for a `cross_slot` index on a cluster whose
--          entities are in other slots), rev ('1': highest score, or greatest
--          id, first), limit, has_cursor ('1' | '0'), the cursor's id, and
--          for 'z' the cursor's score (a ZRANGE bound, e.g. '1.5', '-inf').
--
-- Positions are (score, id) for 'z', as ZRANGE orders them (equal scores
-- by id bytes), and the id alone for 's' (by bytes). Due TTL-registry
-- entries are swept first, and entries whose hash is gone are dropped from
-- the index as they are met, as in query.lua.
--
-- Returns { more, entry, ... } where more is 1 if a live entry follows the
-- page, and an entry is the id, then for 'z' its score (as ZRANGE printed
-- it), then with_fields its hash.

local index_key = KEYS[1]
local kind, with_fields, rev = ARGV[1], ARGV[2] == '1', ARGV[3] == '1'
local limit, has_cursor, cursor_id = tonumber(ARGV[4]), ARGV[5] == '1', ARGV[6]
local index_only = ARGV[2] == '2'

if not index_only then
  while sweep(1000) == 1000 do end
end

-- Byte order, as Redis orders members. Lua's `<` compares with strcoll,
-- which follows the server's locale (Redis sets LC_COLLATE from its
-- environment), so it is not used on ids.
local byte, min = string.byte, math.min
local function less(a, b)
  if a == b then return false end
  for p = 1, min(#a, #b) do
    local x, y = byte(a, p), byte(b, p)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Whether id `a` comes before id `b` in the page's order.
local function first(a, b)
  if rev then return less(b, a) end
  return less(a, b)
end

local function drop(m)
  if kind == 'z' then
    redis.call('ZREM', index_key, m)
  else
    redis.call('SREM', index_key, m)
  end
end

local out, n = { 0 }, 0

-- Appends member `m` (and `score`, and its hash) if its entity is live;
-- drops it from the index if not. Returns whether it was live.
local function take(m, score)
  if index_only then
    out[#out + 1] = m
    if score then out[#out + 1] = score end
    n = n + 1
    return true
  end
  local fields = live(m, with_fields)
  if not fields then
    drop(m)
    return false
  end
  out[#out + 1] = m
  if score then out[#out + 1] = score end
  if with_fields then out[#out + 1] = fields end
  n = n + 1
  return true
end

-- After a full page, whether `m` is live (the look-ahead: no hash read).
local function follows(m)
  if index_only then return true end
  local key = key_of_member(m)
  if key and redis.call('EXISTS', key) == 1 then return true end
  drop(m)
  return false
end

if kind == 'z' then
  local from = has_cursor and ARGV[7] or (rev and '+inf' or '-inf')
  local to = rev and '-inf' or '+inf'
  local cursor_score = has_cursor and tonumber(ARGV[7])
  local function zrange(offset, count)
    if rev then
      return redis.call('ZRANGE', index_key, from, to, 'BYSCORE', 'REV', 'LIMIT', offset, count, 'WITHSCORES')
    end
    return redis.call('ZRANGE', index_key, from, to, 'BYSCORE', 'LIMIT', offset, count, 'WITHSCORES')
  end
  -- The range starts at the cursor's score inclusive: its leading entries
  -- at that score and at or before the cursor's id are skipped. They stay
  -- in the index, so `offset` counts them; dropped dead entries do not.
  local skipping, offset, chunk = has_cursor, 0, limit + 2
  while true do
    local got = zrange(offset, chunk)
    local gone = 0
    for j = 1, #got, 2 do
      local m, s = got[j], got[j + 1]
      if skipping and tonumber(s) == cursor_score and not first(cursor_id, m) then
        -- at or before the cursor
      else
        skipping = false
        if n == limit then
          if follows(m) then out[1] = 1; return out end
          gone = gone + 1
        elseif not take(m, s) then
          gone = gone + 1
        end
      end
    end
    if #got < 2 * chunk then return out end
    offset = offset + #got / 2 - gone
    -- Many ties at the cursor's score: read on in larger steps.
    chunk = min(chunk * 2, limit + 1024)
  end
elseif kind == 's' then
  local members = redis.call('SMEMBERS', index_key)
  local bound, bounded = cursor_id, has_cursor
  -- The `want` members after `bound` that come first, in page order: a
  -- heap whose root is the last of them, so most members cost one
  -- comparison; O(N) per round for N members.
  local function next_members(want)
    local heap = {}
    for _, m in ipairs(members) do
      if not bounded or first(bound, m) then
        if #heap < want then
          local c = #heap + 1
          heap[c] = m
          while c > 1 do
            local p = math.floor(c / 2)
            if not first(heap[p], heap[c]) then break end
            heap[p], heap[c] = heap[c], heap[p]
            c = p
          end
        elseif first(m, heap[1]) then
          heap[1] = m
          local c, size = 1, #heap
          while true do
            local l, r, top = 2 * c, 2 * c + 1, c
            if l <= size and first(heap[top], heap[l]) then top = l end
            if r <= size and first(heap[top], heap[r]) then top = r end
            if top == c then break end
            heap[top], heap[c] = heap[c], heap[top]
            c = top
          end
        end
      end
    end
    table.sort(heap, first)
    return heap
  end
  -- A dead member found on the page leaves it short: read on after the
  -- last member looked at (rare: sweeping has removed expired entities).
  while true do
    local want = limit - n + 1
    local batch = next_members(want)
    for _, m in ipairs(batch) do
      if n == limit then
        if follows(m) then out[1] = 1; return out end
      else
        take(m, nil)
      end
    end
    if #batch < want then return out end
    bound, bounded = batch[#batch], true
  end
end
return redis.error_reply('unknown cursor kind ' .. tostring(kind))

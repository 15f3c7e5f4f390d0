-- Removes index entries of expired entities: at most ARGV budget of them.
-- ARGV: the layout (see common.lua), then the budget. Returns how many
-- registry entries were looked at (less than the budget: nothing left due).
local i = parse_layout()
return sweep(tonumber(ARGV[i]))

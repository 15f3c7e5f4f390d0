--- needs: sweep
-- Removes index entries of expired entities: at most ARGV[1] of them.
-- KEYS[1] the TTL registry. Returns how many registry entries were looked
-- at (less than the budget: nothing left due).
return sweep(tonumber(ARGV[1]))

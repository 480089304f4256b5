-- A recount's result, in order: written only if no count with a higher order number landed
-- (two session ends racing: the count taken later wins, whichever write arrives first). The
-- order, not the journal, protects capacity from an older seed too (the seed writes in order).
-- The idle rank read with the count goes with it: remembered for the mitra, and its place in
-- the idle order if it is there (a recount never puts a mitra online).
-- KEYS: write token, journal, capacity key, capacity order hash, idle order, idle rank hash.
-- ARGV: mitra id, open sessions, order number, idle rank.
-- Returns 1 written, 0 older than the mirror's.
local id = ARGV[1]
if tonumber(ARGV[3]) <= tonumber(redis.call('HGET', KEYS[4], id) or '-1') then
  return 0
end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('HSET', KEYS[4], id, ARGV[3])
redis.call('HSET', KEYS[6], id, ARGV[4])
redis.call('ZADD', KEYS[5], 'XX', ARGV[4], id)
return 1

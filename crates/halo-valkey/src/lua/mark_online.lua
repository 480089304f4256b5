-- A mitra goes online: member of the online set, capacity, idle rank, and (unless deactivated)
-- a heartbeat and a place in the idle order.
-- KEYS: write token, journal, online set, deactivated set, heartbeat key, capacity key,
--       capacity order hash, idle order, idle rank hash.
-- ARGV: mitra id, timestamp, open sessions, capacity order number (see set_capacity.lua),
--       idle rank.
-- The heartbeat key exists only for online, active mitras, so a heartbeat's `SET … XX` never
-- refreshes a deactivated mitra: a deactivation that lands between the toggle's Postgres check
-- and this write leaves no key behind. The idle order holds exactly the online, active mitras,
-- each at the rank of its newest count: this one, or a newer recount's that landed first.
local id = ARGV[1]
redis.call('SADD', KEYS[3], id)
if tonumber(ARGV[4]) > tonumber(redis.call('HGET', KEYS[7], id) or '-1') then
  redis.call('SET', KEYS[6], ARGV[3])
  redis.call('HSET', KEYS[7], id, ARGV[4])
  redis.call('HSET', KEYS[9], id, ARGV[5])
end
if redis.call('SISMEMBER', KEYS[4], id) == 0 then
  redis.call('SET', KEYS[5], ARGV[2])
  redis.call('ZADD', KEYS[8], redis.call('HGET', KEYS[9], id) or ARGV[5], id)
end
touch({id})
return 1

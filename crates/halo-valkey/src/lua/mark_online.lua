-- A mitra goes online: member of the online set, capacity, and (unless deactivated) a heartbeat.
-- KEYS: write token, journal, online set, deactivated set, heartbeat key, capacity key,
--       capacity order hash.
-- ARGV: mitra id, timestamp, open sessions, capacity order number (see set_capacity.lua).
-- The heartbeat key exists only for online, active mitras, so a heartbeat's `SET … XX` never
-- refreshes a deactivated mitra: a deactivation that lands between the toggle's Postgres check
-- and this write leaves no key behind.
local id = ARGV[1]
redis.call('SADD', KEYS[3], id)
if tonumber(ARGV[4]) > tonumber(redis.call('HGET', KEYS[7], id) or '-1') then
  redis.call('SET', KEYS[6], ARGV[3])
  redis.call('HSET', KEYS[7], id, ARGV[4])
end
if redis.call('SISMEMBER', KEYS[4], id) == 0 then
  redis.call('SET', KEYS[5], ARGV[2])
end
touch({id})
return 1

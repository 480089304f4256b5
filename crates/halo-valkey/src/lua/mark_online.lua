-- A mitra goes online: member of the online set, capacity, and (unless deactivated) a heartbeat.
-- KEYS: online set, deactivated set, heartbeat key, capacity key, write token.
-- ARGV: mitra id, RFC 3339 timestamp, open sessions.
-- The heartbeat key exists only for online, active mitras, so a heartbeat's `SET … XX` never
-- refreshes a deactivated mitra: a deactivation that lands between the toggle's Postgres check
-- and this write leaves no key behind.
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[4], ARGV[3])
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  redis.call('SET', KEYS[3], ARGV[2])
end
redis.call('INCR', KEYS[5])
return 1

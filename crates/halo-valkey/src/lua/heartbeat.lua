-- Heartbeat guard + write in one round trip.
-- KEYS: deactivated set, online set, heartbeat key. ARGV: mitra id, RFC 3339 timestamp.
-- Returns 0 = deactivated (refuse), 1 = recorded, 2 = offline (nothing recorded).
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return 2 end
redis.call('SET', KEYS[3], ARGV[2])
return 1

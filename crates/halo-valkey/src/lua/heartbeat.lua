-- The heartbeat's slow path, for a mitra whose heartbeat key is missing (the fast path is a
-- plain `SET … XX`, which refreshes only an existing key): deactivated, offline, or a lost key.
-- KEYS: deactivated set, online set, heartbeat key, write token. ARGV: mitra id, RFC 3339 time.
-- Returns 0 = deactivated (refuse), 1 = recorded, 2 = offline (nothing recorded).
-- Creating the key is a mirror write: it bumps the write token, so a seed that read the truth
-- before it does not swap in (and then leave this key behind for a mitra the truth has offline).
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return 2 end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('INCR', KEYS[4])
return 1

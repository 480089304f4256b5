-- The heartbeat's slow path, for a mitra whose heartbeat key is missing (the fast path is a
-- plain `SET … XX`, which refreshes only an existing key): unseeded mirror, deactivated,
-- offline, or a lost key.
-- KEYS: write token, journal, generation marker, deactivated set, online set, heartbeat key.
-- ARGV: mitra id, timestamp.
-- Returns 3 = the mirror is not seeded (flushed or restarted empty: its sets say nothing),
-- 0 = deactivated (refuse), 1 = recorded, 2 = offline (nothing recorded).
-- Creating the key is a mirror write: it is journaled, so a seed that read Postgres before it
-- keeps it.
local id = ARGV[1]
if redis.call('EXISTS', KEYS[3]) == 0 then return 3 end
if redis.call('SISMEMBER', KEYS[4], id) == 1 then return 0 end
if redis.call('SISMEMBER', KEYS[5], id) == 0 then return 2 end
redis.call('SET', KEYS[6], ARGV[2])
touch({id})
return 1

-- Deactivate (ARGV[2] = '1') or reactivate (ARGV[2] = '0') a mitra.
-- KEYS: write token, journal, deactivated set, online set, heartbeat key. ARGV: id, flag.
-- Deactivation takes the mitra offline with its heartbeat key: heartbeats refresh only existing
-- keys, so from now on they take the guarded script and are refused.
local id = ARGV[1]
if ARGV[2] == '1' then
  redis.call('SADD', KEYS[3], id)
  redis.call('SREM', KEYS[4], id)
  redis.call('DEL', KEYS[5])
else
  redis.call('SREM', KEYS[3], id)
end
touch({id})
return 1

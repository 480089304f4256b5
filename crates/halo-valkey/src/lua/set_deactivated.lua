-- Deactivate (ARGV[2] = '1') or reactivate (ARGV[2] = '0') a mitra.
-- KEYS: write token, journal, deactivated set, online set, heartbeat key, idle order, idle rank
--       hash.
-- ARGV: id, flag.
-- Deactivation takes the mitra offline (out of the idle order too) with its heartbeat key:
-- heartbeats refresh only existing keys, so from now on they take the guarded script and are
-- refused. The idle order holds only active mitras: one reactivated while still online (a
-- toggle that raced its deactivation) goes back in at the rank of its newest count.
local id = ARGV[1]
if ARGV[2] == '1' then
  redis.call('SADD', KEYS[3], id)
  redis.call('SREM', KEYS[4], id)
  redis.call('ZREM', KEYS[6], id)
  redis.call('DEL', KEYS[5])
else
  redis.call('SREM', KEYS[3], id)
  local rank = redis.call('HGET', KEYS[7], id)
  if rank and redis.call('SISMEMBER', KEYS[4], id) == 1 then
    redis.call('ZADD', KEYS[6], rank, id)
  end
end
touch({id})
return 1

-- Store the beacon snapshot and release the recompute lock, only if this caller still owns it
-- (a recompute slower than the lock's TTL must not release the next owner's lock).
-- KEYS: snapshot, lock. ARGV: snapshot JSON, TTL in ms, lock owner.
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return 1

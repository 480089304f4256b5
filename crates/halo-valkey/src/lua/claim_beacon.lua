-- Read the beacon snapshot, or claim the right to recompute it (one caller per TTL). The adapter
-- runs it after a plain read missed (a hit needs no script); it reads again, atomically with the
-- claim.
-- KEYS: snapshot, lock, generation marker. ARGV: lock owner, lock TTL in ms.
-- Returns the snapshot JSON, 'unseeded' (the mirror holds nothing to count), 'compute' (lock
-- taken by this owner), or 'busy' (someone else computes).
local snapshot = redis.call('GET', KEYS[1])
if snapshot then return snapshot end
if redis.call('EXISTS', KEYS[3]) == 0 then return 'unseeded' end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 'compute' end
return 'busy'

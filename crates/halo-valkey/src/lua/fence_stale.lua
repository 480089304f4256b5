-- The auto-offline sweep's fence, atomic with the pings: of the mitras the sweep found stale,
-- take out of the online set and the idle order (heartbeat key dropped) those whose heartbeat
-- is still missing or before the cutoff. A ping that landed since the sweep read keeps its
-- mitra online.
-- KEYS: write token, journal, online set, idle order, then one heartbeat key per id.
-- ARGV: cutoff timestamp, then the ids. Returns the fenced ids.
local cutoff, fenced = ARGV[1], {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local at = redis.call('GET', KEYS[3 + i])
  if redis.call('SISMEMBER', KEYS[3], id) == 1 and (not canonical(at) or at < cutoff) then
    redis.call('SREM', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
    redis.call('DEL', KEYS[3 + i])
    fenced[#fenced + 1] = id
  end
end
if #fenced > 0 then touch(fenced) end
return fenced

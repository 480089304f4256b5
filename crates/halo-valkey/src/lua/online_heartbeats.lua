-- Heartbeats of every member of mitras:online (the auto-offline and heartbeat-mirror sweeps).
-- KEYS: online set. ARGV: key prefix. Returns a flat list: id, heartbeat or nil, ...
local ids = redis.call('SMEMBERS', KEYS[1])
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('GET', ARGV[1] .. 'mitra:heartbeat:' .. id)
end
return out

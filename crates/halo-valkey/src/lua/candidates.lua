-- States of the online, non-deactivated mitras in one round trip, whatever their number.
-- KEYS: online set, deactivated set. ARGV: key prefix.
-- Returns a flat list: id, heartbeat or nil, capacity or nil, id, ...
local ids = redis.call('SDIFF', KEYS[1], KEYS[2])
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('GET', ARGV[1] .. 'mitra:heartbeat:' .. id)
  out[#out + 1] = redis.call('GET', ARGV[1] .. 'mitra:capacity:' .. id)
end
return out

-- States of the online, non-deactivated mitras in one round trip, whatever their number.
-- KEYS: online set, deactivated set. ARGV: key prefix.
-- Returns a flat list: id, heartbeat or nil, capacity or nil, id, ...
-- The per-mitra keys are read with MGET in chunks (one redis.call per chunk instead of two per
-- mitra: the call overhead dominated); chunks stay well under Lua's unpack limit.
local CHUNK = 1000
local ids = redis.call('SDIFF', KEYS[1], KEYS[2])
local out = {}
local heartbeat = ARGV[1] .. 'mitra:heartbeat:'
local capacity = ARGV[1] .. 'mitra:capacity:'
for first = 1, #ids, CHUNK do
  local last = math.min(first + CHUNK - 1, #ids)
  local keys = {}
  for i = first, last do
    keys[#keys + 1] = heartbeat .. ids[i]
    keys[#keys + 1] = capacity .. ids[i]
  end
  local values = redis.call('MGET', unpack(keys))
  for i = first, last do
    local k = 2 * (i - first)
    out[#out + 1] = ids[i]
    out[#out + 1] = values[k + 1]
    out[#out + 1] = values[k + 2]
  end
end
return out

-- Heartbeats of every member of mitras:online (the auto-offline and heartbeat-mirror sweeps).
-- Used only when the key prefix holds a `*`; otherwise the adapter sends
-- `SORT online BY nosort GET # GET <prefix>mitra:heartbeat:*` (same reply, native code).
-- KEYS: online set, generation marker. ARGV: key prefix. Returns a flat list: id, heartbeat or
-- nil, ...; or 0 when the mirror is not seeded.
local CHUNK = 1000
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local ids = redis.call('SMEMBERS', KEYS[1])
local out, n = {}, 0
local heartbeat = ARGV[1] .. 'mitra:heartbeat:'
for first = 1, #ids, CHUNK do
  local last = math.min(first + CHUNK - 1, #ids)
  local keys, k = {}, 0
  for i = first, last do
    k = k + 1
    keys[k] = heartbeat .. ids[i]
  end
  local values = redis.call('MGET', unpack(keys))
  for i = first, last do
    out[n + 1] = ids[i]
    out[n + 2] = values[i - first + 1]
    n = n + 2
  end
end
return out

-- States of the online, non-deactivated mitras in one round trip, whatever their number.
-- Used only when the key prefix holds a `*` (it cannot be a SORT pattern); otherwise the
-- adapter reads the same records with `SORT online BY nosort GET # GET … GET …` (native code,
-- several times faster at 100k: every string through Lua costs an allocation and a hash).
-- KEYS: online set, deactivated set, generation marker. ARGV: key prefix.
-- Returns a flat list: id, heartbeat or nil, capacity or nil, id, ...; or 0 when the mirror is
-- not seeded (the generation marker is missing).
-- The per-mitra keys are read with MGET in chunks (one redis.call per chunk instead of two per
-- mitra); chunks stay well under Lua's unpack limit.
local CHUNK = 1000
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local ids = redis.call('SDIFF', KEYS[1], KEYS[2])
local out, n = {}, 0
local heartbeat = ARGV[1] .. 'mitra:heartbeat:'
local capacity = ARGV[1] .. 'mitra:capacity:'
for first = 1, #ids, CHUNK do
  local last = math.min(first + CHUNK - 1, #ids)
  local keys, k = {}, 0
  for i = first, last do
    keys[k + 1] = heartbeat .. ids[i]
    keys[k + 2] = capacity .. ids[i]
    k = k + 2
  end
  local values = redis.call('MGET', unpack(keys))
  for i = first, last do
    local j = 2 * (i - first)
    out[n + 1] = ids[i]
    out[n + 2] = values[j + 1]
    out[n + 3] = values[j + 2]
    n = n + 3
  end
end
return out

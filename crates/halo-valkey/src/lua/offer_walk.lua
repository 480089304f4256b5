-- One step of an offer round's walk of the idle order (SPEC §12.5) where `SORT … GET` cannot
-- be used (a key prefix with `*`, or a login that may not SORT): from rank ARGV[2], the next
-- members not to be skipped, each with what the availability rules read about it — the same
-- records as `SORT idle_order BY nosort LIMIT … GET # GET <heartbeat>* GET <capacity>*` (the
-- order holds only online, active mitras). The rules are applied by the caller (halo-domain),
-- which asks for the next step when too few passed.
-- KEYS: generation marker, idle order. ARGV: key prefix, first rank, how many records, then
-- the ids to skip.
-- Returns 0 when the mirror is not seeded; otherwise a flat list: the rank to go on from,
-- 1 when the order ended before enough records were found (else 0), then id, heartbeat or nil,
-- capacity or nil, id, ... One call looks at no more than MAX_SCAN members, so it never blocks
-- the server for long; the caller goes on from where it stopped.
local MAX_SCAN = 2000
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local skip = {}
for i = 4, #ARGV do skip[ARGV[i]] = true end
local heartbeat = ARGV[1] .. 'mitra:heartbeat:'
local capacity = ARGV[1] .. 'mitra:capacity:'
local rank, want = tonumber(ARGV[2]), tonumber(ARGV[3])
local out, n, found, scanned, ended = {0, 0}, 2, 0, 0, 0
while found < want and scanned < MAX_SCAN do
  local size = math.min(math.max(want - found, 16), MAX_SCAN - scanned)
  local ids = redis.call('ZRANGE', KEYS[2], rank, rank + size - 1)
  rank = rank + #ids
  scanned = scanned + #ids
  local kept, keys = {}, {}
  for _, id in ipairs(ids) do
    if not skip[id] then
      kept[#kept + 1] = id
      keys[#keys + 1] = heartbeat .. id
      keys[#keys + 1] = capacity .. id
    end
  end
  if #kept > 0 then
    local values = redis.call('MGET', unpack(keys))
    for j, id in ipairs(kept) do
      out[n + 1], out[n + 2], out[n + 3] = id, values[2 * j - 1], values[2 * j]
      n = n + 3
    end
    found = found + #kept
  end
  if #ids < size then
    ended = 1
    break
  end
end
out[1], out[2] = rank, ended
return out

-- Atomic seed swap: readers see the old mirror or the new one, never a half-built one.
-- KEYS: write token, journal, online, deactivated, staged online, staged deactivated,
--       generation, snapshot, when the last applied seed's truth was read, capacity order hash,
--       idle order, staged idle order, idle rank hash.
-- ARGV: token read before the truth, key prefix, generation value, now,
--       staged online count, staged deactivated count, staged idle order count,
--       n, then n quadruples (id, capacity, capacity order number, idle rank or '' for a
--       mitra the image has offline),
--       m, then m pairs (online active id, heartbeat floor or ''),
--       k, then k pairs (per-mitra key that must not exist, its capacity order number or '')
--       to delete, then when this seed's truth was read.
-- Returns 1 = applied, 2 = superseded (a seed whose truth was read later was applied: this one
-- is older and changes nothing), 0 = raced: a staging set is not what was staged (it expired
-- during a stalled seed, or the server lost its data: the token went back), nothing changed.
--
-- Mitras the journal shows touched by a write after the token was read keep their live set
-- memberships, place in the idle order and heartbeat: that write came after its Postgres
-- commit, so it is at least as new as this seed's image. Capacity and idle ranks are ordered
-- instead: a count and its rank are written (or the capacity key deleted) only over one of a
-- lower or equal order number, and a newer recount's rank stays. Everything else becomes the
-- image.
local token = tonumber(ARGV[1])
local read_at = ARGV[#ARGV]
local function drop_staging()
  redis.call('DEL', KEYS[5], KEYS[6], KEYS[12])
end
local last = redis.call('GET', KEYS[9])
if last and last > read_at then
  drop_staging()
  return 2
end
if tonumber(redis.call('GET', KEYS[1]) or '0') < token
    or redis.call('SCARD', KEYS[5]) ~= tonumber(ARGV[5])
    or redis.call('SCARD', KEYS[6]) ~= tonumber(ARGV[6])
    or redis.call('ZCARD', KEYS[12]) ~= tonumber(ARGV[7]) then
  drop_staging()
  return 0
end

local kept = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')) do
  kept[id] = {redis.call('SISMEMBER', KEYS[3], id), redis.call('SISMEMBER', KEYS[4], id),
              redis.call('ZSCORE', KEYS[11], id)}
end
local function swap(staged, live)
  if redis.call('EXISTS', staged) == 1 then
    redis.call('RENAME', staged, live)
    -- RENAME keeps the staging set's TTL (a guard against abandoned staging): the live set
    -- must not expire.
    redis.call('PERSIST', live)
  else
    redis.call('DEL', live)
  end
end
swap(KEYS[5], KEYS[3])
swap(KEYS[6], KEYS[4])
swap(KEYS[12], KEYS[11])
for id, member in pairs(kept) do
  for set = 1, 2 do
    if member[set] == 1 then
      redis.call('SADD', KEYS[2 + set], id)
    else
      redis.call('SREM', KEYS[2 + set], id)
    end
  end
  if member[3] then
    redis.call('ZADD', KEYS[11], member[3], id)
  else
    redis.call('ZREM', KEYS[11], id)
  end
end

local prefix, now = ARGV[2], ARGV[4]
local i = 8
local function in_order(id, seq)
  return tonumber(seq) >= tonumber(redis.call('HGET', KEYS[10], id) or '-1')
end
-- The ranks written go to the hash in chunks (one call per chunk, not per mitra).
local RANK_CHUNK = 500
local ranks, r = {}, 0
local function flush_ranks()
  if r > 0 then
    redis.call('HSET', KEYS[13], unpack(ranks, 1, r))
    ranks, r = {}, 0
  end
end
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local id, open, seq, rank = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if in_order(id, seq) then
    redis.call('SET', prefix .. 'mitra:capacity:' .. id, open)
    redis.call('HSET', KEYS[10], id, seq)
    if rank ~= '' then
      ranks[r + 1], ranks[r + 2] = id, rank
      r = r + 2
      if r >= 2 * RANK_CHUNK then flush_ranks() end
      -- A kept member's place came from its live write; this count is at least as new.
      if kept[id] then redis.call('ZADD', KEYS[11], 'XX', rank, id) end
    end
  elseif rank ~= '' and not kept[id] then
    -- A recount newer than the image landed: its rank stays (staged was the image's).
    local live = redis.call('HGET', KEYS[13], id)
    if live then redis.call('ZADD', KEYS[11], 'XX', live, id) end
  end
  i = i + 4
end
flush_ranks()
-- Heartbeats: the newest of Valkey's value and Postgres's (pings answered from Postgres while
-- Valkey was down or distrusted count); `now` where Valkey has none (SPEC §3.5: seeded as now).
local m = tonumber(ARGV[i]); i = i + 1
for _ = 1, m do
  local id, floor = ARGV[i], ARGV[i + 1]
  if not kept[id] then
    local key = prefix .. 'mitra:heartbeat:' .. id
    local live = redis.call('GET', key)
    if not canonical(live) then
      redis.call('SET', key, now)
    elseif floor ~= '' and floor > live then
      redis.call('SET', key, floor)
    end
  end
  i = i + 2
end
local k = tonumber(ARGV[i]); i = i + 1
for _ = 1, k do
  local key, seq = ARGV[i], ARGV[i + 1]
  local id = string.match(key, '[^:]*$')
  local wanted
  if seq == '' then wanted = not kept[id] else wanted = in_order(id, seq) end
  if wanted then
    redis.call('DEL', key)
  end
  i = i + 2
end
redis.call('DEL', KEYS[8])
redis.call('SET', KEYS[7], ARGV[3])
redis.call('SET', KEYS[9], read_at)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
return 1

-- Atomic seed swap: readers see the old mirror or the new one, never a half-built one.
-- KEYS: write token, journal, online, deactivated, staged online, staged deactivated,
--       generation, snapshot, last applied seed's token.
-- ARGV: token read before the truth, key prefix, generation value, now,
--       staged online count, staged deactivated count,
--       n, then n pairs (id, capacity),
--       m, then m pairs (online active id, heartbeat floor or ''),
--       k, then k keys to delete (per-mitra keys that must not exist).
-- Returns 1 = applied, 2 = superseded (a seed that read a later token was applied: this one is
-- older and changes nothing), 0 = raced: a staging set is not what was staged (it expired
-- during a stalled seed, or the server lost its data: the token went back), nothing changed.
--
-- Mitras the journal shows touched by a write after the token was read keep every live key
-- (membership, capacity, heartbeat): that write came after its Postgres commit, so it is at
-- least as new as this seed's image. Everything else becomes the image.
local token = tonumber(ARGV[1])
local function drop_staging()
  redis.call('DEL', KEYS[5], KEYS[6])
end
if tonumber(redis.call('GET', KEYS[9]) or '-1') > token then
  drop_staging()
  return 2
end
if tonumber(redis.call('GET', KEYS[1]) or '0') < token
    or redis.call('SCARD', KEYS[5]) ~= tonumber(ARGV[5])
    or redis.call('SCARD', KEYS[6]) ~= tonumber(ARGV[6]) then
  drop_staging()
  return 0
end

local kept = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')) do
  kept[id] = {redis.call('SISMEMBER', KEYS[3], id), redis.call('SISMEMBER', KEYS[4], id)}
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
for id, member in pairs(kept) do
  for set = 1, 2 do
    if member[set] == 1 then
      redis.call('SADD', KEYS[2 + set], id)
    else
      redis.call('SREM', KEYS[2 + set], id)
    end
  end
end

local prefix, now = ARGV[2], ARGV[4]
local i = 7
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  if not kept[ARGV[i]] then
    redis.call('SET', prefix .. 'mitra:capacity:' .. ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
-- Heartbeats: the newest of Valkey's value and Postgres's (pings answered from Postgres while
-- Valkey was down or distrusted count); `now` where Valkey has none (contract: seeded as now).
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
  local key = ARGV[i]
  if not kept[string.match(key, '[^:]*$')] then
    redis.call('DEL', key)
  end
  i = i + 1
end
redis.call('DEL', KEYS[8])
redis.call('SET', KEYS[7], ARGV[3])
redis.call('SET', KEYS[9], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
return 1

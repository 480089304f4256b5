-- Atomic seed swap: readers see the old mirror or the new one, never a half-built one.
-- KEYS: write token, online, deactivated, staged online, staged deactivated, generation,
--       snapshot.
-- ARGV: expected token, key prefix, generation value, now (RFC 3339),
--       staged online count, staged deactivated count,
--       n, then n pairs (id, capacity), m, then m online ids (heartbeat stamped if missing),
--       k, then k keys to delete (per-mitra keys that must not exist).
-- Returns 1 = applied, 0 = nothing changed: a mirror write landed since the token was read, or
-- a staging set is not what was staged (it expired during a stalled seed; swapping it in would
-- empty the live set). The caller seeds again.
local function drop_staging()
  redis.call('DEL', KEYS[4], KEYS[5])
end
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then
  drop_staging()
  return 0
end
if redis.call('SCARD', KEYS[4]) ~= tonumber(ARGV[5])
    or redis.call('SCARD', KEYS[5]) ~= tonumber(ARGV[6]) then
  drop_staging()
  return 0
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
swap(KEYS[4], KEYS[2])
swap(KEYS[5], KEYS[3])
local prefix, now = ARGV[2], ARGV[4]
local i = 7
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('SET', prefix .. 'mitra:capacity:' .. ARGV[i], ARGV[i + 1])
  i = i + 2
end
local m = tonumber(ARGV[i]); i = i + 1
for _ = 1, m do
  redis.call('SET', prefix .. 'mitra:heartbeat:' .. ARGV[i], now, 'NX')
  i = i + 1
end
local k = tonumber(ARGV[i]); i = i + 1
for _ = 1, k do
  redis.call('DEL', ARGV[i])
  i = i + 1
end
redis.call('DEL', KEYS[7])
redis.call('SET', KEYS[6], ARGV[3])
return 1

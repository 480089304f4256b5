-- Mitras Postgres knows to be online with a fresh heartbeat the mirror lacks (pings answered
-- from Postgres, a toggle, or fenced by the sweep while Postgres kept them): in the online set,
-- with the newest of their heartbeat in Valkey and the one given, and in the idle order at the
-- rank of their newest count (the one given when the mirror never had one). A mitra
-- deactivated meanwhile stays out, and so does one written since the caller read the write
-- token (a toggle offline during the sweep's tick must not be undone).
-- KEYS: write token, journal, online set, deactivated set, idle order, idle rank hash, then one
--       heartbeat key per id.
-- ARGV: the write token read before Postgres was, then id, timestamp, rank, id, ...
local token = tonumber(ARGV[1])
local restored = {}
for i = 2, #ARGV, 3 do
  local id, at, rank = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local written = tonumber(redis.call('ZSCORE', KEYS[2], id) or '-1')
  if written <= token and redis.call('SISMEMBER', KEYS[4], id) == 0 then
    local key = KEYS[6 + (i + 1) / 3]
    local live = redis.call('GET', key)
    redis.call('SADD', KEYS[3], id)
    redis.call('ZADD', KEYS[5], redis.call('HGET', KEYS[6], id) or rank, id)
    if not canonical(live) or live < at then
      redis.call('SET', key, at)
    end
    restored[#restored + 1] = id
  end
end
if #restored > 0 then touch(restored) end
return #restored

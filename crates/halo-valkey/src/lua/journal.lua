-- Prepended to every script that writes mirror data. KEYS[1] is the write token, KEYS[2] the
-- journal (a sorted set: mitra id -> the token value of the last write that touched it).
-- A seed reads the token before it reads Postgres; at its swap, the mitras the journal shows
-- touched after that token keep their live keys (they are newer than the seed's image).
local function touch(ids)
  local seq = redis.call('INCR', KEYS[1])
  for _, id in ipairs(ids) do
    redis.call('ZADD', KEYS[2], seq, id)
  end
end
-- Timestamps are written as YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC): in that form string order is
-- time order. A value in any other form (an older version's) is treated as unknown.
local function canonical(t)
  return t and string.match(t, '^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ$') ~= nil
end

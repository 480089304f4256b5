-- Mitras go offline: out of the online set and the idle order, heartbeat keys dropped.
-- KEYS: write token, journal, online set, idle order, then one heartbeat key per id.
-- ARGV: the ids.
for i, id in ipairs(ARGV) do
  redis.call('SREM', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('DEL', KEYS[4 + i])
end
touch(ARGV)
return 1

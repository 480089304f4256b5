-- Mitras go offline: out of the online set, heartbeat keys dropped.
-- KEYS: write token, journal, online set, then one heartbeat key per id. ARGV: the ids.
for i, id in ipairs(ARGV) do
  redis.call('SREM', KEYS[3], id)
  redis.call('DEL', KEYS[3 + i])
end
touch(ARGV)
return 1

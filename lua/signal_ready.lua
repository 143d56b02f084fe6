-- Worker hint (not part of the contract): a session may have ready work at `due` ms. Keeps the earliest due
-- time and bumps the session's version, so a worker that saw an older version cannot erase this signal.
-- KEYS: ready index (zset), ready versions (hash)   [both under the factory index hash tag]
-- ARGV: session_id, due_ms
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or tonumber(ARGV[2]) < tonumber(cur) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
return redis.call('HINCRBY', KEYS[2], ARGV[1], 1)

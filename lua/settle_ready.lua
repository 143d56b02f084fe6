-- Worker hint: after finding no ready work, move the session's hint to `due` ms ('' = drop it), but only if
-- no producer signalled since the worker read `version`.
-- KEYS: ready index (zset), ready versions (hash)
-- ARGV: session_id, version seen, due_ms or ''
local ver = redis.call('HGET', KEYS[2], ARGV[1]) or '0'
if ver ~= ARGV[2] then
  return 0
end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1

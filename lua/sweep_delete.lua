-- sweep (a maintenance tool, not part of the contract): delete one orphaned key, re-checking atomically that
-- it is still an orphan, so a namespace (or queue session) created since the scan never loses a key.
-- KEYS: schema, head, meta, q_sessions, leases, fencing, att, target
-- ARGV: reason ('namespace' | 'session' | 'part'), session id (for 'session')
-- Reply: 1 if deleted, else 0
local marker = redis.call('TYPE', KEYS[1])['ok'] == 'string' and redis.call('GET', KEYS[1]) or nil
if marker and marker ~= SCHEMA then
  return 0
end
if ARGV[1] == 'namespace' then
  if redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]) > 0 then
    return 0
  end
elseif ARGV[1] == 'session' then
  if redis.call('TYPE', KEYS[4])['ok'] ~= 'set' or redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 1 then
    return 0
  end
elseif ARGV[1] ~= 'part' then
  return 0
end
return redis.call('DEL', KEYS[8])

-- load_session_head_meta (contract §2.5): the head record alone.
-- KEYS: schema, head
local err = schema_check(KEYS[1]) or guard(KEYS[2], 'hash')
if err then
  return err
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return false
end
return redis.call('HGETALL', KEYS[2])

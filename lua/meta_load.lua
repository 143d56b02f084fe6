-- load_session_meta (contract §2.12).
-- KEYS: schema, meta
local err = schema_check(KEYS[1]) or guard(KEYS[2], 'string')
if err then
  return err
end
return redis.call('GET', KEYS[2])

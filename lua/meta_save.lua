-- save_session_meta (contract §2.12): replaces the namespace's single record wholesale.
-- KEYS: schema, meta
-- ARGV: meta JSON (with schema_version)
local err = schema_check(KEYS[1]) or guard(KEYS[2], 'string')
if err then
  return err
end
redis.call('SET', KEYS[2], ARGV[1])
schema_mark(KEYS[1])
return 1

-- create_store (contract §2.16): seed the meta record only if absent; an existing meta is never touched.
-- KEYS: schema, meta
-- ARGV: meta JSON (with schema_version)
local err = schema_check(KEYS[1]) or guard(KEYS[2], 'string')
if err then
  return err
end
local created = redis.call('SET', KEYS[2], ARGV[1], 'NX')
schema_mark(KEYS[1])
if created then
  return 1
end
return 0

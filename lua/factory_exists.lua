-- open_existing_store (contract §2.16, D17): a namespace exists when it holds a meta record or a head.
-- KEYS: schema, meta, head
local err = schema_check(KEYS[1])
if err then
  return err
end
return redis.call('EXISTS', KEYS[2], KEYS[3])

-- load_node (contract §2.5): a live node on any branch, else nil.
-- KEYS: schema, nodes, tombstones
-- ARGV: node_id
local err = schema_check(KEYS[1]) or guard_all({ KEYS[2], 'hash', KEYS[3], 'set' })
if err then
  return err
end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then
  return false
end
return redis.call('HGET', KEYS[2], ARGV[1]) or false

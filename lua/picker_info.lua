-- load_picker_info (contract §2.12): meta plus the live nodes that may be user messages, in insertion order.
-- Lua pre-filters on the '"User"' substring; Python decides exactly which nodes are User conversation events.
-- KEYS: schema, meta, nodes, node_order, tombstones
local err = schema_check(KEYS[1]) or guard_all({
  KEYS[2], 'string', KEYS[3], 'hash', KEYS[4], 'stream', KEYS[5], 'set',
})
if err then
  return err
end
local meta = redis.call('GET', KEYS[2])
if not meta then
  return false
end
return { meta, live_nodes(KEYS[3], KEYS[4], KEYS[5], '"User"') }

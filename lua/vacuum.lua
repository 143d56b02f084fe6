-- vacuum (contract §2.13): physically delete tombstoned nodes, O(tombstones): each node value carries its
-- position in the order stream, so no scan of the graph is needed.
-- KEYS: schema, nodes, node_order, tombstones
local err = schema_check(KEYS[1]) or guard_all({ KEYS[2], 'hash', KEYS[3], 'stream', KEYS[4], 'set' })
if err then
  return err
end
local ids = redis.call('SMEMBERS', KEYS[4])
local removed = 0
for n = 1, #ids do
  local v = redis.call('HGET', KEYS[2], ids[n])
  if v then
    local entry = node_entry(v)
    if entry then
      redis.call('XDEL', KEYS[3], entry)
    end
    removed = removed + redis.call('HDEL', KEYS[2], ids[n])
  end
end
redis.call('DEL', KEYS[4])
return removed

-- tombstone_nodes (contract §2.13): atomically mark stored nodes; unknown ids are ignored. The head is untouched.
-- KEYS: schema, nodes, tombstones
-- ARGV: node ids
local err = schema_check(KEYS[1]) or guard_all({ KEYS[2], 'hash', KEYS[3], 'set' })
if err then
  return err
end
local marked = 0
for a = 1, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[a]) == 1 then
    marked = marked + redis.call('SADD', KEYS[3], ARGV[a])
  end
end
if #ARGV > 0 then
  schema_mark(KEYS[1])
end
return marked

-- forget (contract §2.15): delete the row whatever its session or state.
-- KEYS: schema, att, att_committed, att_uncommitted
-- ARGV: attachment_id
local err = schema_check(KEYS[1]) or guard_all({ KEYS[2], 'hash', KEYS[3], 'hash', KEYS[4], 'zset' })
if err then
  return err
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1

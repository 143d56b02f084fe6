-- record_intent (contract §2.15, D15): insert, or refresh session, uri and intent time keeping committed_at.
-- KEYS: schema, att, att_committed, att_uncommitted
-- ARGV: attachment_id, row JSON (with schema_version), intent_at_epoch_ms
local err = schema_check(KEYS[1]) or guard_all({ KEYS[2], 'hash', KEYS[3], 'hash', KEYS[4], 'zset' })
if err then
  return err
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
end
schema_mark(KEYS[1])
return 1

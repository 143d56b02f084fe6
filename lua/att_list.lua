-- list_uncommitted (contract §2.15, D16): uncommitted rows with intent time <= threshold, ordered by
-- (intent time, id): equal scores in a sorted set sort by member, which is exactly that order.
-- KEYS: schema, att, att_committed, att_uncommitted
-- ARGV: older_than_epoch_ms
local err = schema_check(KEYS[1]) or guard_all({ KEYS[2], 'hash', KEYS[3], 'hash', KEYS[4], 'zset' })
if err then
  return err
end
local out = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[1])
for n = 1, #ids do
  local row = redis.call('HGET', KEYS[2], ids[n])
  if row then
    out[#out + 1] = row
  end
end
return out

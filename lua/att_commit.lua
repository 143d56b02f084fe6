-- commit_refs (contract §2.15): stamp this session's uncommitted rows; the first commit time wins.
-- KEYS: schema, att, att_committed, att_uncommitted
-- ARGV: now, session_id, attachment ids...
local err = schema_check(KEYS[1]) or guard_all({ KEYS[2], 'hash', KEYS[3], 'hash', KEYS[4], 'zset' })
if err then
  return err
end
local now = now_ms(ARGV[1])
local todo = {}
for a = 3, #ARGV do
  local row = redis.call('HGET', KEYS[2], ARGV[a])
  if row and redis.call('HEXISTS', KEYS[3], ARGV[a]) == 0 then
    local ok, decoded = pcall(cjson.decode, row)
    if not ok or type(decoded) ~= 'table' then
      return fail('CORRUPT', KEYS[2], 'attachment row ' .. ARGV[a] .. ' does not decode')
    end
    -- A row of another schema version may keep its session elsewhere: refuse rather than guess.
    if type(decoded['schema_version']) ~= 'number' then
      return fail('CORRUPT', KEYS[2], 'attachment row ' .. ARGV[a] .. ' has no schema_version')
    end
    if fmt(decoded['schema_version']) ~= SCHEMA then
      return fail('SCHEMA', 'attachment_manifest_entry', fmt(decoded['schema_version']))
    end
    if decoded['session_id'] == ARGV[2] then
      todo[#todo + 1] = ARGV[a]
    end
  end
end
for t = 1, #todo do
  redis.call('HSET', KEYS[3], todo[t], fmt(now))
  redis.call('ZREM', KEYS[4], todo[t])
end
if #todo > 0 then
  schema_mark(KEYS[1])
end
return #todo

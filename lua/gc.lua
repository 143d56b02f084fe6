-- gc_unreachable (contract §2.14): mark and sweep in one script, so a commit can never land between them.
-- Roots: the head's checkpoint manifest; retained: the root plus its component refs.
-- KEYS: schema, head, blobs
-- Reply: {root_count, retained_blob_count, deleted_blob_count}
local err = schema_check(KEYS[1]) or guard_all({ KEYS[2], 'hash', KEYS[3], 'hash' })
if err then
  return err
end
local retained, nretained, roots = {}, 0, 0
local function keep(ref)
  if type(ref) == 'string' and not retained[ref] then
    retained[ref] = true
    nretained = nretained + 1
  end
end
local root = redis.call('HGET', KEYS[2], 'checkpoint_ref')
if root and root ~= '' then
  roots = 1
  keep(root)
  local manifest = redis.call('HGET', KEYS[3], root)
  if manifest then
    local ok, m = pcall(cjson.decode, manifest)
    if not ok or type(m) ~= 'table' then
      return fail('CORRUPT', KEYS[3], 'live checkpoint manifest ' .. root .. ' does not decode')
    end
    keep(m['tool_state_ref'])
    keep(m['plugin_snapshot_ref'])
    keep(m['execution_state_ref'])
  end
end
local deleted = 0
local refs = redis.call('HKEYS', KEYS[3])
for r = 1, #refs do
  if not retained[refs[r]] then
    deleted = deleted + redis.call('HDEL', KEYS[3], refs[r])
  end
end
return { roots, nretained, deleted }

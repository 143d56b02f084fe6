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
-- A head this binary cannot read (another schema version) must not decide which blobs are garbage.
if redis.call('EXISTS', KEYS[2]) == 1 then
  local version = redis.call('HGET', KEYS[2], 'schema_version')
  if not version then
    return fail('CORRUPT', KEYS[2], 'head has no schema_version')
  end
  if version ~= SCHEMA then
    return fail('SCHEMA', 'session_head', version)
  end
end
local root = redis.call('HGET', KEYS[2], 'checkpoint_ref')
if root and root ~= '' then
  roots = 1
  keep(root)
  local manifest = redis.call('HGET', KEYS[3], root)
  if manifest then
    -- As strict as the reader: a JSON object whose refs are strings (or absent); arrays decode to tables too.
    local ok, m = pcall(cjson.decode, manifest)
    local bad = not ok or type(m) ~= 'table' or not string.find(manifest, '^%s*{')
    local fields = { 'tool_state_ref', 'plugin_snapshot_ref', 'execution_state_ref' }
    for f = 1, #fields do
      if not bad and m[fields[f]] == cjson.null then
        m[fields[f]] = nil
      end
      if not bad and m[fields[f]] ~= nil and type(m[fields[f]]) ~= 'string' then
        bad = true
      end
    end
    if bad then
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

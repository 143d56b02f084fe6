-- load_session (contract §2.5): one snapshot of head, graph scope, hydrated checkpoint and merged ledger.
-- KEYS: schema, head, nodes, node_order, tombstones, blobs, ledger, ledger_order
-- ARGV: scope ('full' | 'path'), leaf given ('0' | '1'), leaf
-- Reply: false without a head, else
--   {head HGETALL, node values, manifest|false, tool|false, plugin|false, exec|false, ledger rows}
local err = schema_check(KEYS[1]) or guard_all({
  KEYS[2], 'hash', KEYS[3], 'hash', KEYS[4], 'stream', KEYS[5], 'set', KEYS[6], 'hash', KEYS[7], 'hash',
  KEYS[8], 'list',
})
if err then
  return err
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return false
end
local head = redis.call('HGETALL', KEYS[2])
local nodes
if ARGV[1] == 'full' then
  nodes = live_nodes(KEYS[3], KEYS[4], KEYS[5], nil)
else
  local leaf
  if ARGV[2] == '1' then
    leaf = ARGV[3]
  else
    leaf = redis.call('HGET', KEYS[2], 'leaf_node_id')
  end
  nodes = leaf and active_path(KEYS[3], KEYS[5], leaf) or {}
end
local manifest, tool, plugin, exec = false, false, false, false
local ref = redis.call('HGET', KEYS[2], 'checkpoint_ref')
if ref and ref ~= '' then
  manifest = redis.call('HGET', KEYS[6], ref) or false
  if manifest then
    local ok, m = pcall(cjson.decode, manifest)
    if not ok or type(m) ~= 'table' then
      return fail('CORRUPT', KEYS[6], 'checkpoint manifest ' .. ref .. ' does not decode')
    end
    local function body(r)
      if type(r) ~= 'string' then
        return false
      end
      return redis.call('HGET', KEYS[6], r) or false
    end
    tool, plugin, exec = body(m['tool_state_ref']), body(m['plugin_snapshot_ref']), body(m['execution_state_ref'])
  end
end
local ledger = {}
local lkeys = redis.call('LRANGE', KEYS[8], 0, -1)
for k = 1, #lkeys do
  local key = lkeys[k]
  local v = redis.call('HMGET', KEYS[7], key .. '\0' .. 2, key .. '\0' .. 3, key .. '\0' .. 4, key .. '\0' .. 5)
  ledger[#ledger + 1] = { key, v[1] or '0', v[2] or '0', v[3] or '0', v[4] or '0' }
end
return { head, nodes, manifest, tool, plugin, exec, ledger }

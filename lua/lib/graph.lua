-- Graph helpers. A node is stored in the 'nodes' hash as
--   '<order stream entry id> <parent length or -1> <parent id><node JSON>'
-- so that walks and vacuum read parent links and order positions without decoding JSON.
local function node_parent(v)
  local plen, start = string.match(v, '^%S+ (%-?%d+) ()')
  if not plen then
    return nil, false
  end
  plen = tonumber(plen)
  if plen < 0 then
    return nil, true
  end
  return string.sub(v, start, start + plen - 1), true
end

local function node_entry(v)
  return string.match(v, '^(%S+) ')
end

-- Every live node in insertion order: O(graph), used by FullGraph, picker info and GC of nothing else.
local function live_nodes(nodes_key, order_key, tomb_key, filter)
  local out = {}
  local entries = redis.call('XRANGE', order_key, '-', '+')
  for e = 1, #entries do
    local id = entries[e][2][2]
    if redis.call('SISMEMBER', tomb_key, id) == 0 then
      local v = redis.call('HGET', nodes_key, id)
      if v and (filter == nil or string.find(v, filter, 1, true)) then
        out[#out + 1] = v
      end
    end
  end
  return out
end

-- Root-first walk from a leaf: O(path). Stops before a missing, tombstoned or already visited node.
local function active_path(nodes_key, tomb_key, leaf)
  local rev, seen, cur = {}, {}, leaf
  while cur and not seen[cur] do
    local v = redis.call('HGET', nodes_key, cur)
    if not v or redis.call('SISMEMBER', tomb_key, cur) == 1 then
      break
    end
    seen[cur] = true
    rev[#rev + 1] = v
    local parent = node_parent(v)
    cur = parent
  end
  local out = {}
  for n = #rev, 1, -1 do
    out[#out + 1] = rev[n]
  end
  return out
end

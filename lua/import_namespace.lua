-- import_namespace (admin, outside the contract; `sessionfence import`): recreate every key of an exported
-- namespace exactly (streams keep their entry ids and last id). Refuses a non-empty target unless forced;
-- the fencing high-water marks (the one key delete_session keeps) do not make a namespace non-empty and are
-- merged by maximum, so fencing tokens never go backwards. Every check and the whole parse precede the first
-- write. The per-session queue keys of the target are discovered by the client from q_sessions (to clear them
-- when forced); if q_sessions changed since the client read it, the reply is 'retry'.
-- KEYS: the namespace's fixed keys (NamespaceKeys.fixed() order), then q_all, q_ready, q_delayed, q_held of
--       each existing queue session (ARGV order), then the same four keys of each imported queue session
-- ARGV: 1 index of q_sessions in KEYS, 2 index of fencing in KEYS, 3 force '1'|'0', 4 n existing queue
--       sessions, the n ids, then the number of records and the records:
--       <key index> <type> <pttl> <contents>, contents being: string -> value; hash -> n, n field/value
--       pairs; list, set -> n, n items; zset -> n, n member/score pairs; stream -> last id, max deleted id
--       ('' = unknown), entries added ('' = unknown), n entries, then per entry: id, f, f field/value pairs
-- Reply: 'retry', {'not_empty', key}, or {'ok', keys written}
local qs_index, fencing_index, force = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local n_existing = tonumber(ARGV[4])
local seen = redis.call('SMEMBERS', KEYS[qs_index])
if #seen ~= n_existing then
  return 'retry'
end
local listed = {}
for a = 5, 4 + n_existing do
  listed[ARGV[a]] = true
end
for s = 1, #seen do
  if not listed[seen[s]] then
    return 'retry'
  end
end
-- Parse every record before touching anything.
local pos = 4 + n_existing + 1
local function nxt()
  local v = ARGV[pos]
  pos = pos + 1
  return v
end
local records = {}
local n_records = tonumber(nxt())
for _ = 1, n_records do
  local r = { index = tonumber(nxt()), type = nxt(), pttl = tonumber(nxt()) }
  if not r.index or r.index < 1 or r.index > #KEYS then
    return fail('CORRUPT', 'import', 'record key index out of range')
  end
  if r.type == 'string' then
    r.value = nxt()
  elseif r.type == 'hash' or r.type == 'zset' then
    local items = {}
    for _ = 1, 2 * tonumber(nxt()) do
      items[#items + 1] = nxt()
    end
    r.items = items
  elseif r.type == 'list' or r.type == 'set' then
    local items = {}
    for _ = 1, tonumber(nxt()) do
      items[#items + 1] = nxt()
    end
    r.items = items
  elseif r.type == 'stream' then
    r.last, r.max_deleted, r.added = nxt(), nxt(), nxt()
    local entries = {}
    for _ = 1, tonumber(nxt()) do
      local e = { id = nxt(), fields = {} }
      for _ = 1, 2 * tonumber(nxt()) do
        e.fields[#e.fields + 1] = nxt()
      end
      entries[#entries + 1] = e
    end
    r.entries = entries
  else
    return fail('CORRUPT', 'import', 'unknown key type ' .. tostring(r.type))
  end
  if r.pttl == nil then
    return fail('CORRUPT', 'import', 'bad ttl')
  end
  records[#records + 1] = r
end
if pos ~= #ARGV + 1 then
  return fail('CORRUPT', 'import', 'trailing or missing arguments')
end
for _, r in ipairs(records) do
  if r.index == fencing_index and r.type ~= 'hash' then
    return fail('CORRUPT', 'import', 'the fencing key must be a hash')
  end
end
local err = guard(KEYS[fencing_index], 'hash')
if err then
  return err
end

-- The target must be empty (but for fencing high-water marks) unless forced.
if not force then
  for k = 1, #KEYS do
    if k ~= fencing_index and redis.call('EXISTS', KEYS[k]) == 1 then
      return { 'not_empty', KEYS[k] }
    end
  end
end

-- ---- effects ------------------------------------------------------------------------------------------
for k = 1, #KEYS do
  if k ~= fencing_index then
    redis.call('UNLINK', KEYS[k])
  end
end

local CHUNK = 500
local function chunked(cmd, key, items, step)
  local i = 1
  while i <= #items do
    local last = math.min(i + CHUNK * step - 1, #items)
    redis.call(cmd, key, unpack(items, i, last))
    i = last + 1
  end
end

-- Decimal strings without leading zeros: compared exactly, never as doubles.
local function dec_greater(a, b)
  if #a ~= #b then
    return #a > #b
  end
  return a > b
end

local written = 0
for _, r in ipairs(records) do
  local key = KEYS[r.index]
  if r.index == fencing_index then
    for i = 1, #r.items, 2 do
      local cur = redis.call('HGET', key, r.items[i])
      if not cur or dec_greater(r.items[i + 1], cur) then
        redis.call('HSET', key, r.items[i], r.items[i + 1])
      end
    end
  elseif r.type == 'string' then
    redis.call('SET', key, r.value)
  elseif r.type == 'hash' then
    chunked('HSET', key, r.items, 2)
  elseif r.type == 'list' then
    chunked('RPUSH', key, r.items, 1)
  elseif r.type == 'set' then
    chunked('SADD', key, r.items, 1)
  elseif r.type == 'zset' then
    local args = {}
    for i = 1, #r.items, 2 do
      args[#args + 1] = r.items[i + 1]
      args[#args + 1] = r.items[i]
    end
    chunked('ZADD', key, args, 2)
  elseif r.type == 'stream' then
    if #r.entries == 0 then
      -- An empty stream still exists as a key: add a placeholder at the last id and delete it again.
      local id = r.last
      if id == '0-0' then
        id = '0-1'
      end
      redis.call('XADD', key, id, 'x', '')
      redis.call('XDEL', key, id)
    end
    for _, e in ipairs(r.entries) do
      redis.call('XADD', key, e.id, unpack(e.fields))
    end
    local ok
    if r.added ~= '' and r.max_deleted ~= '' then
      ok = redis.pcall('XSETID', key, r.last, 'ENTRIESADDED', r.added, 'MAXDELETEDID', r.max_deleted)
    end
    if not ok or type(ok) == 'table' and ok['err'] then
      redis.pcall('XSETID', key, r.last)
    end
  end
  if r.pttl > 0 then
    redis.call('PEXPIRE', key, r.pttl)
  end
  written = written + 1
end
return { 'ok', written }

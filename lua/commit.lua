-- commit_runtime_state (contract §2.3): one atomic turn. Checks run in the contract's order and all of them
-- precede the first write, so any refusal leaves Redis untouched. Cost is O(delta): nothing here walks the graph.
-- KEYS: 1 schema, 2 head, 3 nodes, 4 node_order, 5 tombstones, 6 blobs, 7 ledger, 8 ledger_order, 9 turns,
--       10 events, 11 leases, 12 att, 13 att_committed, 14 att_uncommitted, 15 q_batches, 16 q_state,
--       17 q_source, 18 q_srcof, 19 q_claims, 20 q_all:<sid>, 21 q_ready:<sid>, 22 q_delayed:<sid>,
--       23 q_held:<sid>, 24 q_meta
-- ARGV (read in order, see sessionfence.codec.commit_call)
-- Reply: {'ok', head_revision} or {'replay', stored turn record JSON}
local i = 0
local function nxt()
  i = i + 1
  return ARGV[i]
end

local err = schema_check(KEYS[1])
if err then
  return err
end

local now = now_ms(nxt())
local bound, sid = nxt(), nxt()
local stamp = nxt() == '1'
local stamp_field, stamp_sid, stamp_tid, stamp_hash, record_prefix = nxt(), nxt(), nxt(), nxt(), nxt()
local fence = nxt() == '1'
local f_sid, f_owner, f_token, f_fencing = nxt(), nxt(), nxt(), nxt()
local release = nxt() == '1'
local r_sid, r_owner, r_token, r_fencing = nxt(), nxt(), nxt(), nxt()
local expected = nxt()
local mode, leaf_present, leaf = nxt(), nxt() == '1', nxt()
local config, frames, current_frame, checkpoint_ref = nxt(), nxt(), nxt(), nxt()

-- 2. Binding: the factory's pre-binding, then the durable binding of the head.
if bound ~= '' and bound ~= sid then
  return fail('BINDING', bound, sid)
end
local head
head, err = read(KEYS[2], 'hash', 'HMGET', 'session_id', 'head_revision', 'schema_version')
if err then
  return err
end
if head[3] and head[3] ~= SCHEMA then
  return fail('SCHEMA', 'session_head', head[3])
end
if head[1] and head[1] ~= sid then
  return fail('BINDING', head[1], sid)
end
-- 3. Stamp session.
if stamp and stamp_sid ~= sid then
  return fail('TURN_CONFLICT', stamp_sid, stamp_tid)
end
-- 4. Replay lookup: the same hash returns the stored result and writes nothing but an included release.
if stamp then
  local record
  record, err = read(KEYS[9], 'hash', 'HGET', stamp_field)
  if err then
    return err
  end
  if record then
    local ok, decoded = pcall(cjson.decode, record)
    if not ok or type(decoded) ~= 'table' then
      return fail('CORRUPT', KEYS[9], 'turn record of ' .. stamp_tid .. ' does not decode')
    end
    if decoded['turn_commit_hash'] ~= stamp_hash then
      return fail('TURN_CONFLICT', sid, stamp_tid)
    end
    if release then
      err = lease_release(KEYS[11], r_sid, r_owner, r_token, r_fencing)
      if err then
        return err
      end
    end
    return { 'replay', record }
  end
end
-- 5. Lease fence: a release alone does not authorize a commit.
if not fence then
  return fail('LEASE_EXPIRED', sid)
end
local fenced
fenced, err = fence_ok(KEYS[11], sid, f_sid, f_owner, f_token, f_fencing, now)
if err then
  return err
end
if not fenced then
  return fail('LEASE_EXPIRED', sid)
end
-- 6. Head CAS (revisions are compared as the decimal strings Redis keeps, never as doubles).
local actual = head[2] or '0'
if expected ~= '' and expected ~= actual then
  return fail('HEAD_CONFLICT', expected, actual)
end

-- Variable-length sections.
local blobs = {}
for _ = 1, tonumber(nxt()) do
  blobs[#blobs + 1] = { nxt(), nxt() }
end
local usage = {}
for _ = 1, tonumber(nxt()) do
  usage[#usage + 1] = { nxt(), nxt(), nxt(), nxt(), nxt() }
end
local nodes = {}
for _ = 1, tonumber(nxt()) do
  nodes[#nodes + 1] = { nxt(), nxt() }
end
local qk = {
  batches = KEYS[15], state = KEYS[16], source = KEYS[17], srcof = KEYS[18], meta = KEYS[24],
  all = KEYS[20], ready = KEYS[21], delayed = KEYS[22], held = KEYS[23],
}
local done_batches, done_claims, seen_batch = {}, {}, {}
-- 7. Queue completions, judged against the state before this commit; claim expiry is not checked.
for _ = 1, tonumber(nxt()) do
  local c_sid, c_cid, c_token, k = nxt(), nxt(), nxt(), tonumber(nxt())
  local named, named_count, bad = {}, 0, c_sid ~= sid
  for _ = 1, k do
    local b = nxt()
    if named[b] then
      bad = true
    else
      named[b] = true
      named_count = named_count + 1
    end
    if not bad then
      local st
      st, err = qstate_get(KEYS[16], b)
      if err then
        return err
      end
      if not st or st.cid ~= c_cid or st.token ~= c_token or not redis.call('ZSCORE', KEYS[20], b) then
        bad = true
      end
    end
  end
  if not bad then
    local carriers
    carriers, err = claim_carriers(qk, KEYS[19], c_cid, c_token)
    if err then
      return err
    end
    if #carriers ~= named_count then
      bad = true
    end
  end
  if bad then
    return fail('CLAIM_EXPIRED', c_sid, c_cid)
  end
  for b in pairs(named) do
    if not seen_batch[b] then
      seen_batch[b] = true
      done_batches[#done_batches + 1] = b
    end
  end
  done_claims[c_cid] = true
end
local atts = {}
for _ = 1, tonumber(nxt()) do
  atts[#atts + 1] = nxt()
end
local event_turn = nxt()

-- 8. Node collisions: a stored id (live, or tombstoned and not yet vacuumed) cannot be appended again.
if mode == 'A' and #nodes > 0 then
  local ids = {}
  for n = 1, #nodes do
    ids[n] = nodes[n][1]
  end
  local found
  found, err = read(KEYS[3], 'hash', 'HMGET', unpack(ids))
  if err then
    return err
  end
  for n = 1, #nodes do
    if found[n] then
      return fail('NODE_EXISTS', nodes[n][1])
    end
  end
end
-- Ledger sums must stay inside int64; judged (with margin) before writing so HINCRBY cannot fail midway.
local running = {}
for u = 1, #usage do
  local key = usage[u][1]
  local stored
  stored, err = read(KEYS[7], 'hash', 'HMGET', key .. '\0' .. 2, key .. '\0' .. 3, key .. '\0' .. 4, key .. '\0' .. 5)
  if err then
    return err
  end
  for f = 2, 5 do
    local field = key .. '\0' .. f
    local cur = running[field] or tonumber(stored[f - 1] or '0')
    cur = cur + tonumber(usage[u][f])
    if cur > 9.2e18 or cur < -9.2e18 then
      return fail('CORRUPT', KEYS[7], 'token usage ledger would overflow 64-bit integers')
    end
    running[field] = cur
  end
end
-- Attachment rows to stamp (15), read before any write because decoding may fail.
local stamp_atts = {}
for a = 1, #atts do
  local row
  row, err = read(KEYS[12], 'hash', 'HGET', atts[a])
  if err then
    return err
  end
  if row and redis.call('HEXISTS', KEYS[13], atts[a]) == 0 then
    local ok, decoded = pcall(cjson.decode, row)
    if not ok or type(decoded) ~= 'table' then
      return fail('CORRUPT', KEYS[12], 'attachment row ' .. atts[a] .. ' does not decode')
    end
    if tostring(decoded['schema_version']) ~= SCHEMA then
      return fail('SCHEMA', 'attachment_manifest_entry', tostring(decoded['schema_version']))
    end
    if decoded['session_id'] == sid then
      stamp_atts[#stamp_atts + 1] = atts[a]
    end
  end
end

-- Keys this commit writes without reading them first: refuse a wrong type now, not halfway through.
local writes = { KEYS[3], 'hash', KEYS[5], 'set', KEYS[6], 'hash', KEYS[10], 'stream' }
if mode ~= 'U' then
  writes[#writes + 1], writes[#writes + 2] = KEYS[4], 'stream'
end
if #usage > 0 then
  writes[#writes + 1], writes[#writes + 2] = KEYS[8], 'list'
end
if #stamp_atts > 0 then
  for _, x in ipairs({ KEYS[13], 'hash', KEYS[14], 'zset' }) do
    writes[#writes + 1] = x
  end
end
if #done_batches > 0 then
  for _, x in ipairs({ KEYS[15], 'hash', KEYS[17], 'hash', KEYS[18], 'hash', KEYS[19], 'hash', KEYS[21], 'zset',
    KEYS[22], 'zset', KEYS[23], 'zset', KEYS[24], 'hash' }) do
    writes[#writes + 1] = x
  end
end
err = guard_all(writes)
if err then
  return err
end

-- ---- effects ------------------------------------------------------------------------------------------
-- 9. Content-addressed blobs: written at most once.
for b = 1, #blobs do
  redis.call('HSETNX', KEYS[6], blobs[b][1], blobs[b][2])
end
-- 10. Usage, merged by (source, model) in order of first appearance.
for u = 1, #usage do
  local key = usage[u][1]
  if redis.call('HSETNX', KEYS[7], key .. '\0n', '1') == 1 then
    redis.call('RPUSH', KEYS[8], key)
  end
  for f = 2, 5 do
    redis.call('HINCRBY', KEYS[7], key .. '\0' .. f, usage[u][f])
  end
end
-- 11. Graph.
if mode == 'R' then
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
end
if mode ~= 'U' then
  for n = 1, #nodes do
    local entry = redis.call('XADD', KEYS[4], '*', 'n', nodes[n][1])
    redis.call('HSET', KEYS[3], nodes[n][1], entry .. ' ' .. nodes[n][2])
  end
end
-- 12. Live node count, O(1).
local count = redis.call('HLEN', KEYS[3]) - redis.call('SCARD', KEYS[5])
-- 13. Head. Revisions stay far below 2^53, where doubles are exact.
local rev_s = fmt(tonumber(actual) + 1)
if leaf_present then
  redis.call('HSET', KEYS[2], 'schema_version', SCHEMA, 'session_id', sid, 'head_revision', rev_s, 'config', config,
    'agent_frames', frames, 'current_agent_frame_id', current_frame, 'checkpoint_ref', checkpoint_ref,
    'graph_node_count', count, 'leaf_node_id', leaf)
else
  redis.call('HSET', KEYS[2], 'schema_version', SCHEMA, 'session_id', sid, 'head_revision', rev_s, 'config', config,
    'agent_frames', frames, 'current_agent_frame_id', current_frame, 'checkpoint_ref', checkpoint_ref,
    'graph_node_count', count)
  redis.call('HDEL', KEYS[2], 'leaf_node_id')
end
-- 14. Completed batches.
for b = 1, #done_batches do
  qbatch_delete(qk, done_batches[b])
end
for cid in pairs(done_claims) do
  redis.call('HDEL', KEYS[19], cid)
end
-- 15. Attachments: the first commit time wins.
for a = 1, #stamp_atts do
  redis.call('HSET', KEYS[13], stamp_atts[a], fmt(now))
  redis.call('ZREM', KEYS[14], stamp_atts[a])
end
-- 16. Turn record, never expiring.
if stamp then
  redis.call('HSET', KEYS[9], stamp_field, record_prefix .. rev_s .. ',"committed_at_ms":' .. fmt(now) .. '}')
end
-- 17. Release: a stale release never vetoes the commit.
if release then
  lease_release(KEYS[11], r_sid, r_owner, r_token, r_fencing)
end
-- The commit event log a watcher follows with XREAD; capped, never needed for correctness.
redis.call('XADD', KEYS[10], 'MAXLEN', '~', '10000', '*', 'rev', rev_s, 'turn', event_turn, 'mode', mode,
  'nodes', tostring(#nodes), 'leaf', leaf_present and leaf or '', 'at', fmt(now))
schema_mark(KEYS[1])
return { 'ok', rev_s }

-- Queued-work helpers shared by the queue scripts and the commit (contract §2.6-§2.11).
-- Batch claim state, one hash field per batch:
--   '<schema> <claim_fencing> <claimed_at> <expires_at> <claim_id> <claim_token> <owner>'
-- An unclaimed batch has claim_id and token '-' (a real claim id always starts with 'qwc:').
local function qstate_get(key, batch_id)
  local v, err = read(key, 'hash', 'HGET', batch_id)
  if err then
    return nil, err
  end
  if not v then
    return nil, nil
  end
  local ver, fencing, claimed, expires, cid, token, owner =
    string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%S+) (%S+) (.*)$')
  if not ver then
    return nil, fail('CORRUPT', key, 'claim state of batch ' .. batch_id .. ' does not parse')
  end
  if ver ~= SCHEMA then
    return nil, fail('SCHEMA', 'queued_work_batch', ver)
  end
  return { fencing = fencing, claimed = claimed, expires = expires, cid = cid, token = token, owner = owner }, nil
end

local function qstate_put(key, batch_id, st)
  redis.call('HSET', key, batch_id, SCHEMA .. ' ' .. st.fencing .. ' ' .. st.claimed .. ' ' .. st.expires .. ' '
    .. st.cid .. ' ' .. st.token .. ' ' .. st.owner)
end

-- Delete a batch with its items, claim state, source-key entry and index entries.
-- qk = {batches, state, source, srcof, meta, all, ready, delayed, held}
local function qbatch_delete(qk, batch_id)
  local src = redis.call('HGET', qk.srcof, batch_id)
  if src then
    if redis.call('HGET', qk.source, src) == batch_id then
      redis.call('HDEL', qk.source, src)
    end
    redis.call('HDEL', qk.srcof, batch_id)
  end
  redis.call('HDEL', qk.batches, batch_id)
  redis.call('HDEL', qk.state, batch_id)
  redis.call('HDEL', qk.meta, batch_id)
  redis.call('ZREM', qk.all, batch_id)
  redis.call('ZREM', qk.ready, batch_id)
  redis.call('ZREM', qk.delayed, batch_id)
  redis.call('ZREM', qk.held, batch_id)
end

-- The batches that still carry (claim_id, token), found through the claim's recorded batch list.
-- q_claims: claim_id -> '<token> <batch_id> <batch_id> ...'
local function claim_carriers(qk, claims_key, cid, token)
  local out = {}
  local entry = redis.call('HGET', claims_key, cid)
  if not entry then
    return out, nil
  end
  local first = true
  for word in string.gmatch(entry, '%S+') do
    if first then
      first = false
      if word ~= token then
        return out, nil
      end
    else
      local st, err = qstate_get(qk.state, word)
      if err then
        return nil, err
      end
      if st and st.cid == cid and st.token == token then
        out[#out + 1] = word
      end
    end
  end
  return out, nil
end

-- Immutable per-batch facts the claim selection reads without decoding JSON:
--   '<enqueue_seq> <available_at_ms> <enqueued_at_ms> <delivery E|A> <slot J|X> <merge key JSON>'
local function qmeta_get(key, batch_id)
  local v = redis.call('HGET', key, batch_id)
  if not v then
    return nil
  end
  local seq, avail, at, d, s, merge = string.match(v, '^(%d+) (%d+) (%d+) (%a) (%a) (.*)$')
  if not seq then
    return nil
  end
  return { seq = seq, avail = avail, at = at, d = d, s = s, merge = merge }
end

-- Make the ready index current: delayed batches whose time has come and claims that lapsed untaken become
-- claimable again. Amortized O(moved * log n): each batch moves once per delay or claim.
local function qpromote(qk, now)
  local due = redis.call('ZRANGEBYSCORE', qk.delayed, '-inf', fmt(now))
  for d = 1, #due do
    redis.call('ZREM', qk.delayed, due[d])
    redis.call('ZADD', qk.ready, redis.call('ZSCORE', qk.all, due[d]), due[d])
  end
  local lapsed = redis.call('ZRANGEBYSCORE', qk.held, '-inf', fmt(now))
  for d = 1, #lapsed do
    redis.call('ZREM', qk.held, lapsed[d])
    redis.call('ZADD', qk.ready, redis.call('ZSCORE', qk.all, lapsed[d]), lapsed[d])
  end
end

-- Drop a claim's batch list once no batch carries the claim any more.
local function qclaim_forget_if_empty(qk, claims_key, cid, token)
  if cid == '-' then
    return nil
  end
  local carriers, err = claim_carriers(qk, claims_key, cid, token)
  if err then
    return err
  end
  if #carriers == 0 then
    redis.call('HDEL', claims_key, cid)
  end
  return nil
end

-- Reply row of one batch: {batch JSON, meta string}; Python assembles the QueuedWorkBatch.
local function qbatch_row(qk, batch_id)
  return { redis.call('HGET', qk.batches, batch_id) or '', redis.call('HGET', qk.meta, batch_id) or '' }
end

-- Every queue script takes the same KEYS, so their layout is written once (sessionfence.codec.queue_keys):
-- 1 schema, 2 leases, 3 q_seq, 4 q_batches, 5 q_state, 6 q_source, 7 q_srcof, 8 q_meta, 9 q_claims,
-- 10 q_sessions, 11 q_all:<sid>, 12 q_ready:<sid>, 13 q_delayed:<sid>, 14 q_held:<sid>
local function queue_keys()
  local err = schema_check(KEYS[1]) or guard_all({
    KEYS[2], 'hash', KEYS[3], 'string', KEYS[4], 'hash', KEYS[5], 'hash', KEYS[6], 'hash', KEYS[7], 'hash',
    KEYS[8], 'hash', KEYS[9], 'hash', KEYS[10], 'set', KEYS[11], 'zset', KEYS[12], 'zset', KEYS[13], 'zset',
    KEYS[14], 'zset',
  })
  return {
    leases = KEYS[2], seq = KEYS[3], batches = KEYS[4], state = KEYS[5], source = KEYS[6], srcof = KEYS[7],
    meta = KEYS[8], claims = KEYS[9], sessions = KEYS[10], all = KEYS[11], ready = KEYS[12],
    delayed = KEYS[13], held = KEYS[14],
  }, err
end

-- A claim returns batches that Python decodes after the claim is written, so a batch record that cannot
-- decode must be refused here, before any write. Records written by sessionfence start with this prefix;
-- anything else is decoded once to tell a foreign schema version from plain corruption.
local BATCH_PREFIX = '{"schema_version":' .. SCHEMA .. ','
local function qbatch_check(key, batch_id)
  local raw, err = read(key, 'hash', 'HGET', batch_id)
  if err then
    return err
  end
  if raw and string.sub(raw, 1, #BATCH_PREFIX) == BATCH_PREFIX then
    return nil
  end
  local ok, decoded = pcall(cjson.decode, raw or '')
  if not ok or type(decoded) ~= 'table' or decoded['schema_version'] == nil then
    return fail('CORRUPT', key, 'batch ' .. batch_id .. ' is not a valid batch record')
  end
  if tostring(decoded['schema_version']) ~= SCHEMA then
    return fail('SCHEMA', 'queued_work_batch', tostring(decoded['schema_version']))
  end
  return nil
end

-- claim_ready_queued_work and claim_ready_queued_work_by_batch_ids (contract §2.7, §2.8) in one atomic step.
-- Candidates come from the ready index in enqueue order, a page at a time: O(log n + k) for k selected.
-- KEYS: the queue layout (lib/queue.lua)
-- ARGV: now, session_id, fence session, fence owner, fence token, fence fencing, owner_id,
--       boundary C|I, lease_ttl_ms, max_batches, claim token, exact id count n, ids...
-- Reply: false, or {claim_id, fencing_token, claimed_at, expires_at, {{batch JSON, meta}...}}
local qk, err = queue_keys()
if err then
  return err
end
local now = now_ms(ARGV[1])
local sid = ARGV[2]
local ok
ok, err = fence_ok(qk.leases, sid, ARGV[3], ARGV[4], ARGV[5], ARGV[6], now)
if err then
  return err
end
if not ok then
  return fail('LEASE_EXPIRED', sid)
end
local owner, boundary, ttl, max, token = ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10]), ARGV[11]
local exact = {}
for e = 1, tonumber(ARGV[12]) do
  exact[e] = ARGV[12 + e]
end
qpromote(qk, now)

-- Selection (lash select_claim_prefix): head-of-line gate, exclusive alone, or a run of joinable batches.
local selected, first = {}, nil
local offset, page, done = 0, 64, false
while not done do
  local ids = redis.call('ZRANGE', qk.ready, offset, offset + page - 1)
  if #ids == 0 then
    break
  end
  offset = offset + #ids
  for n = 1, #ids do
    local m = qmeta_get(qk.meta, ids[n])
    if not m then
      return fail('CORRUPT', qk.meta, 'batch ' .. ids[n] .. ' has no queue facts')
    end
    -- The index was sorted by earlier operations' clocks; if the clock went back since, a row may be not yet
    -- available or still live-claimed at this `now`: skip it (never a barrier) rather than steal it.
    local cur
    cur, err = qstate_get(qk.state, ids[n])
    if err then
      return err
    end
    if tonumber(m.avail) > now or (cur and cur.cid ~= '-' and tonumber(cur.expires) > now) then
      -- not a candidate at this `now`
    elseif not first then
      if boundary == 'C' and m.d ~= 'E' then
        return false
      end
      first = m
      selected[1] = ids[n]
      if m.s == 'X' then
        done = true
        break
      end
    elseif #selected < max and m.s == 'J' and m.d == first.d and m.merge == first.merge then
      selected[#selected + 1] = ids[n]
    else
      done = true
      break
    end
    if #selected >= max then
      done = true
      break
    end
  end
end
if not first then
  return false
end

local states = {}
for n = 1, #selected do
  local st
  st, err = qstate_get(qk.state, selected[n])
  if err then
    return err
  end
  states[n] = st
  err = qbatch_check(qk.batches, selected[n])
  if err then
    return err
  end
end
local fencing = fmt(tonumber(states[1].fencing) + 1)
local cid = 'qwc:' .. first.seq .. ':' .. fencing

-- An exact claim that selected other ids is abandoned at once: counters advance, nothing stays claimed.
local rejected = #exact > 0 and #exact ~= #selected
if #exact > 0 and not rejected then
  for n = 1, #selected do
    if selected[n] ~= exact[n] then
      rejected = true
    end
  end
end

local expires = fmt(expiry(now, ttl))
local rows = {}
for n = 1, #selected do
  local st, id = states[n], selected[n]
  local old_cid, old_token = st.cid, st.token
  st.fencing = fmt(tonumber(st.fencing) + 1)
  if rejected then
    st.claimed, st.expires, st.cid, st.token, st.owner = '0', '0', '-', '-', ''
  else
    st.claimed, st.expires, st.cid, st.token, st.owner = fmt(now), expires, cid, token, owner
    redis.call('ZREM', qk.ready, id)
    redis.call('ZADD', qk.held, expires, id)
    rows[#rows + 1] = qbatch_row(qk, id)
  end
  qstate_put(qk.state, id, st)
  err = qclaim_forget_if_empty(qk, qk.claims, old_cid, old_token)
  if err then
    return err
  end
end
schema_mark(KEYS[1])
if rejected then
  return false
end
redis.call('HSET', qk.claims, cid, token .. ' ' .. table.concat(selected, ' '))
return { cid, fencing, fmt(now), expires, rows }

-- cancel_queued_work_batch (contract §2.10): only a claimable batch of this session is removed.
-- KEYS: the queue layout (lib/queue.lua)
-- ARGV: now, session_id, batch_id
-- Reply: false, or {batch JSON, meta}
local qk, err = queue_keys()
if err then
  return err
end
local now = now_ms(ARGV[1])
local id = ARGV[3]
if not redis.call('ZSCORE', qk.all, id) then
  return false
end
local st
st, err = qstate_get(qk.state, id)
if err then
  return err
end
if not st then
  return fail('CORRUPT', qk.state, 'batch ' .. id .. ' has no claim state')
end
if st.cid ~= '-' and tonumber(st.expires) > now then
  return false
end
local row = qbatch_row(qk, id)
qbatch_delete(qk, id)
err = qclaim_forget_if_empty(qk, qk.claims, st.cid, st.token)
if err then
  return err
end
return row

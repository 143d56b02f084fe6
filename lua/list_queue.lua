-- list_queued_work / list_pending_queued_work (contract §2.11): every batch of the session in enqueue order,
-- pending excluding live claims. O(batches of the session), one snapshot.
-- KEYS: the queue layout (lib/queue.lua)
-- ARGV: now, session_id, pending '0'|'1'
local qk, err = queue_keys()
if err then
  return err
end
local now = now_ms(ARGV[1])
local pending = ARGV[3] == '1'
local out = {}
local ids = redis.call('ZRANGE', qk.all, 0, -1)
for n = 1, #ids do
  local keep = true
  if pending then
    local st
    st, err = qstate_get(qk.state, ids[n])
    if err then
      return err
    end
    keep = not st or st.cid == '-' or tonumber(st.expires) <= now
  end
  if keep then
    out[#out + 1] = qbatch_row(qk, ids[n])
  end
end
return out

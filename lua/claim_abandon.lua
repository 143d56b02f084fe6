-- abandon_queued_work_claim (contract §2.9): clears the claim on every batch still carrying it; fencing
-- counters stay. Matching nothing is not an error, so a stale holder cannot release a successor's claim.
-- KEYS: the queue layout (lib/queue.lua)
-- ARGV: session_id, claim_id, claim token
local qk, err = queue_keys()
if err then
  return err
end
local cid, token = ARGV[2], ARGV[3]
local carriers
carriers, err = claim_carriers(qk, qk.claims, cid, token)
if err then
  return err
end
local released = 0
for n = 1, #carriers do
  local id = carriers[n]
  local seq = redis.call('ZSCORE', qk.all, id)
  if seq then
    local st = qstate_get(qk.state, id)
    st.claimed, st.expires, st.cid, st.token, st.owner = '0', '0', '-', '-', ''
    qstate_put(qk.state, id, st)
    redis.call('ZREM', qk.held, id)
    redis.call('ZADD', qk.ready, seq, id)
    released = released + 1
  end
end
-- Forget the claim's batch list only when every carrier was released here: an abandon naming another
-- session matches nothing and must not drop the real claim's list (renew and completion need it).
if #carriers > 0 and released == #carriers then
  redis.call('HDEL', qk.claims, cid)
end
return released

-- renew_queued_work_claim (contract §2.9): all-or-nothing; a lapsed claim nobody took over is revived.
-- KEYS: the queue layout (lib/queue.lua)
-- ARGV: now, session_id, claim_id, claim token, lease_ttl_ms, batch count
-- Reply: the new expires_at
local qk, err = queue_keys()
if err then
  return err
end
local now = now_ms(ARGV[1])
local sid, cid, token = ARGV[2], ARGV[3], ARGV[4]
local carriers
carriers, err = claim_carriers(qk, qk.claims, cid, token)
if err then
  return err
end
local mine = {}
for n = 1, #carriers do
  if redis.call('ZSCORE', qk.all, carriers[n]) then
    mine[#mine + 1] = carriers[n]
  end
end
if #mine ~= tonumber(ARGV[6]) then
  return fail('CLAIM_EXPIRED', sid, cid)
end
local expires = fmt(expiry(now, ARGV[5]))
for n = 1, #mine do
  local st = qstate_get(qk.state, mine[n])
  st.expires = expires
  qstate_put(qk.state, mine[n], st)
  redis.call('ZREM', qk.ready, mine[n])
  redis.call('ZADD', qk.held, expires, mine[n])
end
schema_mark(KEYS[1])
return expires

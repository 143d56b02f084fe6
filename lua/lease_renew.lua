-- renew_session_execution_lease (contract §2.2). May move the expiry earlier; token and fencing unchanged.
-- KEYS: schema, leases
-- ARGV: now, session_id, owner_id, lease_token, fencing_token, lease_ttl_ms
-- Reply: {claimed_at, expires_at}
local err = schema_check(KEYS[1]) -- the lease row is read (type-checked) before any write
if err then
  return err
end
local now = now_ms(ARGV[1])
local sid = ARGV[2]
local ok
ok, err = fence_ok(KEYS[2], sid, sid, ARGV[3], ARGV[4], ARGV[5], now)
if err then
  return err
end
if not ok then
  return fail('LEASE_EXPIRED', sid)
end
local row = lease_get(KEYS[2], sid)
local e = fmt(expiry(now, ARGV[6]))
lease_put(KEYS[2], sid, row.fencing, row.claimed, e, row.owner)
return { row.claimed, e }

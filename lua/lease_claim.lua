-- try_claim_session_execution_lease (contract §2.2). No re-entry: a live row refuses every caller.
-- KEYS: schema, leases, fencing
-- ARGV: now, session_id, owner_id, lease_ttl_ms
-- Reply: false when the lane is held, else {fencing_token, claimed_at, expires_at}
-- Every key is read (with its type checked by read()) before the one write, so no TYPE guards are needed.
local err = schema_check(KEYS[1])
if err then
  return err
end
local now = now_ms(ARGV[1])
local sid, owner = ARGV[2], ARGV[3]
local row
row, err = lease_get(KEYS[2], sid)
if err then
  return err
end
if row and lease_live(row, now) then
  return false
end
-- The high-water mark lives in its own hash so it survives release, expiry and delete_session.
local fencing
fencing, err = read(KEYS[3], 'hash', 'HINCRBY', sid, 1)
if err then
  return err
end
if row and tonumber(row.fencing) >= fencing then
  fencing = redis.call('HINCRBY', KEYS[3], sid, tonumber(row.fencing) - fencing + 1)
end
local f, c, e = fmt(fencing), fmt(now), fmt(expiry(now, ARGV[4]))
lease_put(KEYS[2], sid, f, c, e, owner)
schema_mark(KEYS[1])
return { f, c, e }

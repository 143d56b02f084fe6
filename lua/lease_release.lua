-- release_session_execution_lease (contract §2.2). Expiry is not checked; a mismatch changes nothing.
-- KEYS: schema, leases
-- ARGV: session_id, owner_id, lease_token, fencing_token
local err = schema_check(KEYS[1]) -- the lease row is read (type-checked) before any write
if err then
  return err
end
err = lease_release(KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if err then
  return err
end
return 1

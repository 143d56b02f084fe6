-- sessionfence shared prelude: prepended to every operation script by sessionfence.scripts.
-- Scripts only compare and write. Opaque JSON arrives pre-encoded from Python and is stored verbatim:
-- Lua never re-encodes a payload (cjson would turn big integers into floats and [] into {}).
-- Errors are returned (never raised) as 'SF_<CODE> <json array of string args>' so that every refusal
-- happens before the first write and the client can map it to a typed StoreError.
local SCHEMA = '1'
local MAX_MS = 9007199254740991

local function fail(code, ...)
  return redis.error_reply('SF_' .. code .. ' ' .. cjson.encode({...}))
end

-- One clock reading per operation: the injected value from ARGV, else the server's TIME.
local function now_ms(arg)
  if arg ~= nil and arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers up to 2^53 print exactly with %.0f; tostring would use exponent notation.
local function fmt(n)
  return string.format('%.0f', n)
end

local function expiry(now, ttl)
  local e = now + tonumber(ttl)
  if e > MAX_MS then
    return MAX_MS
  end
  return e
end

-- The namespace schema marker (contract §1.14): absent or SCHEMA, anything else refuses the operation.
-- Writers call schema_mark() after their writes; it only writes when the marker was absent.
local schema_marked = false

local function schema_check(key)
  local v = redis.pcall('GET', key)
  if type(v) == 'table' and v.err then
    return fail('WRONGTYPE', key, redis.call('TYPE', key)['ok'], 'string')
  end
  if v and v ~= SCHEMA then
    return fail('SCHEMA', 'namespace', v)
  end
  schema_marked = v == SCHEMA
  return nil
end

local function schema_mark(key)
  if not schema_marked then
    redis.call('SET', key, SCHEMA)
    schema_marked = true
  end
end

-- A read that names its key when the key holds the wrong Redis type (instead of a bare WRONGTYPE).
local function read(key, want, cmd, ...)
  local r = redis.pcall(cmd, key, ...)
  if type(r) == 'table' and r.err then
    return nil, fail('WRONGTYPE', key, redis.call('TYPE', key)['ok'], want)
  end
  return r, nil
end

-- Refuse a key of the wrong Redis type before any write, so a planted key can never cause a partial write.
local function guard(key, want)
  local ty = redis.call('TYPE', key)['ok']
  if ty ~= 'none' and ty ~= want then
    return fail('WRONGTYPE', key, ty, want)
  end
  return nil
end

local function guard_all(spec)
  for i = 1, #spec, 2 do
    local err = guard(spec[i], spec[i + 1])
    if err then
      return err
    end
  end
  return nil
end

-- Session lease row: '<schema> <fencing> <claimed_at> <expires_at> <owner>'; owner '' means released.
-- The lease token is derived, never stored: '<session>:<owner>:<claimed_at>:<fencing>'.
local function lease_get(key, sid)
  local v, err = read(key, 'hash', 'HGET', sid)
  if err then
    return nil, err
  end
  if not v then
    return nil, nil
  end
  local ver, fencing, claimed, expires, owner = string.match(v, '^(%d+) (%d+) (%d+) (%d+) (.*)$')
  if not ver then
    return nil, fail('CORRUPT', key, 'lease row of session ' .. sid .. ' does not parse')
  end
  if ver ~= SCHEMA then
    return nil, fail('SCHEMA', 'session_execution_lease', ver)
  end
  return { fencing = fencing, claimed = claimed, expires = expires, owner = owner }, nil
end

local function lease_token(sid, row)
  return sid .. ':' .. row.owner .. ':' .. row.claimed .. ':' .. row.fencing
end

local function lease_live(row, now)
  return row.owner ~= '' and tonumber(row.expires) > now
end

local function lease_put(key, sid, fencing, claimed, expires, owner)
  redis.call('HSET', key, sid, SCHEMA .. ' ' .. fencing .. ' ' .. claimed .. ' ' .. expires .. ' ' .. owner)
end

-- Fence predicate (contract §2.2): the row exists, names this owner, token and fencing token, and is live.
local function fence_ok(key, sid, f_sid, f_owner, f_token, f_fencing, now)
  if f_sid ~= sid then
    return false, nil
  end
  local row, err = lease_get(key, sid)
  if err then
    return false, err
  end
  if not row or row.owner ~= f_owner or row.fencing ~= f_fencing or lease_token(sid, row) ~= f_token then
    return false, nil
  end
  return lease_live(row, now), nil
end

-- Release (contract §2.2): only an exact match clears the row; anything else is a silent no-op.
local function lease_release(key, sid, owner, token, fencing)
  local row, err = lease_get(key, sid)
  if err then
    return err
  end
  if row and row.owner == owner and row.fencing == fencing and lease_token(sid, row) == token then
    lease_put(key, sid, row.fencing, '0', '0', '')
  end
  return nil
end

-- sweep (a maintenance tool, not part of the contract): does a namespace still own anything, and which
-- sessions does its queue list? A namespace is alive while it holds a head, meta, queue sessions, lease rows,
-- fencing marks or attachment rows.
-- KEYS: schema, head, meta, q_sessions, leases, fencing, att
-- Reply: {alive 0|1, schema marker or '', q_sessions members, or false when q_sessions is not a set}
local alive = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]) > 0
local marker = ''
if redis.call('TYPE', KEYS[1])['ok'] == 'string' then
  marker = redis.call('GET', KEYS[1])
end
local sessions = false
local ty = redis.call('TYPE', KEYS[4])['ok']
if ty == 'set' then
  sessions = redis.call('SMEMBERS', KEYS[4])
elseif ty == 'none' then
  sessions = {}
end
return { alive and 1 or 0, marker, sessions }

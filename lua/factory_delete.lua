-- delete_session (contract §2.16): remove every key of the namespace except the fencing high-water marks.
-- The per-session queue keys are passed in KEYS after the fixed ones; if the set of queue sessions changed
-- since the client listed it, nothing is deleted and the client retries with the fresh list.
-- KEYS: q_sessions, fencing, <every other fixed key>, <per-session queue keys>
-- ARGV: the queue session ids the client saw, in any order
local seen = redis.call('SMEMBERS', KEYS[1])
if #seen ~= #ARGV then
  return 'retry'
end
local listed = {}
for a = 1, #ARGV do
  listed[ARGV[a]] = true
end
for s = 1, #seen do
  if not listed[seen[s]] then
    return 'retry'
  end
end
local removed = 0
for k = 1, #KEYS do
  if k ~= 2 then
    removed = removed + redis.call('UNLINK', KEYS[k])
  end
end
return removed

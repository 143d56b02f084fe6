-- export_namespace (admin, outside the contract; `sessionfence export`): a read-only, atomic snapshot of every
-- key of one namespace with its type, TTL and full contents, for backup and migration. Writes nothing.
-- The per-session queue keys are discovered by the client from q_sessions and passed in KEYS; if q_sessions
-- changed since the client read it, the reply is 'retry' and the client lists it again (like delete_session).
-- KEYS: the namespace's fixed keys (NamespaceKeys.fixed() order), then q_all, q_ready, q_delayed, q_held of
--       each queue session, in ARGV order
-- ARGV: 1 index of q_sessions in KEYS, 2.. the queue session ids the client saw
-- Reply: 'retry', or {TIME seconds, TIME micros, {{key index, type, pttl, contents}, ...}} for every existing
--        key, where contents is: string -> value; hash -> flat field/value list; list -> items; set -> members;
--        zset -> flat member/score list (scores as Redis prints them); stream -> {last id, max deleted id,
--        entries added, XRANGE - + reply} (the last two '' when the server does not report them)
local seen = redis.call('SMEMBERS', KEYS[tonumber(ARGV[1])])
if #seen ~= #ARGV - 1 then
  return 'retry'
end
local listed = {}
for a = 2, #ARGV do
  listed[ARGV[a]] = true
end
for s = 1, #seen do
  if not listed[seen[s]] then
    return 'retry'
  end
end

local function stream_contents(key)
  local info = redis.call('XINFO', 'STREAM', key)
  local last, max_deleted, added = '0-0', '', ''
  for i = 1, #info - 1, 2 do
    local name = info[i]
    if name == 'last-generated-id' then
      last = info[i + 1]
    elseif name == 'max-deleted-entry-id' then
      max_deleted = info[i + 1]
    elseif name == 'entries-added' then
      added = tostring(info[i + 1])
    end
  end
  return { last, max_deleted, added, redis.call('XRANGE', key, '-', '+') }
end

local out = {}
for k = 1, #KEYS do
  local key = KEYS[k]
  local ty = redis.call('TYPE', key)['ok']
  if ty ~= 'none' then
    local contents
    if ty == 'string' then
      contents = redis.call('GET', key)
    elseif ty == 'hash' then
      contents = redis.call('HGETALL', key)
    elseif ty == 'list' then
      contents = redis.call('LRANGE', key, 0, -1)
    elseif ty == 'set' then
      contents = redis.call('SMEMBERS', key)
    elseif ty == 'zset' then
      contents = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    elseif ty == 'stream' then
      contents = stream_contents(key)
    else
      return fail('CORRUPT', key, 'holds a ' .. ty .. ', which no sessionfence key is')
    end
    out[#out + 1] = { k, ty, redis.call('PTTL', key), contents }
  end
end
local t = redis.call('TIME')
return { t[1], t[2], out }

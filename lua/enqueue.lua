-- enqueue_queued_work (contract §2.6): dedup by (session, source key) against batches still stored.
-- KEYS: the queue layout (lib/queue.lua)
-- ARGV: now, session_id, source field ('' = no source key), batch_id, batch JSON, available_at_ms,
--       delivery E|A, slot J|X, merge key JSON
-- Reply: {'dup', batch JSON, meta} or {'new', batch JSON, meta}
local qk, err = queue_keys()
if err then
  return err
end
local now = now_ms(ARGV[1])
local sid, src, id = ARGV[2], ARGV[3], ARGV[4]
if src ~= '' then
  local existing = redis.call('HGET', qk.source, src)
  if existing and redis.call('HEXISTS', qk.batches, existing) == 1 then
    local row = qbatch_row(qk, existing)
    return { 'dup', row[1], row[2] }
  end
end
if redis.call('HEXISTS', qk.batches, id) == 1 then
  return fail('CORRUPT', qk.batches, 'batch id ' .. id .. ' is already stored')
end
local seq = fmt(redis.call('INCR', qk.seq))
local meta = seq .. ' ' .. ARGV[6] .. ' ' .. fmt(now) .. ' ' .. ARGV[7] .. ' ' .. ARGV[8] .. ' ' .. ARGV[9]
redis.call('HSET', qk.batches, id, ARGV[5])
redis.call('HSET', qk.meta, id, meta)
qstate_put(qk.state, id, { fencing = '0', claimed = '0', expires = '0', cid = '-', token = '-', owner = '' })
if src ~= '' then
  redis.call('HSET', qk.source, src, id)
  redis.call('HSET', qk.srcof, id, src)
end
redis.call('ZADD', qk.all, seq, id)
if tonumber(ARGV[6]) <= now then
  redis.call('ZADD', qk.ready, seq, id)
else
  redis.call('ZADD', qk.delayed, ARGV[6], id)
end
redis.call('SADD', qk.sessions, sid)
schema_mark(KEYS[1])
return { 'new', ARGV[5], meta }

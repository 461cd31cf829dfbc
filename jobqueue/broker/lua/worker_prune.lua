-- worker_prune.lua: remove a stale worker's records and put its in-flight job back, atomically.
--
-- The caller judged the worker stale from its heartbeat and read its in-flight job; both are
-- checked again here, so a worker that sent a heartbeat or moved to another job in the
-- meantime is left alone. The job goes back to the head of its queue (it was the oldest), or
-- to the front of its priority class, and its result (if any) back to READY.
--
-- KEYS[1]  <ns>:workers
-- KEYS[2]  <ns>:worker:<id>                  in-flight record
-- KEYS[3]  <ns>:worker:<id>:started
-- KEYS[4]  <ns>:workers:heartbeat
-- KEYS[5]  <ns>:stat:processed:<id>
-- KEYS[6]  <ns>:stat:failed:<id>
-- KEYS[7]  <ns>:jobqueue:worker:<id>         jobqueue's worker info hash
-- KEYS[8]  <ns>:queue:<q>                    the in-flight job's queue ("" key: no job)
-- KEYS[9]  <ns>:jobqueue:priority:<q>
-- KEYS[10] <ns>:queues
-- KEYS[11] <ns>:jobqueue:wake:<q>
-- KEYS[12] <ns>:jobqueue:result:<id>         the job's result hash ("" key: none)
-- ARGV[1]  worker id
-- ARGV[2]  the heartbeat value judged stale
-- ARGV[3]  the exact in-flight payload ("" = the worker held no job)
-- ARGV[4]  queue name of that job
-- ARGV[5]  priority score to requeue at ("" = plain Resque job)
-- ARGV[6]  marker that in-flight record must contain: its reservation token field
--          '"jq":"<token>"' ("": the payload, ARGV[3])
--
-- Returns 2 when pruned and its job requeued, 1 when pruned (no job), -1 when the heartbeat
-- changed (alive after all), -2 when its in-flight job changed.
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then
  return -1
end
local current = redis.call('GET', KEYS[2])
local marker = ARGV[6]
if not marker or marker == '' then
  marker = ARGV[3]
end
if ARGV[3] == '' then
  if current then return -2 end
elseif not current or not string.find(current, marker, 1, true) then
  return -2
end
local reply = 1
if ARGV[3] ~= '' then
  if ARGV[5] ~= '' then
    redis.call('ZADD', KEYS[9], tonumber(ARGV[5]), ARGV[3])
  else
    redis.call('LPUSH', KEYS[8], ARGV[3])
  end
  redis.call('SADD', KEYS[10], ARGV[4])
  redis.call('RPUSH', KEYS[11], '1')
  redis.call('LTRIM', KEYS[11], -64, -1)
  if KEYS[12] ~= '' and redis.call('EXISTS', KEYS[12]) == 1 then
    redis.call('HSET', KEYS[12], 'status', 'READY')
  end
  reply = 2
end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[5], KEYS[6], KEYS[7])
redis.call('HDEL', KEYS[4], ARGV[1])
return reply

-- requeue.lua: put an interrupted job back at the head of its queue, atomically.
--
-- Used when a worker is told to stop (TERM/INT) while a job runs: the job was not finished,
-- so it must run again rather than be lost or failed.
--
-- KEYS[1]  <ns>:worker:<id>                 in-flight record, deleted here
-- KEYS[2]  <ns>:queue:<q>                   LPUSH back to the head (it was the oldest)
-- KEYS[3]  <ns>:queues                      SADD q (the queue may have been removed)
-- KEYS[4]  <ns>:jobqueue:wake:<q>           one token so an idle worker wakes
-- KEYS[5]  <ns>:jobqueue:result:<id>        result hash, back to READY
-- ARGV[1]  the exact payload
-- ARGV[2]  queue name
-- ARGV[3]  error JSON to append to the result's errors ("" for none)
-- ARGV[4]  the job's priority score to requeue at ("" for a plain priority-0 job)
-- ARGV[5]  marker the in-flight record must contain: the reservation's token field
--          '"jq":"<token>"' ("": the exact payload, ARGV[1])
-- KEYS[6]  <ns>:jobqueue:priority:<q>       where a prioritised job goes back
--
-- Returns 1 when requeued, 0 when the job had already been acknowledged.
local current = redis.call('GET', KEYS[1])
local marker = ARGV[5]
if not marker or marker == '' then
  marker = ARGV[1]
end
if not current or not string.find(current, marker, 1, true) then
  return 0
end
redis.call('DEL', KEYS[1])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[6], tonumber(ARGV[4]), ARGV[1])
else
  redis.call('LPUSH', KEYS[2], ARGV[1])
end
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('RPUSH', KEYS[4], '1')
if redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('HSET', KEYS[5], 'status', 'READY')
  if ARGV[3] ~= '' then
    local errors = redis.call('HGET', KEYS[5], 'errors')
    local list = {}
    if errors and errors ~= '[]' then
      list = cjson.decode(errors)
    end
    table.insert(list, cjson.decode(ARGV[3]))
    redis.call('HSET', KEYS[5], 'errors', cjson.encode(list))
  end
end
return 1

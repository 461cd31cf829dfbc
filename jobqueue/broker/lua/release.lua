-- release.lua: put a worker's prefetched, not yet started jobs back at the head of their
-- queues, in order, atomically (a --no-fork worker that stops or pauses, or a dead one).
--
-- They never started: no attempt is counted, their results stay READY. A job with a
-- priority goes to the front of its priority class, as requeue.lua does.
--
-- KEYS[1]  <ns>:jobqueue:prefetch:<id>
-- ARGV[1]  the namespace prefix, "<ns>:" (queue keys are derived, as promote.lua does)
--
-- Returns the number of jobs put back.
local waiting = redis.call('LRANGE', KEYS[1], 0, -1)
for i = #waiting, 1, -1 do
  local entry = waiting[i]
  local record = cjson.decode(entry)
  local queue = tostring(record['queue'])
  local at = string.find(entry, '"payload":', 1, true)
  local payload = string.sub(entry, at + 10, -2)
  if type(record['payload']) == 'string' then
    payload = record['payload']  -- an undecodable entry, kept verbatim as a JSON string
  end
  local priority = type(record['payload']) == 'table' and tonumber(record['payload']['priority'])
  if priority and priority ~= 0 then
    redis.call('ZADD', ARGV[1] .. 'jobqueue:priority:' .. queue, (100 - priority) * 1e12,
      payload)
  else
    redis.call('LPUSH', ARGV[1] .. 'queue:' .. queue, payload)
  end
  redis.call('SADD', ARGV[1] .. 'queues', queue)
  redis.call('RPUSH', ARGV[1] .. 'jobqueue:wake:' .. queue, '1')
end
redis.call('DEL', KEYS[1])
return #waiting

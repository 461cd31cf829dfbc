-- delayed_act.lua: run a delayed job now, or delete it, addressed by its exact bytes.
--
-- resque-scheduler's layout: the item leaves its bucket and its reverse index, the bucket
-- and its schedule entry go when empty (as the scheduler's own clean-up does). "run" then
-- pushes the very same bytes onto the queue the item names, as promotion would.
--
-- KEYS[1]  <ns>:delayed_queue_schedule
-- KEYS[2]  <ns>:delayed:<ts>
-- KEYS[3]  <ns>:timestamps:<item>
-- ARGV[1]  mode: "run" or "delete"
-- ARGV[2]  the bucket's epoch second
-- ARGV[3]  the exact item
-- ARGV[4]  "<ns>:" key prefix (the target queue's keys and the result key are derived from
--          the item, as promote.lua does; standalone Redis only)
--
-- "delete" also deletes the job's result hash: no worker will ever run it.
--
-- Returns 1 when done, 0 when the item was no longer there, -1 when "run" was asked for an
-- item that names no queue (it is left in place).
local item = ARGV[3]
local prefix = ARGV[4]
local ok, job = pcall(cjson.decode, item)
if not ok or type(job) ~= 'table' then job = {} end
local queue = job['queue']
if type(queue) ~= 'string' or queue == '' then queue = nil end
if ARGV[1] == 'run' and not queue then
  return -1
end
if redis.call('LREM', KEYS[2], 1, item) == 0 then
  return 0
end
redis.call('SREM', KEYS[3], 'delayed:' .. ARGV[2])
if redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[1], ARGV[2])
end
local rkey = nil
if type(job['id']) == 'string' then
  rkey = prefix .. 'jobqueue:result:' .. job['id']
end
if ARGV[1] == 'delete' then
  if rkey then redis.call('DEL', rkey) end
  return 1
end
local priority = job['priority']
if type(priority) == 'number' and priority ~= 0 then
  local seq = redis.call('INCR', prefix .. 'jobqueue:priority-seq')
  redis.call('ZADD', prefix .. 'jobqueue:priority:' .. queue, (100 - priority) * 1e12 + seq, item)
else
  redis.call('RPUSH', prefix .. 'queue:' .. queue, item)
end
redis.call('SADD', prefix .. 'queues', queue)
redis.call('RPUSH', prefix .. 'jobqueue:wake:' .. queue, '1')
redis.call('LTRIM', prefix .. 'jobqueue:wake:' .. queue, -64, -1)
if rkey and redis.call('EXISTS', rkey) == 1 then
  redis.call('HDEL', rkey, 'run_after')
end
return 1

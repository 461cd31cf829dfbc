-- push.lua: enqueue one job and store its READY result, atomically, in one round trip.
--
-- Priority-0 jobs are plain Resque jobs (SADD queues + RPUSH queue:<q>, Ruby's own push).
-- Jobs with a non-zero priority go to a jobqueue-only sorted set, score
-- (100 - priority) * 1e12 + sequence: higher priorities first, FIFO among equals.
--
-- KEYS[1]  <ns>:queues
-- KEYS[2]  <ns>:queue:<q>
-- KEYS[3]  <ns>:jobqueue:wake:<q>          one wake-up token for an idle worker (last 64 kept)
-- KEYS[4]  <ns>:jobqueue:priority:<q>
-- KEYS[5]  <ns>:jobqueue:priority-seq
-- KEYS[6]  <ns>:jobqueue:result:<id>       ("" fields below = no result record)
-- ARGV[1]  queue name
-- ARGV[2]  payload
-- ARGV[3]  priority, -100..100 ("0" = plain Resque job)
-- ARGV[4]  "front": ahead of its priority class (a requeue); "" otherwise
-- ARGV[5]  result TTL in seconds
-- ARGV[6..] result hash field, value, field, value...
local priority = tonumber(ARGV[3])
if priority ~= 0 then
  local seq = 0
  if ARGV[4] ~= 'front' then
    seq = redis.call('INCR', KEYS[5])
  end
  redis.call('ZADD', KEYS[4], (100 - priority) * 1e12 + seq, ARGV[2])
else
  redis.call('RPUSH', KEYS[2], ARGV[2])
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], -64, -1)
if #ARGV > 5 then
  redis.call('HSET', KEYS[6], unpack(ARGV, 6))
  redis.call('EXPIRE', KEYS[6], tonumber(ARGV[5]))
end
return 1

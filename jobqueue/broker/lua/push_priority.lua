-- push_priority.lua: add a job with a non-zero priority to its queue's sorted set.
--
-- Score = (100 - priority) * 1e12 + sequence: lower scores run first, so higher priorities
-- come first and equal priorities keep FIFO order. Priority-0 jobs never come here: they
-- stay plain Resque jobs in <ns>:queue:<q>, which sits between positive and negative ones.
--
-- KEYS[1]  <ns>:jobqueue:priority:<q>    sorted set, member = exact payload
-- KEYS[2]  <ns>:jobqueue:priority-seq    counter
-- KEYS[3]  <ns>:queues                   SADD q
-- KEYS[4]  <ns>:jobqueue:wake:<q>        wake-up token
-- ARGV[1]  payload
-- ARGV[2]  priority (-100..100, not 0)
-- ARGV[3]  queue name
-- ARGV[4]  "front" to place the job ahead of its priority class (a requeue), else ""
local seq = 0
if ARGV[4] ~= 'front' then
  seq = redis.call('INCR', KEYS[2])
end
local score = (100 - tonumber(ARGV[2])) * 1e12 + seq
redis.call('ZADD', KEYS[1], score, ARGV[1])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('RPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], -64, -1)
return score

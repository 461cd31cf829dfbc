-- queue_clear.lua: empty one queue in one atomic step (resque-web's "clear", DEL queue:<q>).
--
-- The queue stays in <ns>:queues, as resque-web leaves it, so workers listening on a glob
-- keep seeing it; ARGV[2] = "forget" also removes it from the set.
--
-- KEYS[1]  <ns>:queue:<q>
-- KEYS[2]  <ns>:jobqueue:priority:<q>
-- KEYS[3]  <ns>:jobqueue:wake:<q>
-- KEYS[4]  <ns>:queues
-- ARGV[1]  queue name
-- ARGV[2]  "forget" to SREM the queue name too, "" to keep it
--
-- Returns the number of jobs removed.
local count = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if ARGV[2] == 'forget' then
  redis.call('SREM', KEYS[4], ARGV[1])
end
return count

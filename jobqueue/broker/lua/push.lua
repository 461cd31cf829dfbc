-- push.lua: enqueue jobs of one queue and priority, and their READY results, atomically, in
-- one round trip: one job (enqueue) or up to a thousand (enqueue_many), in order.
--
-- Priority-0 jobs are plain Resque jobs (SADD queues + RPUSH queue:<q>, Ruby's own push).
-- Jobs with a non-zero priority go to a jobqueue-only sorted set, score
-- (100 - priority) * 1e12 + sequence: higher priorities first, FIFO among equals.
--
-- KEYS[1]  <ns>:queues
-- KEYS[2]  <ns>:queue:<q>
-- KEYS[3]  <ns>:jobqueue:wake:<q>          wake-up tokens for idle workers (see below)
-- KEYS[4]  <ns>:jobqueue:priority:<q>
-- KEYS[5]  <ns>:jobqueue:priority-seq
-- ARGV[1]  queue name
-- ARGV[2]  priority, -100..100 ("0" = plain Resque jobs)
-- ARGV[3]  "front": ahead of their priority class (sequence 0); "" otherwise
-- ARGV[4]  result TTL in seconds
-- ARGV[5]  result key prefix, "<ns>:jobqueue:result:" (the result keys are derived here, as
--          promote.lua derives queue keys: standalone Redis only, like Resque itself)
-- ARGV[6]  n, the number of result field/value pairs every result gets
-- ARGV[7..6+2n]  those pairs (status READY, and queue or backend when not "default"...)
-- ARGV[7+2n..]   per job: result id ("" = no result record), payload
--
-- A result hash is its pairs plus "payload", the job's exact bytes, from which
-- payload.decode_result reads the task, args, kwargs, priority and enqueued_at.
-- Wake tokens: one per job, at most 64 per call; RPUSH returns the list's length, and past
-- 128 tokens (no worker takes them) the list is trimmed to the last 64, so the trim costs one
-- command per 64 pushes at most.
local priority = tonumber(ARGV[2])
local ttl = tonumber(ARGV[4])
local prefix = ARGV[5]
local shared = {}
for i = 7, 6 + 2 * tonumber(ARGV[6]) do
  shared[#shared + 1] = ARGV[i]
end
local payloads = {}
for i = 7 + #shared, #ARGV, 2 do
  local payload = ARGV[i + 1]
  payloads[#payloads + 1] = payload
  if ARGV[i] ~= '' then
    local rkey = prefix .. ARGV[i]
    redis.call('HSET', rkey, 'payload', payload, unpack(shared))
    redis.call('EXPIRE', rkey, ttl)
  end
end
local count = #payloads
if count == 0 then
  return 0
end
local step = 500
if priority ~= 0 then
  -- each job takes the next sequence number; 'front' jobs all take 0
  local last, stride = 0, 0
  if ARGV[3] ~= 'front' then
    last, stride = redis.call('INCRBY', KEYS[5], count) - count, 1
  end
  local base = (100 - priority) * 1e12 + last
  for first = 1, count, step do
    local members = {}
    for j = first, math.min(first + step - 1, count) do
      members[#members + 1] = base + j * stride
      members[#members + 1] = payloads[j]
    end
    redis.call('ZADD', KEYS[4], unpack(members))
  end
else
  for first = 1, count, step do
    redis.call('RPUSH', KEYS[2], unpack(payloads, first, math.min(first + step - 1, count)))
  end
end
redis.call('SADD', KEYS[1], ARGV[1])
local tokens = {}
for j = 1, math.min(count, 64) do
  tokens[j] = '1'
end
if redis.call('RPUSH', KEYS[3], unpack(tokens)) > 128 then
  redis.call('LTRIM', KEYS[3], -64, -1)
end
return count

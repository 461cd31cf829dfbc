-- promote.lua: move delayed jobs that are due onto their queues, exactly once.
--
-- resque-scheduler's layout, so Ruby's scheduler and node-resque can schedule jobs that
-- jobqueue promotes and the other way round. Any number of workers may call this at once:
-- the script is atomic, so each item moves exactly once. Time is the Redis server's clock.
--
-- KEYS[1]  <ns>:delayed_queue_schedule    zset of epoch seconds (member = score)
-- ARGV[1]  "<ns>:" key prefix (items name their own queue, so keys are derived here;
--          standalone Redis only, like Resque itself)
-- ARGV[2]  at most this many items per call (the caller calls again while it moves any)
-- ARGV[3]  failure record JSON up to and including '"payload":' for undecodable items
-- ARGV[4]  the rest of that record after the payload
-- ARGV[5]  "" to use the server clock, or epoch seconds to promote up to (test helpers make
--          future jobs due this way)
--
-- Returns {moved, next_due_seconds or -1}.
local prefix = ARGV[1]
local limit = tonumber(ARGV[2])
local now = tonumber(redis.call('TIME')[1])
if ARGV[5] ~= '' then
  now = tonumber(ARGV[5])
end
local moved = 0
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 50)
for _, ts in ipairs(due) do
  local bucket = prefix .. 'delayed:' .. ts
  while moved < limit do
    local item = redis.call('LPOP', bucket)
    if not item then break end
    moved = moved + 1
    redis.call('SREM', prefix .. 'timestamps:' .. item, 'delayed:' .. ts)
    local ok, job = pcall(cjson.decode, item)
    local queue = nil
    if ok and type(job) == 'table' and type(job['queue']) == 'string' and job['queue'] ~= '' then
      queue = job['queue']
    end
    local priority = 0
    if queue and type(job['priority']) == 'number' then
      priority = job['priority']
    end
    if queue and priority ~= 0 then
      local seq = redis.call('INCR', prefix .. 'jobqueue:priority-seq')
      redis.call('ZADD', prefix .. 'jobqueue:priority:' .. queue, (100 - priority) * 1e12 + seq,
        item)
      redis.call('SADD', prefix .. 'queues', queue)
      redis.call('RPUSH', prefix .. 'jobqueue:wake:' .. queue, '1')
      redis.call('LTRIM', prefix .. 'jobqueue:wake:' .. queue, -64, -1)
    elseif queue then
      redis.call('RPUSH', prefix .. 'queue:' .. queue, item)
      redis.call('SADD', prefix .. 'queues', queue)
      redis.call('RPUSH', prefix .. 'jobqueue:wake:' .. queue, '1')
      redis.call('LTRIM', prefix .. 'jobqueue:wake:' .. queue, -64, -1)
    else
      -- Never drop what we cannot read: record it as a failure, verbatim.
      redis.call('RPUSH', prefix .. 'failed', ARGV[3] .. cjson.encode(item) .. ARGV[4])
      redis.call('INCRBY', prefix .. 'stat:failed', 1)
    end
  end
  if redis.call('LLEN', bucket) == 0 then
    redis.call('ZREM', KEYS[1], ts)
  end
  if moved >= limit then break end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then
  return {moved, tonumber(nxt[2])}
end
return {moved, -1}

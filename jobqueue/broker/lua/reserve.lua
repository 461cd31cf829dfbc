-- reserve.lua: take the first job from a priority-ordered list of queues, atomically.
--
-- The pop and the in-flight record happen in one step, so a job is never only in a worker's
-- memory: Resque's `worker:<id>` key holds the exact payload until the job is acknowledged.
--
-- KEYS[1]          <ns>:worker:<id>            in-flight record (Resque's shape, plus
--                                              node-resque's "worker" field)
-- KEYS[2]          <ns>:pause-all-workers      "true" pauses every worker
-- KEYS[3..2+n]     <ns>:queue:<q>              queues, highest priority first
-- KEYS[3+n..2+2n]  <ns>:jobqueue:wake:<q>      wake-up tokens of the same queues
-- KEYS[3+2n..2+3n] <ns>:jobqueue:priority:<q>  jobs with a non-zero priority (see
--                  push.lua): positive ones run before the list, negative after
-- ARGV[1]          n, the number of queues
-- ARGV[2]          run_at, "YYYY-MM-DDTHH:MM:SSZ"
-- ARGV[3]          now, ISO 8601 with microseconds (result times)
-- ARGV[4]          worker id
-- ARGV[5]          result key prefix, "<ns>:jobqueue:result:"
-- ARGV[6..5+n]     each queue name JSON-encoded, parallel to the queue keys
--
-- Returns: false when nothing is queued; {0} when paused;
--          {index, payload, started_at, worker_ids_json} for a job;
--          {-1, payload, queue} when this worker already holds a job (a reply that was lost
--          to a dropped connection): that job is delivered again, never overwritten.
local n = tonumber(ARGV[1])
-- node-resque's worker name: the id "host:pid:queues" up to its second colon.
local first = string.find(ARGV[4], ':', 1, true)
local second = first and string.find(ARGV[4], ':', first + 1, true)
local name = second and string.sub(ARGV[4], 1, second - 1) or ARGV[4]
local held = redis.call('GET', KEYS[1])
if held then
  local at = string.find(held, '"payload":', 1, true)
  local record = cjson.decode(held)
  if at and type(record) == 'table' then
    return {-1, string.sub(held, at + 10, -2), tostring(record['queue'])}
  end
end
if redis.call('GET', KEYS[2]) == 'true' then
  return {0}
end
local split = 100 * 1e12  -- scores below this belong to positive priorities
for i = 1, n do
  local zkey = KEYS[2 + 2 * n + i]
  local top = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  local payload = nil
  if top[1] and tonumber(top[2]) < split then
    payload = top[1]
    redis.call('ZREM', zkey, payload)
  else
    payload = redis.call('LPOP', KEYS[2 + i])
    if not payload and top[1] then
      payload = top[1]
      redis.call('ZREM', zkey, payload)
    end
  end
  if payload then
    local ok, job = pcall(cjson.decode, payload)
    local valid = ok and type(job) == 'table'
    local embedded = payload
    if not valid then
      embedded = cjson.encode(payload)
    end
    -- payload.encode_working's bytes: node-resque's "worker" (host:pid) before the payload.
    redis.call('SET', KEYS[1], '{"queue":' .. ARGV[5 + i] .. ',"run_at":"' .. ARGV[2] ..
      '","worker":' .. cjson.encode(name) .. ',"payload":' .. embedded .. '}')
    local started, ids = false, false
    if valid and type(job['id']) == 'string' then
      local rkey = ARGV[5] .. job['id']
      if redis.call('EXISTS', rkey) == 1 then
        redis.call('HSETNX', rkey, 'started_at', ARGV[3])
        ids = redis.call('HGET', rkey, 'worker_ids')
        local list = {}
        if ids and ids ~= '[]' then
          list = cjson.decode(ids)
        end
        table.insert(list, ARGV[4])
        ids = cjson.encode(list)
        redis.call('HSET', rkey, 'status', 'RUNNING', 'last_attempted_at', ARGV[3],
          'worker_ids', ids)
        started = redis.call('HGET', rkey, 'started_at')
      end
    end
    return {i, payload, started, ids}
  end
end
-- Every queue is empty, so any token left is stale: drop them so idle workers sleep.
for i = 1, n do
  redis.call('DEL', KEYS[2 + n + i])
end
return false

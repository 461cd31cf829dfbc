-- reserve.lua: take the first job from a priority-ordered list of queues, atomically.
--
-- The pop and the in-flight record happen in one step, so a job is never only in a worker's
-- memory: Resque's `worker:<id>` key holds the exact payload until the job is acknowledged.
-- The record carries the caller's reservation token ("jq", see redis_tokens.py): the steps
-- that settle or start a job match it, so two jobs with equal bytes are told apart.
-- With a prefetch (a --no-fork worker), up to that many more jobs of the same queue are
-- reserved in the same step: they wait, in order, in the worker's prefetch list (in flight
-- too: a dead worker's list goes back to its queues), and start.lua starts each in turn.
--
-- KEYS[1]          <ns>:worker:<id>            in-flight record (Resque's shape, plus
--                                              node-resque's "worker" field)
-- KEYS[2]          <ns>:pause-all-workers      "true" pauses every worker
-- KEYS[3..2+n]     <ns>:queue:<q>              queues, highest priority first
-- KEYS[3+n..2+2n]  <ns>:jobqueue:wake:<q>      wake-up tokens of the same queues
-- KEYS[3+2n..2+3n] <ns>:jobqueue:priority:<q>  jobs with a non-zero priority (see
--                  push.lua): positive ones run before the list, negative after
-- KEYS[3+3n]       <ns>:jobqueue:prefetch:<id> reserved jobs waiting to start (same records)
-- ARGV[1]          n, the number of queues
-- ARGV[2]          run_at, "YYYY-MM-DDTHH:MM:SSZ" ("": Redis's clock, with ARGV[3])
-- ARGV[3]          now, ISO 8601 with microseconds (result times); with ARGV[2] "" both
--                  are taken from TIME when the script runs (a reserve queued behind a
--                  blocking wait runs when the wait ends, not when it was sent)
-- ARGV[4]          worker id
-- ARGV[5]          result key prefix, "<ns>:jobqueue:result:"
-- ARGV[6..5+n]     each queue name JSON-encoded, parallel to the queue keys
-- ARGV[6+n]        prefetch: how many more jobs to reserve (0: none)
-- ARGV[7+n]        reservation token, unique per call ([0-9a-f]; "": no token): the first
--                  job's record gets it, the k-th prefetched job's "<token>.<k>"
-- ARGV[8+n]        refill (optional; "" or absent: a plain reserve): the marker of the job
--                  the worker started in the same packet (start.lua, just before this call).
--                  Then every job taken waits in the prefetch list (the k-th with
--                  "<token>.<k>", k from 1, ARGV[6+n] of them), none goes to worker:<id>, and
--                  only if worker:<id> holds that job and the prefetch list is empty: a refill
--                  sent again after a dropped connection reserves nothing more.
--
-- Returns: false when nothing is queued; {0} when paused;
--          a refill: {-3} when worker:<id> does not hold the started job (nothing taken);
--          {-2, records...} when the prefetch list was not empty (what it holds); else
--          {index, then per job: payload, started_at, worker_ids_json};
--          {index, payload, started_at, worker_ids_json, then per prefetched job: payload,
--          started_at, worker_ids_json} for a job;
--          {-1, payload, queue, token (nil: none), prefetch records...} when this worker
--          already holds a job (a reply that was lost to a dropped connection): that job is
--          delivered again, never overwritten, with the jobs it had prefetched.
local n = tonumber(ARGV[1])
if ARGV[2] == '' then
  -- UTC civil date of the server's clock (days-from-civil inverted, H. Hinnant's algorithm).
  local t = redis.call('TIME')
  local secs, micros = tonumber(t[1]), tonumber(t[2])
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  local stamp = string.format('%04d-%02d-%02dT%02d:%02d:%02d', year, month, day,
    math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60)
  ARGV[2] = stamp .. 'Z'
  ARGV[3] = stamp .. string.format('.%06dZ', micros)
end
-- node-resque's worker name: the id "host:pid:queues" up to its second colon.
local first = string.find(ARGV[4], ':', 1, true)
local second = first and string.find(ARGV[4], ':', first + 1, true)
local name = second and string.sub(ARGV[4], 1, second - 1) or ARGV[4]
local prefetch_key = KEYS[3 + 3 * n]
local token = ARGV[7 + n]
local refill = ARGV[8 + n] or ''
local held = redis.call('GET', KEYS[1])
if refill ~= '' then
  if not held or not string.find(held, refill, 1, true) then
    return {-3}
  end
  local waiting = redis.call('LRANGE', prefetch_key, 0, -1)
  if #waiting > 0 then
    local reply = {-2}
    for _, entry in ipairs(waiting) do
      reply[#reply + 1] = entry
    end
    return reply
  end
  held = false
end
if held then
  local at = string.find(held, '"payload":', 1, true)
  local record = cjson.decode(held)
  if at and type(record) == 'table' then
    local held_token = record['jq']
    if type(held_token) ~= 'string' then
      held_token = false
    end
    local reply = {-1, string.sub(held, at + 10, -2), tostring(record['queue']), held_token}
    for _, waiting in ipairs(redis.call('LRANGE', prefetch_key, 0, -1)) do
      reply[#reply + 1] = waiting
    end
    return reply
  end
end
if redis.call('GET', KEYS[2]) == 'true' then
  return {0}
end
local split = 100 * 1e12  -- scores below this belong to positive priorities

-- The next job of queue i, in reserve order: positive priorities, the list, negative ones.
local function pop(i)
  local zkey = KEYS[2 + 2 * n + i]
  local top = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  if top[1] and tonumber(top[2]) < split then
    redis.call('ZREM', zkey, top[1])
    return top[1]
  end
  local payload = redis.call('LPOP', KEYS[2 + i])
  if not payload and top[1] then
    redis.call('ZREM', zkey, top[1])
    payload = top[1]
  end
  return payload
end

-- The in-flight record of a payload with a token (payload.encode_working's bytes: node-resque's
-- "worker" (host:pid), then the token, before the payload), and its decoded job (nil when
-- undecodable).
local function record(i, payload, tag)
  local ok, job = pcall(cjson.decode, payload)
  local embedded = payload
  if not (ok and type(job) == 'table') then
    job, embedded = nil, cjson.encode(payload)
  end
  local jq = ''
  if tag ~= '' then
    jq = ',"jq":"' .. tag .. '"'
  end
  return '{"queue":' .. ARGV[5 + i] .. ',"run_at":"' .. ARGV[2] .. '","worker":' ..
    cjson.encode(name) .. jq .. ',"payload":' .. embedded .. '}', job
end

-- The result record's state: {status, started_at, worker_ids} (all false without one).
local function result_of(job)
  if job and type(job['id']) == 'string' then
    return redis.call('HMGET', ARGV[5] .. job['id'], 'status', 'started_at', 'worker_ids')
  end
  return {false, false, false}
end

-- The k-th job of this call waits in the prefetch list (token "<token>.<k>"): its record, and
-- {payload, started_at, worker_ids} of it for the reply (started_at and worker_ids false
-- without a result record).
local function wait_in_line(i, payload, k, reply)
  local waiting, job = record(i, payload, token ~= '' and (token .. '.' .. k) or '')
  redis.call('RPUSH', prefetch_key, waiting)
  local state = result_of(job)
  reply[#reply + 1] = payload
  reply[#reply + 1] = state[1] and state[2]
  reply[#reply + 1] = state[1] and state[3]
end

local more = tonumber(ARGV[6 + n])
if refill ~= '' then
  for i = 1, n do
    local payload = pop(i)
    if payload then
      local reply, k = {i}, 1
      while payload do
        wait_in_line(i, payload, k, reply)
        k = k + 1
        payload = k <= more and pop(i)
      end
      return reply
    end
  end
  return false  -- the wake tokens stay: the worker's next plain reserve clears them
end

for i = 1, n do
  local payload = pop(i)
  if payload then
    local in_flight, job = record(i, payload, token)
    redis.call('SET', KEYS[1], in_flight)
    local started, ids = false, false
    local have = result_of(job)
    if have[1] then
      -- One read and one write: every result record has a status (a missing one, expired
      -- or never written, is left alone); started_at is kept from the first attempt.
      started = have[2] or ARGV[3]
      local list = {}
      if have[3] and have[3] ~= '[]' then
        list = cjson.decode(have[3])
      end
      table.insert(list, ARGV[4])
      ids = cjson.encode(list)
      redis.call('HSET', ARGV[5] .. job['id'], 'status', 'RUNNING', 'last_attempted_at',
        ARGV[3], 'worker_ids', ids, 'started_at', started)
    end
    local reply = {i, payload, started, ids}
    for k = 1, more do
      local next_payload = pop(i)
      if not next_payload then
        break
      end
      wait_in_line(i, next_payload, k, reply)
    end
    return reply
  end
end
-- Every queue is empty, so any token left is stale: drop them so idle workers sleep.
for i = 1, n do
  redis.call('DEL', KEYS[2 + n + i])
end
return false

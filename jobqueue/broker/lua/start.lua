-- start.lua: start the next job a --no-fork worker prefetched (reserve.lua), atomically.
--
-- Sent in the same packet as the previous job's finish.lua, and the worker runs the job
-- without waiting for the reply: so every step is conditional, and sending it twice (after a
-- dropped connection) starts the job once.
--
-- KEYS[1]  <ns>:worker:<id>                 in-flight record; must be empty (the previous
--                                           job acknowledged) to start the next one
-- KEYS[2]  <ns>:jobqueue:prefetch:<id>      reserved jobs waiting to start, in order
-- KEYS[3]  <ns>:jobqueue:result:<id>        the next job's result hash ("-" key: none)
-- KEYS[4]  <ns>:pause-all-workers           "true": the worker puts the rest of its batch back
-- ARGV[1]  the next job's marker (what the worker expects at the list's head): its token
--          field '"jq":"<token>.<k>"' (see reserve.lua), or its exact payload when the entry
--          has no token
-- ARGV[2]  run_at, "YYYY-MM-DDTHH:MM:SSZ"
-- ARGV[3]  now, ISO 8601 with microseconds
-- ARGV[4]  worker_ids JSON after this attempt (the worker computed it from the reserve reply)
-- ARGV[5]  started_at to keep (the first attempt's, or now)
--
-- Returns 1 when started, 3 when started while workers are paused (the worker runs it
-- already; it puts the jobs behind it back), 2 when it already was (this call was sent
-- again), 0 when the worker holds another job or the job is no longer first in the list (a
-- reaper or an operator moved it: it is left where it is).
local current = redis.call('GET', KEYS[1])
if current then
  if string.find(current, ARGV[1], 1, true) then
    return 2
  end
  return 0
end
local waiting = redis.call('LINDEX', KEYS[2], 0)
if not waiting or not string.find(waiting, ARGV[1], 1, true) then
  return 0
end
redis.call('LPOP', KEYS[2])
-- The record as reserved, with run_at now: '"run_at":"' cannot occur inside the queue name
-- (a JSON string before it), and run_at is always 20 characters.
local at = string.find(waiting, '"run_at":"', 1, true)
redis.call('SET', KEYS[1], string.sub(waiting, 1, at + 9) .. ARGV[2] .. string.sub(waiting, at + 30))
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSET', KEYS[3], 'status', 'RUNNING', 'last_attempted_at', ARGV[3],
    'worker_ids', ARGV[4], 'started_at', ARGV[5])
end
if redis.call('GET', KEYS[4]) == 'true' then
  return 3
end
return 1

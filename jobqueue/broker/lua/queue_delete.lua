-- queue_delete.lua: delete one waiting job, addressed by its exact bytes, never by position.
--
-- A queue's head moves while workers pop, so an index read on a page is stale a moment
-- later; the bytes are not. LREM with count 1 removes the first (oldest) entry equal to
-- them; identical entries are interchangeable, so that is the one the operator meant.
--
-- KEYS[1]  <ns>:queue:<q>                   plain Resque jobs
-- KEYS[2]  <ns>:jobqueue:priority:<q>       jobs with a non-zero priority
-- KEYS[3]  <ns>:jobqueue:result:<id>        the job's result hash ("" key when it has none)
-- ARGV[1]  the exact payload
--
-- Returns 1 when a job was deleted, 0 when it had already left the queue.
-- The result hash (if any) is deleted too: no worker will ever run this job.
local removed = redis.call('LREM', KEYS[1], 1, ARGV[1])
if removed == 0 then
  removed = redis.call('ZREM', KEYS[2], ARGV[1])
end
if removed > 0 and KEYS[3] ~= '' then
  redis.call('DEL', KEYS[3])
end
return removed

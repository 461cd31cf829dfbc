-- failed_act.lua: find, remove or retry failure records addressed by their exact bytes.
--
-- Resque addresses failures by list index, so a retry or remove races with every push and
-- removal (resque#1172, #1088). Here each record is addressed by a reference: the index it
-- had when read (a hint), its length and the SHA-1 of its bytes. A record is acted on only
-- if those bytes are still in the list: at the hint, or else wherever they moved to. A retry
-- pushes the job and removes its record in the same atomic step, so a record retried twice
-- (two tabs, two operators) yields one job, never a duplicate.
--
-- KEYS[1]  <ns>:failed                     failure records
-- KEYS[2]  <ns>:queues                     set of queue names (SADD on retry)
-- ARGV[1]  mode: "find", "remove" or "retry"
-- ARGV[2]  a tombstone value unique to this call (removal marks records, then one LREM)
-- ARGV[3]  "<ns>:" key prefix; a retry derives queue:<q>, jobqueue:wake:<q>,
--          jobqueue:priority:<q>, jobqueue:priority-seq and jobqueue:result:<id> from it
--          (standalone Redis only, like Resque itself)
-- ARGV[4]  TTL in seconds for a result hash set back to READY
-- ARGV[5..] one group per record:
--          find/remove: hint index, byte length, sha1 hex                      (3 values)
--          retry:       hint index, byte length, sha1 hex, queue, payload, priority score
--                       ("" = plain Resque job), result id ("" = none)         (7 values)
--
-- Returns: find: {index, record} or {} when gone; remove/retry: the number of records acted
-- on (a record already gone is skipped).
local key = KEYS[1]
local mode = ARGV[1]
local tomb = ARGV[2]
local prefix = ARGV[3]

local function locate(hint, len, sha)
  if hint >= 0 then
    local record = redis.call('LINDEX', key, hint)
    if record and #record == len and redis.sha1hex(record) == sha then
      return hint, record
    end
  end
  -- The list moved under us: look for the same bytes, newest first.
  local i = redis.call('LLEN', key) - 1
  while i >= 0 do
    local lo = math.max(0, i - 999)
    local records = redis.call('LRANGE', key, lo, i)
    for j = #records, 1, -1 do
      local record = records[j]
      if #record == len and redis.sha1hex(record) == sha then
        return lo + j - 1, record
      end
    end
    i = lo - 1
  end
  return nil, nil
end

local function requeue(queue, payload, score, result_id)
  if score ~= '' then
    redis.call('ZADD', prefix .. 'jobqueue:priority:' .. queue, tonumber(score) +
      redis.call('INCR', prefix .. 'jobqueue:priority-seq'), payload)
  else
    redis.call('RPUSH', prefix .. 'queue:' .. queue, payload)
  end
  redis.call('SADD', KEYS[2], queue)
  redis.call('RPUSH', prefix .. 'jobqueue:wake:' .. queue, '1')
  redis.call('LTRIM', prefix .. 'jobqueue:wake:' .. queue, -64, -1)
  if result_id ~= '' then
    local rkey = prefix .. 'jobqueue:result:' .. result_id
    if redis.call('EXISTS', rkey) == 1 then
      redis.call('HSET', rkey, 'status', 'READY')
      redis.call('HDEL', rkey, 'finished_at', 'return_value', 'run_after')
      redis.call('EXPIRE', rkey, tonumber(ARGV[4]))
    end
  end
end

if mode == 'find' then
  local index, record = locate(tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7])
  if not index then return {} end
  return {index, record}
end

local group = 3
if mode == 'retry' then group = 7 end
local done = 0
for g = 5, #ARGV, group do
  local index = locate(tonumber(ARGV[g]), tonumber(ARGV[g + 1]), ARGV[g + 2])
  if index then
    redis.call('LSET', key, index, tomb)
    if mode == 'retry' then
      requeue(ARGV[g + 3], ARGV[g + 4], ARGV[g + 5], ARGV[g + 6])
    end
    done = done + 1
  end
end
if done > 0 then
  redis.call('LREM', key, 0, tomb)
end
return done

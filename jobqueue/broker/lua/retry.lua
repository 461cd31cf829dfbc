-- retry.lua: turn an in-flight job into a delayed retry, atomically.
--
-- The failed attempt is acknowledged (in-flight record removed, counted as processed the way
-- Ruby counts every reserved job), its error appended to the result, and the job stored in
-- resque-scheduler's layout to be promoted when due.
--
-- KEYS[1]  <ns>:worker:<id>                  in-flight record
-- KEYS[2]  <ns>:jobqueue:result:<id>         result hash (may not exist)
-- KEYS[3]  <ns>:stat:processed
-- KEYS[4]  <ns>:stat:processed:<id>
-- KEYS[5]  <ns>:jobqueue:history:processed:<minute>
-- KEYS[6]  <ns>:delayed_queue_schedule
-- KEYS[7]  <ns>:delayed:<ts>
-- KEYS[8]  <ns>:timestamps:<item>
-- KEYS[9]  <ns>:jobqueue:wake:<queue>
-- ARGV[1]  "1": only if the in-flight record still holds ARGV[2]; "0": always
-- ARGV[2]  marker: the reservation's token field '"jq":"<token>"', or the exact payload
-- ARGV[3]  delayed item bytes
-- ARGV[4]  due time, epoch seconds (integer)
-- ARGV[5]  error JSON appended to the result's errors ("" for none)
-- ARGV[6]  run_after, ISO 8601
-- ARGV[7]  history TTL seconds
--
-- Returns 1 when scheduled, 0 when the job had already been acknowledged.
if ARGV[1] == '1' then
  local current = redis.call('GET', KEYS[1])
  if not current or not string.find(current, ARGV[2], 1, true) then
    return 0
  end
end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'status', 'READY', 'run_after', ARGV[6])
  if ARGV[5] ~= '' then
    local errors = redis.call('HGET', KEYS[2], 'errors')
    local list = {}
    if errors and errors ~= '[]' then
      list = cjson.decode(errors)
    end
    table.insert(list, cjson.decode(ARGV[5]))
    redis.call('HSET', KEYS[2], 'errors', cjson.encode(list))
  end
end
redis.call('INCRBY', KEYS[3], 1)
redis.call('INCRBY', KEYS[4], 1)
redis.call('INCRBY', KEYS[5], 1)
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[7]))
redis.call('RPUSH', KEYS[7], ARGV[3])
redis.call('SADD', KEYS[8], 'delayed:' .. ARGV[4])
redis.call('ZADD', KEYS[6], tonumber(ARGV[4]), ARGV[4])
redis.call('RPUSH', KEYS[9], '1')
redis.call('LTRIM', KEYS[9], -64, -1)
return 1

-- finish.lua: acknowledge a job and record its outcome, in one atomic step.
--
-- KEYS[1]  <ns>:worker:<id>                    in-flight record, deleted here
-- KEYS[2]  <ns>:jobqueue:result:<result id>    result hash (may not exist: bare Resque job)
-- KEYS[3]  <ns>:stat:processed                 global counter (every job, Ruby's meaning)
-- KEYS[4]  <ns>:stat:processed:<id>            per-worker counter
-- KEYS[5]  <ns>:stat:failed
-- KEYS[6]  <ns>:stat:failed:<id>
-- KEYS[7]  <ns>:failed                         failure records, RPUSH
-- KEYS[8]  <ns>:jobqueue:history:processed:<minute>
-- KEYS[9]  <ns>:jobqueue:history:failed:<minute>
-- ARGV[1]  status: SUCCESSFUL | FAILED
-- ARGV[2]  finished_at (ISO 8601)
-- ARGV[3]  return value JSON ("" when failed)
-- ARGV[4]  error JSON {"exception_class_path","traceback"} ("" when successful)
-- ARGV[5]  result TTL in seconds
-- ARGV[6]  failure record JSON ("" when successful)
-- ARGV[7]  history TTL in seconds
-- ARGV[8]  "1": act only if the in-flight record still exists (a parent cleaning up after
--          a child that died); "0": always
-- ARGV[9]  marker the in-flight record must contain ("" = skip): the reservation's token
--          field, '"jq":"<token>"' (see reserve.lua), or the exact payload for a record
--          without a token
--
-- Returns 1 when recorded, 0 when skipped because the job was already acknowledged.
if ARGV[8] == '1' then
  local current = redis.call('GET', KEYS[1])
  if not current then
    return 0
  end
  if ARGV[9] ~= '' and not string.find(current, ARGV[9], 1, true) then
    return 0
  end
end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  if ARGV[1] == 'SUCCESSFUL' then
    redis.call('HSET', KEYS[2], 'status', ARGV[1], 'finished_at', ARGV[2],
      'return_value', ARGV[3])
  else
    local errors = redis.call('HGET', KEYS[2], 'errors')
    local list = {}
    if errors and errors ~= '[]' then
      list = cjson.decode(errors)
    end
    table.insert(list, cjson.decode(ARGV[4]))
    redis.call('HSET', KEYS[2], 'status', ARGV[1], 'finished_at', ARGV[2],
      'errors', cjson.encode(list))
  end
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
end
redis.call('INCR', KEYS[3])
redis.call('INCR', KEYS[4])
-- A minute's counter gets its TTL when the minute's first job creates it.
if redis.call('INCR', KEYS[8]) == 1 then
  redis.call('EXPIRE', KEYS[8], tonumber(ARGV[7]))
end
if ARGV[6] ~= '' then
  redis.call('RPUSH', KEYS[7], ARGV[6])
  redis.call('INCR', KEYS[5])
  redis.call('INCR', KEYS[6])
  if redis.call('INCR', KEYS[9]) == 1 then
    redis.call('EXPIRE', KEYS[9], tonumber(ARGV[7]))
  end
end
return 1

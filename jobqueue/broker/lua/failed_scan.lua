-- failed_scan.lua: walk part of the failed list and return (or count, or remove) the records
-- that match a filter, so the monitor never loads the whole list into Python.
--
-- One call examines at most ARGV[4] records (a few thousand keeps Redis responsive); the
-- caller calls again from the returned cursor until it has a page, reaches the end of the
-- list or spends its own cap. Filters are checked first as plain substrings of the record
-- (cheap); only candidates are decoded (cjson) to confirm exact field values, and a small JSON
-- scanner finds the raw text of the job's arguments for the search (so big integers match
-- as written).
--
-- KEYS[1]  <ns>:failed                     failure records, oldest at index 0
-- ARGV[1]  direction: "down" (towards older records, index decreasing) or "up" (newer)
-- ARGV[2]  index to start at, inclusive; -1 = the newest record (only with "down")
-- ARGV[3]  mode: "records" returns matches, "count" only counts them, "remove" deletes them
--          ("remove" only with "down", so the cursor stays valid)
-- ARGV[4]  examine at most this many records in this call
-- ARGV[5]  with "records": stop after this many matches
-- ARGV[6]  queue, JSON-encoded (exact match of the record's "queue"; "" = any)
-- ARGV[7]  task class, JSON-encoded (exact match of payload "class"; "" = any)
-- ARGV[8]  exception class, JSON-encoded (exact match of "exception"; "" = any)
-- ARGV[9]  search text: a substring of the raw JSON text of the payload's args or kwargs,
--          or of a verbatim undecodable payload (case-sensitive, like Sidekiq's; "" = none)
-- ARGV[10] with "remove": a tombstone value unique to this call
--
-- Returns {examined, next_index, matched, index1, record1, index2, record2, ...}:
-- next_index is where the next call starts, -1 when the end of the list was reached; the
-- index/record pairs come only with "records", in scan order.
local key = KEYS[1]
local down = ARGV[1] == 'down'
local mode = ARGV[3]
local budget = tonumber(ARGV[4])
local want = tonumber(ARGV[5])
local q, cls, exc, search = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if mode == 'remove' and not down then
  return redis.error_reply('failed_scan: "remove" needs direction "down"')
end
local q_value, cls_value, exc_value = nil, nil, nil
if q ~= '' then q_value = cjson.decode(q) end
if cls ~= '' then cls_value = cjson.decode(cls) end
if exc ~= '' then exc_value = cjson.decode(exc) end

-- A tiny JSON walker over the raw text: find where top-level members start and end without
-- decoding anything, so searches see the exact bytes of args (big integers included).
local function skip_ws(s, i)
  return string.find(s, '[^ \t\r\n]', i) or (#s + 1)
end

local function skip_string(s, i)  -- s[i] is the opening quote
  local j = i + 1
  while true do
    local k = string.find(s, '["\\]', j)
    if not k then return nil end
    if string.byte(s, k) == 92 then j = k + 2 else return k + 1 end
  end
end

local function skip_value(s, i)
  local c = string.sub(s, i, i)
  if c == '"' then return skip_string(s, i) end
  if c == '{' or c == '[' then
    local depth, j = 0, i
    while true do
      local k = string.find(s, '[%[%]{}"]', j)
      if not k then return nil end
      local ch = string.sub(s, k, k)
      if ch == '"' then
        j = skip_string(s, k)
        if not j then return nil end
      else
        if ch == '{' or ch == '[' then depth = depth + 1 else depth = depth - 1 end
        j = k + 1
        if depth == 0 then return j end
      end
    end
  end
  return string.find(s, '[,}%] \t\r\n]', i) or (#s + 1)  -- number, true, false, null
end

-- Spans {start, stop (exclusive)} of the wanted members of the object at i.
local function members(s, i, wanted, count)
  local found = {}
  i = skip_ws(s, i)
  if string.sub(s, i, i) ~= '{' then return found end
  i = i + 1
  while count > 0 do
    i = skip_ws(s, i)
    if string.sub(s, i, i) ~= '"' then return found end
    local key_end = skip_string(s, i)
    if not key_end then return found end
    local name = string.sub(s, i + 1, key_end - 2)
    i = skip_ws(s, key_end)
    if string.sub(s, i, i) ~= ':' then return found end
    local from = skip_ws(s, i + 1)
    local to = skip_value(s, from)
    if not to then return found end
    if wanted[name] and not found[name] then
      found[name] = {from, to}
      count = count - 1
    end
    i = skip_ws(s, to)
    if string.sub(s, i, i) ~= ',' then return found end
    i = i + 1
  end
  return found
end

local function text_of(s, span)
  if not span then return nil end
  return string.sub(s, span[1], span[2] - 1)
end

-- Plain-text prefilters: the inner text of each JSON-encoded value (without its quotes; a
-- leading quote would make the search stop at every quote of the record).
local function inner(json)
  if json == '' then return nil end
  local text = string.sub(json, 2, -2)
  if text == '' then return nil end
  return text
end
local q_find, cls_find, exc_find = inner(q), inner(cls), inner(exc)
local exact = q_value ~= nil or cls_value ~= nil or exc_value ~= nil
local payload_key, inner_keys = {payload = true}, {args = true, kwargs = true}

local function matches(record)
  if q_find and not string.find(record, q_find, 1, true) then return false end
  if cls_find and not string.find(record, cls_find, 1, true) then return false end
  if exc_find and not string.find(record, exc_find, 1, true) then return false end
  if search ~= '' and not string.find(record, search, 1, true) then return false end
  if exact then
    local ok, body = pcall(cjson.decode, record)
    if not ok or type(body) ~= 'table' then return false end
    if q_value ~= nil and body['queue'] ~= q_value then return false end
    if exc_value ~= nil and body['exception'] ~= exc_value then return false end
    if cls_value ~= nil then
      local p = body['payload']
      if type(p) ~= 'table' or p['class'] ~= cls_value then return false end
    end
  end
  if search == '' then return true end
  -- The text was somewhere in the record; is it in the job's arguments?
  local span = members(record, 1, payload_key, 1)['payload']
  if not span then return false end
  if string.sub(record, span[1], span[1]) == '"' then  -- an undecodable job kept verbatim
    return string.find(text_of(record, span), search, 1, true) ~= nil
  end
  local found = members(record, span[1], inner_keys, 2)
  for _, name in ipairs({'args', 'kwargs'}) do
    local text = text_of(record, found[name])
    if text and string.find(text, search, 1, true) then return true end
  end
  return false
end

local length = redis.call('LLEN', key)
local index = tonumber(ARGV[2])
if index < 0 or index >= length then
  if down then index = length - 1 else index = length end
end
local reply = {0, -1, 0}
local examined, matched, removed = 0, 0, 0
local chunk = 500
while examined < budget and index >= 0 and index < length do
  local size = math.min(chunk, budget - examined)
  local lo, hi
  if down then lo, hi = math.max(0, index - size + 1), index
  else lo, hi = index, math.min(length - 1, index + size - 1) end
  local records = redis.call('LRANGE', key, lo, hi)
  local first, last, step = 1, #records, 1
  if down then first, last, step = #records, 1, -1 end
  local stopped = false
  for j = first, last, step do
    local at = lo + j - 1
    examined = examined + 1
    if down then index = at - 1 else index = at + 1 end
    if matches(records[j]) then
      matched = matched + 1
      if mode == 'records' then
        table.insert(reply, at)
        table.insert(reply, records[j])
        if matched >= want then stopped = true; break end
      elseif mode == 'remove' then
        redis.call('LSET', key, at, ARGV[10])
        removed = removed + 1
      end
    end
  end
  if stopped then break end
end
if removed > 0 then
  redis.call('LREM', key, 0, ARGV[10])
  -- Records above the cursor were removed; the cursor itself (going down) did not move.
end
reply[1] = examined
if index >= 0 and index < length then reply[2] = index else reply[2] = -1 end
reply[3] = matched
return reply

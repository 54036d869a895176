-- Shared by every script (prepended to each): the server's clock, and GCRA.

-- Redis' own clock, so that replicas whose clocks disagree still share one limit.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- GCRA (the generic cell rate algorithm) over the key's theoretical arrival time, in ms: one
-- request every `interval` ms, `burst` at once; `cost` requests arrive together (a batch).
-- Returns 0 and records them when admitted, else the ms to wait (nothing recorded).
local function gcra(key, interval, burst, now, cost)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local wait = tat - now - interval * (burst - cost)
  if wait > 0 then return wait end
  local next_tat = tat + interval * cost
  redis.call('SET', key, string.format('%.0f', next_tat), 'PX', math.max(math.ceil(next_tat - now), 1))
  return 0
end

-- Whether the replica that holds a session's stream is alive ('' means no stream is held).
local function owner_alive(owner, replica_prefix)
  return owner == '' or redis.call('EXISTS', replica_prefix .. owner) == 1
end

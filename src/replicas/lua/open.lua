-- A new session, if its key has room: counting and inserting are one atomic step.
-- KEYS[1] the key's rate bucket, KEYS[2] the new session, KEYS[3] the key's session index.
-- ARGV: interval ms, burst (0: no rate check), key fingerprint, session id, idle ms, sessions per
--       key, protocol version, selection, log level, owner ('' or this replica), replica
--       heartbeat prefix, session prefix, broadcast channel.
-- Returns {'limited', ms}, {'full', held}, or {'ok', evicted session id or ''}.
local now = now_ms()
if tonumber(ARGV[2]) > 0 then
  local wait = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now, 1)
  if wait > 0 then return {'limited', string.format('%.0f', math.ceil(wait))} end
end
-- Oldest use first: the first quiet one is the idlest.
local ids = redis.call('ZRANGE', KEYS[3], 0, -1)
local held, idlest = 0, nil
for _, id in ipairs(ids) do
  local key = ARGV[12] .. id
  local s = redis.call('HMGET', key, 'fp', 'owner', 'calls', 'busy_until')
  local owner = s[2] or ''
  if not s[1] then
    redis.call('ZREM', KEYS[3], id)
  elseif not owner_alive(owner, ARGV[11]) then
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[3], id)
  else
    held = held + 1
    local busy = (tonumber(s[3]) or 0) > 0 and (tonumber(s[4]) or 0) > now
    if idlest == nil and owner == '' and not busy then idlest = id end
  end
end
local evicted = ''
if held >= tonumber(ARGV[6]) then
  if idlest == nil then return {'full', tostring(held)} end
  redis.call('DEL', ARGV[12] .. idlest)
  redis.call('ZREM', KEYS[3], idlest)
  redis.call('PUBLISH', ARGV[13], 'x ' .. idlest)
  evicted = idlest
end
local idle = tonumber(ARGV[5])
redis.call('HSET', KEYS[2], 'fp', ARGV[3], 'version', ARGV[7], 'selection', ARGV[8],
  'log', ARGV[9], 'owner', ARGV[10], 'calls', 0, 'busy_until', 0)
redis.call('PEXPIRE', KEYS[2], idle)
redis.call('ZADD', KEYS[3], now, ARGV[4])
redis.call('PEXPIRE', KEYS[3], idle)
return {'ok', evicted}

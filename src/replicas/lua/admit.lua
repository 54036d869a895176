-- A request within a session: the rate limit, then the session, in one round trip.
-- KEYS[1] the key's rate bucket, KEYS[2] the session, KEYS[3] the key's session index.
-- ARGV: interval ms, burst, key fingerprint, session id, idle ms, call ms (0: not a tool call),
--       replica heartbeat prefix, cost (messages in this request: a batch counts each).
-- Returns {'limited', ms}, {'unknown'}, or {'ok', version, selection, log level, owner}.
local now = now_ms()
local wait = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now, tonumber(ARGV[8]))
if wait > 0 then return {'limited', string.format('%.0f', math.ceil(wait))} end
local s = redis.call('HMGET', KEYS[2], 'fp', 'version', 'selection', 'log', 'owner')
-- Bound to its key: another key's request does not learn that the session exists.
if s[1] ~= ARGV[3] then return {'unknown'} end
local owner = s[5] or ''
if not owner_alive(owner, ARGV[7]) then
  -- The replica that held its stream is gone, and the stream with it.
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[4])
  return {'unknown'}
end
local idle = tonumber(ARGV[5])
redis.call('PEXPIRE', KEYS[2], idle)
redis.call('ZADD', KEYS[3], now, ARGV[4])
redis.call('PEXPIRE', KEYS[3], idle)
local call = tonumber(ARGV[6])
if call > 0 then
  -- A call in flight: not evictable until it finishes (finish.lua) or could no longer be running.
  redis.call('HINCRBY', KEYS[2], 'calls', 1)
  redis.call('HSET', KEYS[2], 'busy_until', string.format('%.0f', now + call))
end
return {'ok', s[2] or '', s[3] or '', s[4] or '', owner}

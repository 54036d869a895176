-- A tool call finished (sent after its reply, off the request's path).
-- KEYS[1] the session. ARGV: idle ms.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'calls', -1)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1

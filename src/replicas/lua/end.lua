-- Ends a session everywhere (DELETE, or its stream closed): replicas close what they hold of it.
-- KEYS[1] the session, KEYS[2] the key's session index. ARGV: key fingerprint, session id,
-- broadcast channel. Returns 1, or 0 when no such session belongs to the key.
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'x ' .. ARGV[2])
return 1

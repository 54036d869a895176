-- Records one field of a session another replica may read (its log level, its version).
-- KEYS[1] the session. ARGV: field, value. Returns 0 if the session has ended.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1

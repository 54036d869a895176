-- Ends every session of a key (the API refused the key: revoked or expired).
-- KEYS[1] the key's session index. ARGV: session prefix, broadcast channel.
-- Returns how many sessions ended.
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[1] .. id)
  redis.call('PUBLISH', ARGV[2], 'x ' .. id)
end
redis.call('DEL', KEYS[1])
return #ids

-- A request that needs no session (the stateless era).
-- KEYS[1] the key's rate bucket. ARGV: interval ms, burst, cost (requests in this one).
-- Returns {'ok'} or {'limited', ms to wait}.
local wait = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now_ms(), tonumber(ARGV[3]))
if wait > 0 then return {'limited', string.format('%.0f', math.ceil(wait))} end
return {'ok'}

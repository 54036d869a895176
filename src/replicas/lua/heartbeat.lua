-- This replica is alive, and so are the streams it holds.
-- KEYS[1] its heartbeat, KEYS[2..] the sessions whose stream it holds.
-- ARGV: heartbeat ms, idle ms, key index prefix.
-- Returns the positions (1-based, among KEYS[2..]) of sessions that no longer exist.
redis.call('SET', KEYS[1], '1', 'PX', tonumber(ARGV[1]))
local gone = {}
for i = 2, #KEYS do
  if redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2])) == 0 then
    gone[#gone + 1] = i - 1
  else
    local fp = redis.call('HGET', KEYS[i], 'fp')
    if fp then redis.call('PEXPIRE', ARGV[3] .. fp, tonumber(ARGV[2])) end
  end
end
return gone

-- Undo a claim whose PostgreSQL commit failed: back in the pool, if the claim is still this request's.
-- KEYS[1] ticket hash  KEYS[2] geo set  KEYS[3] held hash  KEYS[4] leases
-- ARGV: ticket id, technician id, request id
-- Returns 1 if undone, 0 if the claim had already moved on.
local t = redis.call('HMGET', KEYS[1], 'state', 'by', 'req', 'pstate', 'lng', 'lat')
if t[1] ~= 'claimed' or t[2] ~= ARGV[2] or t[3] ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'state', t[4])
redis.call('HDEL', KEYS[1], 'by', 'req', 'until')
redis.call('HINCRBY', KEYS[3], ARGV[2], -1)
redis.call('GEOADD', KEYS[2], t[5], t[6], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1

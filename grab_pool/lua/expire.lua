-- Return tickets whose claim lease ran out (the claimer died before committing) to the pool.
-- KEYS[1] leases  KEYS[2] geo set  KEYS[3] held hash  KEYS[4] the key prefix of ticket hashes
-- Returns the ids returned to the pool.
local now = now_ms()
local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE')
local back = {}
for _, id in ipairs(due) do
    local key = KEYS[4] .. id
    local t = redis.call('HMGET', key, 'state', 'by', 'pstate', 'lng', 'lat')
    if t[1] == 'claimed' then
        redis.call('HSET', key, 'state', t[3])
        redis.call('HDEL', key, 'by', 'req', 'until', 'pstate')
        redis.call('HINCRBY', KEYS[3], t[2], -1)
        redis.call('GEOADD', KEYS[2], t[4], t[5], id)
        table.insert(back, id)
    end
    redis.call('ZREM', KEYS[1], id)
end
return back

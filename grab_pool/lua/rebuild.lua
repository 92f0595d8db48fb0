-- Replace a branch's whole pool with PostgreSQL's picture, atomically.
-- KEYS[1] built marker  KEYS[2] geo set  KEYS[3] held hash  KEYS[4] leases  KEYS[5] index set
-- KEYS[6] the key prefix of ticket hashes (same hash tag, so the same slot)
-- ARGV[1] rebuild time (s), ARGV[2] number of entries n, then n entries of 9 fields
--   (id, state, version, holder, grid path, lng, lat, type, number), then holder/count pairs
for _, id in ipairs(redis.call('SMEMBERS', KEYS[5])) do redis.call('DEL', KEYS[6] .. id) end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local n = tonumber(ARGV[2])
local i = 3
for _ = 1, n do
    local id, state, holder = ARGV[i], ARGV[i + 1], ARGV[i + 3]
    local key = KEYS[6] .. id
    redis.call('HSET', key, 'state', state, 'v', ARGV[i + 2], 'grid', ARGV[i + 4], 'lng', ARGV[i + 5],
               'lat', ARGV[i + 6], 'type', ARGV[i + 7], 'num', ARGV[i + 8])
    if state == 'accepted' then
        redis.call('HSET', key, 'by', holder)
    else
        redis.call('GEOADD', KEYS[2], ARGV[i + 5], ARGV[i + 6], id)
    end
    redis.call('SADD', KEYS[5], id)
    i = i + 9
end
while i < #ARGV do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
    i = i + 2
end
redis.call('SET', KEYS[1], ARGV[1])
return n

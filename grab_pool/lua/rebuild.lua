-- Replace a branch's whole pool with PostgreSQL's picture, atomically, never going back on a newer version.
-- KEYS[1] built marker  KEYS[2] geo set  KEYS[3] held hash  KEYS[4] leases  KEYS[5] index set
-- KEYS[6] the key prefix of ticket hashes (same hash tag, so the same slot)
-- ARGV[1] rebuild time (s), ARGV[2] number of entries n, then n entries of 9 fields
--   (id, state, version, holder, grid path, lng, lat, type, number), then holder/count pairs
-- A ticket the pool holds at a newer version than the picture's (a commit mirrored while the picture was
-- read and sent) keeps what the pool holds, its tombstone too, with the held counts moved to match it;
-- the caller's catch-up then mirrors whatever else changed meanwhile.
local n = tonumber(ARGV[2])
local pictured = {}
local i = 3
for _ = 1, n do
    pictured[ARGV[i]] = true
    i = i + 9
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[5])) do
    if not pictured[id] then redis.call('DEL', KEYS[6] .. id) end  -- not open when the picture was read
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local moves = {}  -- held counts of the kept entries against the picture's, applied after them
i = 3
for _ = 1, n do
    local id, state, version, holder = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
    local key = KEYS[6] .. id
    local old = redis.call('HMGET', key, 'state', 'v', 'by', 'until', 'lng', 'lat')
    if old[2] and tonumber(old[2]) > version then
        if state == 'accepted' then moves[#moves + 1] = {holder, -1} end
        if old[1] ~= 'closed' then
            redis.call('SADD', KEYS[5], id)
            if old[1] == 'accepted' or old[1] == 'claimed' then
                moves[#moves + 1] = {old[3], 1}
                if old[1] == 'claimed' then redis.call('ZADD', KEYS[4], old[4], id) end
            else
                redis.call('GEOADD', KEYS[2], old[5], old[6], id)
            end
        end
    else
        redis.call('DEL', key)
        redis.call('HSET', key, 'state', state, 'v', ARGV[i + 2], 'grid', ARGV[i + 4], 'lng', ARGV[i + 5],
                   'lat', ARGV[i + 6], 'type', ARGV[i + 7], 'num', ARGV[i + 8])
        if state == 'accepted' then
            redis.call('HSET', key, 'by', holder)
        else
            redis.call('GEOADD', KEYS[2], ARGV[i + 5], ARGV[i + 6], id)
        end
        redis.call('SADD', KEYS[5], id)
    end
    i = i + 9
end
while i < #ARGV do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
    i = i + 2
end
for _, move in ipairs(moves) do redis.call('HINCRBY', KEYS[3], move[1], move[2]) end
redis.call('SET', KEYS[1], ARGV[1])
return n

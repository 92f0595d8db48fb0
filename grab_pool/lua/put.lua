-- Mirror one ticket's PostgreSQL state into the pool, keeping the held counts true.
-- Used after every commit that adds, hands over, returns or closes a ticket.
-- KEYS[1] ticket hash  KEYS[2] geo set  KEYS[3] held hash  KEYS[4] leases  KEYS[5] index set
-- ARGV: ticket id, state (pending|timed_out|accepted|closed), version, holder ('' if none),
--       grid path, lng, lat, type code, number
-- Returns 1 if the hash changed, 0 if it already mirrored this version or a newer one.
-- A closed ticket leaves a tombstone (state closed, its version) for TOMBSTONE_S.
local id = ARGV[1]
local old = redis.call('HMGET', KEYS[1], 'state', 'v', 'by')
-- A late writer must not undo a newer mirror: versions only grow in PostgreSQL.
if old[2] and tonumber(old[2]) > tonumber(ARGV[3]) then return 0 end
if old[2] and tonumber(old[2]) == tonumber(ARGV[3]) and old[1] == ARGV[2] then return 0 end

local holder = ARGV[4]
local old_holder = nil
if old[1] == 'claimed' or old[1] == 'accepted' then old_holder = old[3] end
local new_holder = nil
if ARGV[2] == 'accepted' then new_holder = holder end
if old_holder ~= new_holder then
    if old_holder then redis.call('HINCRBY', KEYS[3], old_holder, -1) end
    if new_holder then redis.call('HINCRBY', KEYS[3], new_holder, 1) end
end
redis.call('ZREM', KEYS[4], id)

if ARGV[2] == 'closed' then
    -- A tombstone rather than nothing: it keeps the version, so that a late writer of an older picture
    -- (a re-read mirrored after this, a rebuild) cannot bring the ticket back. Out of the listings.
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], 'state', 'closed', 'v', ARGV[3])
    redis.call('EXPIRE', KEYS[1], TOMBSTONE_S)
    redis.call('ZREM', KEYS[2], id)
    redis.call('SREM', KEYS[5], id)
    return 1
end
redis.call('PERSIST', KEYS[1])  -- open again (a report taken out of its incident): no longer a tombstone
redis.call('HDEL', KEYS[1], 'by', 'req', 'until', 'pstate')
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'v', ARGV[3], 'grid', ARGV[5], 'lng', ARGV[6], 'lat', ARGV[7],
           'type', ARGV[8], 'num', ARGV[9])
redis.call('SADD', KEYS[5], id)
if new_holder then
    redis.call('HSET', KEYS[1], 'by', new_holder)
    redis.call('ZREM', KEYS[2], id)
else
    redis.call('GEOADD', KEYS[2], ARGV[6], ARGV[7], id)
end
return 1

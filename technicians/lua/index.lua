-- Keep a branch's open sets true when something other than a ping changes (after offerable.lua).
-- KEYS[1..5] as offerable.lua: geo set, zset id -> last accepted ping, hash meta, hash load, hash open members
-- KEYS[6] hash id -> last sampled
-- ARGV[1] the change, then its values:
--   duty id meta          on duty, or the meta changed ("skills|scope|max_active|roster")
--   off id                off duty: out of everything but the load
--   load id active|hours  the load changed (a ticket taken, released or done)
--   place id lng lat at   a known position (the rebuild); an older one than the index holds is ignored
--   expire cutoff limit   positions older than cutoff leave the open sets; returns how many (<= limit)
local change, id = ARGV[1], ARGV[2]

if change == 'duty' then
    redis.call('HSET', KEYS[3], id, with_load(ARGV[3], redis.call('HGET', KEYS[4], id)))
    sync_open(id)
elseif change == 'off' then
    leave_open(id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[6], id)
elseif change == 'load' then
    redis.call('HSET', KEYS[4], id, ARGV[3])
    local meta = redis.call('HGET', KEYS[3], id)
    if meta then
        local skills, scope, max_active, roster = parse_meta(meta)
        redis.call('HSET', KEYS[3], id, with_load(table.concat({skills, scope, max_active, roster}, '|'), ARGV[3]))
    end
    sync_open(id)
elseif change == 'place' then
    local at, current = tonumber(ARGV[5]), redis.call('ZSCORE', KEYS[2], id)
    if not current or tonumber(current) < at then
        redis.call('GEOADD', KEYS[1], ARGV[3], ARGV[4], id)
        redis.call('ZADD', KEYS[2], at, id)
        sync_open(id)
    end
elseif change == 'expire' then
    local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
    for _, member in ipairs(stale) do
        redis.call('ZREM', KEYS[2], member)
        sync_open(member)
    end
    return #stale
end
return 0

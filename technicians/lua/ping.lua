-- Record one location ping of an on-duty technician in the branch's live index (after offerable.lua).
-- KEYS[1..5] as offerable.lua: geo set, zset id -> last accepted ping, hash meta, hash load, hash open members
-- KEYS[6] list of sampled track points      KEYS[7] hash id -> last sampled (epoch s)
-- KEYS[8] the technician's rate-limit counter
-- ARGV: id, lng, lat, accuracy, now, weekday, minute, limit, window_s, sample_interval_s
-- Returns {status, detail}: ok | rate_limited (seconds left) | off_duty | off_shift
local id = ARGV[1]
local now = tonumber(ARGV[5])

local count = redis.call('INCR', KEYS[8])
if count == 1 then redis.call('EXPIRE', KEYS[8], tonumber(ARGV[9])) end
if count > tonumber(ARGV[8]) then return {'rate_limited', redis.call('TTL', KEYS[8])} end

local meta = redis.call('HGET', KEYS[3], id)
if not meta then return {'off_duty', ''} end

local _, _, _, roster = parse_meta(meta)
if not on_shift(roster, tonumber(ARGV[6]), tonumber(ARGV[7])) then
    -- The phone says the shift is over: out of the searched sets now, back with the next ping
    -- accepted inside a shift. Nothing of this ping is stored, and the last position stays as it
    -- was (the search judges rosters itself, so eligibility does not hang on this ping).
    leave_open(id)
    return {'off_shift', ''}
end

redis.call('GEOADD', KEYS[1], ARGV[2], ARGV[3], id)
redis.call('ZADD', KEYS[2], now, id)
sync_open(id)
local sampled = tonumber(redis.call('HGET', KEYS[7], id) or '0')
if now - sampled >= tonumber(ARGV[10]) then
    redis.call('RPUSH', KEYS[6], id .. '|' .. now .. '|' .. ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[4])
    redis.call('HSET', KEYS[7], id, now)
end
return {'ok', ''}

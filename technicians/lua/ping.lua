-- Record one location ping of an on-duty technician in the branch's live index.
-- KEYS[1] geo set of located technicians    KEYS[2] hash id -> last ping (epoch s)
-- KEYS[3] hash id -> meta (present only while on duty)
-- KEYS[4] list of sampled track points      KEYS[5] hash id -> last sampled (epoch s)
-- KEYS[6] the technician's rate-limit counter
-- ARGV: id, lng, lat, accuracy, now, weekday, minute, limit, window_s, sample_interval_s
-- Returns {status, detail}: ok | rate_limited (seconds left) | off_duty | off_shift
local id = ARGV[1]
local now = tonumber(ARGV[5])

local count = redis.call('INCR', KEYS[6])
if count == 1 then redis.call('EXPIRE', KEYS[6], tonumber(ARGV[9])) end
if count > tonumber(ARGV[8]) then return {'rate_limited', redis.call('TTL', KEYS[6])} end

local meta = redis.call('HGET', KEYS[3], id)
if not meta then return {'off_duty', ''} end

-- meta = skills|scope path|max_active|roster ("wd:from-to,wd:from-to" in local minutes, "" = always)
local roster = string.match(meta, '^[^|]*|[^|]*|[^|]*|(.*)$')
if roster ~= nil and roster ~= '' then
    local weekday, minute = tonumber(ARGV[6]), tonumber(ARGV[7])
    local on_shift = false
    for wd, from, to in string.gmatch(roster, '(%d+):(%d+)-(%d+)') do
        wd, from, to = tonumber(wd), tonumber(from), tonumber(to)
        if from < to then
            if wd == weekday and minute >= from and minute < to then on_shift = true end
        else -- runs past midnight: the evening part today, the morning part tomorrow
            if (wd == weekday and minute >= from) or ((wd + 1) % 7 == weekday and minute < to) then on_shift = true end
        end
    end
    if not on_shift then return {'off_shift', ''} end
end

redis.call('GEOADD', KEYS[1], ARGV[2], ARGV[3], id)
redis.call('HSET', KEYS[2], id, now)
local sampled = tonumber(redis.call('HGET', KEYS[5], id) or '0')
if now - sampled >= tonumber(ARGV[10]) then
    redis.call('RPUSH', KEYS[4], id .. '|' .. now .. '|' .. ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[4])
    redis.call('HSET', KEYS[5], id, now)
end
return {'ok', ''}

-- Shared by the live index's scripts (prepended to each when loaded): who may be offered a ticket.
-- Every script using it takes KEYS[1] geo set of located technicians, KEYS[2] zset id -> last accepted
-- ping (epoch s; left by stale ones), KEYS[3] hash id -> meta (present only while on duty),
-- KEYS[4] hash id -> load ("active|hours", kept while off duty too), KEYS[5] hash id -> the
-- technician's member in the open sets (present only while they are in them).
--
-- The searched sets, "<tag>:open:<skill>" and "<tag>:open:*" (any skill), hold only technicians who
-- could be offered a ticket: on duty, located, fresh, on shift at their last ping and below
-- max_active. A radius search costs for every member inside the circle, so the ones who could not
-- take a ticket stay out of it. Each member carries what the search judges, "id|seen|active|hours|
-- scope|roster|skills", so that the search reads nothing but the set: every change to any of it
-- rewrites the member here. These keys are named here rather than passed in KEYS since they depend
-- on the skills; they carry the branch's hash tag, so they live in the scripts' one slot.
local OPEN_PREFIX = string.sub(KEYS[1], 1, -4) .. 'open:'  -- KEYS[1] is "<tag>:geo"
local ANY_SKILL = '*'

-- Every change of the open sets is also appended to the branch's change log, a stream with ids
-- "<seq>-0" counted by OPEN_SEQ, so that the copies the searching processes keep in memory
-- (technicians/replica.py) catch up with one read. OPEN_EPOCH names this life of the log: a
-- flushed or restarted Redis starts counting again, and a copy sees a new epoch and reloads.
local LOG_TAG = string.sub(KEYS[1], 1, -4)
local OPEN_LOG, OPEN_SEQ, OPEN_EPOCH = LOG_TAG .. 'open-log', LOG_TAG .. 'open-seq', LOG_TAG .. 'open-epoch'
-- Entries kept: a copy further behind than this reloads the set instead. At one ping per
-- technician every 30 s this is minutes of a province's changes, a few MB.
local LOG_KEEP = 100000

-- meta = skills ("a,b") | scope path | max_active | roster ("wd:from-to,..." in local minutes, "" = always)
--        | active | hours: the load is copied in, so that a change of either rewrites one value.
local function parse_meta(meta)
    return string.match(meta, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
end

-- The meta as the caller gives it (skills to roster), with the load the index holds.
local function with_load(meta, load)
    return meta .. '|' .. (load or '0|0')
end

-- id, seen, active, hours, scope, roster, skills
local function parse_member(member)
    return string.match(member, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
end

local function on_shift(roster, weekday, minute)
    if roster == '' then return true end
    for wd, from, to in string.gmatch(roster, '(%d+):(%d+)-(%d+)') do
        wd, from, to = tonumber(wd), tonumber(from), tonumber(to)
        if from < to then
            if wd == weekday and minute >= from and minute < to then return true end
        elseif (wd == weekday and minute >= from) or ((wd + 1) % 7 == weekday and minute < to) then
            return true  -- runs past midnight: the evening part today, the morning part tomorrow
        end
    end
    return false
end

-- The open sets a member of these skills belongs to.
local function open_keys(skills)
    local keys = {OPEN_PREFIX .. ANY_SKILL}
    for skill in string.gmatch(skills, '[^,]+') do keys[#keys + 1] = OPEN_PREFIX .. skill end
    return keys
end

-- One change for the log: the technician's member and position now, or '' when out of the sets.
local function log_change(id, member, lng, lat)
    local seq = redis.call('INCR', OPEN_SEQ)
    local epoch
    if seq == 1 then
        local now = redis.call('TIME')
        epoch = now[1] .. '.' .. now[2]
        redis.call('SET', OPEN_EPOCH, epoch)
    else
        epoch = redis.call('GET', OPEN_EPOCH)
    end
    -- Each entry names its epoch: a follower reading on after a flush must not take a new log's
    -- entries for the old one's.
    redis.call('XADD', OPEN_LOG, 'MAXLEN', '~', LOG_KEEP, seq .. '-0', 'id', id, 'member', member,
               'lng', lng, 'lat', lat, 'epoch', epoch)
end

-- Take the technician out of every open set.
local function leave_open(id)
    local member = redis.call('HGET', KEYS[5], id)
    if not member then return end
    local _, _, _, _, _, _, skills = parse_member(member)
    for _, key in ipairs(open_keys(skills)) do redis.call('ZREM', key, member) end
    redis.call('HDEL', KEYS[5], id)
    log_change(id, '', '', '')
end

-- Put the technician into, or take them out of, the open sets, from what the index holds now.
local function sync_open(id)
    local meta = redis.call('HGET', KEYS[3], id)
    local position = meta and redis.call('ZSCORE', KEYS[1], id)
    local seen = position and redis.call('ZSCORE', KEYS[2], id)
    if not seen then return leave_open(id) end
    local skills, scope, max_active, roster, active, hours = parse_meta(meta)
    if tonumber(active) >= tonumber(max_active) then return leave_open(id) end
    local member = table.concat({id, seen, active, hours, scope, roster, skills}, '|')
    local was = redis.call('HGET', KEYS[5], id)
    if was == member and redis.call('ZSCORE', OPEN_PREFIX .. ANY_SKILL, member) == position then return end
    if was and was ~= member then
        local _, _, _, _, _, _, had = parse_member(was)
        for _, key in ipairs(open_keys(had)) do redis.call('ZREM', key, was) end
    end
    -- The geo set's score is the position's geohash: copying it places the member alike.
    for _, key in ipairs(open_keys(skills)) do redis.call('ZADD', key, position, member) end
    redis.call('HSET', KEYS[5], id, member)
    local at = redis.call('GEOPOS', KEYS[1], id)[1]
    log_change(id, member, at[1], at[2])
end


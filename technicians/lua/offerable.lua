-- Shared by the live index's scripts (prepended to each when loaded): who may be offered a ticket.
-- Every script using it takes KEYS[1] geo set of located technicians, KEYS[2] zset id -> last accepted
-- ping (epoch s; left by stale and off-shift ones), KEYS[3] hash id -> meta (present only while on
-- duty), KEYS[4] hash id -> load ("active|hours", kept while off duty too).
--
-- The searched sets, "<tag>:open:<skill>", hold only the technicians who could be offered a ticket
-- needing that skill: on duty, located, fresh, on shift at their last ping and below max_active.
-- A radius search costs for every member inside the circle, so the ones who could not take a
-- ticket stay out of it. Those keys are named here rather than passed in KEYS: they depend on the
-- skills in the meta, and they carry the branch's hash tag, so they live in the scripts' one slot.
local OPEN_PREFIX = string.sub(KEYS[1], 1, -4) .. 'open:'  -- KEYS[1] is "<tag>:geo"

-- meta = skills ("a,b") | scope path | max_active | roster ("wd:from-to,..." in local minutes, "" = always)
--        | active | hours: the load is copied in, so that the search reads all it judges in one lookup.
local function parse_meta(meta)
    return string.match(meta, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
end

-- The meta as the caller gives it (skills to roster), with the load the index holds.
local function with_load(meta, load)
    return meta .. '|' .. (load or '0|0')
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

-- Take the technician out of the open set of each skill in `meta`.
local function leave_open(id, meta)
    for skill in string.gmatch(parse_meta(meta) or '', '[^,]+') do
        redis.call('ZREM', OPEN_PREFIX .. skill, id)
    end
end

-- Put the technician into, or take them out of, the open set of each of their skills, from what
-- the index holds now. `old_meta`, when the meta just changed, names skills they may have lost.
local function sync_open(id, old_meta)
    if old_meta then leave_open(id, old_meta) end
    local meta = redis.call('HGET', KEYS[3], id)
    if not meta then return end
    local skills, _, max_active, _, active = parse_meta(meta)
    local position = redis.call('ZSCORE', KEYS[1], id)
    local open = position and redis.call('ZSCORE', KEYS[2], id) and tonumber(active) < tonumber(max_active)
    for skill in string.gmatch(skills, '[^,]+') do
        if open then
            -- The geo set's score is the position's geohash: copying it places the member alike.
            redis.call('ZADD', OPEN_PREFIX .. skill, position, id)
        else
            redis.call('ZREM', OPEN_PREFIX .. skill, id)
        end
    end
end


-- The nearest eligible technicians of one branch, nearest first.
-- KEYS[1] geo set    KEYS[2] hash id -> last ping    KEYS[3] hash id -> meta (on duty)
-- KEYS[4] hash id -> load ("active|hours")
-- ARGV: lng, lat, want, max_radius_m, now, freshness_s, skills required ("a,b"; "" = none), ticket grid path,
--       excluded ids (",1,2,"), weekday, minute, start_radius_m
-- Returns a flat list: id, distance_m, active, hours, ...
--
-- Why widen instead of one big radius: GEOSEARCH gathers every member inside
-- the radius before sorting, so a 5 km search in a dense town touches
-- thousands; a small first radius, grown only while too few qualify, keeps
-- the work near the K that are wanted.
local lng, lat = ARGV[1], ARGV[2]
local want, max_radius = tonumber(ARGV[3]), tonumber(ARGV[4])
local now, freshness = tonumber(ARGV[5]), tonumber(ARGV[6])
local required, ticket_path, excluded = ARGV[7], ARGV[8], ARGV[9]
local weekday, minute = tonumber(ARGV[10]), tonumber(ARGV[11])
local radius = math.min(tonumber(ARGV[12]), max_radius)
local count = math.max(want * 4, 32)

local function on_shift(roster)
    if roster == '' then return true end
    for wd, from, to in string.gmatch(roster, '(%d+):(%d+)-(%d+)') do
        wd, from, to = tonumber(wd), tonumber(from), tonumber(to)
        if from < to then
            if wd == weekday and minute >= from and minute < to then return true end
        elseif (wd == weekday and minute >= from) or ((wd + 1) % 7 == weekday and minute < to) then
            return true
        end
    end
    return false
end

local function eligible(id)
    if string.find(excluded, ',' .. id .. ',', 1, true) then return nil end
    local seen = tonumber(redis.call('HGET', KEYS[2], id) or '0')
    if now - seen > freshness then return nil end
    local meta = redis.call('HGET', KEYS[3], id)
    if not meta then return nil end
    local skills, scope, max_active, roster = string.match(meta, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
    for skill in string.gmatch(required, '[^,]+') do
        if not string.find(',' .. skills .. ',', ',' .. skill .. ',', 1, true) then return nil end
    end
    if string.sub(ticket_path, 1, #scope) ~= scope then return nil end
    if not on_shift(roster) then return nil end
    local load = redis.call('HGET', KEYS[4], id) or '0|0'
    local active, hours = string.match(load, '^([^|]*)|(.*)$')
    if tonumber(active) >= tonumber(max_active) then return nil end
    return {active, hours}
end

while true do
    local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', lng, lat, 'BYRADIUS', radius, 'm',
                             'ASC', 'COUNT', count, 'WITHDIST')
    local out, n = {}, 0
    for _, hit in ipairs(found) do
        local load = eligible(hit[1])
        if load then
            n = n + 1
            out[#out + 1] = hit[1]; out[#out + 1] = hit[2]; out[#out + 1] = load[1]; out[#out + 1] = load[2]
            if n >= want then return out end
        end
    end
    if #found >= count then
        count = count * 4 -- the radius holds more than was looked at: look at more first
    elseif radius >= max_radius then
        return out
    else
        radius = math.min(radius * 4, max_radius)
    end
end

-- The nearest eligible technicians of one branch, fairest first among near-equals.
-- KEYS[1] geo set    KEYS[2] hash id -> last ping    KEYS[3] hash id -> meta (on duty)
-- KEYS[4] hash id -> load ("active|hours")
-- ARGV: lng, lat, k, max_radius_m, now, freshness_s, skills required ("a,b"; "" = none), ticket grid path,
--       excluded ids (",1,2,"), weekday, minute, start_radius_m, tie_band_m
-- Returns a flat list of the K chosen: id, distance_m, active, hours, ...
--
-- Why widen instead of one big radius: GEOSEARCH gathers every member inside
-- the radius, so a 5 km search in a dense town touches thousands; a small
-- first radius, doubled only while too few qualify, keeps the work near the
-- K wanted. Everything happens in one call: the tie band around the K-th
-- (fairness) is completed here, and nobody is judged twice.
local lng, lat = ARGV[1], ARGV[2]
local k, max_radius = tonumber(ARGV[3]), tonumber(ARGV[4])
local now, freshness = tonumber(ARGV[5]), tonumber(ARGV[6])
local required, ticket_path, excluded = ARGV[7], ARGV[8], ARGV[9]
local weekday, minute = tonumber(ARGV[10]), tonumber(ARGV[11])
local radius = math.min(tonumber(ARGV[12]), max_radius)
local band = tonumber(ARGV[13])

local skills_needed = {}
for skill in string.gmatch(required, '[^,]+') do skills_needed[#skills_needed + 1] = ',' .. skill .. ',' end

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

-- {active, hours} when the technician could take the ticket, false otherwise.
local function judge(id)
    if string.find(excluded, ',' .. id .. ',', 1, true) then return false end
    local seen = tonumber(redis.call('HGET', KEYS[2], id) or '0')
    if now - seen > freshness then return false end
    local meta = redis.call('HGET', KEYS[3], id)
    if not meta then return false end
    local skills, scope, max_active, roster = string.match(meta, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
    local have = ',' .. skills .. ','
    for _, need in ipairs(skills_needed) do
        if not string.find(have, need, 1, true) then return false end
    end
    if string.sub(ticket_path, 1, #scope) ~= scope then return false end
    if not on_shift(roster) then return false end
    local active, hours = string.match(redis.call('HGET', KEYS[4], id) or '0|0', '^([^|]*)|(.*)$')
    active = tonumber(active)
    if active >= tonumber(max_active) then return false end
    return {active, tonumber(hours)}
end

local window = 4 * k  -- the fairness window: the nearest 4K who qualify
local count = 2 * window  -- members fetched per search; doubled while a circle holds more
local judged = {}
local eligible
while true do
    eligible = {}
    local hits = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', lng, lat, 'BYRADIUS', radius, 'm',
                            'ASC', 'COUNT', count, 'WITHDIST')
    local reach = nil  -- the distance up to which the answer is settled
    for _, hit in ipairs(hits) do
        local id, distance = hit[1], tonumber(hit[2])
        if reach and distance > reach then break end
        if judged[id] == nil then judged[id] = judge(id) end
        if judged[id] then
            eligible[#eligible + 1] = {id, distance, judged[id][1], judged[id][2]}
            -- Settled once everyone within the K-th's distance plus the tie band is
            -- seen, or the fairness window is full: in a dense town a whole band can
            -- hold hundreds, and judging them all costs milliseconds.
            if #eligible == k then reach = distance + band end
            if #eligible >= window then reach = distance end
        end
    end
    local truncated = #hits >= count
    if reach and (not truncated or tonumber(hits[#hits][2]) >= reach) and (radius >= reach or truncated) then
        break
    end
    if truncated then
        count = count * 2  -- this circle holds more than was fetched: fetch more before widening
    elseif radius >= max_radius then
        break
    else
        radius = math.min(math.max(radius * 2, reach or 0), max_radius)
    end
end

-- Nearest first, but within a band of near-equal distance the one with fewer
-- labor hours this period (then fewer active tickets) goes first.
while #eligible > window do table.remove(eligible) end
local out, i = {}, 1
while i <= #eligible and #out < 4 * k do
    local j = i
    while j + 1 <= #eligible and eligible[j + 1][2] - eligible[i][2] <= band do j = j + 1 end
    local group = {}
    for m = i, j do group[#group + 1] = eligible[m] end
    table.sort(group, function(a, b)
        if a[4] ~= b[4] then return a[4] < b[4] end
        if a[3] ~= b[3] then return a[3] < b[3] end
        return a[2] < b[2]
    end)
    for _, c in ipairs(group) do
        if #out < 4 * k then
            out[#out + 1] = c[1]; out[#out + 1] = string.format('%.2f', c[2])
            -- Lua numbers reach the client as integers: send fractions as text.
            out[#out + 1] = c[3]; out[#out + 1] = tostring(c[4])
        end
    end
    i = j + 1
end
return out

-- The nearest eligible technicians of one branch, fairest first among near-equals (after offerable.lua).
-- KEYS[1..5] as offerable.lua    KEYS[6] hash (searched set, cell) -> the radius that settled the last search there
-- ARGV: lng, lat, k, max_radius_m, now, freshness_s, skills required ("a,b"; "" = none), ticket grid path,
--       excluded ids (",1,2,"), weekday, minute, start_radius_m, tie_band_m
-- Returns a flat list of the K chosen: id, distance_m, active, hours, ...
--
-- Why widen instead of one big radius: GEOSEARCH gathers every member inside
-- the radius, so a 5 km search in a dense town touches thousands; a small
-- first radius, doubled only while too few qualify, keeps the work near the
-- K wanted. The search runs on the open set of the ticket's rarest skill, which
-- holds only technicians who could be offered, each member carrying what is
-- judged here (see offerable.lua): no other key is read per technician. What
-- lapses with time (freshness, rosters) and what the ticket asks (other skills,
-- scope, exclusions) is still judged for each. Everything happens in one call:
-- the tie band around the K-th (fairness) is completed here, and nobody is
-- judged twice.
local lng, lat = ARGV[1], ARGV[2]
local k, max_radius = tonumber(ARGV[3]), tonumber(ARGV[4])
local now, freshness = tonumber(ARGV[5]), tonumber(ARGV[6])
local required, ticket_path, excluded = ARGV[7], ARGV[8], ARGV[9]
local weekday, minute = tonumber(ARGV[10]), tonumber(ARGV[11])
local band = tonumber(ARGV[13])
local excluding = excluded ~= ',,'

local skills_needed = {}
local searched, fewest = OPEN_PREFIX .. ANY_SKILL, nil
for skill in string.gmatch(required, '[^,]+') do
    skills_needed[#skills_needed + 1] = ',' .. skill .. ','
    local size = redis.call('ZCARD', OPEN_PREFIX .. skill)
    if fewest == nil or size < fewest then searched, fewest = OPEN_PREFIX .. skill, size end
end

-- The first radius: a quarter doubling over the one that settled the last search of this set
-- around here, else the caller's. Density varies a hundredfold between the old town and the
-- steppe, so a fixed start either scans too much in town or doubles five times outside it, and a
-- second search costs more than a first one a little wider. Cells of 1/400 degree (about 280 by
-- 200 m here) scanned less in `make bench` than 1/100 or 1/200, since in town density changes
-- within a km; a cell nobody searched yet takes its 1/100 degree cell's radius.
local function cell(per_degree)
    return searched .. '@' .. math.floor(tonumber(lat) * per_degree) .. ',' .. math.floor(tonumber(lng) * per_degree)
end
local near, around = cell(400), cell(100)
local hints = redis.call('HMGET', KEYS[6], near, around)
local hint = tonumber(hints[1] or hints[2] or ARGV[12])
local radius = math.min(hint * 1.19, max_radius)

-- {id, active, hours} when the member could take the ticket, false otherwise.
local function judge(member)
    local id, seen, active, hours, scope, roster, skills = parse_member(member)
    -- Plain finds rather than substrings: every string made here is a Lua allocation, per member.
    if now - tonumber(seen) > freshness or string.find(ticket_path, scope, 1, true) ~= 1
            or (excluding and string.find(excluded, ',' .. id .. ',', 1, true)) then
        return false
    end
    if #skills_needed > 1 then
        local have = ',' .. skills .. ','
        for _, need in ipairs(skills_needed) do
            if not string.find(have, need, 1, true) then return false end
        end
    end
    if not on_shift(roster, weekday, minute) then return false end
    return {id, tonumber(active), tonumber(hours)}
end

local window = 4 * k  -- the fairness window: the nearest 4K who qualify
-- Members fetched per search, doubled while a circle holds more: the open sets hold few who
-- fail, so the window and a little more usually settle it in one search.
local count = window + k
local judged = {}
local eligible, reach
while true do
    eligible, reach = {}, nil  -- reach: the distance up to which the answer is settled
    local hits = redis.call('GEOSEARCH', searched, 'FROMLONLAT', lng, lat, 'BYRADIUS', radius, 'm',
                            'ASC', 'COUNT', count, 'WITHDIST')
    for _, hit in ipairs(hits) do
        local member, distance = hit[1], tonumber(hit[2])
        if reach and distance > reach then break end
        local verdict = judged[member]
        if verdict == nil then
            verdict = judge(member)
            judged[member] = verdict
        end
        if verdict then
            eligible[#eligible + 1] = {verdict[1], distance, verdict[2], verdict[3]}
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

-- Next time around here, start where this search would have settled at once: its reach, rounded
-- up to a step of a quarter doubling so that the hint rarely changes (and is rarely written). A
-- search that skipped those offered already (a later ring) or found fewer than K tells nothing
-- about a fresh one, and would send the next search in town out to the maximum radius.
if reach and not excluding then
    local quarters = math.ceil(math.log(math.max(reach, 1)) / math.log(2) * 4)
    local settled = math.ceil(2 ^ (quarters / 4))
    -- The wider cell only seeds cells nobody searched yet: kept from its first search, not
    -- rewritten by every search in it.
    if not hints[2] then
        redis.call('HSET', KEYS[6], near, settled, around, settled)
    elseif settled ~= tonumber(hints[1]) then
        redis.call('HSET', KEYS[6], near, settled)
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

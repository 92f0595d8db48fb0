-- One step of copying a branch's open set of any skill (after offerable.lua).
-- KEYS[1] geo set (names the branch)  KEYS[2] the open set of any skill
-- ARGV[1] scan cursor ("0" to start)  ARGV[2] members per step
-- Returns {next cursor ("0": done), member, lng, lat, member, lng, lat, ...}. A member changed
-- meanwhile may come twice or stale: the copy replays the change log from before the first step.
local scanned = redis.call('ZSCAN', KEYS[2], ARGV[1], 'COUNT', tonumber(ARGV[2]))
local out = {scanned[1]}
local members = scanned[2]
for i = 1, #members, 2 do
    local member = members[i]
    local at = redis.call('GEOPOS', KEYS[2], member)[1]
    out[#out + 1] = member; out[#out + 1] = at[1]; out[#out + 1] = at[2]
end
return out

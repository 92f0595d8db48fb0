-- A dispatcher force-assigns a pooled ticket: claim it for the chosen technician.
-- No scope or max_active check: the dispatcher decides; a grab mid-commit wins the race.
-- KEYS[1] built marker  KEYS[2] ticket hash  KEYS[3] geo set  KEYS[4] held hash  KEYS[5] leases
-- ARGV: ticket id, technician id, request id, lease ms
-- Returns {outcome, detail}: won (mirrored version) | taken (holder) | missing | unbuilt
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unbuilt', ''} end
local t = redis.call('HMGET', KEYS[2], 'state', 'v', 'by', 'until', 'pstate')
local state = t[1]
if not state then return {'missing', ''} end
local now_s = redis.call('TIME')
local now = tonumber(now_s[1]) * 1000 + math.floor(tonumber(now_s[2]) / 1000)
local tech = ARGV[2]

if state == 'claimed' or state == 'accepted' then
    if t[3] == tech then return {'won', t[2]} end
    if state == 'accepted' or tonumber(t[4]) > now then return {'taken', t[3]} end
    redis.call('HINCRBY', KEYS[4], t[3], -1)
    state = t[5]
end

local lease_end = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[2], 'state', 'claimed', 'pstate', state, 'by', tech, 'req', ARGV[3], 'until', lease_end)
redis.call('HINCRBY', KEYS[4], tech, 1)
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[5], lease_end, ARGV[1])
return {'won', t[2]}

-- A technician grabs a pooled ticket: check, claim and take it out of the pool in one step.
-- KEYS[1] built marker  KEYS[2] ticket hash  KEYS[3] geo set of grabbable tickets
-- KEYS[4] hash technician -> tickets held  KEYS[5] zset ticket -> claim lease end (ms)
-- ARGV: ticket id, technician id, technician's scope path, max_active, request id, lease ms
-- Returns {outcome, detail}:
--   won (mirrored version) | taken (holder) | out_of_scope | limit (held) | missing | unbuilt
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unbuilt', ''} end
local t = redis.call('HMGET', KEYS[2], 'state', 'v', 'grid', 'by', 'until', 'pstate')
local state = t[1]
if not state then return {'missing', ''} end
local now_s = redis.call('TIME')
local now = tonumber(now_s[1]) * 1000 + math.floor(tonumber(now_s[2]) / 1000)
local tech = ARGV[2]

if state == 'claimed' or state == 'accepted' then
    -- A resent script or a double tap: the winner must never be told it lost.
    if t[4] == tech then return {'won', t[2]} end
    if state == 'accepted' or tonumber(t[5]) > now then return {'taken', t[4]} end
    -- The claimer's lease ran out before it committed (its process died):
    -- the ticket is grabbable again and the dead claim no longer counts.
    redis.call('HINCRBY', KEYS[4], t[4], -1)
    state = t[6]
end

local scope = ARGV[3]
if string.sub(t[3], 1, #scope) ~= scope then return {'out_of_scope', ''} end
local held = tonumber(redis.call('HGET', KEYS[4], tech) or '0')
if held >= tonumber(ARGV[4]) then return {'limit', tostring(held)} end

local lease_end = now + tonumber(ARGV[6])
redis.call('HSET', KEYS[2], 'state', 'claimed', 'pstate', state, 'by', tech, 'req', ARGV[5], 'until', lease_end)
redis.call('HINCRBY', KEYS[4], tech, 1)
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[5], lease_end, ARGV[1])
return {'won', t[2]}

-- A technician grabs a pooled ticket: check, claim and take it out of the pool in one step.
-- KEYS[1] built marker  KEYS[2] ticket hash  KEYS[3] geo set of grabbable tickets
-- KEYS[4] hash technician -> tickets held  KEYS[5] zset ticket -> claim lease end (ms)
-- ARGV: ticket id, technician id, technician's scope path, max_active, request id, lease ms
-- Returns {outcome, detail}:
--   won (mirrored version) | taken (holder) | out_of_scope | limit (held) | missing | unbuilt
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unbuilt', ''} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'missing', ''} end
local tech, now = ARGV[2], now_ms()
local decided, state, version = claimable(KEYS[2], KEYS[4], tech, now)
if decided then return decided end

local scope = ARGV[3]
if string.sub(redis.call('HGET', KEYS[2], 'grid'), 1, #scope) ~= scope then return {'out_of_scope', ''} end
local held = tonumber(redis.call('HGET', KEYS[4], tech) or '0')
if held >= tonumber(ARGV[4]) then return {'limit', tostring(held)} end
return claim({ticket = KEYS[2], geo = KEYS[3], held = KEYS[4], leases = KEYS[5]}, ARGV[1], tech, ARGV[5], now,
             tonumber(ARGV[6]), state, version)

-- A dispatcher force-assigns a pooled ticket: claim it for the chosen technician.
-- No scope or max_active check: the dispatcher decides; a grab mid-commit wins the race.
-- KEYS[1] built marker  KEYS[2] ticket hash  KEYS[3] geo set  KEYS[4] held hash  KEYS[5] leases
-- ARGV: ticket id, technician id, request id, lease ms
-- Returns {outcome, detail}: won (mirrored version) | taken (holder) | missing | unbuilt
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unbuilt', ''} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'missing', ''} end
local tech, now = ARGV[2], now_ms()
local decided, state, version = claimable(KEYS[2], KEYS[4], tech, now)
if decided then return decided end
return claim({ticket = KEYS[2], geo = KEYS[3], held = KEYS[4], leases = KEYS[5]}, ARGV[1], tech, ARGV[3], now,
             tonumber(ARGV[4]), state, version)

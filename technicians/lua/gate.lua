-- A grab's gate (live.grab_gate): count the tap in the technician's window and read their duty and last
-- ping, in one call: the five commands as a pipeline cost the event loop more than the pool's claim.
-- KEYS[1..5] as every script here (see above); KEYS[6] the technician's tap counter.
-- ARGV[1] technician id, ARGV[2] the window (ms), started by the window's first tap.
-- Reply: {on duty (0|1), last ping (epoch s, or nil), taps in the window, ms left of it}.
local member = ARGV[1]
local on_duty = redis.call('HEXISTS', KEYS[3], member)
local seen = redis.call('ZSCORE', KEYS[2], member)
local taps = redis.call('INCR', KEYS[6])
redis.call('PEXPIRE', KEYS[6], ARGV[2], 'NX')
return {on_duty, taps, redis.call('PTTL', KEYS[6]), seen}

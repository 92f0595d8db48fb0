-- Admit one log-in attempt, counted as a failure until it is known to have succeeded: a burst of guesses
-- is counted before any password is checked, so no burst gets more checks than the limits allow.
-- KEYS[1] the username's failures in the window  KEYS[2] the address's failures in the window
-- KEYS[3] the username's failures in the lock window (all under one hash tag: one slot)
-- ARGV: username limit, address limit, window s, lock window s
-- Returns {1, failures of the username in the lock window, this one included} | {0, ms until a retry may pass}
local function full(key, limit)
  if tonumber(redis.call('GET', key) or '0') >= tonumber(limit) then
    return math.max(redis.call('PTTL', key), 1)
  end
  return nil
end
local wait = full(KEYS[1], ARGV[1]) or full(KEYS[2], ARGV[2])
if wait then return {0, wait} end
local function count(key, window)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, window) end
  return n
end
count(KEYS[1], ARGV[3])
count(KEYS[2], ARGV[3])
return {1, count(KEYS[3], ARGV[4])}

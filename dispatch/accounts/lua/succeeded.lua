-- A right password: the username's failures are forgotten and the address gets its attempt back.
-- KEYS[1] the username's failures in the window  KEYS[2] the address's failures in the window
-- KEYS[3] the username's failures in the lock window
redis.call('DEL', KEYS[1], KEYS[3])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
return 1

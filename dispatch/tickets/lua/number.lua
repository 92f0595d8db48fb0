-- The next ticket number of one branch and local day, as INCR would give it, never at or below
-- what PostgreSQL already holds: Redis keeps nothing on disk, so a counter lost to a flush or a
-- restart comes back from the floor the caller read.
-- KEYS[1] the branch's counter for the day
-- ARGV[1] seconds the counter is kept; ARGV[2] the highest number PostgreSQL holds that day, or ""
-- Returns the number; false when the counter is missing and no floor was given (read it, ask again).
local floor = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[1]))
if current == nil and floor == nil then return false end
if floor ~= nil and (current == nil or current < floor) then
  redis.call('SET', KEYS[1], floor)
end
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return n

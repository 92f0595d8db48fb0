-- What changed in a branch's open sets since a copy last looked (after offerable.lua).
-- KEYS[1] geo set (names the branch)  KEYS[2] log epoch  KEYS[3] log counter  KEYS[4] change log
-- ARGV[1] the epoch the copy holds ("" for none)  ARGV[2] the last change it applied  ARGV[3] the most
-- changes it takes rather than reloading
-- Returns {epoch, last change, "ok" then the changes as stream entries | "reload"}: reload when the
-- log began anew (flushed, restarted), was trimmed past what the copy holds, or ran too far ahead.
local epoch = redis.call('GET', KEYS[2]) or ''
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
local held = tonumber(ARGV[2])
if epoch ~= ARGV[1] or last < held or last - held > tonumber(ARGV[3]) then
    return {epoch, last, 'reload'}
end
if last == held then return {epoch, last, 'ok'} end
local entries = redis.call('XRANGE', KEYS[4], '(' .. ARGV[2] .. '-0', '+', 'COUNT', last - held)
if #entries == 0 or entries[1][1] ~= (held + 1) .. '-0' then return {epoch, last, 'reload'} end
return {epoch, last, 'ok', entries}

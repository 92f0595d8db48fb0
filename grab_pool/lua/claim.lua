-- Shared by the pool's scripts (prepended to each: Redis has no includes).

-- How long a closed ticket's tombstone keeps its version against late writers (put.lua, rebuild.lua).
local TOMBSTONE_S = 3600

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Who may claim the ticket in `key` for `tech`: {'won', version} when `tech` holds it already
-- (a resent script or a double tap: the winner must never be told it lost), {'taken', holder}
-- while someone else does, else nil and the state to restore when the claim is undone.
-- A claim whose lease ran out (its claimer died before committing) no longer counts.
local function claimable(key, held_key, tech, now)
    local t = redis.call('HMGET', key, 'state', 'v', 'by', 'until', 'pstate')
    local state = t[1]
    if state == 'closed' then return {'missing', ''} end  -- a tombstone: PostgreSQL decides
    if state == 'claimed' or state == 'accepted' then
        if t[3] == tech then return {'won', t[2]} end
        if state == 'accepted' or tonumber(t[4]) > now then return {'taken', t[3]} end
        redis.call('HINCRBY', held_key, t[3], -1)
        state = t[5]
    end
    return nil, state, t[2]
end

-- Claim the ticket for `tech` under a lease: out of the near-me listing, counted as held.
local function claim(keys, id, tech, request_id, now, lease_ms, restore_state, version)
    local lease_end = now + lease_ms
    redis.call('HSET', keys.ticket, 'state', 'claimed', 'pstate', restore_state, 'by', tech, 'req', request_id,
               'until', lease_end)
    redis.call('HINCRBY', keys.held, tech, 1)
    redis.call('ZREM', keys.geo, id)
    redis.call('ZADD', keys.leases, lease_end, id)
    return {'won', version}
end

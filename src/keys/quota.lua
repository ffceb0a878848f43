-- A client's quota windows in Redis, beside its request bucket (gcra.lua), so
-- every replica draws on the same windows: the same rules as the in-process
-- windows (src/quota/window.rs), on Redis's clock, atomically.
--
-- KEYS[1]            the client's request bucket (as gcra.lua)
-- KEYS[2 + 3(s-1)]   scope s's tokens-per-minute bucket: a hash {l = level, a = µs}
-- KEYS[3 + 3(s-1)]   scope s's counts of the service's "today": a hash {r, t}
-- KEYS[4 + 3(s-1)]   scope s's counts of the day after
--   Scope 1 is the client's total; scope 1 + g is its quota group g.
--
-- ARGV[1]  mode: "admit", "charge" or "read"
-- ARGV[2]  T, the bucket's emission interval, µs; ARGV[3] its burst
-- ARGV[4]  when the service's today ends, µs since the epoch; ARGV[5] when the day after ends
--          (Redis's clock decides which of the two days it is)
-- ARGV[6]  charge: the tokens; ARGV[7] charge: the group scope to charge too (0 = none)
-- ARGV[8]  charge: 1 to count a request in that group's day, -1 to take one
--          back from the total's day (a request its group refused), 0 neither
-- ARGV[9]  "now" in µs for tests, or "" for Redis's own clock
-- ARGV[10 + 3(s-1)] .. ARGV[12 + 3(s-1)]  scope s's limits: tpm, rpd, tpd (0 = none)
--
-- admit: takes a token from the bucket; if it had one, checks the total's
-- windows and counts the request in its day when they are all open; reads the
-- groups' windows without writing (the route learns the model later).
-- Returns {bucket_ok, remaining, retry_us, reset_us, refused_kind, refused_wait_us,
--          [kind, wait_us] for each group, then for each scope {tpm_used, rpd_used, tpd_used},
--          then the day's end in µs}
--   kind: 0 open, 1 tokens_per_minute, 2 requests_per_day, 3 tokens_per_day
-- charge: adds the tokens; returns {0, 0, 0, 0, 0, 0, then the used numbers, day end}.
-- read: writes nothing; returns {bucket TAT or 0, 0, 0, 0, 0, 0, used numbers, day end}.

local mode = ARGV[1]
local t = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local now = tonumber(ARGV[9])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local scopes = (#KEYS - 1) / 3

-- Which day it is on Redis's clock: the service's today, or the day after.
local day_end = tonumber(ARGV[4])
local day_slot = 1
if now >= day_end then
  day_end = tonumber(ARGV[5])
  day_slot = 2
end

local function limits(s)
  local base = 10 + 3 * (s - 1)
  return tonumber(ARGV[base]), tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
end

local function key_minute(s) return KEYS[2 + 3 * (s - 1)] end
local function key_day(s) return KEYS[2 + 3 * (s - 1) + day_slot] end

-- Reads that meet a key of another type (written by someone else) read as absent.
local function hget_num(key, field)
  local v = redis.pcall('HGET', key, field)
  if type(v) == 'string' then return tonumber(v) or 0 end
  return 0
end

local function minute_used(s, tpm)
  if tpm == 0 then return 0 end
  local level = hget_num(key_minute(s), 'l')
  local at = hget_num(key_minute(s), 'a')
  local drained = math.max(0, now - at) * tpm / 60000000
  return math.max(0, level - drained)
end

-- The first closed window of scope s: kind and wait (µs), or 0, 0.
local function closed(s)
  local tpm, rpd, tpd = limits(s)
  if tpm > 0 then
    local over = minute_used(s, tpm) - tpm
    if over >= 0 then return 1, math.floor(over * 60000000 / tpm) + 1 end
  end
  if rpd > 0 and hget_num(key_day(s), 'r') >= rpd then return 2, day_end - now end
  if tpd > 0 and hget_num(key_day(s), 't') >= tpd then return 3, day_end - now end
  return 0, 0
end

local function count_request(s, by)
  local key = key_day(s)
  if redis.pcall('TYPE', key).ok ~= 'hash' then redis.call('DEL', key) end
  redis.call('HINCRBY', key, 'r', by)
  -- An hour past the day's end: a replica whose clock is a little behind still finds it.
  redis.call('PEXPIREAT', key, math.floor(day_end / 1000) + 3600000)
end

local function charge_tokens(s, tokens)
  local tpm, rpd, tpd = limits(s)
  if tpm > 0 then
    local key = key_minute(s)
    local level = minute_used(s, tpm) + tokens
    if redis.pcall('TYPE', key).ok ~= 'hash' then redis.call('DEL', key) end
    redis.call('HSET', key, 'l', string.format('%.3f', level), 'a', string.format('%.0f', now))
    -- It expires once it has drained: its absence means empty.
    redis.call('PEXPIRE', key, math.ceil(level * 60000 / tpm) + 1000)
  end
  local key = key_day(s)
  if redis.pcall('TYPE', key).ok ~= 'hash' then redis.call('DEL', key) end
  redis.call('HINCRBY', key, 't', tokens)
  redis.call('PEXPIREAT', key, math.floor(day_end / 1000) + 3600000)
end

local function used_numbers(out)
  for s = 1, scopes do
    local tpm = limits(s)
    table.insert(out, math.ceil(minute_used(s, tpm)))
    table.insert(out, hget_num(key_day(s), 'r'))
    table.insert(out, hget_num(key_day(s), 't'))
  end
  table.insert(out, day_end)
  return out
end

if mode == 'read' then
  local stored = redis.pcall('GET', KEYS[1])
  local tat = (type(stored) == 'string' and tonumber(stored)) or 0
  return used_numbers({tat, 0, 0, 0, 0, 0})
end

if mode == 'charge' then
  local tokens = tonumber(ARGV[6])
  local group = tonumber(ARGV[7])
  local count = tonumber(ARGV[8])
  if tokens > 0 then
    charge_tokens(1, tokens)
    if group > 0 then charge_tokens(group, tokens) end
  end
  if count == 1 and group > 0 then count_request(group, 1) end
  if count == -1 then count_request(1, -1) end
  return used_numbers({0, 0, 0, 0, 0, 0})
end

-- admit: the bucket first, exactly as gcra.lua.
local tau = t * (burst - 1)
local stored = redis.pcall('GET', KEYS[1])
local tat = (type(stored) == 'string' and tonumber(stored)) or now
local earliest = tat - tau
if now < earliest then
  local out = {0, 0, earliest - now, tat - now, 0, 0}
  for g = 2, scopes do table.insert(out, 0); table.insert(out, 0) end
  return used_numbers(out)
end
local next_tat = math.max(tat, now) + t
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
local remaining = math.floor(math.min(now + tau + t - next_tat, tau + t) / t)

local kind, wait = closed(1)
if kind == 0 then count_request(1, 1) end
local out = {1, remaining, 0, next_tat - now, kind, wait}
for g = 2, scopes do
  local gk, gw = closed(g)
  table.insert(out, gk)
  table.insert(out, gw)
end
return used_numbers(out)

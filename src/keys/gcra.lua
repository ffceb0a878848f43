-- One client's token bucket in Redis: GCRA exactly as governor runs it in
-- process (governor-0.10 src/gcra.rs), so both backends admit the same requests.
--
-- KEYS[1]  the client's bucket key
-- ARGV[1]  T, the emission interval (60 s / requests_per_minute), microseconds
-- ARGV[2]  burst, the bucket's size
-- ARGV[3]  optional "now" in microseconds, for tests only; the service leaves it
--          out so every replica reads the one clock that matters, Redis's own
--
-- The key holds the theoretical arrival time (TAT, microseconds since the
-- epoch): the moment the bucket is full again. It expires at that moment, when
-- its absence means the same thing (a full bucket), so keys clean up by
-- themselves. Refusals write nothing.
--
-- Returns {allowed (1/0), remaining, retry_after_us, reset_us}: tokens left
-- after this request, the wait until one token is back (refusals only), and
-- the time until the bucket is full.

local t = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
-- How far TAT may run ahead of now: a full bucket admits `burst` at once.
local tau = t * (burst - 1)

local now = tonumber(ARGV[3])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end

-- No key (or an expired one): a full bucket, as governor's first `check`.
-- pcall, so a key of another type (written by someone else) reads as absent
-- and is overwritten below, instead of failing every check of this client.
local stored = redis.pcall('GET', KEYS[1])
local tat = (type(stored) == 'string' and tonumber(stored)) or now

local earliest = tat - tau
if now < earliest then
  return {0, 0, earliest - now, tat - now}
end

local next_tat = math.max(tat, now) + t
local ttl_ms = math.ceil((next_tat - now) / 1000)
-- %.0f keeps the integer exact; Lua's default formatting may use an exponent.
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', ttl_ms)
local remaining = math.floor(math.min(now + tau + t - next_tat, tau + t) / t)
return {1, remaining, 0, next_tat - now}

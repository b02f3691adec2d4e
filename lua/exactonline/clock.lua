--- exactonline.clock: Exact's clock, as its answers' Date headers tell. Rate-limit resets and the 570 s rule
-- are times on Exact's clock, and a container's or a laptop's clock can be minutes off it.
--
-- Each answer bounds the offset (Exact's clock minus ours): its Date, in whole seconds, was stamped between
-- our send and our receipt, so  Date - received <= offset < Date + 1 - sent.  The bounds of all answers are
-- intersected and get closer with every answer; one that contradicts them means a clock was set (ours, or
-- Exact's), and starts over from it. lower(t) is the earliest Exact's clock can read when ours reads t: a
-- wait for a reset on it is never short (no 429), and only the uncertainty left, under a second, long.
-- upper(t) is the latest: a token stamped with it is never thought older than it is (no refresh refused as
-- too early). No Date yet (missing, garbage, or before 2000): our own clock.
local core = require "exactonline.core"

local type, tostring, tonumber, error, setmetatable = type, tostring, tonumber, error, setmetatable
local string_format = string.format
local math_max, math_min = math.max, math.min
local http_date = core.http_date

local _M = {}

local SLACK = 0.001 -- float noise in the bounds, not a contradiction

local Clock = {}
Clock.__index = Clock

--- check(t) --> t, or raises: a clock reading that is not epoch seconds (NaN, negative, the year 5000)
function _M.check(t)
  if type(t) ~= "number" or not (t >= 0 and t <= 1e11) then
    error(string_format("exactonline: the clock read %s: config.clock (or the transport's now) must return "
      .. "epoch seconds", tostring(t)), 0)
  end
  return t
end

--- new([dict, key]) --> a clock. dict: a lua_shared_dict, so every nginx worker shares what any answer
-- taught (under key, default "exact_clock"); without it, this process's own.
function _M.new(dict, key)
  return setmetatable({ dict = dict, key = key or "exact_clock" }, Clock)
end

-- the bounds known: lo, hi | nil
function Clock:bounds()
  if not self.dict then return self.lo, self.hi end
  local v = self.dict:get(self.key) -- one value, so a worker never reads one bound of one pair and one of another
  if type(v) ~= "string" then return nil end
  local lo, hi = v:match("^(%S+) (%S+)$")
  return tonumber(lo), tonumber(hi)
end

function Clock:set(lo, hi)
  if self.dict then
    self.dict:set(self.key, string_format("%.6f %.6f", lo, hi))
  else
    self.lo, self.hi = lo, hi
  end
end

--- learn(date, sent, received): an answer's Date header (nil or garbage: nothing learned) and our clock's
-- readings when the request went and when its answer came back
function Clock:learn(date, sent, received)
  local d = http_date(date)
  if not d or type(sent) ~= "number" or type(received) ~= "number" or received < sent then return end
  local lo_i, hi_i = d - received, d + 1 - sent
  local lo, hi = self:bounds()
  if lo and lo_i <= hi + SLACK and hi_i >= lo - SLACK then
    lo, hi = math_max(lo, lo_i), math_min(hi, hi_i)
    self:set(lo, math_max(lo, hi))
  else
    self:set(lo_i, hi_i)
  end
end

--- offset() --> how far Exact's clock is ahead of ours at least (seconds; negative: behind) | nil (no Date yet)
function Clock:offset()
  return (self:bounds())
end

--- lower(t) --> the earliest time Exact's clock can read when ours reads t
function Clock:lower(t)
  local lo = self:bounds()
  return t + (lo or 0)
end

--- upper(t) --> the latest time Exact's clock can read when ours reads t
function Clock:upper(t)
  local _, hi = self:bounds()
  return t + (hi or 0)
end

return _M

--- Exact's rate limits per division, shared by every nginx worker of the gateway (a lua_shared_dict).
-- before(division) reserves one call in the division's minutely window right before it is sent, and waits
-- for the next window when this one is spent (up to max_wait), so clients sending faster than 60 a minute
-- queue here instead of earning 429s from Exact; a spent daily budget is refused at once. after(division,
-- headers) learns from each answer's X-RateLimit-* headers (what other apps and processes used shows there).
--
-- Per division: the window's end (Exact's X-RateLimit-Minutely-Reset), its limit, and the calls left in it
-- (Exact's remaining, less the calls reserved since: the lower estimate always wins). When the window ends
-- the next one opens with the full limit less the calls still on their way (sent before the end, they may
-- be counted after it; each that comes back counted in the old window gives its place back); its end is
-- learned from its first answer. A division never heard of sends one call first and the others wait for
-- what it learns.
local core = require "exactonline.core"
local exact_clock = require "exactonline.clock"

local ngx = ngx
local tonumber, tostring, setmetatable, ipairs, error = tonumber, tostring, setmetatable, ipairs, error
local table_sort = table.sort
local math_ceil, math_min, math_max, str_format = math.ceil, math.min, math.max, string.format
local ngx_sleep, ngx_now, ngx_update_time = ngx.sleep, ngx.now, ngx.update_time

local _M = {}

local MARGIN = 0.1 -- seconds past a window's end before the next is used: the server's clock must be there too
local POLL = 0.01 -- how often a waiting call looks again while another call learns a window's end
local PROBE_TTL = 30

local Pacer = {}
Pacer.__index = Pacer

local function now()
  ngx_update_time()
  return ngx_now()
end

-- Exact's clock (exactonline.clock over the shared dict, one for every worker and every client of the
-- gateway, which teach it from each answer's Date): the resets in X-RateLimit-* are times on that clock,
-- not ours. Its earliest reading: a window is never thought over before it is.
local function exact_now(self)
  return self.clock:lower(now())
end

local function epoch(v)
  v = tonumber(v)
  if v and v > 1e12 then v = v / 1000 end -- Exact sends milliseconds; one SDK says seconds
  return v
end

--- new(dict_name, { max_wait = seconds }) --> pacer
function _M.new(dict_name, opts)
  local dict = ngx.shared[dict_name]
  if not dict then error("exactonline.gateway.pacer: no lua_shared_dict named " .. tostring(dict_name), 2) end
  opts = opts or {}
  return setmetatable({ dict = dict, max_wait = tonumber(opts.max_wait) or 65,
    clock = exact_clock.new(dict, "exact_clock") }, Pacer)
end

-- the short lock around a division's window changes (no yield inside; it expires if a worker dies)
function Pacer:lock(d)
  local dict = self.dict
  for _ = 1, 200 do
    if dict:add("pl:" .. d, true, 1) then return true end
    ngx_sleep(0.001)
  end
  return false
end

function Pacer:unlock(d)
  self.dict:delete("pl:" .. d)
end

local function refused(code, wait, message, hint)
  return nil, core.error { kind = "rate_limit", code = code, message = message, hint = hint,
    retry_after = math_ceil(wait) }
end

-- one reservation in the current window: true | false
local function take(dict, d)
  local n = dict:incr("left:" .. d, -1, 0)
  if n and n >= 0 then return true end
  dict:incr("left:" .. d, 1, 0)
  return false
end

--- before(division) --> seconds waited | nil, rate_limit error (with retry_after)
function Pacer:before(d)
  local dict = self.dict
  local t0 = now()
  local deadline = t0 + self.max_wait
  while true do
    local t = exact_now(self) -- window ends are on Exact's clock; waits are the same seconds on ours
    local dend = dict:get("dend:" .. d)
    if dend and t < dend then
      local dleft = dict:get("dleft:" .. d)
      if dleft and dleft <= 0 then
        dict:incr("metric:daily_refused", 1, 0)
        return refused("daily_limit", dend - t, "the daily limit of API calls for division " .. d ..
          " is spent (Exact allows 5000 a day per app and division)",
          "retry after the daily reset (00:00 UTC); the Retry-After header says when")
      end
    end
    local wait
    local wend = dict:get("end:" .. d)
    if wend and t < wend then
      if take(dict, d) then break end
      wait = wend + MARGIN - t
    elseif wend and t < wend + MARGIN then
      wait = wend + MARGIN - t
    elseif not dict:get("limit:" .. d) then
      -- nothing known about this division yet: one call goes and tells the others
      if dict:add("probe:" .. d, true, PROBE_TTL) then break end
      wait = POLL
    else
      -- the window ended (or its end is not known yet): the next one has the full limit
      if self:lock(d) then
        local e = dict:get("end:" .. d)
        -- calls still on their way may be counted in the new window (sent before the end, arriving after)
        local full = dict:get("limit:" .. d) - math_max(0, dict:get("inflight:" .. d) or 0)
        if e and exact_now(self) >= e + MARGIN then
          dict:set("left:" .. d, full)
          dict:set("open:" .. d, e)
          dict:set("prev:" .. d, e)
          dict:delete("end:" .. d)
        elseif not e and not dict:get("open:" .. d) then
          dict:set("left:" .. d, full)
          dict:set("open:" .. d, 0)
        end
        self:unlock(d)
      end
      if not dict:get("end:" .. d) and dict:get("open:" .. d) then
        if take(dict, d) then break end
        wait = POLL -- spent before its first answer came back: that answer says when the window ends
      else
        wait = 0.001
      end
    end
    if now() + wait > deadline then
      dict:incr("metric:minutely_refused", 1, 0)
      return refused("minutely_limit", wait, str_format("the minutely limit of API calls for division %s is spent,"
        .. " and the next window opens later than max_wait (%g s) allows", d, self.max_wait),
        "retry after the reset; the Retry-After header says when")
    end
    ngx_sleep(wait)
  end
  local dleft = dict:get("dleft:" .. d)
  if dleft then dict:incr("dleft:" .. d, -1, 0) end
  dict:incr("inflight:" .. d, 1, 0) -- until after() hears its answer (or that none came)
  local waited = now() - t0
  if waited >= POLL then
    dict:incr("metric:waits", 1, 0)
    dict:incr("metric:wait_seconds", waited, 0)
  end
  return waited
end

-- lower the shared estimate to what Exact says is left (reservations made meanwhile stay subtracted)
local function lower(dict, key, remaining)
  local cur = dict:get(key)
  if cur and remaining < cur then dict:incr(key, remaining - cur, 0) end
end

--- after(division, headers): what one answer (lower-case header names) says about the division's limits
function Pacer:after(d, headers)
  local dict = self.dict
  dict:incr("inflight:" .. d, -1, 1)
  local remaining = tonumber(headers["x-ratelimit-minutely-remaining"])
  local reset = epoch(headers["x-ratelimit-minutely-reset"])
  local limit = tonumber(headers["x-ratelimit-minutely-limit"])
  if remaining and reset then
    if self:lock(d) then
      if limit then dict:set("limit:" .. d, limit) end
      local known, open = dict:get("end:" .. d), dict:get("open:" .. d)
      if known then
        if reset > known then -- Exact is in the next window already: the calls still out may count there too
          dict:set("left:" .. d, remaining - math_max(0, dict:get("inflight:" .. d) or 0))
          dict:set("end:" .. d, reset)
        elseif reset == known then
          lower(dict, "left:" .. d, remaining)
        elseif reset == dict:get("prev:" .. d) then
          dict:incr("left:" .. d, 1, 0) -- out at the rollover, and counted in the old window after all
        end
      elseif open then
        if reset > open then -- the first answer of the window opened in advance: now its end is known
          lower(dict, "left:" .. d, remaining)
          dict:set("end:" .. d, reset)
          dict:delete("open:" .. d)
        elseif reset == open then
          dict:incr("left:" .. d, 1, 0) -- out at the rollover, and counted in the old window after all
        end
      else -- the first answer ever for this division
        dict:set("left:" .. d, remaining)
        dict:set("end:" .. d, reset)
      end
      self:unlock(d)
    end
    if not dict:get("limit:" .. d) then dict:set("limit:" .. d, limit or remaining + 1) end
  end
  dict:delete("probe:" .. d)
  local dremaining = tonumber(headers["x-ratelimit-remaining"])
  local dreset = epoch(headers["x-ratelimit-reset"])
  if dremaining and dreset then
    local known = dict:get("dend:" .. d)
    if not known or dreset > known then
      dict:set("dend:" .. d, dreset)
      dict:set("dleft:" .. d, dremaining)
    elseif dreset == known then
      lower(dict, "dleft:" .. d, dremaining)
    end
    local dlimit = tonumber(headers["x-ratelimit-limit"])
    if dlimit then dict:set("dlimit:" .. d, dlimit) end
  end
  dict:set("seen:" .. d, true)
end

--- state(division) --> { minutely_limit, minutely_left, minutely_reset, daily_limit, daily_left, daily_reset }
function Pacer:state(d)
  local dict = self.dict
  local t = exact_now(self)
  local wend, dend = dict:get("end:" .. d), dict:get("dend:" .. d)
  local left = dict:get("left:" .. d)
  if wend and t >= wend then left = dict:get("limit:" .. d) end -- the window is over: all of it is back
  local dleft = dict:get("dleft:" .. d)
  if dend and t >= dend then dleft = dict:get("dlimit:" .. d) end
  return { minutely_limit = dict:get("limit:" .. d), minutely_left = left and math_min(left,
    dict:get("limit:" .. d) or left), minutely_reset = wend, daily_limit = dict:get("dlimit:" .. d),
    daily_left = dleft, daily_reset = dend }
end

--- how far Exact's clock is ahead of ours (seconds; negative: behind), as its Date headers tell
function Pacer:clock_offset()
  return self.clock:offset()
end

--- the divisions any answer has been seen for
function Pacer:divisions()
  local out = {}
  for _, k in ipairs(self.dict:get_keys(0)) do
    local d = k:match("^seen:(.+)$")
    if d then out[#out + 1] = d end
  end
  table_sort(out)
  return out
end

return _M

--- exactonline.budget: the error budget. Exact Online blocks an app for an hour once it has had 10 answers
-- of 400, 401, 403 or 404 per app, user, division and endpoint within an hour. The client counts those
-- answers and refuses, before sending, the call that could be the 10th, so a loop of failing calls costs an
-- error instead of the block (issue 13).
--
-- What is counted where: the store holds one token chain, which is one app and user, so the counts live in
-- the store (store.count: the file, PostgreSQL and shared-dict stores share them between processes and
-- workers; the memory store counts one process's) under "<client id> <division> <endpoint>". A store without
-- count() gets a counter in this process's memory. The endpoint is the path as Exact counts it: without the
-- origin, the query, the /api/v1/{division}/ prefix and key segments such as (guid'…'), lower-cased.
-- The window slides: an error leaves the count an hour (config window) after it arrived.
--
-- Concurrent calls: once an endpoint has an error in the window, a call reserves a place first (under
-- "<name> in flight", +1, given back with its answer) and goes only while errors + calls in flight stay within
-- the budget; otherwise it waits for the others' answers (up to the client's timeout), so processes and
-- coroutines racing for the last place cannot all take it. A call to an endpoint without errors only reads
-- the count (no write per call in the healthy case): a burst of failing calls sent at once from there can
-- pass the budget by the burst's size (a wave of 401s from a token that expired at Exact before the
-- client's clock said so is the known case).
local core = require "exactonline.core"
local memory_store = require "exactonline.store.memory"

local type, tostring, tonumber, pairs, error, setmetatable = type, tostring, tonumber, pairs, error, setmetatable
local math_floor, math_ceil, math_max, math_min = math.floor, math.ceil, math.max, math.min
local os_date = os.date
local string_format = string.format

local _M = {}

_M.ERRORS = 9 -- Exact blocks at 10: the most error answers the client lets happen per endpoint and window
_M.WINDOW = 3600
_M.COUNTED = { [400] = true, [401] = true, [403] = true, [404] = true }

local fallback = setmetatable({}, { __mode = "k" }) -- store without count() -> this process's counter

--- new(setting, client_id, store, timeout) --> budget | false (switched off). setting: nil or true (the
-- default: 9 errors an hour), false, a whole number of errors, or { errors = N, window = seconds }; raises on
-- a bad one. timeout: the client's per call (the longest a call waits for others in flight).
function _M.new(setting, client_id, store, call_timeout, level)
  level = (level or 1) + 1
  if setting == false then return false end
  local errors, window = _M.ERRORS, _M.WINDOW
  if type(setting) == "number" then
    errors = setting
  elseif type(setting) == "table" then
    for k in pairs(setting) do
      if k ~= "errors" and k ~= "window" then
        error("exactonline.new: config.error_budget has no setting '" .. tostring(k) .. "' (errors, window)", level)
      end
    end
    errors = setting.errors == nil and errors or setting.errors
    window = setting.window == nil and window or setting.window
  elseif setting ~= nil and setting ~= true then
    error("exactonline.new: config.error_budget must be false, a number of errors or { errors = N, window = S }",
      level)
  end
  if type(errors) ~= "number" or errors ~= math_floor(errors) or errors < 1 or errors > 1000 then
    error("exactonline.new: config.error_budget's errors must be a whole number from 1 to 1000", level)
  end
  if type(window) ~= "number" or window ~= window or window <= 0 or window > 86400 then
    error("exactonline.new: config.error_budget's window must be from 1 to 86400 seconds", level)
  end
  local count = type(store) == "table" and store.count
  if type(count) ~= "function" then
    local own = fallback[store]
    if not own then
      own = memory_store.new()
      fallback[store] = own
    end
    count = own.count
  end
  -- calls in flight (reserved places) leave the count after flight_window even if their process died
  local timeout = tonumber(call_timeout) or 30
  return { errors = errors, window = window, client_id = tostring(client_id or ""), count = count,
    flight_wait = timeout, flight_window = 2 * timeout + 60 }
end

-- "https://host/api/v1/3167822/crm/Accounts(guid'…')?$select=…" --> division, endpoint (as this call spells it)
function _M.endpoint(url)
  local path = url:gsub("^[%a][%w+.-]*://[^/]*", ""):gsub("#.*", "")
  local query = path:match("%?(.*)") or ""
  path = path:gsub("%?.*", "")
  local division, rest = path:match("^/api/v1/([^/]+)/(.*)$")
  if not division then
    rest = path:gsub("^/api/", ""):gsub("^/", "")
    division = query:match("[?&]?_Division_=(%d+)") or "-"
  end
  rest = rest:gsub("%b()", ""):gsub("%%28.-%%29", ""):gsub("/+$", "")
  if rest == "" then rest = "/" end
  return division, rest
end

local function counted(b, name, now, add, window) --> n, oldest | nil, err
  local ok, n, oldest = pcall(b.count, name, now, window or b.window, add)
  if not ok or n == nil then
    local why = ok and oldest or n
    if core.is_error(why) then return nil, why end
    if type(why) == "string" and why:match("interrupted!?$") then error(why, 0) end -- Ctrl-C is not a store failure
    return nil, core.error { kind = "store", code = "count",
      message = "the token store's count() failed: " .. tostring(why),
      hint = "check the token store (path, permissions, database); or set config.error_budget = false" }
  end
  return tonumber(n) or 0, tonumber(oldest)
end

local function refusal(b, division, endpoint, n, oldest, now, flying)
  local at = (oldest or now) + b.window
  local secs = math_max(1, math_ceil(at - now))
  return core.error {
    kind = "rate_limit", code = "error_budget",
    message = string_format("the client did not send this call: %d %s to %s%s got an error "
      .. "answer (400/401/403/404) in the last %s, and Exact Online blocks the app for an hour after 10; "
      .. "%scalls to it are allowed again from %s (in %d s)", n, n == 1 and "call" or "calls", endpoint,
      division == "-" and "" or (" in division " .. division),
      b.window == 3600 and "hour" or (tostring(b.window) .. " s"),
      flying and string_format("%d more %s still out, and waiting %g s did not bring their answers; ", flying,
        flying == 1 and "is" or "are", b.flight_wait) or "", os_date("!%Y-%m-%d %H:%M:%S UTC", math_ceil(at)),
      secs),
    hint = "fix what makes these calls fail (an id that does not exist, a bad $filter, a division or right "
      .. "the user lacks) before trying again; other endpoints still work. config.error_budget = false turns "
      .. "this guard off, at the risk of the block",
    endpoint = endpoint, division = division, count = n, reset = at, retry_after = secs,
  }
end

--- send(client, req) --> resp | nil, err: client._transport:request(req) within client._budget (client._now
-- the clock, client._sleep the wait); without a budget (false) the transport call alone.
function _M.send(client, req)
  local b = client._budget
  local transport = client._transport
  if not b then return transport:request(req) end
  local division, endpoint = _M.endpoint(req.url)
  local name = b.client_id .. " " .. division .. " " .. endpoint:lower()
  local flying = name .. " in flight"
  -- the window is on this machine's clock (client._now), which every process sharing the store reads alike;
  -- Exact's hour has the same length
  local now, waited, step, reserved = client._now(), 0, 0.02, false
  while true do
    local n, oldest = counted(b, name, now, 0)
    if not n then return nil, oldest end
    if n >= b.errors then return nil, refusal(b, division, endpoint, n, oldest, now) end
    if n == 0 then break end -- no error in the window: no last place to race for
    local f, ferr = counted(b, flying, now, 1, b.flight_window)
    if not f then return nil, ferr end
    -- the errors read again after the reservation: an answer counts its error before it leaves the flight
    n, oldest = counted(b, name, now, 0)
    if n and n + f <= b.errors then
      reserved = true
      break
    end
    counted(b, flying, now, -1, b.flight_window)
    if not n then return nil, oldest end
    if n >= b.errors then return nil, refusal(b, division, endpoint, n, oldest, now) end
    -- the calls in flight could fail and take the last places: wait for their answers, not past the timeout
    if waited >= b.flight_wait then return nil, refusal(b, division, endpoint, n, oldest, now, f - 1) end
    client._sleep(step)
    waited, step = waited + step, math_min(step * 2, 0.5)
    now = client._now()
  end
  local ok, resp, terr = pcall(transport.request, transport, req)
  if ok and resp and _M.COUNTED[resp.status] then counted(b, name, client._now(), 1) end -- counted from its answer
  if reserved then counted(b, flying, now, -1, b.flight_window) end -- after the count: the sum never dips
  if not ok then error(resp, 0) end
  return resp, terr
end

return _M

--- Faults on demand: the answers a long run meets now and then at Exact (maintenance pages, JSON 500s, 408s,
-- dropped connections, stalls, truncated bodies), scheduled per scope ("api" or "token") by call number:
-- the next N calls, or N calls starting after the next M. Calls are counted as they arrive.
local ngx = ngx
local cjson = require "cjson.safe"
local math = math
local tonumber, tostring, type, ipairs = tonumber, tostring, type, ipairs

local _M = {}

local state = ngx.shared.eo_sandbox_state

_M.KINDS = { html503 = true, html500 = true, json500 = true, json503 = true, ["408"] = true, garbage = true,
             truncate = true, slow = true, stall = true, hold = true, reset = true, ["401"] = true,
             rotate_error = true }
_M.TOKEN_ONLY = { rotate_error = true }

local function schedule(scope)
  return cjson.decode(state:get("faults:" .. scope) or "[]") or {}
end

--- add(scope, { kind, count, after, seconds, retry_after }): without `after` the fault replaces what is
-- pending for the scope and hits the next `count` calls (count 0 clears); with `after = M` it is added,
-- and hits calls M+1 … M+count from now
function _M.add(scope, f)
  local now = state:get("calls:" .. scope) or 0
  local list = f.after and schedule(scope) or {}
  if f.count > 0 then
    local from = now + (f.after or 0) + 1
    list[#list + 1] = { id = state:incr("fault_ids", 1, 0), kind = f.kind, from = from, to = from + f.count - 1,
                        seconds = f.seconds, retry_after = f.retry_after }
  end
  -- drop what is over (a hold stays until cleared or replaced: its calls wait for that)
  local keep = {}
  for _, x in ipairs(list) do
    if x.to > now or x.kind == "hold" then keep[#keep + 1] = x end
  end
  state:set("faults:" .. scope, cjson.encode(keep))
  return keep
end

--- take(scope) --> the fault for this call | nil (every call of the scope is counted)
function _M.take(scope)
  local n = state:incr("calls:" .. scope, 1, 0)
  local raw = state:get("faults:" .. scope)
  if not raw or raw == "[]" then return nil end
  for _, f in ipairs(cjson.decode(raw) or {}) do
    if n >= f.from and n <= f.to then
      f.scope = scope
      return f
    end
  end
  return nil
end

-- is fault `id` still in the scope's schedule (not cleared, replaced or reset)?
local function scheduled(scope, id)
  for _, f in ipairs(schedule(scope)) do
    if f.id == id then return true end
  end
  return false
end

--- pending(scope) --> how many calls are still to fail
function _M.pending(scope)
  local now = state:get("calls:" .. scope) or 0
  local n = 0
  for _, f in ipairs(schedule(scope)) do
    n = n + math.max(0, f.to - math.max(f.from, now + 1) + 1)
  end
  return n
end

function _M.list(scope)
  return schedule(scope), state:get("calls:" .. scope) or 0
end

local function html(status, title, message, retry_after)
  ngx.status = status
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  if retry_after then ngx.header["Retry-After"] = tostring(retry_after) end
  local text = "<!DOCTYPE html><html><head><title>" .. title .. "</title></head><body><h1>" .. title ..
    "</h1><p>" .. message .. "</p></body></html>"
  ngx.header["Content-Length"] = #text
  ngx.print(text)
  -- the status is set: finish normally (nginx would drop the answer of ngx.exit(408) and close)
  return ngx.exit(ngx.OK)
end

local function json(status, message, retry_after)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  if retry_after then ngx.header["Retry-After"] = tostring(retry_after) end
  local text = cjson.encode{ error = { code = "", message = { lang = "", value = message } } }
  ngx.header["Content-Length"] = #text
  ngx.print(text)
  -- the status is set: finish normally (nginx would drop the answer of ngx.exit(408) and close)
  return ngx.exit(ngx.OK)
end

--- serve(f) --> true when the answer was replaced (the caller stops); false when the call goes on
-- (slow: after the wait, the request is handled as usual — a write still happens)
function _M.serve(f)
  local kind, seconds, ra = f.kind, tonumber(f.seconds) or 1, f.retry_after
  if kind == "slow" then
    ngx.sleep(seconds)
    return false
  elseif kind == "hold" then
    -- held until the spec moves the schedule on (clears or replaces the fault, or resets): then handled as
    -- usual. The dict is looked at every 10 ms: workers share no other way to wake each other
    while scheduled(f.scope, f.id) do ngx.sleep(0.01) end
    return false
  elseif kind == "stall" then
    -- the request is never handled: after the wait the connection closes without an answer
    ngx.sleep(seconds)
    ngx.exit(444)
  elseif kind == "html503" then
    html(503, "Service Unavailable", "The service is temporarily unavailable. Please try again later.", ra)
  elseif kind == "html500" then
    html(500, "Runtime Error", "An application error occurred on the server.", ra)
  elseif kind == "json500" then
    json(500, "An error has occurred.", ra)
  elseif kind == "json503" then
    json(503, "The service is temporarily unavailable.", ra)
  elseif kind == "408" then
    html(408, "Request Timeout", "The server timed out waiting for the request.", ra)
  elseif kind == "garbage" then
    ngx.status = 200
    ngx.header["Content-Type"] = "application/json; charset=utf-8"
    ngx.print('{"d":{"results":[{"ID":"broken", "Name": <html>')
    ngx.exit(200)
  elseif kind == "truncate" then
    local body = '{"d":{"results":[{"ID":"00000000-0000-0000-0000-000000000000","Name":"trunc'
    ngx.status = 200
    ngx.header["Content-Type"] = "application/json; charset=utf-8"
    ngx.header["Content-Length"] = #body + 4096
    ngx.print(body)
    ngx.flush(true)
    ngx.exit(ngx.ERROR)
  elseif kind == "reset" then
    ngx.exit(444)
  elseif kind == "401" then
    ngx.header["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    json(401, "Unauthorized")
  else
    return false
  end
  return true
end

--- from_args(args) --> scope, fault | nil, err: the /_sandbox/fault query checked
function _M.from_args(args)
  local kind, scope = args.kind, args.scope or "api"
  if args.clear == "1" then return scope, { count = 0 } end
  if type(kind) ~= "string" or not _M.KINDS[kind] or (scope ~= "api" and scope ~= "token") or
     (_M.TOKEN_ONLY[kind] and scope ~= "token") then
    return nil, "unknown fault kind or scope (kinds: html503 html500 json500 json503 408 garbage truncate slow " ..
      "stall hold reset 401, and rotate_error for scope=token)"
  end
  local f = { kind = kind }
  for _, k in ipairs{ "count", "after", "seconds", "retry_after" } do
    if args[k] ~= nil then
      local n = tonumber(args[k])
      if not n or n < 0 or (k ~= "seconds" and n ~= math.floor(n)) then
        return nil, k .. " must be a non-negative " .. (k == "seconds" and "number" or "whole number")
      end
      f[k] = n
    end
  end
  f.count = f.count or 1
  f.seconds = f.seconds or 1
  return scope, f
end

return _M

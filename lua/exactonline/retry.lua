--- exactonline.retry: which failed tries of a call are tried again, how long to wait before each, and the
-- error when they stop. Exact answers the odd 5xx (maintenance pages, overloaded servers), drops connections
-- and times out on large pages; one such failure must not end a run of thousands of calls.
--   GET (and HEAD): tried again after a 5xx or 408 answer, a dropped, reset or refused connection, a timeout,
--     a truncated or undecodable 2xx answer. Other 4xx answers never (401 and 429 are the request loop's).
--   POST, PUT, DELETE: tried again only when the call provably never reached Exact (no connection); once it
--     may have, the error says the write may or may not have happened and how to check.
-- Waits: exponential backoff with jitter (retry_delay, doubling, at most retry_max_delay), at least what a
-- Retry-After asks, all of them together never longer than max_wait. The sleep is the client's (its _sleep), so
-- under OpenResty or transport/multi.lua a wait yields instead of blocking.
local core = require "exactonline.core"
local budget = require "exactonline.budget"

local type, tostring, tonumber, pcall, error, setmetatable, pairs, ipairs =
  type, tostring, tonumber, pcall, error, setmetatable, pairs, ipairs
local math_min, math_max, math_floor, math_ceil = math.min, math.max, math.floor, math.ceil
local str_byte, str_find, str_format, str_match, str_gsub = string.byte, string.find, string.format,
  string.match, string.gsub
local concat = table.concat

local _M = {}

_M.DEFAULTS = { retries = 4, retry_delay = 1, retry_max_delay = 30 }

local SAFE = { GET = true, HEAD = true, OPTIONS = true }

-- transport failures (curl's codes, and the ngx transport's) that never sent the request
local UNSENT = { CURLE_COULDNT_CONNECT = "a refused or unreachable connection",
                 CURLE_COULDNT_RESOLVE_HOST = "a host name that did not resolve",
                 connect = "a refused or unreachable connection" }
-- transport failures after the request may have been sent
local DROPPED = { CURLE_OPERATION_TIMEDOUT = "no answer in time (timeout)", timeout = "no answer in time (timeout)",
                  CURLE_PARTIAL_FILE = "a truncated answer", CURLE_GOT_NOTHING = "a closed connection, no answer",
                  CURLE_RECV_ERROR = "a dropped connection", CURLE_SEND_ERROR = "a dropped connection",
                  CURLE_WEIRD_SERVER_REPLY = "a garbled answer", CURLE_HTTP2 = "a garbled answer",
                  receive = "a dropped connection" }

--- options(config) --> the retry settings of a client (a bad value raises, as exactonline.new does); the
-- client sets o.max_wait (config.max_wait, checked by the C side)
function _M.options(config)
  local o = { max_wait = 120 }
  for k, dflt in pairs(_M.DEFAULTS) do
    local v = config[k]
    if v == nil then v = dflt end
    local whole = k == "retries"
    if type(v) ~= "number" or v ~= v or v < 0 or v > (whole and 100 or 86400) or (whole and v ~= math_floor(v)) then
      error(str_format("exactonline.new: config.%s must be %s", k, whole and "a whole number from 0 to 100 (tries "
        .. "per call; 0 or 1: no retries)" or "a number of seconds from 0 to 86400"), 3)
    end
    o[k] = v
  end
  if config.on_retry ~= nil and type(config.on_retry) ~= "function" then
    error("exactonline.new: config.on_retry must be a function", 3)
  end
  o.on_retry = config.on_retry
  return o
end

--- classify(err, resp) --> "unsent" | "again" | nil, what it got (one line, no secrets)
-- err: the transport's or the answer's error object; resp: the answer, when there was one
function _M.classify(err, resp)
  local status = err and err.status -- checked by the C side; a raw answer's own when there is no error
  if not err and resp and _M.retryable_status(resp.status) then status = resp.status end
  if err and err.kind == "oauth" and err.code == "access_denied" and err.status == 400 then
    -- a refresh after a 401 refused as too early: Exact says the access token is live, so the 401 was passing
    -- (and a 401 was never carried out, whatever the method)
    return "unsent", "HTTP 401, and a refresh refused as too early (the access token is live)"
  end
  if not resp and err and err.kind == "network" then
    local code = err.code
    -- curl's words when the time ran out before there was a connection
    local msg = tostring(err.message)
    if code == "CURLE_OPERATION_TIMEDOUT" and (str_find(msg, ": Connection timed out after", 1, true) or
        str_find(msg, ": Resolving timed out after", 1, true)) then
      return "unsent", "no connection in time (timeout)"
    end
    if UNSENT[code] then return "unsent", UNSENT[code] end
    if DROPPED[code] then return "again", DROPPED[code] end
    return nil, tostring(err.message or code or "a network failure")
  end
  if _M.retryable_status(status) then
    local html = err and str_find(tostring(err.message), "^an HTML page") or
      (resp and resp.headers and str_find(tostring(resp.headers["content-type"]), "html", 1, true))
    return "again", "HTTP " .. status .. (html and " (an HTML page)" or "")
  end
  if err and err.kind == "decode" and type(status) == "number" and status >= 200 and status < 300 then
    return "again", "an answer that could not be read (HTTP " .. status .. ")"
  end
  if status then return nil, "HTTP " .. status end
  return nil, err and tostring(err.message or err.code or err.kind) or "?"
end

--- retryable_status(status) --> true for a 5xx or 408 (a raw answer worth another try, if the method allows)
function _M.retryable_status(status)
  return type(status) == "number" and (status >= 500 and status < 600 or status == 408)
end

--- retry_after(headers, now) --> seconds to wait | nil: Retry-After as seconds or as an HTTP date (against
-- the answer's Date header when there is one: Exact's clock, not ours)
function _M.retry_after(headers, now)
  local v = type(headers) == "table" and headers["retry-after"]
  if type(v) ~= "string" then return nil end
  local secs = tonumber(str_match(v, "^%s*(%d+)%s*$"))
  if secs then return secs end
  local parse = core.http_date -- libcurl's date parser (the Date-header clock)
  local at = parse and parse(v)
  if not at then return nil end
  local date = parse(tostring(headers.date or ""))
  return math_max(0, at - (date or now()))
end

-- a fraction in [0, 1) from the system's randomness: processes started together must not retry together
local function jitter()
  local a, b = str_byte(core.random(2), 1, 2)
  return (a * 256 + b) / 65536
end

local Tries = {}
Tries.__index = Tries

-- a URL without its origin and query (the report names the endpoint; a query may be long)
local function path_of(url)
  return (str_gsub(str_match(tostring(url), "^[^?#]*"), "^[%a][%w+.-]*://[^/]*", ""))
end

--- start(st, method, url, what) --> the tries of one call. st: the client (its _retry, _sleep, _now,
-- _transport); what: "refresh" or "exchange" for the token calls (their own advice when unsure)
function _M.start(st, method, url, what)
  return setmetatable({ st = st, o = st._retry, method = method, what = what, waited = 0, got = {},
    path = path_of(url) }, Tries)
end

local CHECK = {
  POST = "look for the record before sending it again (a GET with a $filter on a field you set, such as Code, "
    .. "Description or YourRef)",
  PUT = "GET the record to see whether it carries the new values before sending it again",
  DELETE = "GET the record: a 404 means it is gone",
  refresh = "the stored refresh token is kept; the next call refreshes with it, and if Exact answers \"Old "
    .. "refresh token used.\" the new pair was lost on the way and a person must authorize again (exactonline auth)",
  exchange = "if the next step says there are no tokens, authorize again with a fresh code (a code works once)",
}

-- the error that ends the tries: the last one, with every try's outcome (when there was more than one, or
-- when a write may have happened)
function Tries:fail(err, maybe)
  local n = #self.got
  if n < 2 and not maybe and not self.stopped then return err end
  local e = {}
  for k, v in pairs(err) do e[k] = v end
  local parts = {}
  for i, g in ipairs(self.got) do parts[i] = g end
  local label = self.what and ("the token call (" .. self.what .. ")") or (self.method .. " " .. self.path)
  e.message = tostring(err.message or err.code or "failed")
  if n >= 2 then
    e.message = e.message .. str_format("; %s was tried %d times: %s", label, n, concat(parts, ", "))
  elseif self.stopped then
    e.message = e.message .. "; not tried again"
  end
  if maybe then
    e.maybe_done = true
    e.message = e.message .. str_format("; the call reached Exact Online, so %s may or may not have happened: "
      .. "it was not sent again", self.what and ("the " .. self.what) or ("the " .. self.method))
    e.hint = CHECK[self.what or self.method] or CHECK.PUT
  elseif self.stopped then
    e.message = e.message .. (n >= 2 and "; " or ": ") .. self.stopped
    e.hint = (err.hint or "try again later") .. " (config.retries and max_wait set how long the client keeps "
      .. "trying)"
  end
  e.tries = n
  return core.error(e)
end

--- tries:again(err, resp, req) --> true once it has waited for the next try | false, the error that ends the
-- call. For raw answers (the gateway) err may be nil: the answer's status decides. req: the try's request
-- (its URL is the one reported)
function Tries:again(err, resp, req)
  if req and req.url then self.path = path_of(req.url) end
  local class, got = _M.classify(err, resp)
  local got_list = self.got
  got_list[#got_list + 1] = got
  local n, o = #got_list, self.o
  if not err then err = core.error { kind = "http", status = resp and resp.status, message = got } end
  if not class then return false, self:fail(err) end
  local safe = class == "unsent" or (SAFE[self.method] and not self.what)
  if not safe then return false, self:fail(err, true) end
  if n >= o.retries then
    self.stopped = n > 1 and str_format("config.retries allows %d tries", o.retries) or nil
    return false, self:fail(err)
  end
  local left = o.max_wait - self.waited
  local wait = math_min(o.retry_max_delay, o.retry_delay * 2 ^ (n - 1))
  wait = wait * (0.5 + 0.5 * jitter())
  local asked = resp and _M.retry_after(resp.headers, self.st._now)
  if asked then wait = math_max(wait, asked) end
  if asked and asked > left then
    self.stopped = str_format("Exact asked to wait %d s (Retry-After), more than max_wait leaves (%d s)",
      math_ceil(asked), math_floor(left))
    return false, self:fail(err)
  end
  if left <= 0 then
    self.stopped = str_format("the waits between tries reached max_wait (%g s)", o.max_wait)
    return false, self:fail(err)
  end
  wait = math_min(wait, left)
  if o.on_retry then
    local ok, go_on = pcall(o.on_retry, { attempt = n, tries = o.retries, method = self.method, path = self.path,
      got = got, status = resp and resp.status, error = err, wait = wait, retry_after = asked,
      waited = self.waited })
    if ok and go_on == false then
      self.stopped = "on_retry said to stop"
      return false, self:fail(err)
    end
  end
  self.waited = self.waited + wait
  if wait > 0 then self.st._sleep(wait) end
  return true
end

--- perform(st, req, what) --> resp | nil, err: one call through the transport, tried again once at most, and
-- only when it provably never reached the server (the token calls: a refresh token may rotate, a code works
-- once; never in a loop, and a refresh holds the store's lock meanwhile)
function _M.perform(st, req, what)
  local tries = _M.start(st, req.method or "POST", req.url, what)
  tries.o = setmetatable({ retries = math_min(st._retry.retries, 2) }, { __index = st._retry })
  while true do
    local resp, err = budget.send(st, req) -- within the error budget
    if resp then return resp end
    local again, ferr = tries:again(err, nil, req)
    if not again then return nil, ferr end
  end
end

--- describe(info) --> one line for a log or a terminal: what a try got and when the next comes
function _M.describe(info)
  return str_format("%s %s: try %d of %d got %s; trying again in %.1f s", info.method, info.path, info.attempt,
    info.tries, info.got, info.wait)
end

return _M

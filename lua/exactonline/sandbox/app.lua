--- The sandbox app (runs inside nginx): OAuth endpoints, control endpoints, dispatch to the API.
-- All state lives in lua_shared_dicts so every worker agrees: eo_sandbox_state (tokens, counters,
-- faults, clock, limits: flushed by /_sandbox/reset) and eo_sandbox_data (the administrations' changes:
-- kept, unless /_sandbox/reset?data=1; and the era, which only grows).
local ngx = ngx
local cjson = require "cjson.safe"
local store = require "exactonline.sandbox.store"
local odata = require "exactonline.sandbox.odata"
local faults = require "exactonline.sandbox.faults"
local control = require "exactonline.sandbox.control"
local string, table, math, os = string, table, math, os
local tonumber, type, ipairs, pairs, dofile = tonumber, type, ipairs, pairs, dofile

local _M = {}

local state = ngx.shared.eo_sandbox_state
local data = ngx.shared.eo_sandbox_data
local settings = { apps = {}, division = 3167822, divisions = 2, sizes = {} }
local apps = {}

_M.CODE_TTL = 180
_M.ACCESS_TTL = 600
_M.TOO_EARLY = 570
_M.REFRESH_TTL = 30 * 86400

_M.STATS = { "token_calls", "code_exchanges", "refreshes", "refresh_attempts", "old_refresh_used",
             "too_early", "refresh_expired", "invalid_grant", "invalid_client", "codes_issued",
             "api_calls", "unauthorized", "rate_limited", "faults_served", "xml_calls",
             "webhook_subscriptions", "webhook_deliveries", "webhook_failures" }

function _M.init(path)
  settings = dofile(path)
  for _, a in ipairs(settings.apps) do apps[a.client_id] = a end
  -- the user's companies: division, division + 1, …; each has its own generated administration
  local list = {}
  for i = 1, math.max(1, settings.divisions or 2) do list[i] = settings.division + i - 1 end
  store.configure{ divisions = list, sizes = settings.sizes or {} }
  store.init_generation()
  _M.settings = settings
  _M.apps = apps
  -- load every module now, in the master: workers (run as nobody when started as root) read no files
  for _, m in ipairs{ "api", "xml", "webhooks", "gen" } do require("exactonline.sandbox." .. m) end
end

function _M.init_worker()
  math.randomseed(ngx.worker.pid() * 1000 + math.floor(ngx.now() * 1000) % 100000)
end

function _M.divisions()
  return store.divisions()
end

function _M.now()
  return ngx.now() + (state:get("clock_offset") or 0)
end

-- eras: each /_sandbox/reset starts a new one, and a call counts (stats, the request log) in the era it
-- arrived in. What a call from before a reset still does after it (the end of a slow fault's wait, a log
-- phase that runs late, a webhook retry) lands in its own era's keys, never in the counts after the reset.
function _M.era()
  return data:get("era") or 0
end

function _M.new_era()
  data:incr("era", 1, 0)
end

--- call_era() --> the era this call arrived in (now's, outside a call)
local function call_era()
  return ngx.ctx.era or _M.era()
end
_M.call_era = call_era

--- forgotten() --> true when a reset came after this call arrived: it must change nothing more
function _M.forgotten()
  return call_era() ~= _M.era()
end

--- stat(name, n, era): count n (default 1) under name, in this call's era (or the one given: a timer's)
function _M.stat(name, n, era)
  state:incr("stat:" .. (era or call_era()) .. ":" .. name, n or 1, 0)
end

--- stat_value(name) --> the count so far in the current era
function _M.stat_value(name)
  return state:get("stat:" .. _M.era() .. ":" .. name) or 0
end

local function random_token(len, bang)
  local parts = {}
  local seq = ngx.shared.eo_sandbox_data:incr("seq", 1, 0)
  local i = 0
  while #table.concat(parts) < len do
    i = i + 1
    parts[#parts + 1] = ngx.encode_base64(ngx.sha1_bin(seq .. ":" .. i .. ":" .. ngx.worker.pid() .. ":" ..
      ngx.now() .. ":" .. math.random()))
  end
  local s = table.concat(parts):gsub("[+/=]", ""):sub(1, len)
  if bang then
    local at = math.floor(len / 3)
    s = s:sub(1, at) .. "!" .. s:sub(at + 1)
  end
  return s
end

local function record(key)
  local raw = state:get(key)
  return raw and cjson.decode(raw) or nil
end
_M.record = record

local function json_reply(status, body, headers)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  if headers then
    for k, v in pairs(headers) do ngx.header[k] = v end
  end
  local text = type(body) == "string" and body or cjson.encode(body)
  ngx.header["Content-Length"] = #text
  ngx.print(text)
  return ngx.exit(status)
end
_M.json_reply = json_reply

local function html_reply(status, title, message)
  ngx.status = status
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  local text = "<!DOCTYPE html><html><head><title>" .. odata.xml_escape(title) .. "</title></head><body><h1>" ..
    odata.xml_escape(title) .. "</h1><p>" .. odata.xml_escape(message) .. "</p></body></html>"
  ngx.header["Content-Length"] = #text
  ngx.print(text)
  return ngx.exit(status)
end
_M.html_reply = html_reply

--- faults (exactonline.sandbox.faults): take_fault(scope) --> the fault for this call | nil;
-- serve_fault(f) --> true when the answer was replaced (the caller stops), false when the call goes on
function _M.take_fault(scope)
  local f = faults.take(scope)
  if f then
    _M.stat("faults_served")
    ngx.ctx.fault = f.kind
    _M.log_pending() -- a stalled call shows its fault while it stalls
  end
  return f
end

function _M.serve_fault(f)
  if faults.serve(f) then return true end
  -- a slow fault's wait that outlived a reset: the reset forgot this call, so it ends here, unanswered
  if _M.forgotten() then return ngx.exit(444) end
  return false
end

-- auth ----------------------------------------------------------------------------------------------

local function auth()
  local args = ngx.req.get_uri_args(100)
  local client_id, redirect_uri = args.client_id, args.redirect_uri
  if type(client_id) ~= "string" or type(redirect_uri) ~= "string" then
    return html_reply(400, "Error", "The request is missing client_id or redirect_uri.")
  end
  local app = apps[client_id]
  if not app then
    return html_reply(400, "Error", "Client with identifier '" .. client_id .. "' not found.")
  end
  if redirect_uri ~= app.redirect_uri then
    return html_reply(400, "Error", "The redirect URI '" .. redirect_uri ..
      "' does not match the redirect URI registered for this app.")
  end
  if args.response_type ~= "code" then
    return html_reply(400, "Error", "response_type must be 'code'.")
  end
  local st = type(args.state) == "string" and args.state or nil
  local sep = redirect_uri:find("?", 1, true) and "&" or "?"
  local location
  if args.sandbox_deny then
    location = redirect_uri .. sep .. "error=access_denied&error_description=" ..
      odata.escape_strict("The user denied access.")
  else
    local code = "stampNL001." .. random_token(24) .. "!" .. random_token(120)
    state:set("code:" .. code, cjson.encode{ client_id = client_id, redirect_uri = redirect_uri,
                                             issued = _M.now() })
    _M.stat("codes_issued")
    location = redirect_uri .. sep .. "code=" .. odata.escape_strict(code)
  end
  if st then location = location .. "&state=" .. odata.escape_strict(st) end
  ngx.header["Location"] = location
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.status = 302
  ngx.print('<html><body>Object moved to <a href="' .. odata.xml_escape(location) .. '">here</a>.</body></html>')
  return ngx.exit(302)
end

-- token ---------------------------------------------------------------------------------------------

local function oauth_error(status, err, description, headers)
  return json_reply(status, { error = err, error_description = description }, headers)
end

-- the refresh token's death date as Exact words it: 10/11/2022 9:18:20 PM
local function us_date(t)
  local d = os.date("!*t", math.floor(t))
  local h = d.hour % 12
  if h == 0 then h = 12 end
  return string.format("%d/%d/%d %d:%02d:%02d %s", d.month, d.day, d.year, h, d.min, d.sec,
    d.hour < 12 and "AM" or "PM")
end

-- keep_refresh: a refresh answer without refresh_token (the old one stays valid), as some apps see
local function issue(client_id, chain, keep_refresh)
  local now = _M.now()
  local access = "stampNL001." .. random_token(600)
  local refresh = not keep_refresh and random_token(300, true) or nil
  state:set("at:" .. access, cjson.encode{ client_id = client_id, issued = now, chain = chain })
  if refresh then
    state:set("rt:" .. refresh, cjson.encode{ client_id = client_id, issued = now, chain = chain })
  end
  state:set("chain:" .. chain, now)
  if ngx.ctx.rotate_error then
    -- the fault "rotate_error": the chain moved on (the old refresh token is spent), but the answer
    -- is an error that carries only the new refresh token; a client must keep it or the chain is dead
    return json_reply(503, { error = "temporarily_unavailable",
      error_description = "The access token could not be issued. Please try again later.",
      refresh_token = refresh })
  end
  return json_reply(200, { access_token = access, token_type = state:get("cfg:token_type") or "bearer",
                           expires_in = state:get("cfg:expires_in_number") and _M.ACCESS_TTL or "600",
                           refresh_token = refresh })
end

--- remember what a request looked like on the wire, for /_sandbox/stats
function _M.remember(which)
  state:set("last:" .. which, cjson.encode{
    user_agent = ngx.var.http_user_agent, accept = ngx.var.http_accept,
    accept_encoding = ngx.var.http_accept_encoding, connection_header = ngx.var.http_connection,
    content_type = ngx.var.http_content_type, protocol = ngx.var.server_protocol,
    connection = tonumber(ngx.var.connection), connection_requests = tonumber(ngx.var.connection_requests),
  })
end

local function token()
  _M.stat("token_calls")
  _M.remember("token")
  local f = _M.take_fault("token")
  if f and f.kind == "rotate_error" then ngx.ctx.rotate_error = true
  elseif f and _M.serve_fault(f) then return end
  if ngx.req.get_method() ~= "POST" then
    return oauth_error(405, "invalid_request", "Use POST.")
  end
  local ctype = (ngx.var.http_content_type or ""):lower()
  if not ctype:find("application/x-www-form-urlencoded", 1, true) then
    return oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded.")
  end
  ngx.req.read_body()
  local args = ngx.req.get_post_args(100) or {}
  local client_id, secret, grant = args.client_id, args.client_secret, args.grant_type
  local app = type(client_id) == "string" and apps[client_id]
  if not app then
    _M.stat("invalid_client")
    return oauth_error(400, "invalid_client")
  end
  if secret ~= app.client_secret then
    _M.stat("invalid_client")
    return oauth_error(401, "invalid_client")
  end
  local now = _M.now()
  if grant == "authorization_code" then
    local code = args.code
    local rec = type(code) == "string" and record("code:" .. code)
    if not rec or rec.client_id ~= client_id then
      _M.stat("invalid_grant")
      return oauth_error(400, "invalid_grant", "The authorization code is invalid.")
    end
    if now - rec.issued > _M.CODE_TTL then
      _M.stat("invalid_grant")
      return oauth_error(400, "invalid_grant", "The authorization code has expired.")
    end
    if args.redirect_uri ~= rec.redirect_uri then
      _M.stat("invalid_grant")
      return oauth_error(400, "invalid_grant", "The redirect_uri does not match the authorization request.")
    end
    if not state:add("code_used:" .. code, true) then
      _M.stat("invalid_grant")
      return oauth_error(400, "invalid_grant", "The authorization code has already been used.")
    end
    _M.stat("code_exchanges")
    return issue(client_id, state:incr("chains", 1, 0))
  elseif grant == "refresh_token" then
    _M.stat("refresh_attempts")
    local rt = args.refresh_token
    local rec = type(rt) == "string" and record("rt:" .. rt)
    if not rec or rec.client_id ~= client_id then
      _M.stat("invalid_grant")
      return oauth_error(400, "invalid_grant", "The refresh token is invalid.")
    end
    if state:get("rt_used:" .. rt) then
      _M.stat("old_refresh_used")
      return oauth_error(401, "unauthorized_client", "Old refresh token used.")
    end
    if now > rec.issued + _M.REFRESH_TTL then
      _M.stat("refresh_expired")
      return oauth_error(400, "invalid_request", "The refresh token expired at " ..
        us_date(rec.issued + _M.REFRESH_TTL) .. " and it is now " .. us_date(now) .. ".")
    end
    local last = state:get("chain:" .. rec.chain) or 0
    if now - last < _M.TOO_EARLY then
      _M.stat("too_early")
      return oauth_error(400, "access_denied", "Rate limit exceeded: access_token not expired",
        { Reason = "TooEarlyToRefreshTokens: Rate limit exceeded: access_token not expired" })
    end
    local keep = state:get("cfg:refresh_keeps") and not ngx.ctx.rotate_error
    -- only one request may spend a refresh token, however many arrive at once
    if not keep and not state:add("rt_used:" .. rt, true) then
      _M.stat("old_refresh_used")
      return oauth_error(401, "unauthorized_client", "Old refresh token used.")
    end
    _M.stat("refreshes")
    return issue(client_id, rec.chain, keep)
  end
  return oauth_error(400, "unsupported_grant_type")
end

--- the bearer token's record, or nil: used by the API
function _M.bearer()
  local h = ngx.var.http_authorization
  local tok = h and h:match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
  if not tok then return nil end
  local rec = record("at:" .. tok)
  if not rec then return nil end
  if _M.now() - rec.issued >= _M.ACCESS_TTL then return nil end
  return rec
end

function _M.limits()
  return tonumber(state:get("cfg:minutely")) or 60, tonumber(state:get("cfg:daily")) or 5000,
    tonumber(state:get("cfg:window")) or 60
end

-- only loopback names: a page elsewhere that rebinds its own name to 127.0.0.1 sends its own Host
local function loopback_host(host)
  if type(host) ~= "string" then return false end
  local name = host:lower():match("^%[(.-)%]:?%d*$") or host:lower():match("^([^:]+):?%d*$")
  if not name then return false end
  return name == "localhost" or name:match("%.localhost$") ~= nil or name == "::1" or
    name:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

local function same(a, b)
  return type(a) == "string" and ngx.sha1_bin(a) == ngx.sha1_bin(b)
end

--- log phase: remember every API and token call (method, path and query, status, fault) for
-- /_sandbox/requests: what reached the server, in arrival order
local LOG_KEEP = 20000
_M.LOG_KEEP = LOG_KEEP

-- arrival: numbered and logged as "pending"; the log phase fills in the status
local function log_entry(status)
  local ctx = ngx.ctx
  if not ctx.log_n then return end
  state:set("reqlog:" .. ctx.era .. ":" .. ctx.log_n, cjson.encode{ n = ctx.log_n, scope = ctx.log_scope,
    method = ngx.req.get_method(), uri = ngx.var.request_uri, status = status, fault = ctx.fault,
    clock = ctx.log_clock })
end

local function log_arrival()
  local uri = ngx.var.uri
  local scope
  if uri == "/api/oauth2/token" then
    scope = "token"
  elseif uri:sub(1, 8) == "/api/v1/" or uri:lower():sub(1, 6) == "/docs/" then
    scope = "api"
  else
    return
  end
  local era = ngx.ctx.era
  local n = state:incr("reqlog:" .. era .. ":n", 1, 0)
  ngx.ctx.log_n, ngx.ctx.log_scope, ngx.ctx.log_clock = n, scope, _M.now()
  log_entry("pending")
  if n > LOG_KEEP then state:delete("reqlog:" .. era .. ":" .. (n - LOG_KEEP)) end
end

function _M.log()
  log_entry(ngx.status)
end

function _M.log_pending()
  log_entry("pending")
end

--- header filter: the answer's Date is on the sandbox clock (real time plus clock_offset and /_sandbox/advance),
-- as a far server's clock may differ from the client's, and stamped as the answer goes out (after a slow
-- fault's wait too), as a real server's is
function _M.date()
  ngx.update_time()
  ngx.header["Date"] = ngx.http_time(math.floor(_M.now()))
end

function _M.handle()
  local uri = ngx.var.uri
  ngx.ctx.era = _M.era()
  log_arrival()
  if not loopback_host(ngx.var.http_host) then
    return json_reply(421, { error = "the sandbox answers only to a loopback name (localhost, 127.0.0.1, [::1]), " ..
      "not Host: " .. tostring(ngx.var.http_host) })
  end
  if uri:sub(1, 10) == "/_sandbox/" then
    local given = ngx.var.http_x_sandbox_token
    if not given then
      return json_reply(401, { error = "every /_sandbox/ call needs the header X-Sandbox-Token: the control " ..
        "token the sandbox printed when it started (or EXACTONLINE_SANDBOX_TOKEN, when set)" })
    end
    if not same(given, settings.control_token) then
      return json_reply(403, { error = "wrong X-Sandbox-Token: use the control token this sandbox printed " ..
        "when it started" })
    end
    local ctl = uri:match("^/_sandbox/(%w+)$")
    if not ctl then return json_reply(404, { error = "unknown control endpoint" }) end
    return control.handle(_M, ctl)
  end
  if uri == "/api/oauth2/auth" then return auth() end
  if uri == "/api/oauth2/token" then return token() end
  return require("exactonline.sandbox.api").handle(_M)
end

return _M

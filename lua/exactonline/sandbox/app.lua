--- The sandbox app (runs inside nginx): OAuth endpoints, control endpoints, dispatch to the API.
-- All state lives in lua_shared_dicts so every worker agrees: eo_sandbox_state (tokens, counters,
-- faults, clock, limits: flushed by /_sandbox/reset) and eo_sandbox_data (the administrations' changes:
-- kept, unless /_sandbox/reset?data=1).
local ngx = ngx
local cjson = require "cjson.safe"
local catalog = require "exactonline.sandbox.catalog"
local store = require "exactonline.sandbox.store"
local change = require "exactonline.sandbox.change"
local odata = require "exactonline.sandbox.odata"
local faults = require "exactonline.sandbox.faults"
local string, table, math, os = string, table, math, os
local tonumber, type, ipairs, pairs, dofile = tonumber, type, ipairs, pairs, dofile

local _M = {}

local state = ngx.shared.eo_sandbox_state
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

function _M.stat(name, n)
  state:incr("stat:" .. name, n or 1, 0)
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
    ngx.ctx.fault = f.kind
    _M.log_pending() -- a stalled call shows its fault while it stalls
  end
  return f
end

_M.serve_fault = faults.serve

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

-- control -------------------------------------------------------------------------------------------


-- on/off switches of /_sandbox/config (1 or 0): how token answers and 429s look
local FLAGS = { "no429headers", "expires_in_number", "refresh_keeps", "mandatory_filters" }

function _M.limits()
  return tonumber(state:get("cfg:minutely")) or 60, tonumber(state:get("cfg:daily")) or 5000,
    tonumber(state:get("cfg:window")) or 60
end

local function stats()
  local out = {}
  for _, name in ipairs(_M.STATS) do out[name] = state:get("stat:" .. name) or 0 end
  out.clock = _M.now()
  out.clock_offset = state:get("clock_offset") or 0
  local m, d, w = _M.limits()
  out.limits = { minutely = m, daily = d, window = w }
  out.faults_pending = { api = faults.pending("api"), token = faults.pending("token") }
  local api_list, api_calls = faults.list("api")
  local token_list, token_calls = faults.list("token")
  out.faults = { api = api_list, token = token_list }
  out.calls = { api = api_calls, token = token_calls }
  out.options = { token_type = state:get("cfg:token_type") or "bearer" }
  for _, k in ipairs(FLAGS) do out.options[k] = state:get("cfg:" .. k) or false end
  -- what the last API and token requests looked like on the wire (headers, connection reuse)
  out.last_api_request = record("last:api")
  out.last_token_request = record("last:token")
  return out
end

local function control(path)
  local args = ngx.req.get_uri_args(50)
  for k, v in pairs(args) do
    if type(v) == "table" then args[k] = v[#v] end
  end
  local method = ngx.req.get_method()
  if path == "stats" then
    return json_reply(200, stats())
  elseif path == "entity" then
    return _M.entity(args)
  elseif path == "requests" then
    return _M.requests(args)
  end
  if method ~= "POST" then
    return json_reply(405, { error = "use POST" })
  end
  if path == "advance" then
    local s = tonumber(args.seconds)
    if not s then return json_reply(400, { error = "seconds required" }) end
    state:incr("clock_offset", s, 0)
    return json_reply(200, { clock = _M.now() })
  elseif path == "config" then
    for _, k in ipairs{ "minutely", "daily", "window" } do
      if args[k] then
        local n = tonumber(args[k])
        if not n or n <= 0 then return json_reply(400, { error = k .. " must be a positive number" }) end
        state:set("cfg:" .. k, n)
      end
    end
    if args.webhook_delay then
      -- the first retry delay of a failed webhook delivery (then doubling, up to 10 tries)
      local n = tonumber(args.webhook_delay)
      if not n or n <= 0 then return json_reply(400, { error = "webhook_delay must be a positive number" }) end
      state:set("cfg:webhook_delay", n)
    end
    if args.clock_offset then
      -- the sandbox clock = real time + offset (seconds; negative: behind): its Date header, tokens, limits
      local n = tonumber(args.clock_offset)
      if not n then return json_reply(400, { error = "clock_offset must be a number of seconds" }) end
      state:set("clock_offset", n)
    end
    for _, k in ipairs(FLAGS) do
      local v = args[k]
      if v ~= nil then
        if v ~= "1" and v ~= "0" then return json_reply(400, { error = k .. " must be 1 or 0" }) end
        state:set("cfg:" .. k, v == "1" or nil)
      end
    end
    if args.token_type ~= nil then
      if type(args.token_type) ~= "string" or not args.token_type:match("^%a+$") then
        return json_reply(400, { error = "token_type must be a word" })
      end
      state:set("cfg:token_type", args.token_type)
    end
    return json_reply(200, stats().limits)
  elseif path == "fault" then
    local scope, f = faults.from_args(args)
    if not scope then return json_reply(400, { error = f }) end
    local list = faults.add(scope, f)
    return json_reply(200, { kind = f.kind, scope = scope, count = f.count, after = f.after, scheduled = list })
  elseif path == "reset" then
    state:flush_all()
    if args.data == "1" then store.reset_data() end
    return json_reply(200, { reset = true, data = args.data == "1" })
  elseif path == "change" then
    return _M.change(args)
  end
  return json_reply(404, { error = "unknown control endpoint" })
end

-- /_sandbox/change and /_sandbox/entity ---------------------------------------------------------------

local function control_entity(args)
  local div = tonumber(args.division) or settings.division
  if not store.has_division(div) then return nil, nil, "unknown division " .. tostring(args.division) end
  local e = catalog.by_name[type(args.entity) == "string" and args.entity:lower() or ""]
  if not e then
    local names = {}
    for _, x in ipairs(catalog.entities) do names[#names + 1] = x.name end
    return nil, nil, "entity must be one of " .. table.concat(names, ", ")
  end
  return div, e
end

local function keys_of(e, rows)
  local out = {}
  for i, r in ipairs(rows) do out[i] = r[e.key] end
  return out
end

--- POST /_sandbox/change?division=D&entity=E&create=N&update=N&delete=N[&keys=K1,K2] (body: fields to set)
function _M.change(args)
  local div, e, err = control_entity(args)
  if not div then return json_reply(400, { error = err }) end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  local fields
  if body and body ~= "" then
    fields = cjson.decode(body)
    if type(fields) ~= "table" then return json_reply(400, { error = "the body must be a JSON object of fields" }) end
  end
  local counts = {}
  for _, k in ipairs{ "create", "update", "delete" } do
    counts[k] = tonumber(args[k] or 0)
    if not counts[k] or counts[k] < 0 or counts[k] ~= math.floor(counts[k]) then
      return json_reply(400, { error = k .. " must be a whole number" })
    end
  end
  local targets
  if type(args.keys) == "string" and args.keys ~= "" then
    targets = {}
    for k in args.keys:gmatch("[^,]+") do
      local i = change.index_of(div, e, k)
      if not i or not change.row(div, e, i) then return json_reply(404, { error = "no row with key " .. k }) end
      targets[#targets + 1] = i
    end
  end
  local out = { division = div, entity = e.name, created = {}, updated = {}, deleted = {} }
  if counts.create > 0 then
    local rows, cerr = change.create(div, e, counts.create, fields, _M)
    if not rows then return json_reply(400, { error = cerr }) end
    out.created = keys_of(e, rows)
  end
  if counts.update > 0 or (targets and args.delete == nil and counts.create == 0) then
    local rows, uerr = change.update(div, e, targets or change.pick(div, e, counts.update, "update"), fields, _M)
    if not rows then return json_reply(400, { error = uerr }) end
    out.updated = keys_of(e, rows)
  end
  if counts.delete > 0 or (targets and args.delete ~= nil) then
    local rows, derr = change.delete(div, e, targets or change.pick(div, e, counts.delete, "delete"), _M)
    if not rows then return json_reply(400, { error = derr }) end
    out.deleted = keys_of(e, rows)
  end
  out.timestamp = store.last_timestamp(div)
  return json_reply(200, out)
end

--- GET /_sandbox/entity?division=D&entity=E[&view=regular|sync]: every live row, to compare a replica with
function _M.entity(args)
  local div, e, err = control_entity(args)
  if not div then return json_reply(400, { error = err }) end
  local view = args.view or (e.sync and "sync" or "regular")
  local api = require "exactonline.sandbox.api"
  local rows = {}
  if view == "sync" then
    if not e.sync then return json_reply(400, { error = e.name .. " has no sync endpoint" }) end
    local all = store.sync(div, e.store, 0, math.huge)
    for i, r in ipairs(all) do rows[i] = api.project(r, e.sync_fields, e.sync_types, "", e.type) end
  elseif view == "regular" then
    if not e.path then return json_reply(400, { error = e.name .. " has no regular endpoint" }) end
    for i = 1, change.count(div, e) do
      local r = change.row(div, e, i)
      if r then rows[#rows + 1] = api.project(r, e.fields, e.types, "", e.type) end
    end
  else
    return json_reply(400, { error = "view must be regular or sync" })
  end
  for _, r in ipairs(rows) do r.__metadata = nil end
  return json_reply(200, { division = div, entity = e.name, view = view, count = #rows, rows = rows,
                           timestamp = store.last_timestamp(div) })
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

-- arrival: numbered and logged as "pending"; the log phase fills in the status
local function log_entry(status)
  local ctx = ngx.ctx
  if not ctx.log_n then return end
  state:set("reqlog:" .. ctx.log_n, cjson.encode{ n = ctx.log_n, scope = ctx.log_scope,
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
  local n = state:incr("reqlog:n", 1, 0)
  ngx.ctx.log_n, ngx.ctx.log_scope, ngx.ctx.log_clock = n, scope, _M.now()
  log_entry("pending")
  if n > LOG_KEEP then state:delete("reqlog:" .. (n - LOG_KEEP)) end
end

function _M.log()
  log_entry(ngx.status)
end

function _M.log_pending()
  log_entry("pending")
end

function _M.requests(args)
  local since = tonumber(args.since) or 0
  local limit = math.min(tonumber(args.limit) or 5000, LOG_KEEP)
  local last = state:get("reqlog:n") or 0
  local out = {}
  for n = math.max(since + 1, last - LOG_KEEP + 1), last do
    local raw = state:get("reqlog:" .. n)
    if raw then out[#out + 1] = cjson.decode(raw) end
    if #out >= limit then break end
  end
  local obj = { last = last, requests = out }
  -- lua-cjson 2.1.0 has no empty-array marker: say it in the text
  local text = cjson.encode(obj)
  if #out == 0 then text = text:gsub('"requests":{}', '"requests":[]') end
  return json_reply(200, text)
end

function _M.handle()
  local uri = ngx.var.uri
  -- the server's Date is on the sandbox clock (real time plus /_sandbox/advance), as a far server's may differ
  ngx.header["Date"] = ngx.http_time(math.floor(_M.now()))
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
    return control(ctl)
  end
  if uri == "/api/oauth2/auth" then return auth() end
  if uri == "/api/oauth2/token" then return token() end
  return require("exactonline.sandbox.api").handle(_M)
end

return _M

--- The gateway inside nginx: checks the client's key, forwards /api/v1/… and the XML API to Exact Online with
-- the gateway's own bearer token (one exactonline client per division and worker, the ngx transport, the
-- token chain in a shared dict), paces each division's calls across workers, rewrites Exact's absolute
-- URLs to the gateway's origin, and serves /healthz and /metrics. Started by exactonline.gateway (the runner).
-- The Exact tokens never leave this process: no header, body, error or log line carries them.
local exactonline = require "exactonline"
local core = require "exactonline.core"
local cjson = require("cjson").new()
local keys = require "exactonline.gateway.keys"
local pacer_mod = require "exactonline.gateway.pacer"
local chain_mod = require "exactonline.gateway.chain"
local metrics = require "exactonline.gateway.metrics"
local ngx_transport = require "exactonline.transport.ngx"
local retry = require "exactonline.retry"
require "exactonline.client" -- loaded in the master, before the workers (maybe another user) fork

local ngx = ngx
local type, tostring, tonumber, pairs, ipairs, pcall, dofile = type, tostring, tonumber, pairs, ipairs, pcall, dofile
local str_find, str_sub, str_lower, str_upper, str_match, str_gsub, str_format =
  string.find, string.sub, string.lower, string.upper, string.match, string.gsub, string.format
local concat = table.concat
local math_ceil, math_max = math.ceil, math.max
local ngx_var, ngx_req, ngx_header = ngx.var, ngx.req, ngx.header
local ngx_now, ngx_update_time = ngx.now, ngx.update_time

local _M = {}

local DICT = "exactonline_gateway"
local settings
local store, pacer
local clients = {}   -- pacing key -> exactonline client (per worker)
local transport      -- per worker

-- request headers never forwarded: the gateway key, hop-by-hop, framing, and what belongs to the gateway
local DROP_REQUEST = {}
for _, h in ipairs { "authorization", "x-api-key", "host", "connection", "keep-alive", "proxy-authorization",
  "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "content-length", "accept-encoding",
  "cookie", "expect", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "forwarded" } do
  DROP_REQUEST[h] = true
end
-- answer headers never passed back: framing, hop-by-hop, and Exact's own session and transport matters
local DROP_RESPONSE = {}
for _, h in ipairs { "connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
  "set-cookie", "strict-transport-security", "server", "date", "www-authenticate", "alt-svc" } do
  DROP_RESPONSE[h] = true
end

local function now()
  ngx_update_time()
  return ngx_now()
end

-- the origin Exact's absolute URLs start with, plain and as JSON writes it (slashes escaped)
local function upstream_origin(url)
  local origin = url:match("^(%a[%w+.-]*://[^/]+)")
  if not origin then return end
  settings.upstream_origin = origin
  settings.upstream_origin_json = (origin:gsub("/", "\\/"))
end

--- init(settings_path): in nginx's master (init_by_lua), before the workers fork
function _M.init(path)
  settings = dofile(path)
  local backing
  if settings.token_db then
    backing = exactonline.stores.postgres { conninfo = settings.token_db, key = settings.token_db_key }
  else
    backing = exactonline.file_store(settings.token_file)
  end
  store = chain_mod.new(DICT, backing)
  pacer = pacer_mod.new(DICT, { max_wait = settings.max_wait })
  if settings.base_url then upstream_origin(settings.base_url) end -- a region's: from the first call's URL
  metrics.init(DICT)
end

-- the keys, re-read whenever the file changes (and while it was changed in the last 2 s, as mtime counts
-- whole seconds): a revoked key is refused from the next request on
local key_cache = { stamp = nil, match = function() return nil, "unknown" end }

local function key_matcher()
  local path = settings.keys
  local st = core.stat(path)
  local stamp = st and (st.mtime .. ":" .. st.size) or "missing"
  if stamp ~= key_cache.stamp or (st and now() - st.mtime < 2) then
    local doc, err = keys.read(path)
    if doc then
      key_cache.match = keys.matcher(doc)
    else
      ngx.log(ngx.ERR, "exactonline gateway: ", err, "; every request is refused until it can be read")
      key_cache.match = function() return nil, "unknown" end
    end
    key_cache.stamp = stamp
  end
  return key_cache.match
end

-- an answer in Exact's error shape, so a client reads the gateway's errors the way it reads Exact's
local function reply_error(status, code, message, headers)
  ngx.status = status
  ngx_header["Content-Type"] = "application/json; charset=utf-8"
  ngx_header["Cache-Control"] = "no-store"
  for k, v in pairs(headers or {}) do ngx_header[k] = v end
  local body = cjson.encode { error = { code = code, message = { lang = "", value = message } } }
  ngx_header["Content-Length"] = #body
  ngx.print(body)
  metrics.request(status)
  return ngx.exit(status)
end

local function presented_key()
  local auth = ngx_var.http_authorization
  if auth then
    local k = str_match(auth, "^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
    if k then return k end
  end
  return ngx_var.http_x_api_key
end

-- who is calling: the key's name | nil after answering 401 (no upstream call is made)
local function authenticate()
  local presented = presented_key()
  local name, why, revoked = key_matcher()(presented)
  if name then
    ngx_var.gateway_client = name
    return name
  end
  ngx_var.gateway_client = why == "revoked" and ("revoked:" .. revoked) or ("-" .. why)
  metrics.refused(why)
  local message = why == "missing" and "Unauthorized - send a gateway key: Authorization: Bearer <key> or "
    .. "X-Api-Key: <key> (exactonline gateway --new-key NAME makes one)"
    or "Unauthorized - the gateway key is unknown or revoked"
  return reply_error(401, "gateway_key", message,
    { ["WWW-Authenticate"] = 'Bearer realm="exactonline gateway"' })
end

-- the division a call counts against (Exact's limits are per app and division)
local function division_of(url)
  local d = str_match(url, "/api/v1/(%d+)/") or str_match(url, "[?&]_Division_=(%d+)")
  if d then return d end
  if settings.division then return tostring(settings.division) end
  return str_find(url, "/api/v1/current/", 1, true) and "current" or "other"
end

-- the upstream transport: the ngx transport with the shared pacing before each API call and the
-- bookkeeping (limits, metrics) after each answer
local function make_transport()
  local inner = ngx_transport.new { timeout = settings.timeout, max_response_size = settings.max_response_size,
    on_rate_limit = "wait", max_wait = settings.max_wait }
  local t = {}
  function t.request(_, req)
    local url = req.url
    if str_find(url, "/api/oauth2/", 1, true) then
      local resp, err = inner:request(req)
      metrics.token_call(resp and resp.status, req.body)
      return resp, err
    end
    if not settings.upstream_origin then upstream_origin(url) end
    local d = division_of(url)
    local waited, perr = pacer:before(d)
    if not waited then return nil, perr end
    if waited > 0 then ngx.ctx.waited = (ngx.ctx.waited or 0) + waited end
    local resp, err = inner:request(req)
    pacer:after(d, resp and resp.headers or {})
    metrics.upstream(resp and resp.status)
    return resp, err
  end
  function t.sleep(_, s) return inner:sleep(s) end
  function t.now(_) return inner:now() end
  t.clock = pacer.clock -- the clients teach it each answer's Date; the pacer reads the same offset
  return t
end

local function client_for(d)
  local c = clients[d]
  if c then return c end
  transport = transport or make_transport()
  local err
  c, err = exactonline.new {
    client_id = settings.client_id, client_secret = settings.client_secret, redirect_uri = settings.redirect_uri,
    base_url = settings.base_url, division = settings.division, store = store, transport = transport,
    on_rate_limit = "wait", max_wait = settings.max_wait, timeout = settings.timeout,
    max_response_size = settings.max_response_size, retries = settings.retries, retry_delay = settings.retry_delay,
    error_budget = settings.error_budget,
    on_warning = function(msg) ngx.log(ngx.WARN, "exactonline gateway: ", msg) end,
    on_retry = function(info) ngx.log(ngx.WARN, "exactonline gateway: ", retry.describe(info)) end,
  }
  if not c then return nil, err end
  clients[d] = c
  return c
end

local function replace_all(s, from, to)
  local i = str_find(s, from, 1, true)
  if not i then return s end
  local parts, n, pos, len = {}, 0, 1, #from
  while i do
    parts[n + 1] = str_sub(s, pos, i - 1)
    parts[n + 2] = to
    n = n + 2
    pos = i + len
    i = str_find(s, from, pos, true)
  end
  parts[n + 1] = str_sub(s, pos)
  return concat(parts)
end

-- the origin clients reach the gateway on: --public-url, else the scheme and Host of this request
local function own_origin()
  if settings.public_url then return settings.public_url end
  local host = ngx_var.http_host or (ngx_var.server_addr .. ":" .. ngx_var.server_port)
  return ngx_var.scheme .. "://" .. host
end

-- Exact's absolute URLs (__next, __metadata.uri, Location, xml:base) point at the gateway instead
local function rewrite(s, origin)
  if not s or s == "" or not settings.upstream_origin then return s end
  s = replace_all(s, settings.upstream_origin, origin)
  return replace_all(s, settings.upstream_origin_json, (str_gsub(origin, "/", "\\/")))
end

local function title_case(name) -- content-type -> Content-Type
  return (str_gsub((str_gsub(name, "%f[%w]%l", str_upper)), "^X%-Ratelimit", "X-RateLimit"))
end

local function forward_headers()
  local out = {}
  for name, value in pairs(ngx_req.get_headers(100)) do
    if not DROP_REQUEST[name] then
      if type(value) == "table" then value = concat(value, ", ") end
      -- names as the client wrote them matter to nobody; the client library wants Title-Case for its own
      out[title_case(name)] = value
    end
  end
  -- without an Accept naming a type Exact answers Atom XML: a tool that takes anything gets JSON
  if not out.Accept or str_match(out.Accept, "^%s*%*/%*%s*$") then out.Accept = "application/json" end
  return out
end

local function retry_after(err)
  local s = tonumber(err.retry_after)
  if not s and tonumber(err.reset) then s = err.reset - now() end
  if not s then s = 60 - now() % 60 end
  return tostring(math_max(1, math_ceil(s)))
end

-- a failure before or without Exact's answer, as the client reports it: status, code
local function status_of(err)
  local kind = err.kind
  if kind == "rate_limit" then return 429, err.code or "rate_limit" end
  if kind == "oauth" or kind == "store" then return 503, err.code or kind end
  if kind == "config" then return 400, err.code or "bad_request" end
  if kind == "network" and err.code == "timeout" then return 504, "upstream_timeout" end
  return 502, err.code or kind or "upstream"
end

local DEAD = { unauthorized_client = true, invalid_grant = true, invalid_request = true, invalid_client = true,
  not_authorized = true }

local function forward()
  local uri = ngx_var.request_uri
  local d = division_of(uri)
  local c, cerr = client_for(d)
  if not c then return reply_error(503, "gateway", tostring(cerr)) end
  local method = ngx_req.get_method()
  local body
  if method ~= "GET" and method ~= "HEAD" and method ~= "DELETE" then
    ngx_req.read_body()
    body = ngx_req.get_body_data()
    if not body and ngx_req.get_body_file() then
      return reply_error(413, "too_large", "the request body is larger than the gateway buffers (10 MB)")
    end
  end
  ngx_var.gateway_division = d
  local ok, res, err = pcall(c.request, c, method, uri, { raw = true, body = body, headers = forward_headers() })
  if ngx.ctx.waited then ngx_var.gateway_waited = str_format("%.3f", ngx.ctx.waited) end
  if not ok then
    ngx.log(ngx.ERR, "exactonline gateway: ", tostring(res))
    return reply_error(500, "gateway", "the gateway failed on this request (its error log says why)")
  end
  if not res then
    if err.kind == "oauth" and DEAD[err.code] then store.mark_dead(err) end
    local status, code = status_of(err)
    local headers
    if status == 429 then headers = { ["Retry-After"] = retry_after(err) } end
    ngx_var.gateway_upstream = "-"
    return reply_error(status, code, tostring(err), headers)
  end
  local status = res.status
  ngx_var.gateway_upstream = status
  if status == 401 then
    -- Exact refused a token it had just issued: not the client's key, so not a 401 to the client
    return reply_error(502, "upstream_unauthorized", "Exact Online refused the gateway's access token even "
      .. "after a refresh; if it persists, a person must run `exactonline auth` again")
  end
  local origin = own_origin()
  ngx.status = status
  for name, value in pairs(res.headers) do
    if not DROP_RESPONSE[name] then
      ngx_header[title_case(name)] = rewrite(value, origin)
    end
  end
  if status == 429 and not res.headers["retry-after"] then
    local reset = tonumber(res.headers["x-ratelimit-minutely-reset"] or res.headers["x-ratelimit-reset"])
    if reset and reset > 1e12 then reset = reset / 1000 end
    ngx_header["Retry-After"] = retry_after { reset = reset }
  end
  local text = rewrite(res.body, origin)
  ngx_header["Content-Length"] = #text
  metrics.request(status)
  if method ~= "HEAD" and text ~= "" then ngx.print(text) end
  return ngx.exit(status)
end

local function healthz()
  local s = store.status(now())
  local body = cjson.encode(s)
  local status = (s.state == "ok" or s.state == "expiring") and 200 or 503
  ngx.status = status
  ngx_header["Content-Type"] = "application/json; charset=utf-8"
  ngx_header["Cache-Control"] = "no-store"
  ngx.print(body)
  return ngx.exit(status)
end

local function metrics_page()
  local s = store.status(now())
  ngx_header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
  ngx.print(metrics.render(pacer, s))
  return ngx.exit(200)
end

--- the content handler for every location
function _M.handle()
  local uri = ngx_var.uri
  local lower = str_lower(uri)
  if str_sub(lower, 1, 8) == "/api/v1/" or lower == "/docs/xmldownload.aspx" or lower == "/docs/xmlupload.aspx" then
    if not authenticate() then return end
    return forward()
  end
  if uri == "/healthz" then return healthz() end
  if uri == "/metrics" then return metrics_page() end
  return reply_error(404, "not_found", "the gateway forwards /api/v1/…, /docs/XMLDownload.aspx and "
    .. "/docs/XMLUpload.aspx (and serves /healthz and /metrics); not " .. uri)
end

return _M

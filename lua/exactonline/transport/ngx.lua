--- The OpenResty transport: HTTP/1.1 over ngx.socket.tcp cosockets, so a request handler waiting on Exact
-- yields to the nginx event loop instead of blocking the worker.
-- Contract (docs/ARCHITECTURE.md): transport:request(req) --> { status, headers, body } | nil, err,
-- plus transport:sleep(seconds) (ngx.sleep) and transport:now() (ngx.now).
-- TLS is always verified against nginx's `lua_ssl_trusted_certificate` (config.cafile is not used here);
-- host names other than localhost are resolved by nginx's `resolver` directive.
local core = require "exactonline.core"

local ngx = ngx
local setmetatable, tonumber, tostring, type, pairs, pcall, concat = setmetatable, tonumber, tostring, type, pairs,
  pcall, table.concat
local ngx_tcp, ngx_sleep, ngx_now, ngx_update_time = ngx.socket.tcp, ngx.sleep, ngx.now, ngx.update_time
local math_ceil = math.ceil
local str_lower, str_find, str_sub, str_match, str_format = string.lower, string.find, string.sub,
  string.match, string.format

local _M = {}

local DEFAULT_PORT = { https = 443 }
local METHOD = "^[%w!#%$%%&'%*%+%-%.%^_`|~]+$" -- an RFC 7230 token: nothing else reaches the request line
local POOL_SIZE = 32
local KEEPALIVE_MS = 60000
local CHUNK = 65536

local Transport = {}
Transport.__index = Transport

local function fail(kind, code, message, hint)
  return nil, core.error { kind = kind, code = code, message = message,
    hint = hint or "check that Exact Online (or the base URL) is reachable from nginx, then try again" }
end

--- split an absolute URL: scheme, host, port, request target
local function split_url(url)
  local scheme, authority, target = str_match(url, "^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return nil end
  scheme = str_lower(scheme)
  local host, port = str_match(authority, "^%[([^%]]+)%]:?(%d*)$") -- [IPv6]:port
  if not host then host, port = str_match(authority, "^([^:@]+):?(%d*)$") end
  if not host or host == "" then return nil end
  target = str_match(target, "^[^#]*")
  if target == "" then target = "/" end
  if str_sub(target, 1, 1) == "?" then target = "/" .. target end
  return scheme, str_lower(host), tonumber(port) or DEFAULT_PORT[scheme], target
end
_M.split_url = split_url

-- read the header block: status, headers (lower-case names, repeats joined with ", ") | nil, err
local function read_head(sock)
  local line, err = sock:receive("*l")
  if not line then return nil, err end
  local status = tonumber(str_match(line, "^HTTP/1%.[01] (%d%d%d)"))
  if not status then return nil, "not an HTTP/1.x status line" end
  local headers = {}
  while true do
    line, err = sock:receive("*l")
    if not line then return nil, err end
    if line == "" then break end
    local name, value = str_match(line, "^([^:]+):%s*(.-)%s*$")
    if name then
      name = str_lower(name)
      local prev = headers[name]
      headers[name] = prev and (prev .. ", " .. value) or value
    end
  end
  return status, headers
end

-- read exactly n bytes in bounded pieces into parts
local function read_n(sock, n, parts)
  while n > 0 do
    local piece, err = sock:receive(n < CHUNK and n or CHUNK)
    if not piece then return nil, err end
    parts[#parts + 1] = piece
    n = n - #piece
  end
  return true
end

local function too_large(cap)
  return fail("network", "too_large", str_format("the answer is larger than max_response_size (%d bytes)", cap),
    "ask for less ($select, $filter, $top) or raise config.max_response_size")
end

-- body by Content-Length, chunked, or until close: body, reusable | nil, err, code
local function read_body(sock, method, status, headers, cap)
  if method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200) then
    return "", true
  end
  local te = headers["transfer-encoding"]
  local parts = {}
  if te and str_find(str_lower(te), "chunked", 1, true) then
    local total = 0
    while true do
      local line, err = sock:receive("*l")
      if not line then return nil, err end
      local size = tonumber(str_match(line, "^%s*(%x+)"), 16)
      if not size then return nil, "a bad chunk size line" end
      if size == 0 then
        repeat -- trailers, up to the empty line
          line, err = sock:receive("*l")
          if not line then return nil, err end
        until line == ""
        break
      end
      total = total + size
      if total > cap then return nil, "too_large" end
      local ok, rerr = read_n(sock, size, parts)
      if not ok then return nil, rerr end
      local crlf
      crlf, err = sock:receive(2)
      if crlf ~= "\r\n" then return nil, err or "a chunk without its CRLF" end
    end
    return concat(parts), true
  end
  local len = headers["content-length"]
  if len then
    len = tonumber(len)
    if not len or len < 0 then return nil, "a bad Content-Length" end
    if len > cap then return nil, "too_large" end
    local ok, err = read_n(sock, len, parts)
    if not ok then return nil, err end
    return concat(parts), true
  end
  -- no length: the body runs until the server closes
  local total = 0
  while true do
    local piece, err, partial = sock:receive(CHUNK)
    piece = piece or partial
    if piece and piece ~= "" then
      total = total + #piece
      if total > cap then return nil, "too_large" end
      parts[#parts + 1] = piece
    end
    if err == "closed" then break end
    if err then return nil, err end
  end
  return concat(parts), false
end

-- a connected (and, when new, TLS-verified) cosocket | nil, err
-- fresh: a connection of its own, from a pool nothing is ever kept in (a write: see request)
function Transport:connect(host, port, connect_ms, ms, fresh)
  local sock = ngx_tcp()
  sock:settimeouts(connect_ms, ms, ms)
  -- localhost is loopback by definition (RFC 6761); other names go through nginx's `resolver`
  local addr = host == "localhost" and "127.0.0.1" or host
  local ok, err = sock:connect(addr, port, { pool = str_format("exactonline:%s:%d%s", host, port,
    fresh and ":fresh" or ""), pool_size = self.pool_size })
  if not ok then
    local hint
    if err and str_find(err, "resolver", 1, true) then
      hint = "add a `resolver` directive to nginx.conf so cosockets can resolve " .. host
    end
    return fail("network", "connect", "could not connect to " .. host .. ":" .. port .. ": " .. tostring(err),
      hint)
  end
  if sock:getreusedtimes() == 0 then
    -- under pcall: lua-resty-core 0.1.25 raises an assertion when verification fails on a handshake that
    -- completed at once (and with reused_session = false it would even report success: never pass false)
    local hok, session, herr = pcall(sock.sslhandshake, sock, nil, host, true)
    if not hok then
      session, err = nil, "the certificate could not be verified (nginx's error log has the reason)"
    else
      err = herr
    end
    if not session then
      sock:close()
      return fail("tls", "handshake", "the TLS handshake with " .. host .. ":" .. port .. " failed: " ..
        tostring(err), "check lua_ssl_trusted_certificate and lua_ssl_verify_depth in nginx.conf (verification "
        .. "is always on)")
    end
  end
  return sock
end

-- the minutely budget shared by all workers (shdict store): wait for its reset, or a rate_limit error
function Transport:shared_budget(url)
  local shared = self.shared_rate
  if not shared or str_find(url, "/api/oauth2/", 1, true) then return true end
  local wait = shared.before(self.clock:lower(self:now())) -- the resets are on Exact's clock
  if wait <= 0 then return true end
  if self.on_rate_limit == "wait" and wait <= self.max_wait then
    ngx_sleep(wait)
    return true
  end
  return nil, core.error { kind = "rate_limit", code = "minutely_limit",
    message = str_format("the minutely rate limit is spent (across all nginx workers); it resets in %d s",
      math_ceil(wait)),
    hint = self.on_rate_limit == "wait" and "the wait would be longer than max_wait: raise max_wait or retry later"
      or "retry after the reset, or set on_rate_limit = \"wait\"" }
end

--- transport:request{ method, url, headers, body, timeout } --> { status, headers, body } | nil, err
function Transport:request(req)
  local method = req.method or "GET"
  if type(method) ~= "string" or #method > 32 or not str_find(method, METHOD) then
    return fail("config", "bad_method", "the HTTP method is not a token (RFC 7230): no spaces, line breaks or "
      .. "control characters", "use GET, POST, PUT or DELETE")
  end
  local url = req.url
  if type(url) == "string" then
    local ok, err = self:shared_budget(url)
    if not ok then return nil, err end
  end
  local scheme, host, port, target = split_url(type(url) == "string" and url or "")
  if scheme ~= "https" then
    return fail("config", "bad_url", "the ngx transport only speaks https, not " .. tostring(url and
      str_match(url, "^[^?]*")), "give an https base URL")
  end
  local timeout = tonumber(req.timeout)
  if not timeout or timeout <= 0 then timeout = self.timeout end
  local ms = timeout * 1000
  local connect_ms = ms < 10000 and ms or 10000

  local body = req.body
  if body ~= nil and type(body) ~= "string" then body = tostring(body) end
  local lines = { method .. " " .. target .. " HTTP/1.1" }
  local has = {}
  for k, v in pairs(req.headers or {}) do
    k, v = tostring(k), tostring(v)
    if str_find(k, "[\r\n:%z]") or str_find(v, "[\r\n%z]") then
      return fail("config", "bad_header", "a header holds CR, LF or NUL", "remove it from the request")
    end
    local lk = str_lower(k)
    -- we read identity bodies only, and frame the request ourselves
    if lk ~= "accept-encoding" and lk ~= "content-length" and lk ~= "connection" and lk ~= "host"
      and lk ~= "transfer-encoding" then
      lines[#lines + 1] = k .. ": " .. v
      has[lk] = true
    end
  end
  local default_port = DEFAULT_PORT[scheme] == port
  local hosthdr = str_find(host, ":", 1, true) and ("[" .. host .. "]") or host
  lines[#lines + 1] = "Host: " .. hosthdr .. (default_port and "" or (":" .. port))
  if not has["user-agent"] then lines[#lines + 1] = "User-Agent: " .. self.user_agent end
  lines[#lines + 1] = "Accept-Encoding: identity"
  lines[#lines + 1] = "Connection: keep-alive"
  if body or method == "POST" or method == "PUT" then
    lines[#lines + 1] = "Content-Length: " .. #(body or "")
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = body or ""

  local request_text = concat(lines, "\r\n")
  local sock, status, headers
  -- a pooled connection the server closed meanwhile fails before any answer: retry once on a fresh one.
  -- Only a GET or HEAD uses the pool: a write sent on a pooled connection that then closed may have reached
  -- Exact, and must not be sent again (RFC 7230 6.3.1), so it goes on a connection of its own, closed after
  local idempotent = method == "GET" or method == "HEAD"
  for _ = 1, 2 do
    local err
    sock, err = self:connect(host, port, connect_ms, ms, not idempotent)
    if not sock then return nil, err end
    local reused = sock:getreusedtimes() > 0
    local sent
    sent, err = sock:send(request_text)
    if sent then
      status, headers = read_head(sock)
      if status then break end
      err = headers
    end
    sock:close()
    if not (reused and (err == "closed" or err == "connection reset by peer")) then
      if err == "timeout" then
        return fail("network", "timeout", "no answer from " .. host .. " within " .. timeout .. " s")
      end
      return fail("network", "receive", "the exchange with " .. host .. " failed: " .. tostring(err))
    end
  end
  local text, reusable = read_body(sock, method, status, headers, self.max_response)
  if not text then
    sock:close()
    if reusable == "too_large" then return too_large(self.max_response) end
    return fail("network", reusable == "timeout" and "timeout" or "receive",
      "reading the answer's body from " .. host .. " failed: " .. tostring(reusable))
  end
  local conn = headers["connection"]
  if reusable and idempotent and not (conn and str_find(str_lower(conn), "close", 1, true)) then
    sock:setkeepalive(self.keepalive_ms, self.pool_size)
  else
    sock:close()
  end
  if self.shared_rate and not str_find(url, "/api/oauth2/", 1, true) then self.shared_rate.after(headers) end
  return { status = status, headers = headers, body = text }
end

function Transport.sleep(_, seconds)
  if seconds and seconds > 0 then ngx_sleep(seconds) end
end

function Transport.now(_)
  ngx_update_time()
  return ngx_now()
end

--- _M.new(config, client) --> a transport for the client made from config
-- config.max_response_size (default 64 MiB), config.timeout (default 30 s), config.pool_size (default 32);
-- a config.store with shared_rate_limits (the shdict store) shares the minutely budget between workers
function _M.new(config, client)
  config = config or {}
  local opts = client and client.options and client:options() or {}
  local store = config.store
  local shared = type(store) == "table" and type(store.shared_rate_limits) == "table" and store.shared_rate_limits
    or nil
  return setmetatable({
    shared_rate = shared,
    clock = shared and shared.clock, -- Exact's clock as every worker learned it (the client teaches it)
    on_rate_limit = opts.on_rate_limit or config.on_rate_limit or "wait",
    max_wait = tonumber(opts.max_wait) or tonumber(config.max_wait) or 120,
    timeout = tonumber(opts.timeout) or tonumber(config.timeout) or 30,
    max_response = tonumber(config.max_response_size) or 64 * 1024 * 1024,
    pool_size = tonumber(config.pool_size) or POOL_SIZE,
    keepalive_ms = KEEPALIVE_MS,
    user_agent = "exactonline/" .. tostring(core.version) .. " (ngx_lua/" .. tostring(ngx.config and
      ngx.config.ngx_lua_version) .. ")",
  }, Transport)
end

return _M

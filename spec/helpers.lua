--- Spec helpers: a real sandbox (nginx + Lua, HTTPS) per spec file, and a curl-CLI HTTP client.
--   local helpers = require "helpers"
--   local sb = helpers.sandbox{ accounts = 250 }
--   local status, headers, body = helpers.http("GET", sb.base_url .. "/api/v1/current/Me", { headers = {…} })
local io, os, debug, string, table, math = io, os, debug, string, table, math
local tostring, tonumber, type, pairs, ipairs, error, setmetatable, rawget, pcall, require =
  tostring, tonumber, type, pairs, ipairs, error, setmetatable, rawget, pcall, require

local runner = require "exactonline.sandbox"
local cjson = require "cjson"

local helpers = {}

local function this_dir()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = src:match("^(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then
    local p = io.popen("pwd")
    local cwd = p:read("*l")
    p:close()
    dir = cwd .. "/" .. dir
  end
  return dir
end

helpers.root = this_dir():gsub("/spec$", "")
helpers.tls_dir = os.getenv("EXACTONLINE_SANDBOX_TLS") or (helpers.root .. "/build/sandbox-tls")
helpers.json = cjson

local quote = runner.quote
helpers.quote = quote

-- what this file's sandboxes and temp dirs are; a spec file that forgets to stop its sandbox gets it
-- stopped when the next spec file loads helpers (busted insulates files, so helpers loads once per file)
-- and, at the latest, by a watchdog when the busted process exits.
local REGKEY = "exactonline.spec.helpers.cleanup"
local registry = debug.getregistry()
do
  local previous = registry[REGKEY]
  if previous then
    for _, fn in ipairs(previous) do pcall(fn) end
  end
  registry[REGKEY] = {}
end
local cleanups = registry[REGKEY]

local function read_cmd(cmd)
  local f = io.popen(cmd)
  local out = f:read("*a")
  f:close()
  return out
end

local owner_pid
local function my_pid()
  if not owner_pid then
    owner_pid = tonumber(read_cmd("echo $PPID"):match("%d+"))
  end
  return owner_pid
end

--- the interpreter running these specs ("lua5.4" or "luajit"), for spawning child processes alike
function helpers.lua(vm)
  return vm or os.getenv("EXACTONLINE_VM") or (rawget(_G, "jit") and "luajit" or "lua5.4")
end

--- a LUA_PATH/LUA_CPATH prefix for a child process using this checkout
function helpers.lua_env(vm)
  vm = helpers.lua(vm)
  local r = helpers.root
  return "LUA_PATH=" .. quote(r .. "/lua/?.lua;" .. r .. "/lua/?/init.lua;" .. r .. "/spec/?.lua;;") ..
    " LUA_CPATH=" .. quote(r .. "/build/" .. vm .. "/?.so;;") ..
    " LUA_CPATH_5_4=" .. quote(r .. "/build/" .. vm .. "/?.so;;")
end

--- a free loopback TCP port (bind port 0, read it back, release it)
function helpers.free_port()
  local ok, socket = pcall(require, "socket")
  if ok then
    local s = socket.tcp()
    if s and s:bind("127.0.0.1", 0) then
      local _, port = s:getsockname()
      s:close()
      if tonumber(port) then return tonumber(port) end
    end
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  return math.random(20000, 60000)
end

--- a fresh temporary directory (removed when the next spec file starts)
function helpers.tmpdir()
  local dir = read_cmd("mktemp -d /tmp/exactonline-spec.XXXXXX"):gsub("%s+$", "")
  if dir == "" then error("mktemp failed") end
  cleanups[#cleanups + 1] = function() os.execute("rm -rf " .. quote(dir)) end
  return dir
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function parse_headers(text)
  -- keep the last response block (curl writes one per 1xx/redirect)
  local blocks, current = {}, nil
  for line in (text or ""):gmatch("([^\r\n]*)\r?\n") do
    if line:match("^HTTP/") then
      current = { status_line = line, headers = {} }
      blocks[#blocks + 1] = current
    elseif current and line ~= "" then
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if name then
        name = name:lower()
        local h = current.headers
        h[name] = h[name] and (h[name] .. ", " .. value) or value
      end
    end
  end
  local last = blocks[#blocks]
  return last and last.headers or {}
end

--- helpers.http(method, url, opts) --> status, headers (lower-case names), body | nil, err, curl_exit
-- opts: headers = { Name = value }, body = "…", cafile = path, timeout = seconds, extra = "curl args"
function helpers.http(method, url, opts)
  opts = opts or {}
  local hfile, bfile, efile = os.tmpname(), os.tmpname(), os.tmpname()
  local verb = method == "HEAD" and "-I" or ("-X " .. quote(method))
  local args = { "curl", "-sS", "--http1.1", verb, "-D", quote(hfile), "-o", quote(bfile),
                 "-w", quote("%{http_code} %{exitcode}"), "--max-time", tostring(opts.timeout or 30) }
  local cafile = opts.cafile or helpers.default_cafile
  if cafile then args[#args + 1] = "--cacert " .. quote(cafile) end
  local names = {}
  for k in pairs(opts.headers or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = tostring(opts.headers[k])
    args[#args + 1] = "-H " .. quote(v == "" and (k .. ";") or (k .. ": " .. v))
  end
  local qfile
  if opts.body then
    qfile = os.tmpname()
    local f = io.open(qfile, "wb")
    f:write(opts.body)
    f:close()
    args[#args + 1] = "--data-binary @" .. quote(qfile)
  end
  if opts.extra then args[#args + 1] = opts.extra end
  args[#args + 1] = quote(url)
  local out = read_cmd(table.concat(args, " ") .. " 2>" .. quote(efile))
  local status, code = out:match("(%d+)%s+(%d+)")
  status, code = tonumber(status), tonumber(code)
  local headers, body, errtext = parse_headers(read_file(hfile)), read_file(bfile) or "", read_file(efile) or ""
  os.remove(hfile); os.remove(bfile); os.remove(efile)
  if qfile then os.remove(qfile) end
  if code ~= 0 then
    return nil, "curl exit " .. tostring(code) .. ": " .. errtext:gsub("%s+$", ""), code, headers, body
  end
  return status, headers, body
end

--- percent-decode (a query value from a redirect Location)
function helpers.unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

function helpers.escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

--- query parameters of a URL, decoded once
function helpers.query(url)
  local q = {}
  local qs = url:match("%?(.*)$") or ""
  for pair in qs:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    q[helpers.unescape(k)] = helpers.unescape(v)
  end
  return q
end

function helpers.form(t)
  local parts, keys = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = helpers.escape(k) .. "=" .. helpers.escape(t[k]) end
  return table.concat(parts, "&")
end

-- sandbox handle ----------------------------------------------------------------------------------

local Sandbox = {}
Sandbox.__index = Sandbox

function Sandbox:url(path)
  return self.base_url .. path
end

-- control calls go in-process (luasocket + luasec, one write, Connection: close): a curl process costs
-- ~50 ms and specs make many of these; falls back to curl when luasec is missing.
local function quick_request(sb, method, path, headers, body)
  local ok_s, socket = pcall(require, "socket")
  local ok_l, ssl = pcall(require, "ssl")
  if not (ok_s and ok_l) then return nil end
  local sock = socket.tcp()
  sock:settimeout(10)
  if not sock:connect("127.0.0.1", sb.port) then sock:close() return nil end
  sock:setoption("tcp-nodelay", true)
  if sb.cafile then
    local conn = ssl.wrap(sock, { mode = "client", protocol = "any", verify = "peer", cafile = sb.cafile,
                                  options = { "all" } })
    if not conn then sock:close() return nil end
    conn:settimeout(10)
    if not conn:dohandshake() then conn:close() return nil end
    sock = conn
  end
  local req = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1:" .. sb.port, "Connection: close",
                "Content-Length: " .. #(body or "") }
  for k, v in pairs(headers or {}) do req[#req + 1] = k .. ": " .. v end
  sock:send(table.concat(req, "\r\n") .. "\r\n\r\n" .. (body or ""))
  local raw, _, partial = sock:receive("*a")
  sock:close()
  raw = raw or partial
  if not raw or raw == "" then return nil end
  local head, rest = raw:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil end
  local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  return status, parse_headers(head .. "\r\n"), rest
end

function Sandbox:control(method, path, payload)
  local headers = payload and { ["Content-Type"] = "application/json" } or nil
  local status, _, body = quick_request(self, method, path, headers, payload)
  if not status then
    status, _, body = helpers.http(method, self.base_url .. path, { cafile = self.cafile, headers = headers,
      body = payload })
  end
  if status ~= 200 then error("sandbox control " .. path .. " failed: " .. tostring(status) .. " " ..
    tostring(body), 2) end
  return cjson.decode(body)
end

function Sandbox:advance(seconds)
  return self:control("POST", "/_sandbox/advance?seconds=" .. tostring(seconds))
end

function Sandbox:limits(t)
  local q = {}
  for _, k in ipairs{ "minutely", "daily", "window" } do
    if t and t[k] then q[#q + 1] = k .. "=" .. tostring(t[k]) end
  end
  return self:control("POST", "/_sandbox/config?" .. table.concat(q, "&"))
end

--- fault(kind, count, extra): extra = { seconds = S, scope = "token" } or a number of seconds
function Sandbox:fault(kind, count, extra)
  local q = "kind=" .. helpers.escape(kind) .. "&count=" .. tostring(count or 1)
  if type(extra) == "number" then extra = { seconds = extra } end
  for k, v in pairs(extra or {}) do q = q .. "&" .. k .. "=" .. helpers.escape(v) end
  return self:control("POST", "/_sandbox/fault?" .. q)
end

function Sandbox:stats()
  return self:control("GET", "/_sandbox/stats")
end

--- reset(): forget tokens, counters, faults, clock and limits; reset{ data = true } also brings every
-- division back to its generated rows
function Sandbox:reset(opts)
  return self:control("POST", "/_sandbox/reset" .. ((opts and opts.data) and "?data=1" or ""))
end

--- change(entity, { create = N, update = N, delete = N, keys = { … }, division = D, fields = { … } })
-- --> { created = { keys }, updated = { keys }, deleted = { keys }, timestamp = latest }
function Sandbox:change(entity, t)
  t = t or {}
  local q = { "entity=" .. helpers.escape(entity), "division=" .. tostring(t.division or self.division) }
  for _, k in ipairs{ "create", "update", "delete" } do
    if t[k] then q[#q + 1] = k .. "=" .. tostring(t[k]) end
  end
  if t.keys then q[#q + 1] = "keys=" .. helpers.escape(table.concat(t.keys, ",")) end
  local body = t.fields and cjson.encode(t.fields) or nil
  return self:control("POST", "/_sandbox/change?" .. table.concat(q, "&"), body)
end

--- entity(entity, { division = D, view = "sync" | "regular" }) --> { count, rows, timestamp }: every live row
function Sandbox:entity(entity, t)
  t = t or {}
  local q = "entity=" .. helpers.escape(entity) .. "&division=" .. tostring(t.division or self.division)
  if t.view then q = q .. "&view=" .. t.view end
  return self:control("GET", "/_sandbox/entity?" .. q)
end

function Sandbox:client_config(over)
  local c = { client_id = self.client_id, client_secret = self.client_secret, redirect_uri = self.redirect_uri,
              base_url = self.base_url, cafile = self.cafile }
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

--- act as the browser: GET /api/oauth2/auth; returns the Location URL (or nil, status, body)
function Sandbox:authorize(opts)
  opts = opts or {}
  local q = { client_id = opts.client_id or self.client_id, redirect_uri = opts.redirect_uri or self.redirect_uri,
              response_type = "code", state = opts.state }
  if opts.deny then q.sandbox_deny = "1" end
  local status, headers, body = helpers.http("GET", self.base_url .. "/api/oauth2/auth?" .. helpers.form(q),
    { cafile = self.cafile })
  if status ~= 302 then return nil, status, body end
  return headers.location, status, body
end

--- a fresh, decoded code
function Sandbox:code(opts)
  local loc, status = self:authorize(opts)
  if not loc then error("authorize failed: " .. tostring(status), 2) end
  return helpers.query(loc).code
end

--- POST the token endpoint with a form; returns status, decoded JSON (or raw body), headers
function Sandbox:token_request(fields)
  local status, headers, body = helpers.http("POST", self.base_url .. "/api/oauth2/token", {
    cafile = self.cafile, headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
    body = helpers.form(fields) })
  local ok, obj = pcall(cjson.decode, body or "")
  return status, ok and obj or body, headers
end

--- code exchange with the registered app (fields override)
function Sandbox:exchange(code, over)
  local f = { grant_type = "authorization_code", code = code or self:code(), redirect_uri = self.redirect_uri,
              client_id = self.client_id, client_secret = self.client_secret }
  for k, v in pairs(over or {}) do f[k] = v end
  return self:token_request(f)
end

function Sandbox:refresh(refresh_token, over)
  local f = { grant_type = "refresh_token", refresh_token = refresh_token, client_id = self.client_id,
              client_secret = self.client_secret }
  for k, v in pairs(over or {}) do f[k] = v end
  return self:token_request(f)
end

--- a fresh token pair (authorize + exchange), in-process for speed (the OAuth specs use curl)
function Sandbox:tokens()
  local q = helpers.form{ client_id = self.client_id, redirect_uri = self.redirect_uri, response_type = "code" }
  local status, h = quick_request(self, "GET", "/api/oauth2/auth?" .. q)
  if status ~= 302 then
    status, h = self:exchange()
    if status ~= 200 then error("token exchange failed: " .. tostring(status), 2) end
    return h
  end
  local form = helpers.form{ grant_type = "authorization_code", code = helpers.query(h.location).code,
    redirect_uri = self.redirect_uri, client_id = self.client_id, client_secret = self.client_secret }
  local body
  local _
  status, _, body = quick_request(self, "POST", "/api/oauth2/token",
    { ["Content-Type"] = "application/x-www-form-urlencoded" }, form)
  if status ~= 200 then error("token exchange failed: " .. tostring(status), 2) end
  return cjson.decode(body)
end

--- an API call with Bearer + Accept: application/json; returns status, decoded JSON (or nil), headers, body
function Sandbox:api(method, path, token, opts)
  opts = opts or {}
  local headers = { Accept = "application/json" }
  if token then headers.Authorization = "Bearer " .. token end
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  local body = opts.body
  if type(body) == "table" then
    body = cjson.encode(body)
    headers["Content-Type"] = headers["Content-Type"] or "application/json"
  end
  local url = path:match("^https?://") and path or (self.base_url .. path)
  local status, h, raw = helpers.http(method, url, { cafile = self.cafile, headers = headers, body = body })
  local ok, obj = pcall(cjson.decode, raw or "")
  return status, ok and obj or nil, h, raw
end

function Sandbox:stop()
  if self.stopped then return end
  self.stopped = true
  runner.stop(self.info)
end

--- configure{ no429headers = true, expires_in_number = true, refresh_keeps = true, token_type = "Bearer",
-- minutely = N, … }: any /_sandbox/config setting (booleans as 1/0); returns the answer
function Sandbox:configure(t)
  local q, keys = {}, {}
  for k in pairs(t or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "boolean" then v = v and "1" or "0" end
    q[#q + 1] = helpers.escape(k) .. "=" .. helpers.escape(v)
  end
  return self:control("POST", "/_sandbox/config?" .. table.concat(q, "&"))
end

--- helpers.sandbox(opts) --> a running sandbox handle (nginx on a free loopback port, HTTPS)
-- opts: accounts, sizes ({ transactionlines = N, … }), division, divisions (how many), client_id,
-- client_secret, redirect_uri, workers, tls (default true)
function helpers.sandbox(opts)
  opts = opts or {}
  local tls_dir = opts.tls == false and nil or helpers.tls_dir
  local info, err
  for _ = 1, 5 do
    info, err = runner.prepare{ port = opts.port or helpers.free_port(), tls_dir = tls_dir,
      client_id = opts.client_id, client_secret = opts.client_secret, redirect_uri = opts.redirect_uri,
      division = opts.division, accounts = opts.accounts, workers = opts.workers, sizes = opts.sizes,
      divisions = opts.divisions }
    if not info then error("sandbox: " .. tostring(err), 2) end
    local ok
    ok, err = runner.start(info)
    if ok then break end
    runner.stop(info)
    info = nil
    if opts.port then break end
  end
  if not info then error("sandbox: " .. tostring(err), 2) end
  runner.watchdog(info, my_pid())
  local sb = setmetatable({
    info = info, port = info.port, prefix = info.prefix, cafile = info.cafile,
    base_url = (tls_dir and "https" or "http") .. "://127.0.0.1:" .. info.port,
    client_id = info.client_id, client_secret = info.client_secret, redirect_uri = info.redirect_uri,
    division = info.division, accounts = info.accounts, divisions = info.divisions, sizes = info.sizes,
  }, Sandbox)
  cleanups[#cleanups + 1] = function() sb:stop() end
  helpers.default_cafile = helpers.default_cafile or info.cafile
  -- wait until it answers
  local last
  for _ = 1, 100 do
    local status = helpers.http("GET", sb.base_url .. "/_sandbox/stats", { cafile = sb.cafile, timeout = 2 })
    if status == 200 then return sb end
    last = status
    os.execute("sleep 0.05")
  end
  sb:stop()
  error("sandbox did not answer (last status " .. tostring(last) .. ")", 2)
end

return helpers

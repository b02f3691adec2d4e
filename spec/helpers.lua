--- The suite helper: one place for what every spec file needs.
--   local helpers = require "helpers"
--   describe("…", function()
--     local sb = helpers.use_sandbox{ accounts = 250 }  -- this block's sandbox: started in setup, reset before
--                                                       -- each test, stopped in teardown
--     local dir = helpers.tmpdir()                      -- removed when the spec file ends
--     local ok, out = helpers.sh("ls " .. helpers.quote(dir))
--     local status, headers, body = helpers.http("GET", sb.base_url .. "/api/v1/current/Me", { headers = {…} })
local io, os, debug, string, table, math = io, os, debug, string, table, math
local tostring, tonumber, type, pairs, ipairs, error, assert, setmetatable, rawget, pcall, require =
  tostring, tonumber, type, pairs, ipairs, error, assert, setmetatable, rawget, pcall, require

local runner = require "exactonline.sandbox"
local cjson = require "cjson"

local helpers = {}

-- shell and files -----------------------------------------------------------------------------------

--- one word for sh, whatever it holds
local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
helpers.quote = quote

--- a command's standard output
local function capture(cmd)
  local f = io.popen(cmd)
  local out = f:read("*a")
  f:close()
  return out
end
helpers.capture = capture

--- run a shell command: ok, output (stdout and stderr together), exit code
function helpers.sh(cmd)
  local out = capture("(" .. cmd .. ") 2>&1; echo \"__rc=$?\"")
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return rc == 0, (out:gsub("__rc=%d+%s*$", "")), rc
end

--- a file's bytes, or nil when it cannot be read
function helpers.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function helpers.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function helpers.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

function helpers.is_root()
  return capture("id -u"):match("^0%s*$") ~= nil
end

local function this_dir()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = src:match("^(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then dir = capture("pwd"):gsub("%s+$", "") .. "/" .. dir end
  return dir
end

helpers.root = this_dir():gsub("/spec$", "")
helpers.tls_dir = os.getenv("EXACTONLINE_SANDBOX_TLS") or (helpers.root .. "/build/sandbox-tls")
helpers.json = cjson

-- cleanup --------------------------------------------------------------------------------------------
-- What a spec file started (sandboxes, servers) and made (temp dirs) goes when the file ends, whatever
-- its tests did: busted's "file end" runs the list (busted insulates files, so this module loads once per
-- file; the registry outlives that). A sandbox a crashed busted leaves behind is stopped by its watchdog.
local REGKEY = "exactonline.spec.helpers.cleanup"
local registry = debug.getregistry()

local function run_cleanups()
  local list = registry[REGKEY] or {}
  registry[REGKEY] = {}
  for i = #list, 1, -1 do pcall(list[i]) end
end

local busted_ok, busted = pcall(require, "busted")
busted = busted_ok and busted.subscribe and busted or nil
if not registry[REGKEY] then
  registry[REGKEY] = {}
  if busted then
    busted.subscribe({ "file", "end" }, function()
      run_cleanups()
      return nil, true
    end)
  end
end

--- run fn when this spec file ends (last registered, first run)
function helpers.on_cleanup(fn)
  local list = registry[REGKEY]
  list[#list + 1] = fn
end

function helpers.rm_rf(dir)
  if dir and dir:match("^/tmp/exactonline%-") then
    helpers.sh("chmod -R u+rwx " .. quote(dir) .. "; rm -rf " .. quote(dir))
  end
end

--- a fresh temporary directory, removed (modes and all) when the spec file ends
function helpers.tmpdir()
  local dir = capture("mktemp -d /tmp/exactonline-spec.XXXXXX"):gsub("%s+$", "")
  if dir == "" then error("mktemp failed", 2) end
  helpers.on_cleanup(function() helpers.rm_rf(dir) end)
  return dir
end

-- child processes ------------------------------------------------------------------------------------

local owner_pid
local function my_pid()
  if not owner_pid then
    owner_pid = tonumber(capture("echo $PPID"):match("%d+"))
  end
  return owner_pid
end
helpers.pid = my_pid

--- the interpreter running these specs ("lua5.4", "luajit", "lua5.3" or "lua5.1"), for spawning child
-- processes alike
function helpers.lua(vm)
  return vm or os.getenv("EXACTONLINE_VM") or (rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+"))
end

--- the interpreter for bin/exactonline: the VM under test where the CLI runs on it (lua5.4, LuaJIT), else
-- lua5.4, the CLI's own #!. The library is claimed for Lua 5.1+, the CLI for lua5.4 and LuaJIT only.
function helpers.cli_lua()
  local vm = helpers.lua()
  if vm == "lua5.4" or vm == "luajit" then return vm end
  return "lua5.4"
end

--- a LUA_PATH/LUA_CPATH prefix for a child process using this checkout
function helpers.lua_env(vm)
  vm = helpers.lua(vm)
  local r = helpers.root
  return "LUA_PATH=" .. quote(r .. "/lua/?.lua;" .. r .. "/lua/?/init.lua;" .. r .. "/spec/?.lua;;") ..
    " LUA_CPATH=" .. quote(r .. "/build/" .. vm .. "/?.so;;") ..
    " LUA_CPATH_5_4=" .. quote(r .. "/build/" .. vm .. "/?.so;;")
end

--- an `env …` prefix for a child process that sees only an installed tree (PREFIX = tree), not the checkout;
-- version: the tree's Lua version ("5.4" unless told)
function helpers.installed_env(tree, version)
  version = version or "5.4"
  return "env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LUA_PATH=" ..
    quote(tree .. "/share/lua/" .. version .. "/?.lua;" .. tree .. "/share/lua/" .. version .. "/?/init.lua;;") ..
    " LUA_CPATH=" .. quote(tree .. "/lib/lua/" .. version .. "/?.so;;")
end

--- `make install` of this checkout into a fresh DESTDIR with PREFIX=/usr: the tree (…/usr) | nil, output
function helpers.make_install()
  local dest = helpers.tmpdir()
  local ok, out = helpers.sh("make -s -C " .. quote(helpers.root) .. " install DESTDIR=" .. quote(dest) ..
    " PREFIX=/usr")
  if not ok then return nil, out end
  return dest .. "/usr"
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

local read_file = helpers.read

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
  local out = capture(table.concat(args, " ") .. " 2>" .. quote(efile))
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

--- the headers a /_sandbox/ call needs (its control token), for specs that call one with helpers.http
function Sandbox:control_headers(extra)
  local h = { ["X-Sandbox-Token"] = self.control_token }
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

function Sandbox:control(method, path, payload)
  local headers = self:control_headers(payload and { ["Content-Type"] = "application/json" } or nil)
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

--- fault(kind, count, extra): extra = { seconds = S, scope = "token", after = M, retry_after = N } or a number
-- of seconds. Without `after` it replaces what is pending and hits the next `count` calls (0 clears); with
-- `after = M` it is added and hits calls M+1 … M+count from now.
function Sandbox:fault(kind, count, extra)
  local q = "kind=" .. helpers.escape(kind) .. "&count=" .. tostring(count or 1)
  if type(extra) == "number" then extra = { seconds = extra } end
  for k, v in pairs(extra or {}) do q = q .. "&" .. k .. "=" .. helpers.escape(v) end
  return self:control("POST", "/_sandbox/fault?" .. q)
end

function Sandbox:stats()
  return self:control("GET", "/_sandbox/stats")
end

--- requests(since) --> { last = n, requests = { { n, scope, method, uri, status, fault, clock }, … } }: the API
-- and token calls that reached the sandbox, after number `since`
function Sandbox:requests(since)
  local r = self:control("GET", "/_sandbox/requests?since=" .. tostring(since or 0))
  if r.requests[1] == nil then r.requests = {} end
  return r
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
  if self.stopped or not self.info then return end
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

-- start nginx on a free loopback port with this handle's options and fill the handle in
function Sandbox:start()
  local opts = self.opts
  local tls_dir = opts.tls == false and nil or helpers.tls_dir
  local info, err
  for _ = 1, 5 do
    info, err = runner.prepare{ port = opts.port or helpers.free_port(), tls_dir = tls_dir,
      client_id = opts.client_id, client_secret = opts.client_secret, redirect_uri = opts.redirect_uri,
      division = opts.division, accounts = opts.accounts, workers = opts.workers, sizes = opts.sizes,
      divisions = opts.divisions }
    if not info then error("sandbox: " .. tostring(err), 3) end
    local ok
    ok, err = runner.start(info)
    if ok then break end
    runner.stop(info)
    info = nil
    if opts.port then break end
  end
  if not info then error("sandbox: " .. tostring(err), 3) end
  runner.watchdog(info, my_pid())
  self.info, self.port, self.prefix, self.cafile = info, info.port, info.prefix, info.cafile
  self.base_url = (tls_dir and "https" or "http") .. "://127.0.0.1:" .. info.port
  self.client_id, self.client_secret, self.redirect_uri = info.client_id, info.client_secret, info.redirect_uri
  self.division, self.accounts, self.divisions, self.sizes = info.division, info.accounts, info.divisions, info.sizes
  self.control_token = info.control_token
  self.stopped = false
  helpers.on_cleanup(function() self:stop() end)
  helpers.default_cafile = helpers.default_cafile or info.cafile
  -- wait until it answers
  local last
  for _ = 1, 100 do
    local status = helpers.http("GET", self.base_url .. "/_sandbox/stats", { cafile = self.cafile, timeout = 2,
      headers = self:control_headers() })
    if status == 200 then
      if opts.limits then self:limits(opts.limits) end
      return self
    end
    last = status
    os.execute("sleep 0.05")
  end
  self:stop()
  error("sandbox did not answer (last status " .. tostring(last) .. ")", 3)
end

--- helpers.sandbox(opts) --> a running sandbox handle (nginx on a free loopback port, HTTPS), stopped by
-- sb:stop() or when the spec file ends.
-- opts: accounts, sizes ({ transactionlines = N, … }), division, divisions (how many), client_id,
-- client_secret, redirect_uri, workers, port, tls (default true), limits (a table for sb:limits, applied
-- once it answers)
function helpers.sandbox(opts)
  return setmetatable({ opts = opts or {} }, Sandbox):start()
end

--- helpers.use_sandbox(opts) --> this describe block's sandbox handle: started in the block's setup,
-- reset before each of its tests (then opts.limits applied again), stopped in its teardown.
-- opts as helpers.sandbox, and reset = false to keep state (tokens, clock, counters) from test to test, or
-- reset = { data = true } to bring the generated rows back too (sb:reset's options).
function helpers.use_sandbox(opts)
  assert(busted, "helpers.use_sandbox runs inside busted")
  opts = opts or {}
  local sb = setmetatable({ opts = opts }, Sandbox)
  busted.setup(function() sb:start() end)
  busted.teardown(function() sb:stop() end)
  if opts.reset ~= false then
    local how = type(opts.reset) == "table" and opts.reset or nil
    busted.before_each(function()
      sb:reset(how)
      if opts.limits then sb:limits(opts.limits) end
    end)
  end
  return sb
end

return helpers

--- The sandbox runner: writes an nginx prefix and config for the sandbox app, creates TLS files, starts and
-- stops nginx. Plain Lua (runs under lua5.4 or LuaJIT outside nginx); the app itself is exactonline.sandbox.app.
local io, os, package, string, table, math = io, os, package, string, table, math
local tostring, tonumber, type, pairs, ipairs, error = tostring, tonumber, type, pairs, ipairs, error

local _M = {}

_M.defaults = {
  client_id = "3c2b8a6e-91d4-4f57-b0e2-6d4a1f9c7e35",
  client_secret = "sandbox-secret-7Gq2Lw9Xv4",
  webhook_secret = "sandbox-webhook-secret-K3v9Pq",
  redirect_uri = "https://localhost/callback",
  division = 3167822,
  divisions = 2,
  workers = 2,
}

local NGINX = "/usr/sbin/nginx"
local MODULES = "/usr/lib/nginx/modules"

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
_M.quote = quote

-- os.execute differs between 5.1 (a number) and 5.2+ (true|nil, "exit", code)
local function execute(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0, a end
  return a == true, c
end
_M.execute = execute

local function read(cmd)
  local f = io.popen(cmd)
  if not f then return nil end
  local out = f:read("*a")
  f:close()
  return out
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

local function write(path, text, mode)
  local f, err = io.open(path, "w")
  if not f then return nil, err end
  f:write(text)
  f:close()
  if mode then execute("chmod " .. mode .. " " .. quote(path)) end
  return true
end

-- where our Lua sources live (checkout or installed tree)
local function lua_dir()
  local file = package.searchpath and package.searchpath("exactonline.sandbox", package.path)
  if file then
    local dir = file:match("^(.*)/exactonline/sandbox/init%.lua$")
    if dir then
      -- nginx must not depend on its working directory
      if dir:sub(1, 1) ~= "/" then dir = (read("pwd") or "."):gsub("%s+$", "") .. "/" .. dir:gsub("^%./", "") end
      return dir
    end
  end
  return ((read("pwd") or "."):gsub("%s+$", "")) .. "/lua"
end

local function cjson_cpath()
  for _, d in ipairs{ "/usr/lib/x86_64-linux-gnu/lua/5.1", "/usr/lib/aarch64-linux-gnu/lua/5.1",
                      "/usr/local/lib/lua/5.1", "/usr/lib/lua/5.1" } do
    if exists(d .. "/cjson.so") then return d .. "/?.so" end
  end
  return "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so"
end

function _M.mktemp(prefix)
  local out = read("mktemp -d " .. quote("/tmp/" .. (prefix or "exactonline-sandbox") .. ".XXXXXX"))
  out = out and out:gsub("%s+$", "")
  if not out or out == "" then return nil, "mktemp failed" end
  return out
end

--- ensure_tls(dir) --> true | nil, err: D/ca.pem, D/server.pem, D/server.key (created when missing).
-- The set is made in a scratch dir beside D and renamed into place whole, so concurrent runs never mix
-- one run's CA with another's server certificate. The CA key is thrown away once the server cert is signed.
local function have_tls(dir)
  return exists(dir .. "/ca.pem") and exists(dir .. "/server.pem") and exists(dir .. "/server.key")
end

local function my_uid()
  return tonumber((read("id -u") or ""):match("%d+"))
end

--- owned_dir(dir) --> true | false (missing) | nil, err: a folder only this user can change. Another user's
-- folder, a group- or world-writable one or a symbolic link could hold a CA planted for the user to trust.
function _M.owned_dir(dir)
  local out = read("stat -c '%F|%u|%a' " .. quote(dir) .. " 2>/dev/null") or ""
  local kind, uid, mode = out:match("^([^|]+)|(%d+)|(%d+)")
  if not kind then return false end
  if kind ~= "directory" then
    return nil, "the TLS folder " .. dir .. " is a " .. kind .. ", not a folder: give a folder of your own " ..
      "(it is created, mode 0700, when missing)"
  end
  if tonumber(uid) ~= my_uid() then
    return nil, "the TLS folder " .. dir .. " belongs to another user (uid " .. uid .. "): a CA file in it " ..
      "could be anyone's; give a folder of your own (it is created, mode 0700, when missing)"
  end
  local m = tonumber(mode, 8)
  local group_w, other_w = math.floor(m / 16) % 2 == 1, math.floor(m / 2) % 2 == 1
  if group_w or other_w then
    return nil, "the TLS folder " .. dir .. " is writable by others (mode " .. mode .. "): anyone could " ..
      "replace its CA file; chmod 700 it, or give a folder of your own"
  end
  return true
end

function _M.ensure_tls(dir)
  dir = dir:gsub("/+$", "")
  local owned, oerr = _M.owned_dir(dir)
  if owned == nil then return nil, oerr end
  if owned and have_tls(dir) then return true end
  local parent = dir:match("^(.*)/[^/]+$") or "."
  if parent == "" then parent = "/" end
  execute("mkdir -p " .. quote(parent))
  local tmp = (read("mktemp -d " .. quote(parent .. "/.exactonline-tls.XXXXXX")) or ""):gsub("%s+$", "")
  if tmp == "" then return nil, "could not make a scratch directory in " .. parent end
  local q = quote(tmp)
  write(tmp .. "/ext.cnf", "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n" ..
    "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
  local cmd = "(" .. table.concat({
    "cd " .. q,
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem"
      .. " -days 3650 -subj '/CN=exactonline sandbox CA'"
      .. " -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'",
    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr"
      .. " -subj '/CN=localhost'",
    "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 825"
      .. " -extfile ext.cnf",
    "rm -f ca.key ca.srl server.csr ext.cnf",
    "chmod 600 server.key",
    "chmod 700 .",
  }, " && ") .. ") >/dev/null 2>&1"
  if not execute(cmd) then
    execute("rm -rf " .. q)
    return nil, "openssl failed to create the sandbox certificates"
  end
  -- rename(2) replaces a missing or empty D atomically; otherwise (D has other files) move file by file
  if not execute("mv -T " .. q .. " " .. quote(dir) .. " 2>/dev/null") then
    execute("mkdir -p -m 700 " .. quote(dir))
    owned, oerr = _M.owned_dir(dir)
    if not owned then
      execute("rm -rf " .. q)
      return nil, oerr or ("could not create " .. dir)
    end
    if not have_tls(dir) then
      for _, name in ipairs{ "ca.pem", "server.pem", "server.key" } do
        execute("mv -f " .. quote(tmp .. "/" .. name) .. " " .. quote(dir .. "/" .. name))
      end
    end
    execute("rm -rf " .. q)
  end
  owned, oerr = _M.owned_dir(dir)
  if not owned then return nil, oerr or ("could not create " .. dir) end
  if not have_tls(dir) then
    return nil, "could not create the sandbox certificates in " .. dir
  end
  return true
end

--- a fresh control token (hex), for the X-Sandbox-Token header of /_sandbox/ calls
local function new_token()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(16)
  if f then f:close() end
  if not bytes or #bytes < 16 then error("sandbox: cannot read /dev/urandom for a control token") end
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function lua_literal(v)
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t == "number" or t == "boolean" then return tostring(v) end
  if t == "table" then
    local parts = {}
    for k, x in pairs(v) do
      parts[#parts + 1] = "[" .. lua_literal(k) .. "]=" .. lua_literal(x)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "nil"
end

--- sizes(spec) --> { entity = N } | nil, err: "transactionlines=200000,items=50" (or a table) checked against
-- the entities whose size can be set
function _M.sizes(spec)
  local catalog = require "exactonline.sandbox.catalog"
  local ok = {}
  for _, name in ipairs(catalog.sizable()) do ok[name] = true end
  local out = {}
  local function add(k, v)
    k = tostring(k):lower()
    local n = tonumber(v)
    if not ok[k] then
      local names = catalog.sizable()
      table.sort(names)
      return nil, "unknown entity '" .. k .. "' in --size (one of " .. table.concat(names, ", ") ..
        "; salesinvoicelines follow salesinvoices, paymentterms follow transactionlines)"
    end
    if not n or n < 0 or n ~= math.floor(n) then return nil, "--size " .. k .. " needs a whole number" end
    out[k] = n
    return true
  end
  if type(spec) == "table" and spec[1] then -- a list of "entity=N[,entity=N]" (repeated --size)
    spec = table.concat(spec, ",")
  end
  if type(spec) == "table" then
    for k, v in pairs(spec) do
      local good, err = add(k, v)
      if not good then return nil, err end
    end
  elseif type(spec) == "string" then
    for item in spec:gmatch("[^,]+") do
      local k, v = item:match("^%s*([%w_]+)%s*=%s*(%S+)%s*$")
      if not k then return nil, "--size takes entity=N (e.g. transactionlines=200000)" end
      local good, err = add(k, v)
      if not good then return nil, err end
    end
  end
  return out
end

--- prepare(opts) --> info | nil, err. Writes PREFIX/conf/nginx.conf and PREFIX/sandbox.lua.
-- opts: port (required), tls_dir, client_id, client_secret, redirect_uri, division, divisions (how many),
-- sizes ({ entity = N } or "entity=N,…"), accounts (= sizes.accounts), workers, prefix.
function _M.prepare(opts)
  opts = opts or {}
  local d = _M.defaults
  local port = tonumber(opts.port)
  if not port then error("sandbox: a port is required", 2) end
  local info = {
    port = port,
    client_id = opts.client_id or d.client_id,
    client_secret = opts.client_secret or d.client_secret,
    webhook_secret = opts.webhook_secret or d.webhook_secret,
    redirect_uri = opts.redirect_uri or d.redirect_uri,
    division = tonumber(opts.division) or d.division,
    divisions = tonumber(opts.divisions) or d.divisions,
    workers = tonumber(opts.workers) or d.workers,
    tls_dir = opts.tls_dir,
    -- every /_sandbox/ call must carry it (header X-Sandbox-Token): other local users and web pages cannot
    control_token = opts.control_token or os.getenv("EXACTONLINE_SANDBOX_TOKEN") or new_token(),
  }
  if type(info.control_token) ~= "string" or not info.control_token:match("^[%w%-%._~]+$") then
    return nil, "the control token (EXACTONLINE_SANDBOX_TOKEN) must be letters, digits and - . _ ~ only"
  end
  local sizes, serr = _M.sizes(opts.sizes or opts.size)
  if not sizes then return nil, serr end
  if opts.accounts then sizes.accounts = tonumber(opts.accounts) end
  info.sizes = sizes
  info.accounts = sizes.accounts or require("exactonline.sandbox.catalog").by_name.accounts.size
  if info.divisions < 1 or info.divisions ~= math.floor(info.divisions) then
    return nil, "--divisions needs a whole number of 1 or more"
  end
  local prefix = opts.prefix
  if not prefix then
    local err
    prefix, err = _M.mktemp()
    if not prefix then return nil, err end
  end
  info.prefix = prefix
  execute("mkdir -p " .. quote(prefix .. "/conf") .. " " .. quote(prefix .. "/logs") .. " " ..
    quote(prefix .. "/tmp"))
  local scheme = "http"
  if info.tls_dir then
    local ok, err = _M.ensure_tls(info.tls_dir)
    if not ok then return nil, err end
    scheme = "https"
    info.cafile = info.tls_dir .. "/ca.pem"
  end
  info.base_url = scheme .. "://localhost:" .. port
  info.conf = prefix .. "/conf/nginx.conf"
  info.pid = prefix .. "/logs/nginx.pid"
  info.error_log = prefix .. "/logs/error.log"

  local settings = {
    apps = { { client_id = info.client_id, client_secret = info.client_secret,
               redirect_uri = info.redirect_uri, webhook_secret = info.webhook_secret, name = "Sandbox app" } },
    division = info.division,
    divisions = info.divisions,
    sizes = info.sizes,
    control_token = info.control_token,
  }
  local ok, err = write(prefix .. "/sandbox.lua", "return " .. lua_literal(settings) .. "\n", "600")
  if not ok then return nil, err end

  local is_root = my_uid() == 0
  local worker_user = ""
  if is_root then
    -- workers never run as root: as nobody, which needs to reach only the temp folders (the master reads
    -- the config, the certificates and every Lua module before it forks)
    local group = execute("getent group nogroup >/dev/null 2>&1") and "nogroup" or "nobody"
    worker_user = "user nobody " .. group .. ";"
    execute("chmod 711 " .. quote(prefix))
  end
  local luadir = lua_dir()
  local listen = "listen 127.0.0.1:" .. port .. (info.tls_dir and " ssl" or "") .. ";"
  local tls = ""
  if info.tls_dir then
    tls = ("    ssl_certificate %s;\n    ssl_certificate_key %s;\n    ssl_protocols TLSv1.2 TLSv1.3;\n" ..
      -- webhook deliveries to an https callback on this machine trust the sandbox's own CA
      "    lua_ssl_trusted_certificate %s;\n    lua_ssl_verify_depth 2;\n")
      :format(info.tls_dir .. "/server.pem", info.tls_dir .. "/server.key", info.cafile)
  end
  local t = prefix .. "/tmp"
  local conf = table.concat({
    "load_module " .. MODULES .. "/ndk_http_module.so;",
    "load_module " .. MODULES .. "/ngx_http_lua_module.so;",
    worker_user,
    "worker_processes " .. info.workers .. ";",
    "pid " .. info.pid .. ";",
    "error_log " .. info.error_log .. " warn;",
    "events { worker_connections 512; }",
    "http {",
    "  access_log off;",
    "  server_tokens off;",
    "  default_type application/octet-stream;",
    "  client_body_temp_path " .. t .. "/body;",
    "  proxy_temp_path " .. t .. "/proxy;",
    "  fastcgi_temp_path " .. t .. "/fastcgi;",
    "  uwsgi_temp_path " .. t .. "/uwsgi;",
    "  scgi_temp_path " .. t .. "/scgi;",
    "  client_body_buffer_size 1m;",
    "  client_max_body_size 10m;",
    "  large_client_header_buffers 4 16k;",
    "  keepalive_timeout 65;",
    "  keepalive_requests 100000;",
    -- Exact gzips its answers for clients that ask (Accept-Encoding: gzip); small ones (faults) stay plain
    "  gzip on;",
    "  gzip_types application/json application/atom+xml application/xml;",
    "  gzip_min_length 8192;",
    "  gzip_vary on;",
    "  lua_package_path " .. string.format("%q", luadir .. "/?.lua;" .. luadir .. "/?/init.lua;" ..
      "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;") .. ";",
    "  lua_package_cpath " .. string.format("%q", cjson_cpath() .. ";;") .. ";",
    "  lua_shared_dict eo_sandbox_state 32m;",
    -- generated rows cost nothing; changes (and created rows) are kept here
    "  lua_shared_dict eo_sandbox_data " .. (tonumber(opts.data_mb) or 128) .. "m;",
    "  init_by_lua_block { require('exactonline.sandbox.app').init(" ..
      string.format("%q", prefix .. "/sandbox.lua") .. ") }",
    "  init_worker_by_lua_block { require('exactonline.sandbox.app').init_worker() }",
    -- every answer's Date on the sandbox clock, when it is sent (nginx's own error pages too)
    "  header_filter_by_lua_block { require('exactonline.sandbox.app').date() }",
    "  server {",
    "    " .. listen,
    "    server_name localhost;",
    tls,
    "    location / {",
    "      content_by_lua_block { require('exactonline.sandbox.app').handle() }",
    "      log_by_lua_block { require('exactonline.sandbox.app').log() }",
    "    }",
    "  }",
    "}",
    "",
  }, "\n")
  ok, err = write(info.conf, conf)
  if not ok then return nil, err end
  return info
end

local function nginx_cmd(info, extra)
  return NGINX .. " -p " .. quote(info.prefix) .. " -c " .. quote(info.conf) .. " -e " ..
    quote(info.error_log) .. (extra or "")
end

--- start(info) --> true | nil, err: runs nginx as a daemon (returns once it listens or failed).
function _M.start(info)
  local out = read(nginx_cmd(info) .. " 2>&1; echo \"rc=$?\"") or ""
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  if rc ~= 0 then
    local f = io.open(info.error_log, "r")
    local log = f and f:read("*a") or ""
    if f then f:close() end
    return nil, "nginx failed to start: " .. out:gsub("rc=%d+%s*$", "") .. log:sub(-600)
  end
  return true
end

function _M.pid(info)
  local f = io.open(info.pid, "r")
  if not f then return nil end
  local pid = tonumber(f:read("*a"))
  f:close()
  return pid
end

--- stop(info): stop the daemon, wait (up to ~5 s) for it to go, remove the prefix.
function _M.stop(info, keep_prefix)
  local pid = _M.pid(info)
  if pid then
    execute("kill -TERM " .. pid .. " 2>/dev/null")
    execute("i=0; while [ -e " .. quote(info.pid) .. " ] && kill -0 " .. pid ..
      " 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; kill -KILL " .. pid ..
      " 2>/dev/null; true")
  end
  if not keep_prefix then execute("rm -rf " .. quote(info.prefix)) end
  return true
end

--- watchdog(info, owner_pid): stop nginx when owner_pid goes away (a spec run that died, a killed CLI).
function _M.watchdog(info, owner_pid)
  local p = quote(info.pid)
  local script = "while kill -0 " .. owner_pid .. " 2>/dev/null && [ -e " .. p .. " ]; do sleep 1; done; " ..
    "[ -e " .. p .. " ] && kill -TERM $(cat " .. p .. ") 2>/dev/null; sleep 1; rm -rf " .. quote(info.prefix)
  execute("nohup sh -c " .. quote(script) .. " >/dev/null 2>&1 </dev/null &")
end

--- run_foreground(info, on_ready) --> exit code, listened. nginx runs with daemon off under a small shell that forwards
-- INT/TERM/HUP to it; setpriv makes the shell die (and stop nginx) if this process is killed. on_ready() runs
-- once nginx listens (its master writes the pid file after opening the listening sockets), so whatever it
-- prints (the address, the credentials) is only seen when the sandbox already answers.
function _M.run_foreground(info, on_ready)
  local pid = quote(info.pid)
  local script = "trap 'kill -TERM $n 2>/dev/null' INT TERM HUP; " ..
    nginx_cmd(info, " -g 'daemon off;'") .. " </dev/null >/dev/null & n=$!; " ..
    "while [ ! -s " .. pid .. " ] && kill -0 $n 2>/dev/null; do sleep 0.02; done; " ..
    "[ -s " .. pid .. " ] && echo listening; " ..
    "wait $n; rc=$?; while kill -0 $n 2>/dev/null; do wait $n; rc=$?; done; " ..
    "rm -rf " .. quote(info.prefix) .. "; echo \"rc=$rc\""
  local launcher = "sh -c " .. quote(script)
  if execute("command -v setpriv >/dev/null 2>&1") then
    launcher = "exec setpriv --pdeathsig TERM -- " .. launcher
  end
  local p = io.popen(launcher, "r")
  local line = p:read("*l")
  local listened = line == "listening"
  if listened then
    if on_ready then on_ready() end
    line = p:read("*l")
  end
  p:close()
  return tonumber(line and line:match("^rc=(%d+)")) or 1, listened
end

return _M

--- The gateway's runner (plain Lua, outside nginx): checks what the gateway needs before it starts (tokens,
-- keys, TLS files, a free port, a token store the workers can use), writes an nginx prefix (config from
-- exactonline.gateway.conf, settings 0600) and runs Debian's nginx + ngx_lua in the foreground until SIGTERM
-- or Ctrl-C. The app inside nginx is exactonline.gateway.app.
--   local gateway = require "exactonline.gateway"
--   local info = assert(gateway.prepare{ listen = "127.0.0.1:8080", keys = "…", token_file = "…", … })
--   os.exit(gateway.run(info))
local core = require "exactonline.core"
local dirname = require("exactonline.cli.util").dirname
local keys = require "exactonline.gateway.keys"
local conf = require "exactonline.gateway.conf"

local io, os, package, string, table = io, os, package, string, table
local tostring, tonumber, type, pairs, ipairs, pcall, require = tostring, tonumber, type, pairs, ipairs, pcall,
  require
local str_format = string.format

local _M = {}

_M.NGINX = "/usr/sbin/nginx"
_M.MODULES = "/usr/lib/nginx/modules"
_M.SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
_M.WORKER_USER = "nobody" -- who the workers run as when the gateway is started as root

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local real = core.realpath(dirname(path))
  if real then return real .. "/" .. path:match("([^/]*)$") end
  return path
end

-- where our Lua sources are (a checkout's lua/, or the installed share/lua/5.4), and the LuaJIT build of
-- exactonline.core next to them (a checkout's build/luajit/, or lib/lua/5.1)
local function code_paths()
  local file = package.searchpath("exactonline.gateway", package.path)
  local dir = file and file:match("^(.*)/exactonline/gateway/init%.lua$")
  if not dir then return nil, "cannot find the exactonline Lua files on package.path" end
  dir = absolute(dir)
  dir = core.realpath(dir) or dir
  local candidates = {
    dir .. "/../build/luajit",                          -- a checkout: lua/ beside build/
    dir:gsub("/share/lua/5%.%d$", "/lib/lua/5.1"),      -- make install: PREFIX/share/lua/5.4 -> PREFIX/lib/lua/5.1
    "/usr/local/lib/lua/5.1", "/usr/lib/x86_64-linux-gnu/lua/5.1", "/usr/lib/aarch64-linux-gnu/lua/5.1",
  }
  for _, c in ipairs(candidates) do
    if exists(c .. "/exactonline/core.so") then
      return { lua = dir, core = (core.realpath(c) or c) }
    end
  end
  return nil, "the LuaJIT build of exactonline.core (exactonline/core.so for nginx) is missing: run `make luajit` "
    .. "in the checkout (or `make install`, which installs it under PREFIX/lib/lua/5.1)"
end

local function cjson_dir()
  for _, d in ipairs { "/usr/lib/x86_64-linux-gnu/lua/5.1", "/usr/lib/aarch64-linux-gnu/lua/5.1",
    "/usr/local/lib/lua/5.1", "/usr/lib/lua/5.1" } do
    if exists(d .. "/cjson.so") then return d end
  end
  return nil
end

--- parse --listen: "8080", "HOST:PORT", "[::1]:PORT" --> { host, port, loopback, text } | nil, message
function _M.parse_listen(s)
  s = tostring(s or "127.0.0.1:8080")
  local host, port
  if s:match("^%d+$") then
    host, port = "127.0.0.1", s
  else
    host, port = s:match("^%[([%x:.]+)%]:(%d+)$")
    if host then host = "[" .. host .. "]" else host, port = s:match("^([%w.%-*]+):(%d+)$") end
  end
  port = tonumber(port)
  if not host or not port or port < 1 or port > 65535 then
    return nil, "--listen takes PORT, HOST:PORT or [IPv6]:PORT (e.g. 127.0.0.1:8080), not '" .. s .. "'"
  end
  local loopback = host == "localhost" or host:match("^127%.") ~= nil or host == "[::1]"
  return { host = host, port = port, loopback = loopback, text = host .. ":" .. port }
end

-- is the address free? (luasocket when present; nginx says it too, less clearly)
local function port_free(listen)
  local ok, socket = pcall(require, "socket")
  if not ok then return true end
  local host = listen.host:gsub("^%[(.*)%]$", "%1")
  if host == "*" then host = "0.0.0.0" end
  local s = (host:find(":", 1, true) and socket.tcp6 or socket.tcp)()
  if not s then return true end
  s:setoption("reuseaddr", true)
  local bound, err = s:bind(host, listen.port)
  s:close()
  if bound then return true end
  return nil, err
end

local function nameservers()
  local out = {}
  local f = io.open("/etc/resolv.conf")
  if not f then return out end
  for line in f:lines() do
    local ns = line:match("^%s*nameserver%s+(%S+)")
    if ns then out[#out + 1] = ns:find(":", 1, true) and ("[" .. ns .. "]") or ns end
  end
  f:close()
  return out
end

local function needs_resolver(base_url)
  local host = base_url and base_url:match("^%a+://%[?([^/%]]-)%]?:?%d*/?$") or base_url and
    base_url:match("^%a+://([^/:]+)")
  if not base_url then return true end -- a region: start.exactonline.*
  host = host or ""
  return not (host == "localhost" or host:match("^[%d.]+$") or host:find(":", 1, true))
end

-- As root, the workers run as nobody and must read and replace the token file and read the key file:
-- each must be theirs, and every folder above them passable. --> true | nil, message
local function check_worker_access(user, paths)
  local fix, why = {}, {}
  local function need_owner(path, what)
    local st = core.stat(path, true)
    if st and st.uid ~= user.uid then
      fix[#fix + 1] = path
      why[#why + 1] = what
    end
  end
  local token_file = paths.token_file
  if token_file then
    local dir = dirname(token_file)
    need_owner(dir, "its folder")
    need_owner(token_file, "the token file")
    need_owner(token_file .. ".lock", "its lock file")
  end
  need_owner(paths.keys, "the key file")
  if #fix > 0 then
    local list = {}
    for i, p in ipairs(fix) do list[i] = p end
    return nil, str_format("the gateway runs its nginx workers as %s (it was started as root), and they must read "
      .. "and replace the token file and read the key file, but %s %s to another user: run\n  chown %s:%s %s\n"
      .. "(or start the gateway as the user who owns the token file)", user.name, table.concat(why, ", "),
      #why == 1 and "belongs" or "belong", user.name, user.group or user.gid, table.concat(list, " "))
  end
  -- every folder above must let them through
  for _, p in ipairs { paths.token_file, paths.keys } do
    local dir = p and dirname(p)
    while dir and dir ~= "/" and dir ~= "." do
      local st = core.stat(dir)
      if st and st.uid ~= user.uid and st.mode % 2 == 0 then
        return nil, str_format("the gateway's workers run as %s and cannot pass through %s (mode %04o) to reach %s:"
          .. " keep the token file in a folder they can reach (e.g. /var/lib/exactonline, chown %s), or chmod o+x %s",
          user.name, dir, st.mode, p, user.name, dir)
      end
      dir = dirname(dir)
    end
  end
  return true
end

local function no_tokens(token_file)
  if not token_file then
    return "there are no tokens in the PostgreSQL store yet (table exactonline_tokens, key default): authorize "
      .. "once with a client whose store is exactonline.stores.postgres{ conninfo = … } (client:exchange), then "
      .. "start the gateway"
  end
  return "there are no tokens in " .. token_file .. " yet: run `exactonline auth` first (with the same settings), "
    .. "then start the gateway"
end

local function lua_literal(v)
  local t = type(v)
  if t == "string" then return str_format("%q", v) end
  if t == "number" or t == "boolean" then return tostring(v) end
  if t == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = "[" .. lua_literal(k) .. "]=" .. lua_literal(x) end
    table.sort(parts)
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "nil"
end

local function write(path, text, mode)
  local f, err = core.create_file(path, mode or 420) -- 0644
  if not f then return nil, err end
  local ok, werr = f:write(text)
  if ok then ok, werr = f:flush(true) end
  f:close()
  if not ok then return nil, werr end
  return true
end

--- prepare(opts) --> info | nil, message, exit code. Checks everything a start needs, then writes the prefix.
-- opts: listen, workers, keys, tls_cert, tls_key, public_url, max_wait, error_budget ("off" or a number of
-- errors), timeout, access_log ("-": stdout),
-- client_id, client_secret, redirect_uri, region, base_url, division, token_file, cafile,
-- retries, retry_delay
function _M.prepare(opts)
  local listen, lerr = _M.parse_listen(opts.listen)
  if not listen then return nil, lerr, 2 end
  local workers = tonumber(opts.workers) or 2
  if workers < 1 or workers > 64 or workers % 1 ~= 0 then return nil, "--workers takes a number from 1 to 64", 2 end
  local error_budget = opts.error_budget
  if error_budget == "off" then
    error_budget = false
  elseif error_budget ~= nil then
    error_budget = tonumber(error_budget)
    if not error_budget or error_budget < 1 or error_budget > 1000 or error_budget % 1 ~= 0 then
      return nil, "--error-budget takes a number of errors from 1 to 1000, or off", 2
    end
  end
  if (opts.tls_cert == nil) ~= (opts.tls_key == nil) then
    return nil, "give both --tls-cert and --tls-key (or neither)", 2
  end
  for _, f in ipairs { { opts.tls_cert, "--tls-cert" }, { opts.tls_key, "--tls-key" } } do
    if f[1] and not exists(f[1]) then return nil, "cannot read " .. f[1] .. " (" .. f[2] .. ")", 2 end
  end
  local upstream_host = opts.base_url and opts.base_url:match("^%a+://%[?([^/%]]*)")
  if upstream_host and (upstream_host:match("^[%d.:]+$") or upstream_host:find(":", 1, true) and
    not upstream_host:match("^[%w.-]+:%d+$")) then
    return nil, "nginx verifies Exact Online's certificate by host name only: give a base URL with a name "
      .. "(https://localhost:PORT for a sandbox on this machine), not the address " .. opts.base_url, 2
  end
  if not exists(_M.NGINX) or not exists(_M.MODULES .. "/ngx_http_lua_module.so") then
    return nil, "the gateway runs on Debian's nginx with ngx_lua: apt install nginx libnginx-mod-http-lua", 1
  end
  local paths, perr = code_paths()
  if not paths then return nil, perr, 1 end
  local cjson_path = cjson_dir()
  if not cjson_path then return nil, "lua-cjson for LuaJIT is missing: apt install lua-cjson", 1 end

  -- the key file: readable, and at least one key that works
  local key_path = absolute(opts.keys)
  local doc, kerr, missing = keys.read(key_path)
  if not doc then return nil, kerr, 2 end
  if missing then
    return nil, "there is no gateway key file at " .. key_path .. " yet: make a key first with\n  exactonline gateway "
      .. "--new-key NAME" .. (opts.keys_flag and (" --keys " .. key_path) or ""), 2
  end
  if keys.active(doc) == 0 then
    return nil, "every key in " .. key_path .. " is revoked: make one with exactonline gateway --new-key NAME", 2
  end

  local user
  if core.geteuid() == 0 then
    local u, uerr = core.user(_M.WORKER_USER)
    if not u then return nil, "started as root, the gateway runs its workers as " .. _M.WORKER_USER .. ": " ..
      tostring(uerr), 1 end
    u.name = _M.WORKER_USER
    user = u
    local token_file = opts.token_file and absolute(opts.token_file)
    local ok, why = check_worker_access(u, { token_file = not opts.token_db and token_file or nil, keys = key_path })
    if not ok then return nil, why, 2 end
  end

  -- tokens: the chain must exist before clients are let in (a file the workers own is theirs to read)
  local token_file = opts.token_file and absolute(opts.token_file)
  if user and not opts.token_db then
    if not core.stat(token_file) then return nil, no_tokens(token_file), 2 end
  else
    local exactonline = require "exactonline"
    local ok, store
    if opts.token_db then
      ok, store = pcall(exactonline.stores.postgres, { conninfo = opts.token_db })
    else
      ok, store = pcall(exactonline.file_store, token_file)
    end
    if not ok then return nil, tostring(store), 2 end
    local t, terr = store.load()
    if store.close then store.close() end
    if terr then return nil, tostring(terr), 2 end
    if not t then return nil, no_tokens(not opts.token_db and token_file), 2 end
  end

  local free, ferr = port_free(listen)
  if not free then
    if tostring(ferr):find("in use", 1, true) then
      return nil, listen.text .. " is taken (another gateway or program listens there): choose another with --listen",
        1
    end
    return nil, "cannot listen on " .. listen.text .. ": " .. tostring(ferr) ..
      (listen.port < 1024 and " (ports below 1024 need root)" or ""), 1
  end

  local prefix, merr = core.mkdtemp("/tmp/exactonline-gateway")
  if not prefix then return nil, tostring(merr), 1 end
  for _, d in ipairs { "/logs", "/tmp" } do
    local ok, err = core.mkdir_p(prefix .. d, 448)
    if not ok then return nil, tostring(err), 1 end
  end

  local info = {
    prefix = prefix, listen = listen, workers = workers, user = user, paths = paths, cjson = cjson_path,
    conf = prefix .. "/nginx.conf", pid = prefix .. "/nginx.pid", error_log = prefix .. "/logs/error.log",
    settings_path = prefix .. "/gateway.lua", error_log_copy = prefix .. ".error.log",
    tls = opts.tls_cert and { cert = absolute(opts.tls_cert), key = absolute(opts.tls_key) } or nil,
    access_log = (opts.access_log == nil or opts.access_log == "-") and "/dev/stdout" or absolute(opts.access_log),
    cafile = opts.cafile and absolute(opts.cafile) or _M.SYSTEM_CA,
    resolvers = needs_resolver(opts.base_url) and nameservers() or {},
  }
  info.url = (info.tls and "https" or "http") .. "://" .. (listen.host == "*" and "127.0.0.1" or listen.host) ..
    ":" .. listen.port
  local settings = {
    client_id = opts.client_id, client_secret = opts.client_secret, redirect_uri = opts.redirect_uri,
    region = opts.region, base_url = opts.base_url, division = opts.division, token_file = token_file,
    token_db = opts.token_db, keys = key_path, max_wait = tonumber(opts.max_wait) or 65,
    timeout = tonumber(opts.timeout) or 60, public_url = opts.public_url and opts.public_url:gsub("/+$", ""),
    retries = tonumber(opts.retries), retry_delay = tonumber(opts.retry_delay),
    error_budget = error_budget,
  }
  local ok, err = write(info.settings_path, "return " .. lua_literal(settings) .. "\n", 384) -- 0600: the secret
  if ok then ok, err = write(info.conf, conf.render(info)) end
  if not ok then
    _M.cleanup(info)
    return nil, tostring(err), 1
  end
  return info
end

--- remove the prefix (settings with the client secret included)
function _M.cleanup(info)
  if info and info.prefix and info.prefix:match("^/tmp/exactonline%-gateway%.") then
    os.execute("rm -rf '" .. info.prefix:gsub("'", "") .. "'")
  end
end

local function tail_errors(info)
  local f = io.open(info.error_log_copy)
  if not f then return "" end
  local lines = {}
  for line in f:lines() do
    if line:find("[emerg]", 1, true) or line:find("[alert]", 1, true) or line:find("[error]", 1, true) then
      lines[#lines + 1] = line:gsub("^%S+ %S+ ", "")
    end
  end
  f:close()
  return table.concat(lines, "\n", math.max(1, #lines - 5))
end

--- run(info) --> exit code. nginx in the foreground (daemon off) under a small shell that forwards SIGTERM,
-- SIGINT and SIGHUP to it (HUP: nginx reloads its configuration); setpriv makes that shell stop nginx
-- if this process dies. The prefix is removed when nginx is gone.
function _M.run(info)
  local q = function(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
  local nginx = q(_M.NGINX) .. " -p " .. q(info.prefix) .. " -c " .. q(info.conf) .. " -e " .. q(info.error_log) ..
    " -g 'daemon off;'"
  local script = "trap 'stopped=1; kill -TERM $n 2>/dev/null' INT TERM; trap 'kill -HUP $n 2>/dev/null' HUP; " ..
    nginx .. " </dev/null & n=$!; wait $n; rc=$?; while kill -0 $n 2>/dev/null; do wait $n; rc=$?; done; " ..
    -- what nginx said at a failed start outlives the prefix, which goes with the settings (and the secret)
    "[ $rc -eq 0 ] || [ -n \"$stopped\" ] || cp " .. q(info.error_log) .. " " .. q(info.error_log_copy) ..
    "; rm -rf " .. q(info.prefix) .. "; exit $rc"
  local argv = { "sh", "-c", script }
  if exists("/usr/bin/setpriv") then argv = { "setpriv", "--pdeathsig", "TERM", "--", "sh", "-c", script } end
  local code, err = core.spawn(argv, { wait = true, unset = { "EXACT_CLIENT_SECRET", "EXACTONLINE_SANDBOX_TOKEN" } })
  local why = code ~= 0 and code ~= 143 and code ~= 130 and tail_errors(info) or ""
  os.remove(info.error_log_copy)
  _M.cleanup(info)
  if not code then return 1, tostring(err) end
  if why ~= "" then
    if why:find("Address already in use", 1, true) then
      why = info.listen.text .. " is taken (another gateway or program listens there): choose another with --listen"
    end
    return code, why
  end
  if code == 143 or code == 130 then return 0 end
  return code
end

return _M

--- An nginx for the module under test (separate from the sandbox's): Debian nginx + ngx_lua, plain HTTP on a
-- free loopback port, the checkout's lua/ and build/luajit/ on its paths, handlers from spec/support/nginx_app.lua.
--   local ngx_harness = require "support.nginx"
--   local app = ngx_harness.start{ sandbox = sb, workers = 2, settings = { … } }  -- running now
--   local app = ngx_harness.use{ sandbox = sb, workers = 2 }  -- this describe block's: setup starts, teardown stops
--   local status, headers, body = app:get("/ping")
--   app:reload(); app:restart(); app:stop()   (a running app is stopped at the latest when the spec file ends)
local helpers = require "helpers"
local runner = require "exactonline.sandbox"

local os, string, table = os, string, table
local tostring, tonumber, pairs, error, setmetatable, type, assert, next =
  tostring, tonumber, pairs, error, setmetatable, type, assert, next

local _M = {}

local NGINX = "/usr/sbin/nginx"
local MODULES = "/usr/lib/nginx/modules"

local quote, read_cmd, write = helpers.quote, helpers.capture, helpers.write

local function literal(v)
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = "[" .. literal(k) .. "]=" .. literal(x) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return tostring(v)
end

local App = {}
App.__index = App

function App:cmd(extra)
  return NGINX .. " -p " .. quote(self.prefix) .. " -c " .. quote(self.conf) .. " -e " ..
    quote(self.prefix .. "/logs/error.log") .. (extra or "")
end

function App:pid()
  return tonumber(helpers.read(self.prefix .. "/logs/nginx.pid"))
end

function App:error_log()
  return helpers.read(self.prefix .. "/logs/error.log") or ""
end

-- wait until /ping answers (and, after a reload, until it is answered by a new worker generation)
function App:wait_ready(not_pids)
  for _ = 1, 200 do
    local status, _, body = self:get("/ping", 2)
    if status == 200 and not (not_pids and not_pids[tonumber(body)]) then return true end
    os.execute("sleep 0.05")
  end
  error("the nginx under test did not answer /ping:\n" .. self:error_log():sub(-2000), 2)
end

function App:start()
  local out = read_cmd(self:cmd() .. " 2>&1; echo rc=$?")
  if not out:match("rc=0%s*$") then
    error("nginx under test failed to start: " .. out .. self:error_log():sub(-1500), 2)
  end
  self.running = true
  runner.watchdog({ pid = self.prefix .. "/logs/nginx.pid", prefix = self.prefix .. "/none" }, helpers.pid())
  self:wait_ready()
end

--- the worker pids serving now (asks /ping many times)
function App:worker_pids(tries)
  local pids = {}
  for _ = 1, tries or 20 do
    local status, _, body = self:get("/ping", 2)
    if status == 200 then pids[tonumber(body)] = true end
  end
  return pids
end

--- nginx -s reload: new workers (shared dicts survive a reload); waits for the new generation
function App:reload()
  local old = self:worker_pids()
  assert(os.execute(self:cmd(" -s reload") .. " 2>/dev/null"))
  -- old workers finish their requests and leave; keep asking until a new pid answers only
  for _ = 1, 200 do
    local pids = self:worker_pids(6)
    local fresh = true
    for p in pairs(pids) do if old[p] then fresh = false end end
    if fresh and next(pids) then return true end
    os.execute("sleep 0.05")
  end
  error("nginx reload did not bring new workers")
end

function App:stop()
  if not self.running then return end
  self.running = false
  local pid = self:pid()
  if pid then
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    -- the pid file goes when nginx is done (a zombie may outlive it where nothing reaps daemons)
    os.execute("i=0; while [ -e " .. quote(self.prefix .. "/logs/nginx.pid") .. " ] && kill -0 " .. pid ..
      " 2>/dev/null && [ $i -lt 100 ]; do sleep 0.02; i=$((i+1)); done; kill -KILL " .. pid .. " 2>/dev/null; true")
  end
end

--- stop and start again: shared dicts are gone, only a backing store keeps the chain
function App:restart()
  self:stop()
  self:start()
end

--- one HTTP request to the nginx under test: status, headers, body
function App:get(path, timeout)
  return helpers.http("GET", self.url .. path, { timeout = timeout or 30 })
end

-- write the prefix and config for opts (the sandbox must be running by now), then start
function App:launch(opts)
  local sb = opts.sandbox
  local root = helpers.root
  local prefix = helpers.tmpdir()
  os.execute("mkdir -p " .. quote(prefix .. "/conf") .. " " .. quote(prefix .. "/logs") .. " " ..
    quote(prefix .. "/tmp"))
  local settings = {
    base_url = "https://localhost:" .. sb.port,
    client_id = sb.client_id, client_secret = sb.client_secret, redirect_uri = sb.redirect_uri,
    division = sb.division, token_file = prefix .. "/tokens.json",
  }
  for k, v in pairs(opts.settings or {}) do settings[k] = v end
  write(prefix .. "/settings.lua", "return " .. literal(settings) .. "\n")
  local is_root = helpers.is_root()
  local port = helpers.free_port()
  local t = prefix .. "/tmp"
  local lpath = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/spec/?.lua;" ..
    "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;"
  local cpath = root .. "/build/luajit/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;"
  local conf = table.concat({
    "load_module " .. MODULES .. "/ndk_http_module.so;",
    "load_module " .. MODULES .. "/ngx_http_lua_module.so;",
    -- user = false: no `user` line, so a root master runs its workers as nobody (as a plain install does)
    is_root and opts.user ~= false and "user root root;" or "",
    "worker_processes " .. (opts.workers or 2) .. ";",
    "pid " .. prefix .. "/logs/nginx.pid;",
    "error_log " .. prefix .. "/logs/error.log warn;",
    "events { worker_connections 1024; }",
    "http {",
    "  access_log off;",
    "  client_body_temp_path " .. t .. "/body;",
    "  proxy_temp_path " .. t .. "/proxy;",
    "  fastcgi_temp_path " .. t .. "/fastcgi;",
    "  uwsgi_temp_path " .. t .. "/uwsgi;",
    "  scgi_temp_path " .. t .. "/scgi;",
    "  keepalive_requests 100000;",
    "  lua_package_path " .. string.format("%q", lpath) .. ";",
    "  lua_package_cpath " .. string.format("%q", cpath) .. ";",
    "  lua_shared_dict exactonline 1m;",
    "  lua_ssl_trusted_certificate " .. (opts.trusted or sb.cafile) .. ";",
    "  lua_ssl_verify_depth 2;",
    "  init_by_lua_block { require('support.nginx_app').init(" .. string.format("%q", prefix .. "/settings.lua")
      .. ") }",
    "  server {",
    "    listen 127.0.0.1:" .. port .. ";",
    "    location / { content_by_lua_block { require('support.nginx_app').handle() } }",
    "  }",
    "}",
    "",
  }, "\n")
  self.prefix, self.conf, self.port, self.url, self.settings =
    prefix, prefix .. "/conf/nginx.conf", port, "http://127.0.0.1:" .. port, settings
  write(self.conf, conf)
  helpers.on_cleanup(function() self:stop() end)
  self:start()
  return self
end

--- start{ sandbox = sb, workers = 2, settings = {…}, trusted = CA file, user = false } --> a running App
-- settings go to the handlers (spec/support/nginx_app.lua) as app.settings
function _M.start(opts)
  return setmetatable({}, App):launch(opts)
end

--- use{ … as start } --> this describe block's App: started in the block's setup (after the sandbox's,
-- when helpers.use_sandbox came first), stopped in its teardown
function _M.use(opts)
  local busted = require "busted"
  local app = setmetatable({}, App)
  busted.setup(function() app:launch(opts) end)
  busted.teardown(function() app:stop() end)
  return app
end

return _M

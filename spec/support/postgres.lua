--- A throwaway PostgreSQL server for specs: initdb + pg_ctl in a temp folder, unix socket only.
-- local pg = require("support.postgres").start()  -- pg.conninfo, pg.dir; pg:stop() (at the latest when the
-- spec file ends). initdb refuses to run as root, so as root the server runs as `nobody` (runuser).
local helpers = require "helpers"
local io_popen, os_getenv = io.popen, os.getenv
local assert, error, setmetatable = assert, error, setmetatable

local _M = {}

-- Debian installs the server binaries per major version; take the newest one there is.
local function find_bin()
  local f = io_popen("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1")
  local dir = f and f:read("*l")
  if f then f:close() end
  return (dir and dir ~= "") and dir or "/usr/lib/postgresql/15/bin"
end
local BIN = os_getenv("PG_BIN") or find_bin()

local sh, q = helpers.sh, helpers.quote

local Server = {}
Server.__index = Server

function _M.start()
  local dir = helpers.tmpdir()
  local as = ""
  if helpers.is_root() then
    assert(sh("chown nobody " .. q(dir)))
    as = "runuser -u nobody -- "
  end
  local data = dir .. "/data"
  local ok1, out1 = sh("cd " .. q(dir) .. " && " .. as .. BIN .. "/initdb -D " .. q(data) ..
    " -U postgres --auth=trust -E UTF8 --no-sync --no-instructions")
  if not ok1 then error("initdb failed:\n" .. out1) end
  local opts = "-k " .. dir .. " -c listen_addresses='' -p 5432 -F -c max_connections=40" ..
    " -c shared_buffers=8MB -c dynamic_shared_memory_type=posix"
  local ok2, out2 = sh("cd " .. q(dir) .. " && " .. as .. BIN .. "/pg_ctl -D " .. q(data) .. ' -o "' .. opts ..
    '" -l ' .. q(dir .. "/log") .. " -w -t 30 start")
  if not ok2 then error("pg_ctl start failed:\n" .. out2 .. "\n" .. (helpers.read(dir .. "/log") or "")) end
  local server = setmetatable({
    dir = dir, data = data, as = as,
    conninfo = "host=" .. dir .. " port=5432 user=postgres dbname=postgres",
  }, Server)
  helpers.on_cleanup(function() server:stop() end)
  return server
end

function Server:stop()
  if not self.dir then return end
  sh("cd " .. q(self.dir) .. " && " .. self.as .. BIN .. "/pg_ctl -D " .. q(self.data) .. " -m immediate -w stop")
  helpers.rm_rf(self.dir)
  self.dir = nil
end

return _M

--- A throwaway PostgreSQL server for specs: initdb + pg_ctl in a temp folder, unix socket only.
-- local pg = require("support.postgres").start()  -- pg.conninfo, pg.dir; pg:stop()
-- initdb refuses to run as root, so as root the server runs as `nobody` (runuser).
local io_popen, os_execute, os_getenv = io.popen, os.execute, os.getenv
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

local function sh(cmd)
  local f = assert(io_popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = f:read("*a")
  f:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc == 0, out
end

local function is_root()
  local f = io_popen("id -u")
  local uid = f:read("*l")
  f:close()
  return uid == "0"
end

local Server = {}
Server.__index = Server

function _M.start()
  local ok, dir = sh("mktemp -d /tmp/exactonline-pg.XXXXXX")
  assert(ok, dir)
  dir = dir:match("^(%S+)")
  local as = ""
  if is_root() then
    assert(sh("chown nobody " .. dir))
    as = "runuser -u nobody -- "
  end
  local data = dir .. "/data"
  local ok1, out1 = sh("cd " .. dir .. " && " .. as .. BIN .. "/initdb -D " .. data ..
    " -U postgres --auth=trust -E UTF8 --no-sync --no-instructions")
  if not ok1 then sh("rm -rf " .. dir); error("initdb failed:\n" .. out1) end
  local opts = "-k " .. dir .. " -c listen_addresses='' -p 5432 -F -c max_connections=40" ..
    " -c shared_buffers=8MB -c dynamic_shared_memory_type=posix"
  local ok2, out2 = sh("cd " .. dir .. " && " .. as .. BIN .. "/pg_ctl -D " .. data .. ' -o "' .. opts ..
    '" -l ' .. dir .. "/log -w -t 30 start")
  if not ok2 then
    local _, log = sh("cat " .. dir .. "/log")
    sh("rm -rf " .. dir)
    error("pg_ctl start failed:\n" .. out2 .. "\n" .. log)
  end
  return setmetatable({
    dir = dir, data = data, as = as,
    conninfo = "host=" .. dir .. " port=5432 user=postgres dbname=postgres",
  }, Server)
end

function Server:stop()
  if not self.dir then return end
  sh("cd " .. self.dir .. " && " .. self.as .. BIN .. "/pg_ctl -D " .. self.data .. " -m immediate -w stop")
  os_execute("rm -rf " .. self.dir)
  self.dir = nil
end

return _M

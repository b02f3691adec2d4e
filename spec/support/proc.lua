--- Real child processes for store specs, run with the same VM as busted (EXACTONLINE_VM).
-- LUA_PATH / LUA_CPATH come from spec/run.sh through the environment.
local io_open, io_popen, os_getenv, os_tmpname, os_remove = io.open, io.popen, os.getenv, os.tmpname, os.remove
local assert, tonumber = assert, tonumber

local _M = {}

_M.vm = os_getenv("EXACTONLINE_VM") or "lua5.4"

--- Shell-quote one word.
function _M.q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- Run a shell command: ok, output (stdout and stderr).
function _M.sh(cmd)
  local f = assert(io_popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\""))
  local out = f:read("*a")
  f:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc == 0, (out:gsub("rc=%d+%s*$", "")), rc
end

function _M.write(path, text)
  local f = assert(io_open(path, "wb"))
  f:write(text)
  f:close()
end

function _M.read(path)
  local f = io_open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- A fresh temp folder (removed by rmdir_all).
function _M.tempdir()
  local ok, out = _M.sh("mktemp -d /tmp/exactonline-spec.XXXXXX")
  assert(ok, out)
  return (out:match("^(%S+)"))
end

function _M.rm_rf(dir)
  if dir and dir:match("^/tmp/exactonline%-") then _M.sh("chmod -R u+rwx " .. _M.q(dir) .. "; rm -rf " .. _M.q(dir)) end
end

--- Write a Lua script to a temp file and return the command that runs it with our VM.
function _M.script(code)
  local path = os_tmpname()
  _M.write(path, code)
  return _M.vm .. " " .. _M.q(path), function() os_remove(path) end
end

--- Start a command in the background: its pid.
function _M.spawn(cmd)
  local f = assert(io_popen("(" .. cmd .. ") >/dev/null 2>&1 & echo $!"))
  local pid = tonumber(f:read("*l"))
  f:close()
  return pid
end

function _M.alive(pid)
  return (_M.sh("kill -0 " .. pid))
end

function _M.kill9(pid)
  _M.sh("kill -9 " .. pid)
end

--- Wait (polling) until a file exists; true | false after `limit` seconds.
function _M.wait_for(path, limit)
  local ok = _M.sh("i=0; while [ ! -e " .. _M.q(path) .. " ] && [ $i -lt " .. (limit or 20) * 100 ..
    " ]; do sleep 0.01; i=$((i+1)); done; [ -e " .. _M.q(path) .. " ]")
  return ok
end

function _M.is_root()
  local f = io_popen("id -u")
  local uid = f:read("*l")
  f:close()
  return uid == "0"
end

--- A command prefix under which file modes are enforced even for root (no CAP_DAC_OVERRIDE).
function _M.without_root_powers()
  if not _M.is_root() then return "" end
  return "setpriv --inh-caps=-all --bounding-set=-dac_override,-dac_read_search,-fowner,-linux_immutable "
end

return _M

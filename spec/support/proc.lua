--- Real child processes for specs (store, sandbox CLI, replica), run with the same VM as busted (EXACTONLINE_VM).
-- LUA_PATH / LUA_CPATH come from spec/run.sh through the environment. Shell, files and temp dirs:
-- spec/helpers.lua.
local helpers = require "helpers"
local io_popen, os_tmpname, os_remove = io.popen, os.tmpname, os.remove
local assert, tonumber = assert, tonumber

local _M = {}

local q, sh = helpers.quote, helpers.sh

--- Write a Lua script to a temp file and return the command that runs it with our VM.
function _M.script(code)
  local path = os_tmpname()
  helpers.write(path, code)
  return helpers.lua() .. " " .. q(path), function() os_remove(path) end
end

--- A child process that takes a store's lock and holds it until killed. `store_code` is Lua that makes the
-- store as `s`. Waits until the lock is taken. --> a handle: holder.pid, holder.kill9()
function _M.lock_holder(store_code)
  local marker = helpers.tmpdir() .. "/locked"
  local cmd, done = _M.script(store_code .. ("\nassert(s.lock(5))\nio.open(%q, 'w'):close()\n"):format(marker)
    .. "while true do os.execute('sleep 1') end\n")
  local pid = _M.spawn(cmd)
  assert(_M.wait_for(marker, 20), "the child never took the lock")
  return { pid = pid, kill9 = function() _M.kill9(pid); done() end }
end

--- Start a command in the background: its pid.
function _M.spawn(cmd)
  local f = assert(io_popen("(" .. cmd .. ") >/dev/null 2>&1 & echo $!"))
  local pid = tonumber(f:read("*l"))
  f:close()
  return pid
end

function _M.alive(pid)
  return (sh("kill -0 " .. pid))
end

function _M.kill9(pid)
  sh("kill -9 " .. pid)
end

--- Wait (polling) until a file exists; true | false after `limit` seconds.
function _M.wait_for(path, limit)
  local ok = sh("i=0; while [ ! -e " .. q(path) .. " ] && [ $i -lt " .. (limit or 20) * 100 ..
    " ]; do sleep 0.01; i=$((i+1)); done; [ -e " .. q(path) .. " ]")
  return ok
end

--- A command prefix under which file modes are enforced even for root (no CAP_DAC_OVERRIDE).
function _M.without_root_powers()
  if not helpers.is_root() then return "" end
  return "setpriv --inh-caps=-all --bounding-set=-dac_override,-dac_read_search,-fowner,-linux_immutable "
end

return _M
